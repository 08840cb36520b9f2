"""Q16: a CUDA tensor reaches NumPy only through the host.

The assignment prints (cell [22]):

    # This line runs fine
    print(z.cpu().numpy())
    # The following line produces an error
    print(z.numpy())

    TypeError: can't convert CUDA tensor to numpy. Use Tensor.cpu() to copy the tensor to host memory first.

"the conversion has to be carried out in the CPU, and hence `z.cpu()` has to be used first before the
conversion."

Every test here needs a GPU (`cuda`-marked). Today's torch words the error differently from 2019's
("can't convert cuda:0 device type tensor to numpy"), so only its stable part is matched: the advice
to use Tensor.cpu().
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spec.harness.measure import Measure

pytestmark = [pytest.mark.question("Q16"), pytest.mark.cuda]

STABLE_MESSAGE = r"to numpy\. Use Tensor\.cpu\(\)"


@pytest.fixture
def z() -> torch.Tensor:
    """Q15's z on the GPU."""
    device = "cuda" if torch.cuda.is_available() else "cpu"  # cell [21]
    assert device == "cuda", f"cell [21] picks {device!r} on a machine with CUDA"
    return torch.randn(5, 3).to(device) + torch.randn(5, 3, device=device)


def test_cpu_then_numpy_works(z: torch.Tensor) -> None:
    array = z.cpu().numpy()
    assert isinstance(array, np.ndarray)
    assert array.shape == (5, 3)
    assert array.dtype == np.float32
    expected = np.array(z.tolist(), dtype=np.float32)  # element by element, not through numpy()
    np.testing.assert_array_equal(array, expected, err_msg="z.cpu().numpy() does not hold z's values")


def test_cpu_copy_does_not_share_gpu_memory(z: torch.Tensor) -> None:
    before = z.clone()
    array = z.cpu().numpy()
    array += 1
    torch.testing.assert_close(z, before, rtol=0, atol=0, msg="writing the host copy changed the CUDA tensor")


def test_numpy_on_a_cuda_tensor_raises_type_error_pointing_to_cpu(z: torch.Tensor, measure: Measure) -> None:
    with pytest.raises(TypeError, match=STABLE_MESSAGE) as raised:
        z.numpy()
    measure("z.numpy()", f"TypeError: {raised.value}", z.device)
