"""Tests for atomstat.refine.refine_centres: sub-pixel centres of known spots."""

import numpy as np
import pandas as pd
import pytest

from atomstat.gaussians import render
from atomstat.metrics import position_bound
from atomstat.refine import refine_centres
from atomstat.simulate import Defects, Stem, simulate_lattice


def _spots(xy, shape, sigma, amplitude=100.0, background=10.0):
    xy = np.asarray(xy, float).reshape(-1, 2)
    return background + render(xy, shape, amplitude, sigma, sigma, np.zeros(len(xy)))


def _offsets(n, size, rng):
    angle = np.random.default_rng(rng).uniform(0, 2 * np.pi, n)
    return size * np.column_stack([np.cos(angle), np.sin(angle)])


@pytest.mark.parametrize(
    ("x", "y", "sigma"),
    [(15.3, 16.6, 2.0), (20.71, 11.08, 1.4), (16.0, 16.0, 3.0), (12.49, 18.51, 2.5)],
)
def test_single_spot_noise_free(x, y, sigma):
    image = _spots([x, y], (32, 32), sigma)
    start = np.array([[round(x) + 0.4, round(y) - 0.3]])
    out = refine_centres(image, start, sigma)
    assert out.shape == (1, 2)
    assert np.hypot(*(out[0] - [x, y])) < 0.01


@pytest.mark.parametrize(("x", "y"), [(1.3, 16.2), (16.7, 1.3), (30.6, 20.4), (12.2, 30.45)])
def test_spot_near_the_border(x, y):
    sigma = 2.0
    image = _spots([x, y], (32, 32), sigma)
    start = np.array([[x, y]]) + [[0.35, -0.3]]
    out = refine_centres(image, start, sigma)
    assert np.hypot(*(out[0] - [x, y])) < 0.01


def test_many_isolated_spots_at_once():
    rng = np.random.default_rng(3)
    grid = np.stack(np.meshgrid(np.arange(12, 128, 16), np.arange(12, 128, 16)), -1).reshape(-1, 2)
    truth = grid + rng.uniform(-0.5, 0.5, grid.shape)
    image = _spots(truth, (128, 128), 1.8, amplitude=rng.uniform(50, 150, len(truth)))
    start = truth + _offsets(len(truth), 0.45, rng=4)
    out = refine_centres(image, start, 1.8)
    assert np.hypot(*(out - truth).T).max() < 0.01


def test_lattice_at_dose_100():
    sim = simulate_lattice(
        "square",
        shape=(128, 128),
        spacing=12.0,
        sigma=2.0,
        rotation=7.0,
        defects=Defects(vacancies=0.0, dopants=0.0),
        imaging=Stem(dose=100.0),
        rng=5,
    )
    truth = sim.atoms[["x", "y"]].to_numpy()
    start = truth + _offsets(len(truth), 0.4, rng=6)
    out = refine_centres(sim.image, start, 2.0)
    rmse = np.sqrt(np.mean(np.sum((out - truth) ** 2, axis=1)))
    rmse_start = np.sqrt(np.mean(np.sum((start - truth) ** 2, axis=1)))
    assert rmse < 0.15
    assert rmse < 0.4 * rmse_start


def test_lattice_hexagonal_high_dose_is_more_precise_than_low_dose():
    kwargs = dict(
        shape=(128, 128),
        spacing=12.0,
        sigma=2.0,
        rotation=3.0,
        defects=Defects(vacancies=0.0, dopants=0.0),
    )
    errors = []
    for dose in (20.0, 2000.0):
        sim = simulate_lattice("hexagonal", imaging=Stem(dose=dose), rng=7, **kwargs)
        truth = sim.atoms[["x", "y"]].to_numpy()
        out = refine_centres(sim.image, truth + _offsets(len(truth), 0.4, rng=8), 2.0)
        errors.append(np.sqrt(np.mean(np.sum((out - truth) ** 2, axis=1))))
    assert errors[1] < 0.5 * errors[0]
    assert errors[1] < 0.06


def _pairs(sigma, separation, shape=(128, 128)):
    """Horizontal pairs of spots, one pair per 32x32 cell, at sub-pixel positions."""
    cells = []
    for i in range(shape[0] // 32):
        for j in range(shape[1] // 32):
            cx, cy = 16 + 32 * j + 0.3 * i, 16 + 32 * i + 0.2 * j
            cells.append([[cx - separation / 2, cy], [cx + separation / 2, cy]])
    return np.array(cells).reshape(-1, 2)


def _separation_error(sigma, separation, rounds):
    truth = _pairs(sigma, separation)
    image = _spots(truth, (128, 128), sigma)
    start = truth + _offsets(len(truth), 0.3, rng=9)
    out = refine_centres(image, start, sigma, rounds=rounds).reshape(-1, 2, 2)
    measured = np.hypot(*(out[:, 1] - out[:, 0]).T)
    return np.abs(measured - separation).mean()


def test_close_pairs_are_not_pulled_together_with_more_rounds():
    sigma = 2.0
    alone = _separation_error(sigma, 2.8 * sigma, rounds=1)
    together = _separation_error(sigma, 2.8 * sigma, rounds=8)
    assert alone > 0.1  # one round: each spot leans on its partner (or is rejected)
    assert together < 0.1
    assert together < 0.5 * alone


@pytest.mark.parametrize("factor", [2.8, 3.2, 4.0])
def test_close_pairs_separation_with_default_rounds(factor):
    """Noise-free pairs: the default refinement measures their separation to 0.1 px."""
    sigma = 2.0
    truth = _pairs(sigma, factor * sigma)
    image = _spots(truth, (128, 128), sigma)
    out = refine_centres(image, truth + _offsets(len(truth), 0.3, rng=10), sigma)
    measured = np.hypot(*(out.reshape(-1, 2, 2)[:, 1] - out.reshape(-1, 2, 2)[:, 0]).T)
    assert np.abs(measured - factor * sigma).max() < 0.1


def test_runaway_estimate_keeps_its_start():
    """A start on a flat patch has nothing to converge to and stays where it was."""
    image = _spots([[10.0, 10.0]], (40, 40), 2.0)
    start = np.array([[30.0, 30.0], [10.3, 9.8]])
    out = refine_centres(image, start, 2.0)
    assert np.isfinite(out).all()
    assert np.hypot(*(out[0] - start[0])) <= max(1.0, 0.75 * 2.0)
    assert np.hypot(*(out[1] - [10.0, 10.0])) < 0.01


def test_input_is_not_modified():
    image = _spots([[15.3, 16.6]], (32, 32), 2.0)
    start = np.array([[15.0, 17.0]])
    before = start.copy()
    refine_centres(image, start, 2.0)
    np.testing.assert_array_equal(start, before)


def test_empty_input_gives_empty_output():
    out = refine_centres(np.zeros((32, 32)), np.empty((0, 2)), 2.0)
    assert out.shape == (0, 2)
    assert refine_centres(np.zeros((32, 32)), [], 2.0).shape == (0, 2)


@pytest.mark.parametrize("sigma", [0.0, -1.5, np.nan, np.inf])
def test_bad_sigma_raises(sigma):
    image = _spots([[15.3, 16.6]], (32, 32), 2.0)
    with pytest.raises(ValueError, match="sigma") as info:
        refine_centres(image, np.array([[15.0, 17.0]]), sigma)
    assert str(sigma) in str(info.value)


def _poisson_grid(sigma_xy, theta, dose, background, rng, spacing=16, shape=(512, 512)):
    """Isolated elliptical spots at sub-pixel positions, Poisson counts; (image, truth)."""
    rng = np.random.default_rng(rng)
    grid = np.stack(
        np.meshgrid(np.arange(12, shape[1] - 8, spacing), np.arange(12, shape[0] - 8, spacing)), -1
    ).reshape(-1, 2)
    truth = grid + rng.uniform(-0.5, 0.5, grid.shape)
    n = len(truth)
    clean = render(truth, shape, dose, np.full(n, sigma_xy[0]), np.full(n, sigma_xy[1]), theta)
    return rng.poisson(clean + background).astype(float), truth


@pytest.mark.parametrize(
    ("widths", "theta", "dose", "background"),
    [((2.2, 2.2), 0.0, 40.0, 6.0), ((2.2, 2.2), 0.0, 200.0, 30.0), ((2.6, 1.8), 30.0, 40.0, 6.0)],
)
def test_shot_noise_precision_reaches_the_cramer_rao_bound(widths, theta, dose, background):
    """Poisson counts: the error is within 5 % of the bound no unbiased estimator can beat.

    A Gaussian weight of the atom's width (the matched filter, optimal for white
    noise) is about 10 % above the bound on round atoms; the noise model and the
    measured shape remove that loss.
    """
    image, truth = _poisson_grid(widths, theta, dose, background, rng=11)
    start = truth + _offsets(len(truth), 0.4, rng=12)
    out = refine_centres(image, start, float(np.sqrt(np.prod(widths))))
    rmse = np.sqrt(np.mean(np.sum((out - truth) ** 2, axis=1)))
    atoms = pd.DataFrame(
        {"x": truth[:, 0], "y": truth[:, 1], "amplitude": 1.0}
        | {"sigma_x": widths[0], "sigma_y": widths[1], "theta": theta}
    )
    bound = position_bound(atoms, image.shape, dose=dose, background=background / dose)
    assert len(truth) > 900
    assert rmse < 1.05 * np.sqrt(np.mean(bound**2))


def test_atom_shape_is_measured_from_the_image():
    """An astigmatic probe: the weights follow the atoms' ellipse, not the width given."""
    from atomstat.refine import _atom_shape

    image, truth = _poisson_grid((2.6, 1.8), 30.0, 2000.0, 100.0, rng=13)
    cov = _atom_shape(image, truth, 2.2, 1.3 * 2.2, 6)
    widths, axes = np.linalg.eigh(cov)
    assert np.sqrt(widths) == pytest.approx([1.8, 2.6], rel=0.06)
    major = np.degrees(np.arctan2(-axes[1, 1], axes[0, 1])) % 180  # counter-clockwise as shown
    assert min(abs(major - 30.0), 180 - abs(major - 30.0)) < 3.0


@pytest.mark.parametrize("kind", ["poisson", "white"])
def test_noise_model_tells_shot_noise_from_white_noise(kind):
    from atomstat.refine import _metric, _noise_model

    sigma = 2.2
    rng = np.random.default_rng(14)
    image, truth = _poisson_grid((sigma, sigma), 0.0, 400.0, 60.0, rng=15)
    if kind == "white":  # the same mean, with constant variance 100 instead
        clean = 60.0 + render(truth, image.shape, 400.0, sigma, sigma, np.zeros(len(truth)))
        image = clean + rng.normal(0, 10.0, image.shape)
    c0, c1 = _noise_model(image, truth, _metric(sigma**2 * np.eye(2)), 6)
    if kind == "poisson":  # variance = mean
        assert c1 == pytest.approx(1.0, abs=0.1)
        assert c0 < 0.2 * 60.0
    else:
        assert c1 < 0.02
        assert c0 == pytest.approx(100.0, rel=0.1)


def test_close_pair_at_the_border_keeps_both_centres():
    """The wider likelihood window must not reach a close partner: a pair 3.2 widths
    apart, one atom cut by the border, among isolated atoms (which switch the
    measured shape and noise on)."""
    sigma = 2.2
    singles = [[40.0 + 24 * i, 40.0 + 24 * j] for i in range(4) for j in range(4)]
    pair = [[1.8, 60.3], [1.8 + 3.2 * sigma, 60.3]]
    truth = np.array(singles + pair)
    image = np.random.default_rng(18).poisson(_spots(truth, (128, 140), sigma, 400.0, 60.0))
    out = refine_centres(image.astype(float), truth + _offsets(len(truth), 0.4, rng=19), sigma)
    assert np.hypot(*(out[-2:] - truth[-2:]).T).max() < 0.15
    assert np.hypot(*(out[:-2] - truth[:-2]).T).max() < 0.25


@pytest.mark.parametrize("seed", [1, 2])
def test_dumbbells_at_three_widths_reach_the_cramer_rao_bound(seed):
    """Elliptical columns 7 px (3.2 widths) apart at a random tilt, shot noise.

    Almost every atom has a close partner, so the shape and the noise are
    measured with the partners' models removed and the fit repeated; the
    centre is a Newton step on the likelihood's score, which a lopsided
    variance (the partner's light on one side) does not bias. Before, the
    pairs came out about 0.15 px too far apart and some ran away.
    """
    from scipy.spatial import cKDTree

    sim = simulate_lattice(
        "dumbbell",
        shape=(256, 256),
        spacing=7,
        sigma=2.2,
        ellipticity=0.1,
        defects=Defects(vacancies=0, dopants=0, jitter=0.3),
        imaging=Stem(dose=200, background=0.15),
        rng=seed,
    )
    truth = sim.atoms[["x", "y"]].to_numpy()
    out = refine_centres(sim.image, truth + _offsets(len(truth), 0.3, rng=seed), 2.2)
    inner = ((truth > 12) & (truth < 244)).all(axis=1)
    _, partner = cKDTree(truth).query(truth, k=2)
    axis = truth[partner[:, 1]] - truth
    axis /= np.linalg.norm(axis, axis=1)[:, None]
    toward_partner = ((out - truth) * axis).sum(axis=1)[inner]
    rmse = np.sqrt(np.mean(np.sum((out - truth)[inner] ** 2, axis=1)))
    bound = position_bound(sim.atoms, sim.image.shape, dose=200, background=0.15)[inner]
    assert inner.sum() > 300
    assert abs(toward_partner.mean()) < 0.015
    assert rmse < 1.12 * np.sqrt(np.mean(bound**2))


def _tailed(xy, shape, sigma, share, half_width, amplitude=100.0, background=10.0):
    """Columns of a real probe: a Gaussian core and a Lorentzian skirt holding ``share``
    of the peak, of half width ``half_width`` core widths (drawn in full, no window)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = np.full(shape, background, float)
    for x, y in np.asarray(xy, float).reshape(-1, 2):
        r2 = ((xx - x) ** 2 + (yy - y) ** 2) / sigma**2
        image += amplitude * ((1 - share) * np.exp(-r2 / 2) + share / (1 + r2 / half_width**2))
    return image


@pytest.mark.parametrize(
    ("factor", "share", "half_width"), [(2.8, 0.15, 2.0), (2.8, 0.2, 3.0), (3.2, 0.2, 3.0)]
)
def test_close_pairs_on_a_tailed_probe_are_unbiased(factor, share, half_width):
    """Pairs 2.8-3.2 core widths apart on a probe with a Lorentzian skirt, noise-free.

    Each neighbour's skirt lies under its partner: removed as a Gaussian it pulled
    pairs together by 0.07-0.25 px on average, and some ran into one another
    (errors above 1 px). The skirt is measured on the image and removed with
    the neighbours."""
    sigma = 2.0
    truth = _pairs(sigma, factor * sigma)
    image = _tailed(truth, (128, 128), sigma, share, half_width)
    start = truth + _offsets(len(truth), 0.3, rng=9)
    out = refine_centres(image, start, sigma).reshape(-1, 2, 2)
    error = np.hypot(*(out[:, 1] - out[:, 0]).T) - factor * sigma
    assert abs(error.mean()) < 0.05
    assert np.abs(error).max() < 0.08


def test_close_pairs_on_a_tailed_probe_with_shot_noise():
    """The same at dose 200 per peak on a wider field: unbiased within 0.05 px, and no pair
    runs away (each separation within 0.5 px)."""
    sigma = 2.0
    truth = _pairs(sigma, 2.8 * sigma, shape=(256, 256))
    clean = _tailed(truth, (256, 256), sigma, 0.2, 3.0, amplitude=200.0, background=20.0)
    image = np.random.default_rng(21).poisson(clean).astype(float)
    out = refine_centres(image, truth + _offsets(len(truth), 0.3, rng=22), sigma).reshape(-1, 2, 2)
    error = np.hypot(*(out[:, 1] - out[:, 0]).T) - 2.8 * sigma
    assert abs(error.mean()) < 0.05
    assert np.abs(error).max() < 0.5


def test_pairs_on_the_border_row_keep_both_columns():
    """Dumbbells cut by the top border, 2.8 widths apart: each column was fitted alone and
    both took the pair's centre (two atoms 0.02-4 px apart). Now every column comes
    back within 0.2 px of its own centre."""
    sigma = 2.0
    cells = [[16.0 + 24 * i, y] for i in range(5) for y in (2.5, 30.0, 54.0)]
    truth = np.array([[x + d, y] for x, y in cells for d in (-1.4 * sigma, 1.4 * sigma)])
    image = _tailed(truth, (80, 128), sigma, 0.15, 2.0)
    out = refine_centres(image, truth + _offsets(len(truth), 0.3, rng=23), sigma)
    assert np.hypot(*(out - truth).T).max() < 0.2


def test_skirt_is_measured_and_a_gaussian_stays_a_gaussian():
    """The probe's skirt share comes back within 0.05 of the truth; a Gaussian probe
    gets no skirt (the form keeps 3 values)."""
    from atomstat.probe import fit_skirt
    from atomstat.refine import _metric, _quad, _sample_windows

    sigma = 2.0
    grid = np.stack(np.meshgrid(np.arange(16, 240, 32), np.arange(16, 240, 32)), -1)
    truth = grid.reshape(-1, 2) + np.random.default_rng(24).uniform(-0.5, 0.5, (49, 2))
    form = _metric(sigma**2 * np.eye(2))
    for share in (0.0, 0.2):
        image = _tailed(truth, (256, 256), sigma, share, 2.5, amplitude=400.0, background=40.0)
        image = np.random.default_rng(25).poisson(image).astype(float)
        dx, dy, ok, data = _sample_windows(image, truth, 10, None)
        found = fit_skirt(_quad(dx, dy, form), ok, data, form)
        if share == 0:
            assert len(found) == 3
        else:
            assert len(found) == 5 and found[3] == pytest.approx(share, abs=0.05)
