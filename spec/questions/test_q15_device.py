"""Q15: choosing a device and putting tensors on it.

The assignment prints (cell [21]):

    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    x = torch.randn(5, 3).to(device)          # created on the CPU, then moved
    y = torch.randn(5, 3, device=device)      # created on the device directly
    z = x + y
    print(x.size(), x.dtype, x.device)        # torch.Size([5, 3]) torch.float32 cuda:0

"Tensor x is first created in the CPU and then transferred to the GPU using the `.to()` command.
Tensor y is created in the GPU directly with the `device` argument in the `randn()` function."

The first line is top-level notebook code: the spec runs it as printed (the package's own
`choose_device` is tested with the package). The device-agnostic part runs everywhere, on the device
that line picks and on each device of the `device` fixture; the cuda:0 part is `cuda`-marked.
"""

from __future__ import annotations

import pytest
import torch

from spec.harness.measure import Measure

pytestmark = pytest.mark.question("Q15")


def notebook_device() -> str:
    """Cell [21]'s first line, as printed."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _place(device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The cell of Q15 on `device`; also returns the CPU tensor x was moved from."""
    x_cpu = torch.randn(5, 3)
    x = x_cpu.to(device)
    y = torch.randn(5, 3, device=device)
    z = x + y
    return x_cpu, x, y, z


def test_the_device_line_names_a_device_torch_accepts() -> None:
    device = torch.device(notebook_device())
    assert device.type == ("cuda" if torch.cuda.device_count() > 0 else "cpu"), (
        f"the line picks {device}, but {torch.cuda.device_count()} CUDA devices are visible"
    )


def test_the_picked_device_holds_x_y_and_their_sum(measure: Measure) -> None:
    """The notebook's cell as printed, on whatever device its first line picks here."""
    device = torch.device(notebook_device())
    x_cpu, x, y, z = _place(device)
    measure("x, y, x + y on", [str(t.device) for t in (x, y, z)], device)
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
    device = notebook_device()
    assert device == "cuda", f"the line picks {device!r} on a machine with CUDA"
    x_cpu, x, y, z = _place(device)
    for name, t in (("x", x), ("y", y), ("z", z)):
        assert t.device == torch.device("cuda:0"), f"{name} is on {t.device}, the notebook prints cuda:0"
        assert t.is_cuda
        assert "device='cuda:0'" in repr(t), f"repr({name}) does not show device='cuda:0': {t!r}"
    assert x_cpu.device.type == "cpu", ".to('cuda') returns a GPU copy and leaves the CPU tensor where it was"
    torch.testing.assert_close(x.cpu(), x_cpu, rtol=0, atol=0, msg="the copy to cuda:0 changed the values")
