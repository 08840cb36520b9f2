"""LeNet-5's SGD step on the CPU, with the arithmetic of autograd's but less work.

What the plain loop spends its time on, measured here: small convolutions,
`max_pool2d_with_indices`, whose branchy kernel mispredicts on MNIST's windows, and, in
some processes but not others, a glibc heap that hands oneDNN's temporaries back to the
OS every step and faults them in again (900-1230 page faults a step when it happens).
This step

- keeps freed memory in the process (`tune_malloc`), so no step page-faults;
- computes each convolution directly in the four phases of its 2x2 pooling window:
  one convolution over `pixel_unshuffle(x, 2)` with a zero-padded 3x3 kernel gathered
  from the 5x5 one, after which max-pooling is an elementwise maximum of four
  contiguous slices, branch-free, with max_pool2d's tie rule (first maximum in
  row-major order; MNIST's flat background ties often);
- applies ReLU after pooling (relu(max(a)) == max(relu(a)), gradients included);
- writes the backward pass out by hand, with no autograd graph, and updates the
  parameters with foreach SGD (torch.optim.SGD's formula, dampening 0).

Losses and weights match autograd's to float rounding (spec/test_pkg_training.py).
"""

from __future__ import annotations

import ctypes
import functools

import torch
import torch.nn.functional as F
from torch import nn

aten = torch.ops.aten
LENET_SHAPES = [(6, 1, 5, 5), (6,), (16, 6, 5, 5), (16,), (120, 256), (120,), (84, 120), (84,), (10, 84), (10,)]


@functools.cache
def tune_malloc() -> bool:
    """Stop glibc from trimming the heap and from mmapping large blocks, process-wide:
    freed memory stays in the process, and a training step no longer faults it back in."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc: nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_trim_threshold, 1 << 30)) and bool(libc.mallopt(m_mmap_threshold, 32 << 20))


def is_lenet(net: nn.Module) -> bool:
    return [tuple(p.shape) for p in net.parameters()] == LENET_SHAPES


def prepare_images(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, 28, 28) -> (N, 4, 14, 14), channel 2s + t holding x[:, 0, s::2, t::2]: once per dataset."""
    return F.pixel_unshuffle(x, 2).contiguous()


def _phase_index(cout: int, cin: int, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """A kxk convolution followed by 2x2 pooling is one convolution over pixel_unshuffle(input)
    that yields the 4 window phases (u, v) as 4*cout channels, with a (4 cout, 4 cin, 3, 3) kernel W'.

    Returns G, the gather index building W'.flatten() from [W.flatten(), 0], and S, a
    (4, W.numel()) index such that grad W = grad W'.flatten()[S].sum(0).
    """
    ka = (k + 2) // 2
    n = cout * cin * k * k
    gather = torch.full((4 * cout, 4 * cin, ka, ka), n, dtype=torch.long)
    scatter = torch.empty(4, n, dtype=torch.long)
    for u in range(2):
        for v in range(2):
            for o in range(cout):
                for i in range(cin):
                    for p in range(k):
                        for q in range(k):
                            s, a = (p + u) % 2, (p + u) // 2
                            t, b = (q + v) % 2, (q + v) // 2
                            oo, ii = (u * 2 + v) * cout + o, i * 4 + s * 2 + t
                            w = ((o * cin + i) * k + p) * k + q
                            gather[oo, ii, a, b] = w
                            scatter[u * 2 + v, w] = ((oo * 4 * cin + ii) * ka + a) * ka + b
    return gather.flatten(), scatter


def _pool_forward(phases: torch.Tensor, channels: int) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Max over the 4 phases (N, 4C, h, w) -> (N, C, h, w), and the differences that
    encode which phase won, first maximum first, as max_pool2d picks it."""
    n, _, h, w = phases.shape
    a, b, c, d = phases.view(n, 4, channels, h, w).unbind(1)
    top, bottom = torch.maximum(a, b), torch.maximum(c, d)
    # x - y > 0 iff x > y for finite floats; a tie (0) goes to the first.
    return torch.maximum(top, bottom), (torch.sub(b, a), torch.sub(d, c), torch.sub(bottom, top))


def _pool_backward(grad: torch.Tensor, wins: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
    """Route the pooled gradient (N, C, h, w) to the winning phase of `out` (N, 4C, h, w).
    threshold_backward(g, m, 0) is a vectorised where(m > 0, g, 0)."""
    right_b, right_d, bottom = wins
    n, c, h, w = grad.shape
    o = out.view(n, 4, c, h, w)
    g_bottom = aten.threshold_backward(grad, bottom, 0)
    g_top = torch.sub(grad, g_bottom)
    aten.threshold_backward.grad_input(g_top, right_b, 0, grad_input=o[:, 1])
    torch.sub(g_top, o[:, 1], out=o[:, 0])
    aten.threshold_backward.grad_input(g_bottom, right_d, 0, grad_input=o[:, 3])
    torch.sub(g_bottom, o[:, 3], out=o[:, 2])
    return out


class FastLeNetStep:
    """SGD steps of a LeNet (Q26's parameters) on phase-prepared images; updates the net in place."""

    def __init__(self, net: nn.Module, lr: float, momentum: float) -> None:
        if not is_lenet(net):
            raise ValueError("FastLeNetStep takes a LeNet with Q26's layers")
        self.params = [p.detach() for p in net.parameters()]  # share storage with the net
        self.lr, self.momentum = lr, momentum
        # torch.optim.SGD's first step sets buf = g; 0 * momentum + g is the same.
        self.buffers = [torch.zeros_like(p) for p in self.params]
        self.gather1, self.scatter1 = _phase_index(6, 1)
        self.gather2, self.scatter2 = _phase_index(16, 6)
        self.padded1 = torch.zeros(6 * 25 + 1)
        self.padded2 = torch.zeros(16 * 6 * 25 + 1)

    @torch.no_grad()
    def __call__(self, xu: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One step on the minibatch `xu` (from `prepare_images`); returns its mean loss."""
        w1, b1, w2, b2, f1, fb1, f2, fb2, f3, fb3 = self.params
        n = xu.shape[0]
        self.padded1[:-1].copy_(w1.view(-1))
        w1p = self.padded1[self.gather1].view(24, 4, 3, 3)
        self.padded2[:-1].copy_(w2.view(-1))
        w2p = self.padded2[self.gather2].view(64, 24, 3, 3)

        c1 = F.conv2d(xu, w1p, b1.repeat(4))  # (N, 24, 12, 12): conv1 in its 4 pooling phases
        m1, wins1 = _pool_forward(c1, 6)
        p1 = torch.relu(m1)  # (N, 6, 12, 12)
        p1u = F.pixel_unshuffle(p1, 2)  # (N, 24, 6, 6)
        c2 = F.conv2d(p1u, w2p, b2.repeat(4))  # (N, 64, 4, 4): conv2 in its 4 pooling phases
        m2, wins2 = _pool_forward(c2, 16)
        p2 = torch.relu(m2)
        h = p2.view(n, 256)
        z1 = torch.relu(torch.addmm(fb1, h, f1.t()))
        z2 = torch.relu(torch.addmm(fb2, z1, f2.t()))
        log_probs = torch.log_softmax(torch.addmm(fb3, z2, f3.t()), 1)
        loss = F.nll_loss(log_probs, labels)

        g_out = torch.exp(log_probs)  # d loss / d logits = (softmax - onehot) / N
        g_out[torch.arange(n), labels] -= 1
        g_out.div_(n)
        g_f3, g_fb3, g_z2 = g_out.t().mm(z2), g_out.sum(0), g_out.mm(f3)
        g_a2 = aten.threshold_backward(g_z2, z2, 0)
        g_f2, g_fb2, g_z1 = g_a2.t().mm(z1), g_a2.sum(0), g_a2.mm(f2)
        g_a1 = aten.threshold_backward(g_z1, z1, 0)
        g_f1, g_fb1, g_h = g_a1.t().mm(h), g_a1.sum(0), g_a1.mm(f1)
        g_m2 = aten.threshold_backward(g_h.view(n, 16, 4, 4), p2, 0)
        g_c2 = _pool_backward(g_m2, wins2, torch.empty_like(c2))
        g_p1u, g_w2p, g_b2p = aten.convolution_backward(
            g_c2, p1u, w2p, [64], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [True, True, True]
        )
        g_m1 = aten.threshold_backward(F.pixel_shuffle(g_p1u, 2), p1, 0)
        g_c1 = _pool_backward(g_m1, wins1, torch.empty_like(c1))
        _, g_w1p, g_b1p = aten.convolution_backward(
            g_c1, xu, w1p, [24], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, True]
        )
        g_w1 = g_w1p.view(-1)[self.scatter1].sum(0).view(6, 1, 5, 5)
        g_w2 = g_w2p.view(-1)[self.scatter2].sum(0).view(16, 6, 5, 5)
        grads = [g_w1, g_b1p.view(4, 6).sum(0), g_w2, g_b2p.view(4, 16).sum(0), g_f1, g_fb1, g_f2, g_fb2, g_f3, g_fb3]

        # torch.optim.SGD with momentum: buf = momentum * buf + g; p -= lr * buf
        torch._foreach_mul_(self.buffers, self.momentum)
        torch._foreach_add_(self.buffers, grads)
        torch._foreach_add_(self.params, self.buffers, alpha=-self.lr)
        return loss
