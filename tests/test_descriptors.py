"""Descriptors you can trust: blob shapes of drawn discs and ellipses, local strain from the
neighbours, intensity relative to the neighbours, and the confidence of each blob.

The probability maps are drawn the way the network outputs them: smooth blobs
``p = 2 ** -(rho ** 2)`` (``rho`` the elliptic radius), whose 0.5 contour is the
ellipse ``rho = 1`` exactly, so area, perimeter, axes and angle are known.
"""

import numpy as np
import pytest
from scipy.special import ellipe

from atomstat.describe import STRAIN_COLUMNS, add_relative_intensity, add_strain
from atomstat.locate import blob_shapes, locate
from atomstat.simulate import lattice_points
from atomstat.table import empty_atoms, make_atoms


def blob(shape, cx, cy, a, b, angle=0.0, peak=1.0):
    """Smooth blob with semi-axes a (along ``angle``, deg, counter-clockwise as displayed), b."""
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    dx, dy = xx - cx, -(yy - cy)  # y up, as displayed
    t = np.deg2rad(angle)
    u = dx * np.cos(t) + dy * np.sin(t)
    v = -dx * np.sin(t) + dy * np.cos(t)
    return peak * 2.0 ** -((u / a) ** 2 + (v / b) ** 2)


def ellipse_perimeter(a, b):
    a, b = max(a, b), min(a, b)
    return 4 * a * ellipe(1 - (b / a) ** 2)


def axis_error(found, true):
    return abs((found - true + 90.0) % 180.0 - 90.0)


# --------------------------------------------------------------------------- blob shapes


@pytest.mark.parametrize("radius", [3.0, 3.7, 5.0, 8.0, 12.0])
def test_disc_descriptors(radius):
    s = blob_shapes(blob((40, 40), 19.4, 20.3, radius, radius), 0.5)
    assert s["area"][0] == pytest.approx(np.pi * radius**2, rel=0.03)
    assert s["perimeter"][0] == pytest.approx(2 * np.pi * radius, rel=0.03)
    assert s["circularity"][0] >= 0.95
    assert s["axis_major"][0] == pytest.approx(2 * radius, rel=0.03)
    assert s["axis_minor"][0] == pytest.approx(2 * radius, rel=0.03)


@pytest.mark.parametrize("radius", [3.0, 4.0, 5.0, 8.0, 12.0, 20.0])
def test_pixelated_disc_is_round(radius):
    """A hard binary disc: marching squares alone makes its outline ~5% too long
    (circularity ~0.90); the Crofton perimeter is not biased on such shapes."""
    rng = np.random.default_rng(int(radius))
    for _ in range(4):
        cx, cy = 31 + rng.random(), 32 + rng.random()
        yy, xx = np.mgrid[:64, :64]
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
        s = blob_shapes(mask.astype(np.float32), 0.5)
        assert s["circularity"][0] >= 0.95
        # a few-pixel disc's outline depends on where it sits on the grid
        rel = 0.03 if radius >= 5 else 0.06
        assert s["perimeter"][0] == pytest.approx(2 * np.pi * radius, rel=rel)
        assert s["area"][0] == pytest.approx(mask.sum(), rel=0.03)
        if radius >= 5:  # smaller pixel sets differ from the disc by several %
            assert s["area"][0] == pytest.approx(np.pi * radius**2, rel=0.03)
        assert s["x"][0] == pytest.approx(xx[mask].mean(), abs=0.05)


def test_pixelated_ellipse_orientation_and_area():
    yy, xx = np.mgrid[:96, :96].astype(float)
    for angle in np.arange(0.0, 180.0, 15.0):
        t = np.deg2rad(angle)
        dx, dy = xx - 47.3, -(yy - 48.2)
        u, v = dx * np.cos(t) + dy * np.sin(t), -dx * np.sin(t) + dy * np.cos(t)
        mask = (u / 20.0) ** 2 + (v / 9.0) ** 2 <= 1
        s = blob_shapes(mask, 0.5)
        assert axis_error(s["orientation"][0], angle) <= 1.0
        assert s["area"][0] == pytest.approx(np.pi * 20 * 9, rel=0.03)


@pytest.mark.parametrize("angle", np.arange(0.0, 180.0, 12.5))
@pytest.mark.parametrize(("a", "b"), [(4.0, 2.5), (6.0, 3.0), (10.0, 5.0)])
def test_ellipse_descriptors_at_every_angle(a, b, angle):
    s = blob_shapes(blob((48, 48), 23.6, 24.2, a, b, angle), 0.5)
    assert axis_error(s["orientation"][0], angle) <= 1.0
    assert s["area"][0] == pytest.approx(np.pi * a * b, rel=0.03)
    assert s["perimeter"][0] == pytest.approx(ellipse_perimeter(a, b), rel=0.03)
    assert s["axis_major"][0] == pytest.approx(2 * a, rel=0.03)
    assert s["axis_minor"][0] == pytest.approx(2 * b, rel=0.03)
    circ = 4 * np.pi * np.pi * a * b / ellipse_perimeter(a, b) ** 2
    assert s["circularity"][0] == pytest.approx(circ, abs=0.02)


def test_a_field_of_different_blobs_is_described_blob_by_blob():
    """Neighbouring blobs of different sizes and angles, as in a real map, do not mix."""
    rng = np.random.default_rng(0)
    centres = [(12 + 22 * i, 12 + 22 * j) for j in range(5) for i in range(5)]
    axes = rng.uniform(3.0, 7.0, (25, 2))
    axes.sort(axis=1)
    angles = rng.uniform(0, 180, 25)
    prob = np.max(
        [
            blob((112, 112), x, y, big, small, t)
            for (x, y), (small, big), t in zip(centres, axes, angles, strict=True)
        ],
        axis=0,
    )
    atoms = locate(prob)
    assert len(atoms) == 25
    order = np.lexsort((np.round(atoms.x), np.round(atoms.y)))
    found = atoms.iloc[order]
    np.testing.assert_allclose(found.area, np.pi * axes[:, 0] * axes[:, 1], rtol=0.03)
    round_enough = axes[:, 1] / axes[:, 0] > 1.15  # a disc has no orientation
    assert (axis_error(found.orientation.to_numpy(), angles)[round_enough] <= 1.0).all()


def test_confidence_is_the_peak_probability_of_the_blob():
    prob = np.maximum(
        blob((40, 60), 15.0, 20.0, 5, 5, peak=0.97), blob((40, 60), 42.0, 20.0, 5, 5, peak=0.71)
    )
    atoms = locate(prob).sort_values("x")
    np.testing.assert_allclose(atoms.confidence, [0.97, 0.71], atol=1e-6)


# -------------------------------------------------------------------------------- strain


def lattice(kind, spacing=12.0, size=400, rotation=17.0):
    pts = lattice_points(kind, (size, size), spacing, rotation=rotation, rng=0)
    return pts[(pts > 0).all(axis=1) & (pts < size).all(axis=1)]


@pytest.mark.parametrize("kind", ["hexagonal", "honeycomb", "square"])
def test_a_local_stretch_is_measured_against_the_images_own_lattice(kind):
    pts = lattice(kind)
    c = np.array([200.0, 200.0])
    d = pts - c
    # x stretched by 3% * w(x) with w a wide Gaussian: near the centre exx = 0.03
    w = np.exp(-(d**2).sum(axis=1) / (2 * 60.0**2))
    moved = pts.copy()
    moved[:, 0] = c[0] + d[:, 0] * (1 + 0.03 * w)
    atoms = add_strain(make_atoms({"x": moved[:, 0], "y": moved[:, 1]}))
    r = np.hypot(*(moved - c).T)
    near, far = r < 15, r > 170
    assert atoms.strain_xx[near].median() == pytest.approx(0.03, abs=0.003)
    assert abs(atoms.strain_yy[near].median()) < 0.003
    assert abs(atoms.strain_xy[near].median()) < 0.003
    assert abs(atoms.strain_xx[far].median()) < 0.002
    assert atoms.strain_xx.notna().mean() > 0.97  # border atoms with two neighbours too


def test_a_known_reference_gives_the_exact_strain_and_rotation():
    pts = lattice("hexagonal", rotation=0.0)
    a = 12.0
    ideal = [(a * np.cos(t), a * np.sin(t)) for t in np.deg2rad(np.arange(0, 360, 60))]
    t = np.deg2rad(2.0)  # rotate the whole lattice 2 deg counter-clockwise as displayed
    rot = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])  # (x, y-down) frame
    stretch = np.diag([1.01, 0.98])
    moved = pts @ (rot @ stretch).T
    atoms = add_strain(make_atoms({"x": moved[:, 0], "y": moved[:, 1]}), reference=ideal)
    inner = atoms.strain_xx.notna()
    assert atoms.lattice_rotation[inner].median() == pytest.approx(2.0, abs=0.05)
    # the symmetric part of rot @ stretch, to first order: 0.01 and -0.02
    assert atoms.strain_xx[inner].median() == pytest.approx(0.01, abs=0.002)
    assert atoms.strain_yy[inner].median() == pytest.approx(-0.02, abs=0.002)


def test_strain_is_computed_frame_by_frame_and_isolated_atoms_get_nan():
    pts = lattice("square", size=120)
    far = make_atoms({"x": [500.0, 900.0], "y": [500.0, 900.0]})
    frames = {
        "x": np.r_[pts[:, 0], pts[:, 0] * 1.02],
        "y": np.r_[pts[:, 1], pts[:, 1]],
        "frame": np.r_[np.zeros(len(pts), int), np.ones(len(pts), int)],
    }
    atoms = add_strain(make_atoms(frames))
    # each frame is its own reference, so a uniform stretch of frame 1 reads as no strain
    assert atoms.strain_xx.abs().max() < 1e-9
    out = add_strain(far)
    assert out[list(STRAIN_COLUMNS)].isna().all().all()


def test_strain_schema_and_bad_arguments():
    out = add_strain(empty_atoms())
    assert len(out) == 0 and set(STRAIN_COLUMNS) <= set(out.columns)
    atoms = make_atoms({"x": [0.0, 1.0, 2.0], "y": [0.0, 0.0, 0.0]})
    with pytest.raises(ValueError, match="shell"):
        add_strain(atoms, shell=0.9)
    with pytest.raises(ValueError, match="reference"):
        add_strain(atoms, reference=[1.0, 2.0])


# -------------------------------------------------------------------- relative intensity


def test_relative_intensity_finds_the_light_dopant_despite_a_brightness_ramp():
    pts = lattice("hexagonal", size=200)
    ramp = 1000.0 * (1 + pts[:, 0] / 200)  # brightness doubles across the image
    intensity = ramp.copy()
    dim = np.argmin(np.hypot(*(pts - 100).T))
    intensity[dim] *= 0.55
    atoms = add_relative_intensity(
        make_atoms({"x": pts[:, 0], "y": pts[:, 1], "intensity": intensity})
    )
    rel = atoms.intensity_relative.to_numpy()
    assert rel[dim] == pytest.approx(0.55, abs=0.03)
    others = np.delete(rel, dim)
    assert np.abs(others - 1).max() < 0.12  # the ramp cancels, neighbours of the dopant too


def test_relative_intensity_per_frame_missing_values_and_bad_k():
    atoms = make_atoms(
        {
            "x": np.tile(np.arange(4.0), 2),
            "y": np.zeros(8),
            "frame": np.repeat([0, 1], 4),
            "intensity": [10, 10, 10, 10, 50, 50, np.nan, 50],
        }
    )
    out = add_relative_intensity(atoms, k=2)
    np.testing.assert_allclose(out.intensity_relative[:4], 1.0)
    assert np.isnan(out.intensity_relative.iloc[6])
    assert len(add_relative_intensity(empty_atoms())) == 0
    for k in (0, 2.5, True):
        with pytest.raises(ValueError, match="k"):
            add_relative_intensity(atoms, k=k)
