"""Block-averaged segmentation (``resolution``) and the traced network (issue 15).

The geometry is tested on images whose block means are known exactly; the
shipped network's block-averaged maps against the truth of simulated lattices
and against its full-resolution map.
"""

import numpy as np
import pytest

import atomstat
from atomstat.fcn import predict
from atomstat.fcn.normalize import normalize
from atomstat.fcn.predict import (
    block_factor,
    block_mean,
    check_resolution,
    segment,
    upsample,
)
from atomstat.metrics import match_points
from atomstat.simulate import Defects, Stem, simulate_lattice


# --------------------------------------------------------------------------- geometry
@pytest.mark.parametrize("b", [2, 3, 4])
def test_block_mean_of_a_zoomed_image_is_the_image(b):
    small = np.random.default_rng(b).random((23, 31)).astype(np.float32)
    np.testing.assert_allclose(block_mean(np.kron(small, np.ones((b, b))), b), small, atol=1e-6)


@pytest.mark.parametrize(("b", "shape"), [(2, (64, 80)), (3, (61, 47)), (4, (50, 50))])
def test_upsample_gives_back_a_linear_ramp_at_the_block_centres(b, shape):
    """Block means of a plane are the plane at the block centres, and bilinear
    interpolation of a plane is the plane: exact away from the clamped border."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    plane = 0.3 * xx - 0.7 * yy + 5
    back = upsample(block_mean(plane, b), b, shape)
    assert back.shape == shape and back.dtype == np.float32
    inner = (slice(b, -2 * b), slice(b, -2 * b))  # the last blocks are padded by mirroring
    np.testing.assert_allclose(back[inner], plane[inner], atol=1e-4)


def test_block_factor_follows_the_atom_width():
    assert block_factor(2.2) == 2 and block_factor(1.95) == 2 and block_factor(2.5) == 2
    assert block_factor(1.9) == 1 and block_factor(1.6) == 1  # too narrow to block
    assert block_factor(2.6) == 3 and block_factor(3.4) == 4  # 0.85 px or more
    assert block_factor(2.2, "full") == 1 and block_factor(1.6, 3) == 3
    assert block_factor(9.0) == 1  # resampled to the network's scale instead
    assert block_factor(float("nan")) == 1
    assert block_factor(3.0, shape=(40, 400)) == 2  # keeps 16 px a side


@pytest.mark.parametrize("bad", ["half", 0, 17, 2.0, True, None, "Full"])
def test_bad_resolution_says_what_is_taken(bad):
    with pytest.raises(ValueError, match="resolution must be 'auto'"):
        check_resolution(bad)
    with pytest.raises(ValueError, match="resolution must be 'auto'"):
        atomstat.analyze(np.ones((32, 32)), resolution=bad)


def test_guided_upsample_gives_back_a_map_affine_in_the_image():
    """A block map that is an affine function of the network's input (the normalised
    block means) comes back as that function of the normalised full-resolution image."""
    from scipy import ndimage

    from atomstat.fcn.normalize import normalize_levels

    rng = np.random.default_rng(3)
    image = ndimage.gaussian_filter(rng.random((128, 160)), 2.0).astype(np.float32)
    x, background, span = normalize_levels(block_mean(image, 2))
    back = predict.guided_upsample(0.8 * x + 0.1, image, 2, eps=0.0)
    # the same function of the image, its levels interpolated to every pixel
    smooth = ndimage.gaussian_filter(image, 0.7, truncate=2.0)
    full = (smooth - upsample(background, 2, image.shape)) / upsample(span, 2, image.shape)
    inner = (slice(8, -8), slice(8, -8))  # the border blocks are clamped
    np.testing.assert_allclose(back[inner], np.clip(0.8 * full + 0.1, 0, 1)[inner], atol=0.02)
    assert back[inner].std() > 0.05  # not vacuous


def test_block_path_is_the_network_on_the_block_means(threshold_model):
    """An image zoomed by 2 has its original as block means: the block-averaged map is
    the original's full map brought back by the guided upsampling."""
    image = _lattice(sigma=2.2, spacing=14.0, shape=(64, 72), seed=4).clean
    big = np.kron(image, np.ones((2, 2))).astype(np.float32)
    small_map = segment(image, model=threshold_model, sigma=2.2, resolution="full")
    expected = predict.guided_upsample(small_map, big, 2)
    got = segment(big, model=threshold_model, sigma=3.0, resolution=2)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # the atoms' outlines are those of the zoomed image's own full map, within a pixel
    full = segment(big, model=threshold_model, sigma=3.0, resolution="full")
    np.testing.assert_allclose(full, 1 / (1 + np.exp(-20 * (normalize(big) - 0.5))), atol=1e-5)
    assert ((got > 0.5) == (full > 0.5)).mean() > 0.97


def test_wide_atoms_are_resampled_not_block_averaged(tiny_fcn):
    """Atoms wider than NATIVE_SIGMA are resampled to the network's scale, as before."""
    image = _lattice(sigma=2.2, spacing=14.0, shape=(97, 131), seed=5).image
    assert block_factor(9.0) == 1
    auto = segment(image, model=tiny_fcn, sigma=9.0, resolution="auto")
    full = segment(image, model=tiny_fcn, sigma=9.0, resolution="full")
    np.testing.assert_array_equal(auto, full)


# --------------------------------------------------------------------------- traced once
def test_the_network_is_traced_once_for_every_size(tiny_fcn):
    _, call = predict.load_model(tiny_fcn)
    for shape in [(40, 40), (64, 96), (100, 52), (33, 18)]:
        segment(np.random.default_rng(0).random(shape), model=tiny_fcn, sigma=2.0)
    assert call.experimental_get_tracing_count() == 1
    assert predict.load_model(tiny_fcn)[1] is call  # one traced call per model object


def test_warm_traces_the_shipped_model_once(monkeypatch):
    monkeypatch.setenv("ATOMSTAT_ENGINE", "tensorflow")  # LiteRT has no trace
    seconds = predict.warm()
    assert seconds >= 0
    _, call = predict.load_model()
    count = call.experimental_get_tracing_count()
    segment(np.random.default_rng(1).random((48, 80)), sigma=2.0)
    assert call.experimental_get_tracing_count() == count == 1


# --------------------------------------------------------------------------- known truth
def _inside(xy, shape, border=1.0):
    h, w = shape
    x, y = xy[:, 0], xy[:, 1]
    return (
        (x >= border - 0.5)
        & (x <= w - 0.5 - border)
        & (y >= border - 0.5)
        & (y <= h - 0.5 - border)
    )


def _lattice(*, sigma, spacing, shape=(256, 256), seed=0, ellipticity=0.0, dose=100.0):
    return simulate_lattice(
        "hexagonal",
        shape=shape,
        spacing=spacing,
        sigma=sigma,
        ellipticity=ellipticity,
        defects=Defects(vacancies=0.0, dopants=0.0),
        imaging=Stem(dose=dose),
        rng=seed,
    )


@pytest.mark.parametrize("sigma", [2.2, 3.0])
def test_block_averaged_atoms_match_the_truth_and_the_full_map(sigma):
    """The shipped network on 2x2 (or 3x3) block means: every atom found, the centres
    (refined on the raw image) as close to the truth as the full map's, and blob
    shapes within 10 % of the full map's."""
    sim = _lattice(sigma=sigma, spacing=9 * sigma, shape=(320, 320), seed=7, ellipticity=0.2)
    truth = sim.atoms[["x", "y"]].to_numpy()
    full = atomstat.analyze(sim.image, sigma=sigma, resolution="full")
    auto = atomstat.analyze(sim.image, sigma=sigma)  # "auto", the default
    assert full.attrs["resolution"] == 1
    assert auto.attrs["resolution"] == block_factor(sigma) >= 2
    errors = {}
    # atoms centred in the outer pixel may be an outside column's visible tail: left out
    truth = truth[_inside(truth, sim.image.shape)]
    for name, atoms in (("full", full), ("auto", auto)):
        atoms = atoms[_inside(atoms[["x", "y"]].to_numpy(), sim.image.shape)]
        ti, fi, _ = match_points(truth, atoms[["x", "y"]].to_numpy(), 0.5 * 9 * sigma)
        assert len(ti) == len(truth) == len(atoms), name  # F1 = 1
        err = atoms[["x", "y"]].to_numpy()[fi] - truth[ti]
        errors[name] = np.sqrt(np.mean(np.sum(err**2, axis=1)))
        atoms = atoms.iloc[fi].set_index(ti).sort_index()
        errors[name + " atoms"] = atoms
    assert errors["auto"] <= 1.1 * errors["full"] + 0.01
    a, f = errors["auto atoms"], errors["full atoms"]
    assert np.median(a["area"] / f["area"]) == pytest.approx(1.0, abs=0.1)
    assert np.median(a["circularity"] / f["circularity"]) == pytest.approx(1.0, abs=0.1)


def test_block_averaged_orientation_of_elongated_atoms_is_their_known_angle():
    """Round atoms (sigma 2.2 px) with a few stretched along known angles (3.6 x 1.6 px),
    as in test_elongation: on 2x2 block means, every long axis within 3 deg and the
    stretched blobs larger than the round ones, as on the full map."""
    from atomstat.gaussians import render

    rng = np.random.default_rng(0)
    g = np.arange(16) * 14 + 10.0
    points = np.c_[[a.ravel() for a in np.meshgrid(g, g)]].T
    stretched = rng.random(len(points)) < 0.08
    theta = np.where(stretched, rng.uniform(0, 180, len(points)), 0.0)
    sx, sy = np.where(stretched, 3.6, 2.2), np.where(stretched, 1.6, 2.2)
    image = render(points, (230, 230), np.ones(len(points)), sx, sy, theta)
    image = (image + rng.normal(0, 0.03, image.shape)).astype(np.float32)
    atoms = atomstat.analyze(image, resolution="auto")
    assert atoms.attrs["resolution"] == 2
    ti, fi, _ = match_points(points, atoms[["x", "y"]].to_numpy(), 2.0)
    assert len(ti) == len(points) == len(atoms)
    found = atoms.iloc[fi]
    err = np.abs((found["orientation"].to_numpy() - theta[ti] + 90) % 180 - 90)
    assert stretched[ti].sum() >= 15
    assert err[stretched[ti]].max() < 3.0
    area = found["area"].to_numpy()
    assert area[stretched[ti]].min() > np.median(area[~stretched[ti]])


def test_narrow_atoms_stay_at_full_resolution():
    sim = _lattice(sigma=1.4, spacing=12.0, shape=(128, 128), seed=8)
    atoms = atomstat.analyze(sim.image, sigma=1.4, resolution="auto")
    assert atoms.attrs["resolution"] == 1
    assert atomstat.analyze(sim.image, sigma=1.4).attrs["resolution"] == 1  # the default too
    assert atomstat.analyze(sim.image, sigma=2.2, resolution="full").attrs["resolution"] == 1


def test_auto_keeps_every_pixel_where_blocks_would_merge_close_columns():
    """7 px dumbbells of 2.2 px atoms: their block means merge the two columns (the width
    alone asks for 2 x 2 blocks), so the probe sends ``"auto"`` to the full map and every
    column is found; a plain lattice of the same atoms keeps the blocks."""
    pairs = simulate_lattice("dumbbell", shape=(256, 256), spacing=7, sigma=2.2,
                             imaging=Stem(dose=100), rng=3)  # fmt: skip
    assert block_factor(2.2) == 2
    assert predict.choose_block(pairs.image, 2.2) == 1
    assert predict.choose_block(pairs.image, 2.2, 2) == 2  # a number is taken as it is
    atoms = atomstat.analyze(pairs.image, sigma=2.2)
    assert atoms.attrs["resolution"] == 1
    truth = pairs.atoms[["x", "y"]].to_numpy()
    ti, fi, _ = match_points(truth, atoms[["x", "y"]].to_numpy(), 2.0)
    assert len(ti) >= 0.97 * len(truth) and len(fi) >= 0.97 * len(atoms)
    forced = atomstat.analyze(pairs.image, sigma=2.2, resolution=2)  # what the probe avoids
    ti, _, _ = match_points(truth, forced[["x", "y"]].to_numpy(), 2.0)
    assert len(ti) < 0.8 * len(truth)
    plain = _lattice(sigma=2.2, spacing=14, shape=(256, 256), seed=3)
    assert predict.choose_block(plain.image, 2.2) == 2
