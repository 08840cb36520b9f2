"""Q2: `torch.rand` and `torch.randn`.

The assignment runs `y = torch.rand(5, 3)` and `y1 = torch.randn(5, 3)`, prints both as
`<class 'torch.Tensor'>` / `torch.float32`, and says:

"y is a (5,3) tensor with random values distributed in a uniform distribution from 0 to 1 ... y_1 is a (5,3)
tensor with random values distributed as a Gaussian with mean 0 and variance 1 ... we may get negative values
for torch.randn() but not for torch.rand() function."

The printed values are random draws, so they are not asserted. The moments are checked on 10^6 draws from a
dedicated generator with bounds of 8 standard errors: any seed passes, with probability 1 - 1e-15.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given

from spec.harness.helpers import PROPERTY, SHAPES
from spec.harness.measure import Measure

pytestmark = pytest.mark.question("Q2")

N = 1_000_000
SIGMAS = 8  # bounds on the moments, in standard errors


def _generator(device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(2019)


def _within(value: float, expected: float, standard_error: float, what: str) -> None:
    bound = SIGMAS * standard_error
    assert abs(value - expected) <= bound, f"{what} is {value:.6f}, expected {expected:.6f} +- {bound:.6f}"


def test_rand_and_randn_are_float32_5x3(device: torch.device, measure: Measure) -> None:
    for name, fn in (("rand", torch.rand), ("randn", torch.randn)):
        y = fn(5, 3, device=device)
        measure(f"torch.{name}(5, 3)", f"{tuple(y.shape)} {y.dtype}", device)
        assert type(y) is torch.Tensor, f"torch.{name} gives a {type(y)}"
        assert y.shape == (5, 3), f"torch.{name}(5, 3) has shape {tuple(y.shape)}"
        assert y.dtype == torch.float32, f"torch.{name} gives {y.dtype}, not torch.float32"
        assert y.device.type == device.type, f"torch.{name}(device={device}) is on {y.device}"


@PROPERTY
@given(shape=SHAPES)
def test_rand_is_in_zero_one_for_any_shape(device: torch.device, shape: tuple[int, ...]) -> None:
    y = torch.rand(shape, device=device)
    assert y.shape == shape, f"torch.rand({shape}) has shape {tuple(y.shape)}"
    assert y.dtype == torch.float32, f"torch.rand gives {y.dtype}"
    assert bool((y >= 0).all()), f"torch.rand({shape}) has a negative value: {y.min().item()}"
    assert bool((y < 1).all()), f"torch.rand({shape}) reaches 1: {y.max().item()}"


@PROPERTY
@given(shape=SHAPES)
def test_randn_is_finite_float32_for_any_shape(device: torch.device, shape: tuple[int, ...]) -> None:
    y = torch.randn(shape, device=device)
    assert y.shape == shape, f"torch.randn({shape}) has shape {tuple(y.shape)}"
    assert y.dtype == torch.float32, f"torch.randn gives {y.dtype}"
    assert bool(torch.isfinite(y).all()), f"torch.randn({shape}) has a non-finite value"


def test_rand_is_uniform_on_zero_one(device: torch.device) -> None:
    y = torch.rand(N, device=device, generator=_generator(device)).double()
    assert y.min().item() >= 0, f"torch.rand drew {y.min().item()} < 0"
    assert y.max().item() < 1, f"torch.rand drew {y.max().item()} >= 1"
    # 10^6 uniform draws leave no gap of 1e-4 at either end, but with probability 2 (1 - 1e-4)^(10^6) < 1e-43.
    assert y.min().item() < 1e-4, f"torch.rand's smallest of 10^6 draws is {y.min().item()}: [0, 1e-4) is never hit"
    assert y.max().item() > 1 - 1e-4, f"torch.rand's largest of 10^6 draws is {y.max().item()}: 1 is not approached"
    # Uniform(0, 1): mean 1/2, variance 1/12, fourth central moment 1/80.
    _within(y.mean().item(), 0.5, math.sqrt(1 / 12 / N), "mean of torch.rand")
    _within(y.var().item(), 1 / 12, math.sqrt((1 / 80 - 1 / 144) / N), "variance of torch.rand")
    _within((y < 0.25).double().mean().item(), 0.25, math.sqrt(0.25 * 0.75 / N), "share of torch.rand below 1/4")


def test_randn_is_standard_normal_and_can_be_negative(device: torch.device) -> None:
    y = torch.randn(N, device=device, generator=_generator(device)).double()
    assert y.min().item() < 0, "torch.randn drew no negative value in 10^6 draws"
    # Unlike rand, randn is unbounded: about 1350 of 10^6 draws lie beyond 3 on each side.
    assert y.min().item() < -3, f"torch.randn's smallest of 10^6 draws is {y.min().item()}, not below -3"
    assert y.max().item() > 3, f"torch.randn's largest of 10^6 draws is {y.max().item()}, not above 3"
    # N(0, 1): mean 0, variance 1, fourth central moment 3; half the draws negative.
    _within(y.mean().item(), 0.0, math.sqrt(1 / N), "mean of torch.randn")
    _within(y.var().item(), 1.0, math.sqrt((3 - 1) / N), "variance of torch.randn")
    _within((y < 0).double().mean().item(), 0.5, math.sqrt(0.25 / N), "share of negative torch.randn draws")
    _within((y.abs() < 1).double().mean().item(), 0.6826894921, math.sqrt(0.25 / N), "share of |randn| < 1")
