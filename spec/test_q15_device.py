"""Q15: choosing a device and putting tensors on it.

The assignment prints (cell [21]):

    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    x = torch.randn(5, 3).to(device)          # created on the CPU, then moved
    y = torch.randn(5, 3, device=device)      # created on the device directly
    z = x + y
    print(x.size(), x.dtype, x.device)        # torch.Size([5, 3]) torch.float32 cuda:0

"Tensor x is first created in the CPU and then transferred to the GPU using the `.to()` command.
Tensor y is created in the GPU directly with the `device` argument in the `randn()` function."

The package's `choose_device('auto')` is that first line. The device-agnostic part runs everywhere,
on the device `auto` picks and on each device of the `device` fixture; the cuda:0 part is `cuda`-marked.
"""

from __future__ import annotations

import pytest
import torch

from spec.impl import impl


def _place(device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The cell of Q15 on `device`; also returns the CPU tensor x was moved from."""
    x_cpu = torch.randn(5, 3)
    x = x_cpu.to(device)
    y = torch.randn(5, 3, device=device)
    z = x + y
    return x_cpu, x, y, z


def test_auto_is_cuda_exactly_when_cuda_is_available() -> None:
    chosen = impl.choose_device("auto")
    assert isinstance(chosen, torch.device), f"choose_device('auto') returned {type(chosen).__name__}, not torch.device"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert chosen.type == expected, (
        f"choose_device('auto') is {chosen}, but torch.cuda.is_available() is {torch.cuda.is_available()}"
    )


def test_cpu_is_taken_as_asked() -> None:
    chosen = impl.choose_device("cpu")
    assert isinstance(chosen, torch.device)
    assert chosen.type == "cpu", f"choose_device('cpu') is {chosen}"


def test_auto_device_holds_x_y_and_their_sum() -> None:
    """The notebook's cell as printed, on whatever device `auto` picks here."""
    device = impl.choose_device("auto")
    x_cpu, x, y, z = _place(device)
    for name, t in (("x", x), ("y", y), ("z", z)):
        assert t.device.type == device.type, f"{name} is on {t.device}, not on the chosen {device}"
        assert t.size() == torch.Size([5, 3]), f"{name} has size {tuple(t.size())}"
        assert t.dtype == torch.float32, f"{name} is {t.dtype}"
    torch.testing.assert_close(x.cpu(), x_cpu, rtol=0, atol=0, msg="x.to(device) changed the values")


def test_to_and_device_argument_put_tensors_on_the_device(device: torch.device) -> None:
    x_cpu, x, y, z = _place(device)
    assert x_cpu.device.type == "cpu", "torch.randn without device= must allocate on the CPU"
    assert x.device.type == device.type, f".to({device}) left x on {x.device}"
    assert y.device.type == device.type, f"randn(..., device={device}) allocated y on {y.device}"
    assert z.device.type == device.type, f"x + y on {device} gave z on {z.device}"
    assert (x.size(), y.size(), z.size()) == (torch.Size([5, 3]),) * 3
    assert (x.dtype, y.dtype, z.dtype) == (torch.float32,) * 3
    torch.testing.assert_close(x.cpu(), x_cpu, rtol=0, atol=0, msg=f".to({device}) changed the values")
    torch.testing.assert_close(
        z.cpu(), x.cpu() + y.cpu(), rtol=1e-6, atol=1e-6, msg=f"x + y on {device} differs from the CPU sum"
    )


@pytest.mark.cuda
def test_on_a_gpu_auto_is_cuda_and_tensors_land_on_cuda_0() -> None:
    """The printed output: 'cuda', then three tensors on cuda:0."""
    device = impl.choose_device("auto")
    assert device.type == "cuda", f"choose_device('auto') is {device} on a machine with CUDA"
    assert impl.choose_device("cuda").type == "cuda"
    x_cpu, x, y, z = _place(device)
    for name, t in (("x", x), ("y", y), ("z", z)):
        assert t.device == torch.device("cuda:0"), f"{name} is on {t.device}, the notebook prints cuda:0"
        assert t.is_cuda
        assert "device='cuda:0'" in repr(t), f"repr({name}) does not show device='cuda:0': {t!r}"
    assert x_cpu.device.type == "cpu", ".to('cuda') returns a GPU copy and leaves the CPU tensor where it was"
    torch.testing.assert_close(x.cpu(), x_cpu, rtol=0, atol=0, msg="the copy to cuda:0 changed the values")
