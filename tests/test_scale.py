"""Tests for atomstat.scale.estimate_sigma: the width of simulated atoms is recovered."""

import numpy as np
import pytest

from atomstat.scale import estimate_sigma
from atomstat.simulate import Defects, Stem, simulate_lattice


@pytest.mark.parametrize("dose", [20.0, 200.0])
@pytest.mark.parametrize("kind", ["square", "hexagonal"])
@pytest.mark.parametrize("sigma", [1.2, 2.2, 4.0, 7.0])
def test_estimate_sigma_within_25_percent(sigma, kind, dose):
    spacing = 7.0 * sigma
    size = int(np.clip(16 * spacing, 128, 512))
    sim = simulate_lattice(
        kind,
        shape=(size, size),
        spacing=spacing,
        sigma=sigma,
        defects=Defects(vacancies=0.02, dopants=0.02),
        imaging=Stem(dose=dose),
        rng=int(10 * sigma),
    )
    assert estimate_sigma(sim.image) == pytest.approx(sigma, rel=0.25)


def test_estimate_sigma_tracks_the_width_not_the_spacing():
    """The same lattice with wider atoms gives a proportionally larger estimate."""
    kwargs = dict(shape=(192, 192), spacing=16.0, rotation=10.0, imaging=Stem(dose=100.0))
    narrow = estimate_sigma(simulate_lattice("square", sigma=1.5, rng=1, **kwargs).image)
    wide = estimate_sigma(simulate_lattice("square", sigma=3.0, rng=1, **kwargs).image)
    assert wide / narrow == pytest.approx(2.0, rel=0.15)


def test_estimate_sigma_ignores_intensity_scale_and_offset():
    sim = simulate_lattice("hexagonal", shape=(160, 160), spacing=14.0, sigma=2.0, rng=2)
    a = estimate_sigma(sim.image)
    b = estimate_sigma(3.5 * sim.image + 1000.0)
    assert b == pytest.approx(a, rel=1e-6)


def test_estimate_sigma_large_image_uses_the_centre():
    sim = simulate_lattice("square", shape=(1100, 300), spacing=12.0, sigma=1.8, rng=3)
    assert estimate_sigma(sim.image) == pytest.approx(1.8, rel=0.25)


@pytest.mark.parametrize("value", [0.0, 5.0, -3.0])
def test_flat_image_gives_nan(value):
    result = estimate_sigma(np.full((64, 64), value))
    assert isinstance(result, float)
    assert np.isnan(result)
