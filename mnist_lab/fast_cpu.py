"""LeNet-5's SGD step on the CPU, with the arithmetic of autograd's but less work.

Where the plain loop spends its time (docs/benchmarks.md has the figures): small convolutions,
oneDNN's backward kernels most; `max_pool2d_with_indices`, whose branchy kernel
mispredicts on MNIST's windows; and, in some processes, a glibc heap that hands oneDNN's
temporaries back to the OS every step and faults them in again. This step

- keeps freed memory in the process (`tune_malloc`), so no step page-faults;
- computes each convolution's output in the four phases (u, v) of its 2x2 pooling window,
  phase-major, so that max-pooling is an elementwise maximum of four contiguous slices,
  branch-free, with max_pool2d's tie rule (first maximum in row-major order; MNIST's flat
  background ties often). conv1 runs with stride 2 over the four (u, v)-shifted images,
  which costs no more than the plain convolution; conv2 runs as it is and is permuted;
- applies ReLU after pooling (relu(max(a)) == max(relu(a)), gradients included);
- writes the backward pass out by hand, with no autograd graph: the loss's gradient with
  autograd's own kernels, and the convolutions' gradients in one of two ways, whichever is
  faster on the CPU at hand (oneDNN's kernels differ by ISA: on AVX-512, conv2's input gradient
  as a forward convolution and conv1's weight gradient by oneDNN's backward kernel over the
  phases; on AVX2, conv2's by oneDNN's backward kernel and conv1's weight gradient as a dilated
  forward convolution), or autograd's whole backward pass (`BACKWARDS`; train() times them on
  the run's first steps, mnist_lab/tuning.py);
- updates all parameters at once with SGD's formula (dampening 0) on one flat buffer,
  which the net's parameters are views of.

The backward pass calls aten overloads that autograd uses but PyTorch does not promise to
keep (`PRIVATE_OPS`). Each call names its arguments, and `supported()` checks that every
overload is there with the arguments named here: where one is not, train() falls back to
autograd. Losses and weights match autograd's to float rounding (spec/package_tests/test_training.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError

aten = torch.ops.aten
CHANNELS_LAST = torch.channels_last
# The private overloads the step calls, and the argument names it calls them with.
PRIVATE_OPS = {
    "convolution_backward.default": (
        "grad_output", "input", "weight", "bias_sizes", "stride", "padding", "dilation", "transposed",
        "output_padding", "groups", "output_mask",
    ),
    "_log_softmax_backward_data.default": ("grad_output", "output", "dim", "input_dtype"),
    "nll_loss_forward.default": ("self", "target", "weight", "reduction", "ignore_index"),
    "nll_loss_backward.default": (
        "grad_output", "self", "target", "weight", "reduction", "ignore_index", "total_weight",
    ),
    "threshold_backward.default": ("grad_output", "self", "threshold"),
    "threshold_backward.grad_input": ("grad_output", "self", "threshold", "grad_input"),
}  # fmt: skip
MEAN = 1  # aten's Reduction::Mean
NO_IGNORED_CLASS = -100  # cross_entropy's default ignore_index
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


def _op(name: str) -> torch._ops.OpOverload | None:
    packet, _, overload = name.partition(".")
    try:
        return getattr(getattr(aten, packet), overload)
    except (AttributeError, RuntimeError):
        return None


def missing_overloads() -> list[str]:
    """The overloads of PRIVATE_OPS that this PyTorch lacks, or has with other arguments."""
    return [
        name
        for name, arguments in PRIVATE_OPS.items()
        if (op := _op(name)) is None or tuple(a.name for a in op._schema.arguments) != arguments
    ]


@functools.cache
def supported() -> bool:
    """Whether this PyTorch has every overload the step calls, with the arguments it names."""
    return not missing_overloads()


def is_lenet(net: nn.Module) -> bool:
    return [tuple(p.shape) for p in net.parameters()] == LENET_SHAPES


def shifted_images(x: torch.Tensor) -> torch.Tensor:
    """(N, 1, 28, 28) -> (4N, 1, 27, 27): the images cropped at offset (u, v), phase-major
    (row (2u + v) N + n). conv1 with stride 2 over these is conv1's output at rows 2i + u
    and columns 2j + v: the four phases of its pooling windows."""
    n = x.shape[0]
    x = x.contiguous()
    shifted = x.as_strided((2, 2, n, 27, 27), (28, 1, 784, 28, 1), x.storage_offset())
    return shifted.reshape(4 * n, 1, 27, 27)


def to_phases(c: torch.Tensor) -> torch.Tensor:
    """(N, C, 2h, 2w) -> (4, N, C, h, w), phase 2u + v holding c[..., u::2, v::2]."""
    n, channels, h, w = c.shape[0], c.shape[1], c.shape[2] // 2, c.shape[3] // 2
    return c.view(n, channels, h, 2, w, 2).permute(3, 5, 0, 1, 2, 4).reshape(4, n, channels, h, w)


def from_phases(p: torch.Tensor) -> torch.Tensor:
    """The inverse of `to_phases`, as four strided copies: a single permuted copy, whose
    innermost loop would read 2 elements apart from 4 places, takes twice as long."""
    _, n, channels, h, w = p.shape
    out = torch.empty(n, channels, 2 * h, 2 * w)
    windows = out.view(n, channels, h, 2, w, 2)
    for phase, u, v in ((0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1)):
        windows[:, :, :, u, :, v].copy_(p[phase])
    return out


def _pool_forward(phases: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Max over the 4 phases (4, ...) -> (...), and the differences that encode which
    phase won, first maximum first, as max_pool2d picks it."""
    a, b, c, d = phases.unbind(0)
    top, bottom = torch.maximum(a, b), torch.maximum(c, d)
    # x - y > 0 iff x > y for finite floats; a tie (0) goes to the first.
    return torch.maximum(top, bottom), (torch.sub(b, a), torch.sub(d, c), torch.sub(bottom, top))


def _relu_backward(grad: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
    """`grad` where `output` > 0, else 0: ReLU's backward, by autograd's kernel."""
    return aten.threshold_backward.default(grad_output=grad, self=output, threshold=0)


def _pool_backward(grad: torch.Tensor, wins: tuple[torch.Tensor, ...], out: torch.Tensor) -> torch.Tensor:
    """Route the pooled gradient (...) to the winning phase of `out` (4, ...), which it fills.
    threshold_backward(g, m, 0) is a vectorised where(m > 0, g, 0)."""
    right_b, right_d, bottom = wins
    out_a, out_b, out_c, out_d = out.unbind(0)
    g_bottom = _relu_backward(grad, bottom)
    g_top = torch.sub(grad, g_bottom)
    aten.threshold_backward.grad_input(grad_output=g_top, self=right_b, threshold=0, grad_input=out_b)
    torch.sub(g_top, out_b, out=out_a)
    aten.threshold_backward.grad_input(grad_output=g_bottom, self=right_d, threshold=0, grad_input=out_d)
    torch.sub(g_bottom, out_d, out=out_c)
    return out


def _conv_backward(
    grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride: int, input_grad: bool = False
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """The gradients of an unpadded, undilated convolution by oneDNN's backward kernel: the input's (where
    asked for, else None), the weight's and the bias's."""
    return aten.convolution_backward.default(
        grad_output=grad, input=x, weight=weight, bias_sizes=[weight.shape[0]], stride=[stride, stride],
        padding=[0, 0], dilation=[1, 1], transposed=False, output_padding=[0, 0], groups=1,
        output_mask=[input_grad, True, True],
    )  # fmt: skip


BACKWARDS = ("phases", "dilated", "autograd")  # how FastLeNetStep computes the gradients (its docstring)


class FastLeNetStep:
    """SGD steps of a LeNet (Q26's parameters); updates the net in place.

    The net's parameters become views of one flat buffer (their values unchanged), so that
    the update is three operations for the whole net. `backward` says how the gradients are
    computed, all to autograd's values up to float rounding; which is fastest depends on the CPU
    (oneDNN's kernels differ by ISA), so train() times them on the run's first steps (tuning.py):
    - "phases": the forward pass in pooling phases and the backward pass by hand, conv2's input
      gradient as a forward convolution, conv1's weight gradient over the four phases (AVX-512);
    - "dilated": the same, but conv2's gradients by oneDNN's backward kernel and conv1's weight
      gradient as a forward convolution, dilated by 2, of the shifted images by the phases (AVX2);
    - "autograd": the net's own forward and autograd's backward, the plain loop's kernels.
    """

    def __init__(self, net: nn.Module, lr: float, momentum: float, backward: str = "phases") -> None:
        if not is_lenet(net):
            raise InputError("FastLeNetStep takes a LeNet with Q26's layers")
        if not supported():
            raise InputError(f"FastLeNetStep needs aten overloads that torch {torch.__version__} lacks; use autograd")
        if backward not in BACKWARDS:
            raise InputError(f"backward must be one of {BACKWARDS}, not {backward!r}")
        self.net, self.backward = net, backward
        parameters = list(net.parameters())
        self.flat = torch.cat([p.detach().reshape(-1) for p in parameters])
        self.grad = torch.empty_like(self.flat)
        self.params: list[torch.Tensor] = []
        self.grads: list[torch.Tensor] = []
        offset = 0
        for p in parameters:
            p.data = self.flat[offset : offset + p.numel()].view_as(p)  # the net trains in the flat buffer
            self.params.append(p.data)
            self.grads.append(self.grad[offset : offset + p.numel()].view_as(p))
            offset += p.numel()
        self.lr, self.momentum = lr, momentum
        # torch.optim.SGD's first step sets buf = g; 0 * momentum + g is the same.
        self.buffer = torch.zeros_like(self.flat)
        self.one = torch.ones(())

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One step on the minibatch `x` (N, 1, 28, 28); returns its mean loss."""
        loss = self._autograd(x, labels) if self.backward == "autograd" else self._by_hand(x, labels)
        # torch.optim.SGD with momentum: buf = momentum * buf + g; p -= lr * buf
        self.buffer.mul_(self.momentum).add_(self.grad)
        self.flat.add_(self.buffer, alpha=-self.lr)
        return loss

    def _autograd(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The gradients into the flat buffer by autograd, through the net's own forward."""
        with torch.enable_grad():
            loss = F.cross_entropy(self.net(x), labels)
            for into, grad in zip(self.grads, torch.autograd.grad(loss, self.net.parameters()), strict=True):
                into.copy_(grad)
        return loss.detach()

    def _by_hand(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The forward pass in pooling phases and the backward pass written out; the gradients into the buffer."""
        w1, b1, w2, b2, f1, fb1, f2, fb2, f3, fb3 = self.params
        n = x.shape[0]

        xs = shifted_images(x)
        c1 = F.conv2d(xs, w1, b1, stride=2).view(4, n, 6, 12, 12)  # conv1 in its 4 pooling phases
        m1, wins1 = _pool_forward(c1)
        p1 = torch.relu(m1)  # (N, 6, 12, 12)
        c2 = to_phases(F.conv2d(p1, w2, b2))  # (4, N, 16, 4, 4)
        m2, wins2 = _pool_forward(c2)
        p2 = torch.relu(m2)
        h = p2.view(n, 256)
        z1 = torch.relu(torch.addmm(fb1, h, f1.t()))
        z2 = torch.relu(torch.addmm(fb2, z1, f2.t()))
        log_probs = torch.log_softmax(torch.addmm(fb3, z2, f3.t()), 1)
        loss, total_weight = aten.nll_loss_forward.default(
            self=log_probs, target=labels, weight=None, reduction=MEAN, ignore_index=NO_IGNORED_CLASS
        )

        # d loss / d logits, by the kernels autograd runs for cross_entropy's backward
        g_log_probs = aten.nll_loss_backward.default(
            grad_output=self.one, self=log_probs, target=labels, weight=None, reduction=MEAN,
            ignore_index=NO_IGNORED_CLASS, total_weight=total_weight,
        )  # fmt: skip
        g_out = aten._log_softmax_backward_data.default(
            grad_output=g_log_probs, output=log_probs, dim=1, input_dtype=torch.float32
        )
        g_f1, g_fb1, g_f2, g_fb2, g_f3, g_fb3 = self.grads[4:]  # the convolutions' come below
        torch.mm(g_out.t(), z2, out=g_f3)
        torch.sum(g_out, 0, out=g_fb3)
        g_a2 = _relu_backward(g_out.mm(f3), z2)
        torch.mm(g_a2.t(), z1, out=g_f2)
        torch.sum(g_a2, 0, out=g_fb2)
        g_a1 = _relu_backward(g_a2.mm(f2), z1)
        torch.mm(g_a1.t(), h, out=g_f1)
        torch.sum(g_a1, 0, out=g_fb1)
        g_m2 = _relu_backward(g_a1.mm(f1).view(n, 16, 4, 4), p2)
        g_c2 = from_phases(_pool_backward(g_m2, wins2, torch.empty_like(c2)))  # (N, 16, 8, 8)
        g_p1 = self._conv2_grads(g_c2, p1)
        g_m1 = _relu_backward(g_p1, p1)
        # dilated: conv1's output gradient laid out channel-major, as its weight gradient's convolution reads it
        dilated = self.backward == "dilated"
        out = torch.empty(6, 4, n, 12, 12).permute(1, 2, 0, 3, 4) if dilated else torch.empty_like(c1)
        self._conv1_grads(_pool_backward(g_m1, wins1, out), xs)
        return loss

    def _conv2_grads(self, g_c2: torch.Tensor, p1: torch.Tensor) -> torch.Tensor:
        """conv2's weight and bias gradients into the buffer; its input gradient returned."""
        w2, g_w2, g_b2 = self.params[2], self.grads[2], self.grads[3]
        if self.backward == "dilated":
            g_p1, g_w2_, g_b2_ = _conv_backward(g_c2, p1, w2, stride=1, input_grad=True)
        else:  # the input gradient as a forward convolution, by the flipped kernel over the zero-padded
            # gradient; the weight gradient by oneDNN's kernel on channels-last copies
            g_p1 = F.conv2d(g_c2, w2.flip(2, 3).transpose(0, 1), padding=4)
            _, g_w2_, g_b2_ = _conv_backward(
                g_c2.contiguous(memory_format=CHANNELS_LAST), p1.contiguous(memory_format=CHANNELS_LAST), w2, stride=1
            )
        g_w2.copy_(g_w2_)
        g_b2.copy_(g_b2_)
        return g_p1

    def _conv1_grads(self, g_phases: torch.Tensor, xs: torch.Tensor) -> None:
        """conv1's weight and bias gradients into the buffer, from its output's gradient in phases (4, N, ...)
        over the shifted images `xs` (4N, 1, 27, 27)."""
        w1, g_w1, g_b1 = self.params[0], self.grads[0], self.grads[1]
        g_c1 = g_phases.view(len(xs), 6, 12, 12)
        if self.backward == "dilated":  # sum over images and phases of image x gradient: a convolution
            # with the 4N images as its channels, the gradients as its kernels, dilated by the stride 2
            g_w1.copy_(F.conv2d(xs.transpose(0, 1), g_c1.transpose(0, 1), dilation=2).transpose(0, 1))
            torch.sum(g_c1, (0, 2, 3), out=g_b1)
            return
        _, g_w1_, g_b1_ = _conv_backward(g_c1, xs, w1, stride=2)
        g_w1.copy_(g_w1_)
        g_b1.copy_(g_b1_)


def thread_counts(most: int) -> list[int]:
    """The thread counts worth trying under a limit of `most`: most, most // 2, ..., 1."""
    counts = []
    while most >= 1:
        counts.append(most)
        most //= 2
    return counts


@contextlib.contextmanager
def num_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to `count` inside, and put back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
