"""A population of LeNets' gradients as batched matrix products: the sweep's "bmm" engine (sweep.py).

`lenet_grads(params, x, labels)` returns what `vmap(grad_and_value(loss))` returns for the stacked
weights of S LeNets (torch.func's stack_module_state), each seed on its own minibatch of n images,
with the arithmetic of autograd's to float rounding, but with no grouped convolutions: vmap turns the
seeds' convolutions into grouped ones, whose backward kernels are slow on the GPU (conv2's input
gradient as one launch a seed; docs/benchmarks.md). Here each convolution is a batched product over
the images unfolded (F.unfold, one launch for all seeds), the seed's weights broadcast to its images:

- conv1 and conv2: (out, in * 25) @ (in * 25, positions) per image, the bias added in the product;
  their weight gradients per image, then summed over each seed's images; conv2's input gradient per
  image, folded back (F.fold, the adjoint of unfold);
- pooling and ReLU as the net does them (max_pool2d with its indices, ReLU after pooling), their
  gradients routed to the winning positions (a scatter: 2x2 windows of stride 2 do not overlap);
- the linear layers and the loss batched over seeds; the loss's gradient by the kernels autograd runs
  for cross_entropy's backward (nll_loss's, then log_softmax's).

Everything has static shapes and no host synchronisation, so that CUDA can capture it in a graph as it
captures vmap's step. The aten overload it calls (threshold_backward, ReLU's backward, and
log_softmax's) are fast_cpu's, checked by `fast_cpu.supported()`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .fast_cpu import _relu_backward, aten

LeNetParams = tuple[torch.Tensor, ...]  # the stacked weights, in LeNet's parameter order: (S, ...) each


def _per_image(t: torch.Tensor, n: int) -> torch.Tensor:
    """(S, ...) -> (S * n, ...): each seed's tensor repeated for its n images (a copy: bmm needs a batch stride)."""
    return t.unsqueeze(1).expand(t.shape[0], n, *t.shape[1:]).reshape(t.shape[0] * n, *t.shape[1:])


def lenet_grads(params: LeNetParams, x: torch.Tensor, labels: torch.Tensor) -> tuple[LeNetParams, torch.Tensor]:
    """The gradients of each seed's mean cross-entropy over its own minibatch, and those losses.

    params: S LeNets' stacked weights; x: (S, n, 1, 28, 28), seed s's images in x[s]; labels: (S, n).
    Returns (gradients shaped as params, losses (S,))."""
    w1, b1, w2, b2, f1, fb1, f2, fb2, f3, fb3 = params
    seeds, n = labels.shape
    images = seeds * n

    # forward, as LeNet.forward: conv, pool, ReLU twice; three linear layers, ReLU between
    cols1 = F.unfold(x.reshape(images, 1, 28, 28), 5)  # (images, 25, 576)
    w1i = _per_image(w1.reshape(seeds, 6, 25), n)
    c1 = torch.baddbmm(_per_image(b1, n).unsqueeze(2), w1i, cols1)  # (images, 6, 576)
    m1, where1 = F.max_pool2d(c1.view(images, 6, 24, 24), 2, return_indices=True)
    p1 = m1.relu_()  # (images, 6, 12, 12)
    cols2 = F.unfold(p1, 5)  # (images, 150, 64)
    w2i = _per_image(w2.reshape(seeds, 16, 150), n)
    c2 = torch.baddbmm(_per_image(b2, n).unsqueeze(2), w2i, cols2)  # (images, 16, 64)
    m2, where2 = F.max_pool2d(c2.view(images, 16, 8, 8), 2, return_indices=True)
    h = m2.relu_().view(seeds, n, 256)  # the flattened features, as LeNet.features
    z1 = torch.baddbmm(fb1.unsqueeze(1), h, f1.transpose(1, 2)).relu_()  # (S, n, 120)
    z2 = torch.baddbmm(fb2.unsqueeze(1), z1, f2.transpose(1, 2)).relu_()  # (S, n, 84)
    logits = torch.baddbmm(fb3.unsqueeze(1), z2, f3.transpose(1, 2))  # (S, n, 10)
    log_probs = torch.log_softmax(logits, 2)
    losses = F.nll_loss(log_probs.view(images, 10), labels.reshape(images), reduction="none").view(seeds, n).mean(1)

    # backward: d mean loss / d log_probs is -1/n at each label (nll_loss's), then log_softmax's backward
    g_log_probs = torch.zeros_like(log_probs).scatter_(2, labels.unsqueeze(2), -1.0 / n)
    g = aten._log_softmax_backward_data.default(
        grad_output=g_log_probs, output=log_probs, dim=2, input_dtype=log_probs.dtype
    )  # (S, n, 10)
    g_f3, g_fb3 = torch.bmm(g.transpose(1, 2), z2), g.sum(1)
    g = _relu_backward(torch.bmm(g, f3), z2)
    g_f2, g_fb2 = torch.bmm(g.transpose(1, 2), z1), g.sum(1)
    g = _relu_backward(torch.bmm(g, f2), z1)
    g_f1, g_fb1 = torch.bmm(g.transpose(1, 2), h), g.sum(1)
    g_m2 = _relu_backward(torch.bmm(g, f1), h).view(images, 16, 16)  # ReLU's, at the pooled outputs
    # The pooled gradient goes to each window's winner, all else 0: conv2's bias gradient is its sum.
    g_b2 = g_m2.view(seeds, n, 16, 16).sum((1, 3))
    g_c2 = torch.zeros_like(c2).scatter_(2, where2.view(images, 16, 16), g_m2)  # (images, 16, 64)
    g_w2 = torch.bmm(g_c2, cols2.transpose(1, 2)).view(seeds, n, 16, 150).sum(1)
    g_p1 = F.fold(torch.bmm(w2i.transpose(1, 2), g_c2), (12, 12), 5)  # (images, 6, 12, 12)
    g_m1 = _relu_backward(g_p1, p1).reshape(images, 6, 144)
    g_b1 = g_m1.view(seeds, n, 6, 144).sum((1, 3))
    g_c1 = torch.zeros_like(c1).scatter_(2, where1.view(images, 6, 144), g_m1)  # (images, 6, 576)
    g_w1 = torch.bmm(g_c1, cols1.transpose(1, 2)).view(seeds, n, 6, 25).sum(1)
    grads = (g_w1.view_as(w1), g_b1, g_w2.view_as(w2), g_b2, g_f1, g_fb1, g_f2, g_fb2, g_f3, g_fb3)
    return grads, losses
