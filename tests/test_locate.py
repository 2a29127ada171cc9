"""Tests for atomstat.locate: blob descriptors of drawn shapes and centres of simulated atoms.

The probability maps are smooth shapes whose 0.5 contour is known exactly:
``prob = 1 / (1 + exp(-k * (1 - rho)))`` with ``rho`` the elliptic radius, so
the contour at 0.5 is the ellipse ``rho = 1``.
"""

import hyperspy.api as hs
import numpy as np
import pytest
from scipy.spatial import cKDTree

from atomstat.locate import blob_shapes, locate
from atomstat.simulate import Defects, Stem, simulate_lattice
from atomstat.table import ATOM_COLUMNS


def _ellipse(shape, cx, cy, a, b=None, angle=0.0, sharpness=1.5):
    """Probability map of an ellipse with semi-axes ``a`` (along ``angle``) and ``b``.

    ``angle`` is in degrees, counter-clockwise as displayed (row 0 on top).
    ``sharpness`` is the slope of the logit per pixel at the contour.
    """
    b = a if b is None else b
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    dx, dy = xx - cx, -(yy - cy)  # y up, as displayed
    t = np.deg2rad(angle)
    u = dx * np.cos(t) + dy * np.sin(t)
    v = -dx * np.sin(t) + dy * np.cos(t)
    rho = np.hypot(u / a, v / b)
    return 1.0 / (1.0 + np.exp(-sharpness * min(a, b) * (1.0 - rho)))


def _angle_diff(a, b):
    """Difference of two axis orientations (degrees, modulo 180) in [-90, 90)."""
    return (np.asarray(a) - b + 90.0) % 180.0 - 90.0


def test_marching_squares_segments_are_find_contours_edges():
    """The vectorised segments are exactly the edges of skimage's assembled contours
    (saddles, values equal to the level and blobs on the border included), but for the
    segments of zero length at pixels on the level, which add nothing to any moment and
    which the assembly drops."""
    from skimage.measure import find_contours

    from atomstat.locate import _segments

    rng = np.random.default_rng(4)
    image = rng.random((40, 50))
    image[rng.random(image.shape) < 0.05] = 0.5  # on the level itself
    image = np.pad(image, 1)  # closed contours, as locate pads the map
    edges = np.concatenate([np.stack([c[:-1], c[1:]], axis=1) for c in find_contours(image, 0.5)])
    mine = _segments(image, 0.5)
    point = (mine[:, 0] == mine[:, 1]).all(axis=1)
    assert point.sum() > 10
    mine = mine[~point]

    def ordered(seg):
        flat = np.round(seg.reshape(len(seg), 4), 9)
        return flat[np.lexsort(flat.T[::-1])]

    assert len(mine) == len(edges) > 1000
    np.testing.assert_array_equal(ordered(mine), ordered(edges))


@pytest.mark.parametrize("radius", [3.0, 4.5, 7.0, 10.0])
def test_disc_area_perimeter_circularity(radius):
    prob = _ellipse((48, 48), 23.3, 24.6, radius)
    atoms = locate(prob)
    assert len(atoms) == 1
    row = atoms.iloc[0]
    assert row.area == pytest.approx(np.pi * radius**2, rel=0.03)
    assert row.perimeter == pytest.approx(2 * np.pi * radius, rel=0.03)
    assert row.circularity >= 0.95
    assert row.axis_major == pytest.approx(2 * radius, rel=0.03)
    assert row.axis_minor == pytest.approx(2 * radius, rel=0.03)
    assert row.eccentricity < 0.25
    assert (row.x, row.y) == pytest.approx((23.3, 24.6), abs=0.02)
    assert not row.edge


@pytest.mark.parametrize("angle", [0.0, 20.0, 45.0, 90.0, 118.0, 135.0, 170.0])
def test_ellipse_orientation_axes_and_eccentricity(angle):
    a, b = 11.0, 5.5
    prob = _ellipse((64, 64), 31.4, 32.7, a, b, angle)
    atoms = locate(prob)
    assert len(atoms) == 1
    row = atoms.iloc[0]
    assert 0.0 <= row.orientation < 180.0
    assert abs(_angle_diff(row.orientation, angle)) <= 1.0
    assert row.area == pytest.approx(np.pi * a * b, rel=0.03)
    assert row.axis_major == pytest.approx(2 * a, rel=0.03)
    assert row.axis_minor == pytest.approx(2 * b, rel=0.03)
    assert row.eccentricity == pytest.approx(np.sqrt(1 - (b / a) ** 2), abs=0.02)
    assert row.circularity < 0.9  # an ellipse of aspect 2 is not a disc
    assert (row.x, row.y) == pytest.approx((31.4, 32.7), abs=0.05)


def test_orientation_is_counter_clockwise_as_displayed():
    """An ellipse whose long axis runs from bottom-left to top-right is at 45 deg, not 135."""
    yy, xx = np.mgrid[:40, :40]
    prob = np.zeros((40, 40))
    for t in np.linspace(-8, 8, 161):  # a thick line from (12, 28) to (28, 12): up and to the right
        prob[np.hypot(xx - (20 + t), yy - (20 - t)) < 2.5] = 1.0
    row = locate(prob).iloc[0]
    assert abs(_angle_diff(row.orientation, 45.0)) < 1.0


def test_ring_area_subtracts_the_hole():
    r_out, r_in = 12.0, 5.0
    outer = _ellipse((48, 48), 24.2, 23.7, r_out)
    hole = 1.0 - _ellipse((48, 48), 24.2, 23.7, r_in)
    prob = np.minimum(outer, hole)
    atoms = locate(prob)
    assert len(atoms) == 1
    row = atoms.iloc[0]
    assert row.area == pytest.approx(np.pi * (r_out**2 - r_in**2), rel=0.03)
    assert (row.x, row.y) == pytest.approx((24.2, 23.7), abs=0.05)


def test_blob_cut_by_the_border_is_kept_and_flagged():
    prob = np.maximum(_ellipse((40, 60), 0.0, 20.3, 6.0), _ellipse((40, 60), 30.0, 20.0, 6.0))
    atoms = locate(prob).sort_values("x")
    assert len(atoms) == 2
    cut, inner = atoms.iloc[0], atoms.iloc[1]
    assert bool(cut.edge) and not bool(inner.edge)
    # the visible part of the cut disc (x >= -0.5, the outer edge of the first column)
    assert np.pi * 36 / 2 < cut.area < np.pi * 36 / 2 + 2 * 6 * 0.5 + 1.0
    assert inner.area == pytest.approx(np.pi * 36, rel=0.03)


@pytest.mark.parametrize("side", ["top", "bottom", "left", "right"])
def test_edge_flag_on_every_side(side):
    cx, cy = {"top": (25, 1), "bottom": (25, 38), "left": (1, 20), "right": (48, 20)}[side]
    prob = _ellipse((40, 50), cx, cy, 4.0)
    atoms = locate(prob)
    assert len(atoms) == 1 and bool(atoms.edge.iloc[0])


def test_several_blobs_one_row_each():
    centres = [(10.2, 10.7), (30.5, 12.1), (20.0, 30.3), (40.8, 35.5)]
    prob = np.max([_ellipse((48, 56), x, y, 3.5) for x, y in centres], axis=0)
    atoms = locate(prob)
    assert len(atoms) == 4
    assert atoms.index.tolist() == [0, 1, 2, 3]
    d, i = cKDTree(centres).query(atoms[["x", "y"]].to_numpy())
    assert d.max() < 0.02 and sorted(i) == [0, 1, 2, 3]
    assert (atoms.frame == 0).all()
    # neighbours are filled from the centres
    assert atoms.nn_distance.to_numpy() == pytest.approx(
        cKDTree(centres).query(centres, k=2)[0][:, 1][i], abs=0.05
    )


def test_threshold_selects_blobs_by_their_peak():
    bright = 0.9 * _ellipse((32, 48), 12.0, 16.0, 4.0)
    dim = 0.4 * _ellipse((32, 48), 34.0, 16.0, 4.0)
    prob = bright + dim
    assert len(locate(prob, threshold=0.5)) == 1
    atoms = locate(prob, threshold=0.3, peak_margin=0.0)
    assert len(atoms) == 2
    assert sorted(atoms.confidence.tolist()) == pytest.approx([0.4, 0.9], abs=0.01)
    assert atoms.confidence.dtype == np.float32
    # by default a blob must peak 0.2 above the contour level
    assert len(locate(prob, threshold=0.3)) == 1
    assert len(locate(prob, threshold=0.15)) == 2


def test_fragments_that_barely_cross_the_level_are_not_atoms():
    prob = np.zeros((40, 80), np.float32)
    centres = [(10.0, 20.0), (30.0, 20.0), (50.0, 20.0), (70.0, 20.0)]
    peaks = [0.95, 0.72, 0.68, 0.55]
    for (x, y), peak in zip(centres, peaks, strict=True):
        prob += peak * _ellipse((40, 80), x, y, 4.0)
    atoms = locate(prob)
    assert sorted(atoms.x.round().tolist()) == [10.0, 30.0]
    assert atoms.attrs["fragments"] == 2
    assert len(locate(prob, peak_margin=0.0)) == 4
    with pytest.raises(ValueError, match="peak_margin"):
        locate(prob, peak_margin=1.5)


def test_stack_gives_the_frame_column():
    frames = []
    for t in range(3):
        centres = [(8.0 + 14 * k, 10.0 + t) for k in range(t + 1)]
        frames.append(np.max([_ellipse((32, 48), x, y, 3.0) for x, y in centres], axis=0))
    frames.append(np.zeros((32, 48)))
    atoms = locate(np.stack(frames))
    assert atoms.frame.dtype == np.int64
    assert atoms.frame.value_counts().sort_index().to_dict() == {0: 1, 1: 2, 2: 3}
    assert atoms.index.is_unique
    for t in range(3):
        ys = atoms.loc[atoms.frame == t, "y"]
        assert ys.to_numpy() == pytest.approx(10.0 + t, abs=0.02)
    # neighbours are found within each frame: frame 0 has one atom, so no neighbour
    assert atoms.loc[atoms.frame == 0, "nn_distance"].isna().all()
    assert atoms.loc[atoms.frame == 2, "nn_distance"].to_numpy() == pytest.approx(14.0, abs=0.05)


def test_stack_with_images_matches_frame_by_frame():
    sims = [
        simulate_lattice("square", shape=(48, 48), spacing=12.0, sigma=2.0, rng=s) for s in range(2)
    ]
    prob = np.stack([s.mask.astype(np.float32) for s in sims])
    image = np.stack([s.image for s in sims])
    both = locate(prob, image, sigma=2.0)
    for t in range(len(sims)):
        alone = locate(prob[t], image[t], sigma=2.0)
        frame = both[both.frame == t]
        np.testing.assert_allclose(frame[["x", "y", "intensity"]], alone[["x", "y", "intensity"]])


def _table_is_empty_with_schema(atoms):
    assert len(atoms) == 0
    assert list(atoms.columns[: len(ATOM_COLUMNS)]) == list(ATOM_COLUMNS)
    for name, dtype in ATOM_COLUMNS.items():
        assert atoms[name].dtype == np.dtype(dtype), name


def test_empty_map_gives_an_empty_table_with_every_column():
    _table_is_empty_with_schema(locate(np.zeros((32, 32))))
    _table_is_empty_with_schema(locate(np.zeros((32, 32)), np.ones((32, 32))))
    _table_is_empty_with_schema(locate(np.full((3, 16, 16), 0.2)))
    assert blob_shapes(np.zeros((16, 16)), 0.5)["x"].shape == (0,)


def test_blob_shapes_returns_one_entry_per_blob():
    prob = np.maximum(_ellipse((32, 48), 10.0, 16.0, 4.0), _ellipse((32, 48), 34.0, 16.0, 5.0))
    shapes = blob_shapes(prob, 0.5)
    expected = {"x", "y", "area", "perimeter", "circularity", "orientation"}
    expected |= {"axis_major", "axis_minor", "eccentricity", "confidence", "edge"}
    assert expected <= set(shapes)
    assert all(len(v) == 2 for v in shapes.values())
    np.testing.assert_allclose(np.sort(shapes["area"]), np.pi * np.array([16, 25]), rtol=0.03)


def test_centres_on_a_simulated_lattice():
    """With the true mask as the map, the refined centres are the truth."""
    sim = simulate_lattice(
        "hexagonal",
        shape=(128, 128),
        spacing=12.0,
        sigma=2.0,
        rotation=10.0,
        defects=Defects(vacancies=0.03, dopants=0.0),
        imaging=Stem(dose=200.0),
        rng=3,
    )
    atoms = locate(sim.mask.astype(np.float32), sim.image)
    truth = sim.atoms[["x", "y"]].to_numpy()
    found = atoms[["x", "y"]].to_numpy()
    inner = ((found > 4) & (found < 124)).all(axis=1) & ~atoms.edge.to_numpy()
    d, idx = cKDTree(truth).query(found[inner])
    assert np.sqrt(np.mean(d**2)) < 0.15
    assert len(np.unique(idx)) == inner.sum()
    # every truth atom away from the border was found
    truth_inner = ((truth > 6) & (truth < 122)).all(axis=1)
    d_back, _ = cKDTree(found).query(truth[truth_inner])
    assert d_back.max() < 0.5
    nn_truth = cKDTree(truth).query(truth[truth_inner], k=2)[0][:, 1]
    assert atoms.loc[inner, "nn_distance"].median() == pytest.approx(np.median(nn_truth), abs=0.1)
    assert atoms.intensity.notna().all()


def test_centres_are_refined_on_the_raw_image():
    """A map shifted by one pixel gives shifted blobs; refinement on the image undoes it."""
    sim = simulate_lattice(
        "square",
        shape=(96, 96),
        spacing=14.0,
        sigma=2.0,
        rotation=5.0,
        defects=Defects(vacancies=0.0, dopants=0.0),
        imaging=Stem(dose=200.0),
        rng=4,
    )
    prob = np.roll(sim.mask.astype(np.float32), 1, axis=0)  # half a width off
    truth = sim.atoms[["x", "y"]].to_numpy()
    plain = locate(prob)
    refined = locate(prob, sim.image, sigma=2.0)
    inner = ((truth > 8) & (truth < 88)).all(axis=1)
    d_plain, _ = cKDTree(plain[["x", "y"]].to_numpy()).query(truth[inner])
    d_refined, _ = cKDTree(refined[["x", "y"]].to_numpy()).query(truth[inner])
    assert np.median(d_plain) == pytest.approx(1.0, abs=0.15)
    assert np.sqrt(np.mean(d_refined**2)) < 0.15


def test_without_image_centres_are_contour_centroids_and_intensity_is_nan():
    prob = _ellipse((32, 32), 15.3, 16.8, 4.0)
    atoms = locate(prob)
    assert atoms.intensity.isna().all()
    image = np.ones((32, 32))
    no_refine = locate(prob, image, sigma=2.0, refine=False)
    assert (no_refine.x.iloc[0], no_refine.y.iloc[0]) == pytest.approx((15.3, 16.8), abs=0.02)
    assert no_refine.intensity.iloc[0] == pytest.approx(25.0)  # a 5x5 box of ones


def test_signal_input_is_accepted():
    prob = _ellipse((32, 32), 15.3, 16.8, 4.0)
    a = locate(hs.signals.Signal2D(prob))
    b = locate(prob)
    np.testing.assert_allclose(a[["x", "y", "area"]], b[["x", "y", "area"]])


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5, -0.2])
def test_bad_threshold_raises_naming_it(threshold):
    with pytest.raises(ValueError, match="threshold") as info:
        locate(np.zeros((16, 16)), threshold=threshold)
    assert str(threshold) in str(info.value)


@pytest.mark.parametrize("shape", [(16,), (2, 2, 16, 16)])
def test_bad_prob_dimensions_raise(shape):
    with pytest.raises(ValueError, match="shape") as info:
        locate(np.zeros(shape))
    assert str(shape) in str(info.value)


def test_image_of_another_shape_raises():
    with pytest.raises(ValueError, match="shape") as info:
        locate(np.zeros((16, 16)), np.zeros((16, 17)))
    assert "(16, 17)" in str(info.value)


def _gauss_map(spots, shape=(80, 140)):
    """A probability-like map: the maximum of Gaussians (x, y, sx, sy, peak)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    out = np.zeros(shape)
    for x, y, sx, sy, peak in spots:
        out = np.maximum(
            out, peak * np.exp(-((xx - x) ** 2 / (2 * sx**2) + (yy - y) ** 2 / (2 * sy**2)))
        )
    return out.astype(np.float32)


_SINGLES = [(15 + 20 * i, 15, 3, 3, 1.0) for i in range(6)]


def test_split_separates_two_atoms_sharing_a_blob():
    """Two peaks 6 px apart merge at the 0.5 contour (saddle 0.61) but are two atoms."""
    prob = _gauss_map([*_SINGLES, (57, 55, 3, 3, 1.0), (63, 55, 3, 3, 1.0)])
    whole = locate(prob)
    parts = locate(prob, split=True)
    assert len(whole) == 7 and whole.attrs["split_blobs"] == 0
    assert len(parts) == 8 and parts.attrs["split_blobs"] == 1
    pair = parts[parts.y > 40].sort_values("x")[["x", "y"]].to_numpy()
    np.testing.assert_allclose(pair, [[57, 55], [63, 55]], atol=0.35)
    # the singles are untouched
    np.testing.assert_allclose(parts[parts.y < 40].area, whole[whole.y < 40].area)


@pytest.mark.parametrize(
    "blob",
    [
        [(60, 55, 6, 3, 1.0)],  # one elongated atom: large, but a single peak
        [(57, 55, 3, 3, 1.0), (61.5, 55, 3, 3, 0.8)],  # a shoulder 0.09 over the saddle (0.71)
    ],
)
def test_split_keeps_a_blob_with_one_significant_peak(blob):
    prob = _gauss_map([*_SINGLES, *blob])
    parts = locate(prob, split=True)
    assert len(parts) == 7
    assert parts.attrs["split_blobs"] == 0


def test_a_merged_dumbbell_is_split_without_asking():
    """Two atoms 6.8 px apart (2.8 widths) share one blob at 0.5: twice the typical area,
    in parts 2.8 widths apart, it is split even with ``split=False``; an elongated
    single atom of the same size is not."""
    pair = locate(_gauss_map([*_SINGLES, (56.6, 55, 3, 3, 1.0), (63.4, 55, 3, 3, 1.0)]))
    assert len(pair) == 8 and pair.attrs["split_blobs"] == 1
    found = pair[pair.y > 40].sort_values("x")[["x", "y"]].to_numpy()
    np.testing.assert_allclose(found, [[56.6, 55], [63.4, 55]], atol=0.35)
    single = locate(_gauss_map([*_SINGLES, (60, 55, 6, 3, 1.0)]))
    assert len(single) == 7 and single.attrs["split_blobs"] == 0


@pytest.mark.parametrize("half", [1.0, 1.5])
def test_two_blobs_on_one_atom_give_one_atom(half):
    """The map cuts one column in two (blobs 2-3 px apart): both refine onto the column,
    where they settled 1.2 px apart as two atoms. One atom is kept, at the column."""
    from atomstat.gaussians import render

    prob = _gauss_map([*_SINGLES, (60 - half, 55, 0.7, 0.7, 1.0), (60 + half, 55, 0.7, 0.7, 1.0)])
    xy = np.array([(x, y) for x, y, *_ in _SINGLES] + [(60.0, 55.0)])
    image = 10 + render(xy, prob.shape, 100.0, 2.0, 2.0, np.zeros(len(xy)))
    atoms = locate(prob, image, sigma=2.0)
    assert len(atoms) == 7 and atoms.attrs["duplicates"] == 1
    np.testing.assert_allclose(atoms[atoms.y > 40][["x", "y"]].to_numpy(), [[60, 55]], atol=0.05)
    d, _ = cKDTree(atoms[["x", "y"]].to_numpy()).query(atoms[["x", "y"]].to_numpy(), k=2)
    assert d[:, 1].min() > 2.0
