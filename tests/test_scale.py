"""Tests for atomstat.scale: the width and the period of simulated atoms are recovered,
and a doubtful estimate says so."""

import numpy as np
import pytest
from scipy import ndimage

from atomstat.artefacts import Artefacts
from atomstat.scale import estimate_scale, estimate_sigma, lattice_period
from atomstat.simulate import Defects, Stem, Stm, simulate_lattice


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


# --------------------------------------------------------------------------- estimate_scale


@pytest.mark.parametrize(
    "kind, spacing, period",
    [("square", 16.0, 16.0), ("hexagonal", 18.0, 18.0 * np.sqrt(3) / 2), ("square", 7.0, 7.0)],
)
def test_lattice_period_is_the_plane_spacing(kind, spacing, period):
    sim = simulate_lattice(
        kind, shape=(256, 256), spacing=spacing, sigma=spacing / 7, rotation=12.0, rng=1
    )
    lattice = lattice_period(sim.image)
    assert lattice.period == pytest.approx(period, rel=0.05)
    scale = estimate_scale(sim.image)
    assert scale.source == "blob" and scale.warnings == []
    assert scale.sigma == pytest.approx(spacing / 7, rel=0.25)


def test_clusters_do_not_set_the_atom_width():
    """Adsorbate clusters pull the blob estimate to their size; the lattice period catches it."""
    sim = simulate_lattice(
        "square",
        shape=(384, 384),
        spacing=9.0,
        sigma=1.5,
        rotation=20.0,
        imaging=Stm(noise=0.05, scars=0, tilt=0.0),
        artefacts=Artefacts(clusters=40, cluster_brightness=12.0),
        rng=2,
    )
    assert estimate_sigma(sim.image) > 3.0  # the clusters win the autocorrelation
    scale = estimate_scale(sim.image)
    assert scale.period == pytest.approx(9.0, rel=0.05)
    assert scale.source == "lattice" and 1.0 < scale.sigma < 2.5
    assert "too wide for the lattice period" in scale.warnings[0]
    assert "sigma=" in scale.warnings[0]


def test_no_lattice_warns_and_keeps_a_sane_width():
    rng = np.random.default_rng(3)
    noise = rng.poisson(2.0, (512, 512)).astype(np.float32)  # nothing resolved, low contrast
    scale = estimate_scale(noise)
    assert scale.lattice is None and np.isfinite(scale.sigma) and scale.sigma >= 0.7
    assert "no atomic lattice is resolved" in scale.warnings[0]
    amorphous = simulate_lattice("amorphous", shape=(256, 256), spacing=14.0, sigma=2.0, rng=4)
    scale = estimate_scale(amorphous.image)
    assert scale.lattice is None and scale.sigma == pytest.approx(2.0, rel=0.25)
    assert scale.warnings  # the width rests on the blob size alone: say so


def test_line_and_jpeg_noise_make_no_lattice():
    rng = np.random.default_rng(5)
    img = ndimage.gaussian_filter(rng.normal(size=(512, 512)), 1.0)
    img += rng.normal(0, 1, (512, 1))  # scan-line offsets
    sim = simulate_lattice(
        "square",
        shape=(512, 512),
        spacing=2.0,  # far below what can be resolved
        sigma=0.6,
        imaging=Stm(noise=0.3),
        artefacts=Artefacts(line_noise=0.3, jpeg_quality=40),
        rng=6,
    )
    for image in (img, sim.image):
        assert lattice_period(image) is None


def test_flat_image_falls_back_to_the_network_scale():
    scale = estimate_scale(np.full((64, 64), 7.0))
    assert scale.source == "fallback" and scale.sigma == 2.2 and scale.warnings


# --------------------------------------------------------------------------- analyze(sigma=)
@pytest.fixture(scope="module")
def small_lattice():
    return simulate_lattice("square", shape=(96, 96), spacing=14.0, sigma=2.0, rotation=5.0, rng=7)


@pytest.mark.parametrize("bad", [81.0, float("nan"), 0.05])
def test_a_wrong_blob_estimate_never_reaches_segment(monkeypatch, small_lattice, bad):
    """An 81 px or NaN blob width (seen on real crops) gives a table and a warning."""
    import atomstat
    import atomstat.scale

    monkeypatch.setattr(atomstat.scale, "estimate_sigma", lambda image: bad)
    atoms = atomstat.analyze(small_lattice.image)
    assert atoms.attrs["sigma_source"] == "lattice"
    assert 1.5 < atoms.attrs["sigma"] < 3.2  # the period (14 px, or a harmonic) over 5
    assert any("sigma=" in w for w in atoms.attrs["warnings"])
    assert abs(len(atoms) - len(small_lattice.atoms)) <= 6


def test_analyze_takes_sigma(small_lattice):
    import atomstat

    atoms = atomstat.analyze(small_lattice.image, sigma=2.0)
    assert atoms.attrs["sigma"] == 2.0 and atoms.attrs["sigma_source"] == "user"
    assert atoms.attrs["warnings"] == []
    assert abs(len(atoms) - len(small_lattice.atoms)) <= 4


@pytest.mark.parametrize("bad", [81.0, float("nan"), -1.0, 0.0])
def test_a_bad_sigma_is_refused_with_what_to_do(small_lattice, bad):
    import atomstat

    for call in (atomstat.analyze, atomstat.segment):
        with pytest.raises(ValueError, match=r"atom width in px .* pass sigma=None"):
            call(small_lattice.image, sigma=bad)
