"""pair_dumbbells: known dumbbells come back with their angles, whatever way they point."""

import doctest

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

import atomstat
import atomstat.dumbbells
from atomstat.dumbbell_finder import find_dumbbells
from atomstat.dumbbells import DUMBBELL_COLUMNS, pair_dumbbells, reference_angle
from atomstat.movie import simulate_movie
from atomstat.table import make_atoms


def columns_of(movie, frames=None, *, noise=0.0, rng=0):
    """The true columns as an atoms table, with position noise; ``dumbbell`` is the truth."""
    rng = np.random.default_rng(rng)
    atoms = movie.atoms if frames is None else movie.atoms[movie.atoms.frame.isin(frames)]
    xy = atoms[["x", "y"]].to_numpy() + rng.normal(0, noise, (len(atoms), 2))
    return make_atoms(
        {
            "frame": atoms.frame.to_numpy(),
            "x": xy[:, 0],
            "y": xy[:, 1],
            "truth": atoms.dumbbell.to_numpy(),
            "intensity": np.full(len(atoms), 100.0),
        }
    )


def truth_angles(movie, found, atoms):
    """True angle of the dumbbell that each found pair's first atom belongs to."""
    key = pd.MultiIndex.from_arrays([movie.dumbbells.frame, movie.dumbbells.dumbbell])
    true = pd.Series(movie.dumbbells.angle.to_numpy(), index=key)
    ids = atoms.loc[found.atom_a, "truth"].to_numpy()
    return true.reindex(pd.MultiIndex.from_arrays([found.frame.to_numpy(), ids])).to_numpy()


def angle_error(a, b):
    return np.abs((np.asarray(a) - np.asarray(b) + 90) % 180 - 90)


def test_doctests():
    assert doctest.testmod(atomstat.dumbbells).failed == 0


def test_pairs_every_dumbbell_with_its_own_columns():
    movie = simulate_movie(3, rng=1)
    atoms = columns_of(movie, noise=0.1)
    found = pair_dumbbells(atoms)
    truth_a = atoms.loc[found.atom_a, "truth"].to_numpy()
    truth_b = atoms.loc[found.atom_b, "truth"].to_numpy()
    assert np.array_equal(truth_a, truth_b), "a dumbbell made of two different dumbbells' columns"
    both_inside = movie.atoms.groupby(["frame", "dumbbell"]).size().eq(2).sum()
    assert len(found) == both_inside
    err = angle_error(found.angle, truth_angles(movie, found, atoms))
    assert np.median(err) < 1.0 and err.max() < 4.0  # 0.1 px noise over 12 px
    assert found.separation.between(11, 13).all()
    assert np.allclose(found.intensity, 200.0)
    assert found.attrs["method"] == "columns"
    assert abs(found.attrs["separation"] - 12.0) < 0.2


def test_no_global_vector_dumbbells_point_any_way():
    # Every dumbbell has its own direction (uniform over the half-turn): a single global
    # dumbbell vector would pair most of them wrongly.
    rng = np.random.default_rng(2)
    centres = np.array([(x, y) for x in range(20, 400, 40) for y in range(20, 400, 40)], float)
    angles = rng.uniform(0, 180, len(centres))
    half = 6.0 * np.column_stack([np.cos(np.deg2rad(angles)), -np.sin(np.deg2rad(angles))])
    xy = np.concatenate([centres - half, centres + half]) + rng.normal(0, 0.05, (2 * len(half), 2))
    atoms = make_atoms({"x": xy[:, 0], "y": xy[:, 1]})
    found = pair_dumbbells(atoms)
    assert len(found) == len(centres)
    partner = {i: i + len(centres) for i in range(len(centres))}
    assert all(
        partner[min(a, b)] == max(a, b) for a, b in zip(found.atom_a, found.atom_b, strict=True)
    )
    order = np.minimum(found.atom_a, found.atom_b).to_numpy()
    assert angle_error(found.angle, angles[order]).max() < 1.0


def test_missing_and_spurious_columns_spoil_only_their_own_pair():
    movie = simulate_movie(1, rng=3)
    atoms = columns_of(movie, noise=0.1)
    rng = np.random.default_rng(4)
    dropped = rng.choice(atoms.index, 8, replace=False)
    extra = make_atoms(
        {"x": rng.uniform(0, 256, 8), "y": rng.uniform(0, 256, 8), "truth": np.full(8, -1)}
    )
    noisy = pd.concat([atoms.drop(index=dropped), extra], ignore_index=True)
    noisy.index.name = "atom_id"
    found = pair_dumbbells(noisy, separation=12.0)
    truth_a = noisy.loc[found.atom_a, "truth"].to_numpy()
    truth_b = noisy.loc[found.atom_b, "truth"].to_numpy()
    good = (truth_a == truth_b) & (truth_a >= 0)
    complete = atoms.drop(index=dropped).groupby("truth").size().eq(2).sum()
    assert good.sum() >= complete - 2  # a spurious point may steal at most a few columns
    assert (~good).sum() <= 3


def test_reference_angle_and_two_points():
    atoms = make_atoms({"x": [0.0, 10.0, 40.0, 40.0], "y": [0.0, -10.0, 0.0, 14.0]})
    plain = pair_dumbbells(atoms, separation=14.0)
    assert sorted(np.round(plain.angle, 6)) == [45.0, 90.0]
    along_001 = pair_dumbbells(atoms, separation=14.0, reference=[(5.0, 30.0), (5.0, 10.0)])
    assert sorted(np.round(along_001.angle, 6)) == [0.0, 135.0]
    assert along_001.attrs["reference"] == 90.0
    assert reference_angle(-30.0) == 150.0
    assert reference_angle([(0, 0), (1, 1)]) == 135.0  # down-right on screen


def test_schema_and_empty_input():
    empty = pair_dumbbells(atomstat.empty_atoms(), separation=12.0)
    assert list(empty.columns) == list(DUMBBELL_COLUMNS)
    assert len(empty) == 0
    lone = pair_dumbbells(make_atoms({"x": [0.0, 50.0], "y": [0.0, 0.0]}), separation=12.0)
    assert len(lone) == 0 and list(lone.columns) == list(DUMBBELL_COLUMNS)
    dtypes = {
        c: str(t) for c, t in pair_dumbbells(columns_of(simulate_movie(1, rng=0))).dtypes.items()
    }
    assert dtypes == DUMBBELL_COLUMNS


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"method": "ellipse"}, "method"),
        ({"tolerance": 1.5}, "tolerance"),
        ({"separation": -2.0}, "separation"),
        ({"reference": [(0, 0), (0, 0)]}, "same point"),
        ({"reference": [1, 2, 3]}, "reference"),
    ],
)
def test_bad_arguments(kwargs, name):
    atoms = make_atoms({"x": [0.0, 12.0], "y": [0.0, 0.0]})
    with pytest.raises(ValueError, match=name):
        pair_dumbbells(atoms, **kwargs)


def test_missing_columns_are_named():
    plain = pd.DataFrame({"frame": [0, 0], "x": [0.0, 12.0], "y": [0.0, 0.0]})
    with pytest.raises(ValueError, match="orientation"):
        pair_dumbbells(plain, method="blob")
    with pytest.raises(ValueError, match="frame"):
        pair_dumbbells(plain.drop(columns="frame"))
    with pytest.raises(ValueError, match="elongated"):  # round blobs: the columns did not merge
        pair_dumbbells(make_atoms({"x": [0.0], "y": [0.0]}), method="blob")
    with pytest.raises(TypeError):
        pair_dumbbells(np.zeros((3, 2)))


def test_blob_route_reads_the_ellipse():
    # Merged blobs: major axis^2 - minor^2 = (2 * separation)^2.
    rng = np.random.default_rng(5)
    angles = rng.uniform(0, 180, 30)
    minor = np.full(30, 12.0)
    major = np.sqrt(minor**2 + (2 * 12.0) ** 2)
    blobs = make_atoms(
        {
            "x": rng.uniform(0, 200, 30),
            "y": rng.uniform(0, 200, 30),
            "orientation": angles,
            "axis_major": np.r_[major[:28], 12.5, 12.0],  # the last two: single round columns
            "axis_minor": minor,
        }
    )
    found = pair_dumbbells(blobs, method="blob")
    assert len(found) == 28
    assert np.allclose(found.angle, angles[found.atom_a])
    assert np.allclose(found.separation, 12.0)
    assert (found.atom_a == found.atom_b).all()


def test_find_dumbbells_on_a_blank_frame(threshold_model):
    found = find_dumbbells(np.full((64, 64), 10.0), model=threshold_model, separation=12.0)
    assert len(found) == 0 and list(found.columns) == list(DUMBBELL_COLUMNS)
    with pytest.raises(ValueError, match="threshold"):
        find_dumbbells(np.zeros((64, 64)), model=threshold_model, threshold=1.5)


@pytest.mark.parametrize("method", ["columns", "blob"])
def test_find_dumbbells_on_a_simulated_frame(threshold_model, method):
    movie = simulate_movie(2, shape=(128, 128), dose=2000, angle_spread=20, rng=7)
    found = find_dumbbells(movie.frames, method=method, model=threshold_model)
    truth = movie.dumbbells[movie.dumbbells.inside]
    from atomstat.metrics import match_points

    ti, fi, _ = match_points(truth[["x", "y"]].to_numpy(), found[["x", "y"]].to_numpy(), 2.0)
    same_frame = truth.frame.to_numpy()[ti] == found.frame.to_numpy()[fi]
    assert same_frame.sum() >= 0.95 * len(truth)
    err = angle_error(found.angle.to_numpy()[fi], truth.angle.to_numpy()[ti])[same_frame]
    assert np.median(err) < (0.5 if method == "columns" else 1.5)
    assert abs(found.separation.median() - 12.0) < (0.3 if method == "columns" else 1.0)
    assert found.attrs["method"] == method


# ------------------------------------------------------------------ spacing spread


def _dumbbell_lattice(noise, rng, separation=12.0, angle=15.0, rows=20, cols=16):
    """Columns of a centred lattice of dumbbells (pitch 30 x 24 px), with position noise."""
    rng = np.random.default_rng(rng)
    centres = np.array(
        [(30.0 * i + 15 * (j % 2), 24.0 * j) for j in range(rows) for i in range(cols)]
    )
    half = separation / 2 * np.array([np.cos(np.radians(angle)), -np.sin(np.radians(angle))])
    xy = np.concatenate([centres - half, centres + half]) + rng.normal(
        0, noise, (2 * len(centres), 2)
    )
    return make_atoms({"x": xy[:, 0] + 20, "y": xy[:, 1] + 20})


def test_spacing_spread_measures_the_column_noise():
    """Each column placed with N(0, 0.3 px) noise: a difference of two columns has a spread
    of 0.3 * sqrt(2) = 0.42 px in every direction, both for the dumbbell's own
    separation and for the same-type columns of neighbouring dumbbells."""
    from atomstat.spacings import lattice_vectors, spacing_spread

    found = pair_dumbbells(_dumbbell_lattice(0.3, rng=31))
    spread = spacing_spread(found, pixel_size=8.85).set_index(["measure", "direction"])
    np.testing.assert_allclose(spread["std"], 0.3 * np.sqrt(2), rtol=0.12)
    np.testing.assert_allclose(spread["std_units"], spread["std"] * 8.85)
    assert spread.loc[("separation", "along"), "mean"] == pytest.approx(12.0, abs=0.05)
    assert spread.loc[("separation", "along"), "angle"] == pytest.approx(15.0, abs=0.5)
    assert (spread["n"] >= 320).all()
    vectors = np.sort(np.abs(lattice_vectors(found[["x", "y"]].to_numpy())), axis=0)
    np.testing.assert_allclose(vectors, [[15, 24], [15, 24]], atol=0.3)


def test_spacing_spread_sees_pairs_pushed_apart():
    """Half of the dumbbells 2.7 px too long (what analyze did on the real Si[110] image):
    the spread along the axis is the two groups' (1.35 px); across it stays small."""
    from atomstat.spacings import spacing_spread

    atoms = _dumbbell_lattice(0.05, rng=32)
    n = len(atoms) // 2
    push = (
        np.where(np.arange(n) % 2 == 0, 2.7, 0.0)[:, None]
        / 2
        * [np.cos(np.radians(15)), -np.sin(np.radians(15))]
    )
    xy = atoms[["x", "y"]].to_numpy(copy=True)
    xy[:n] -= push
    xy[n:] += push
    found = pair_dumbbells(atoms.assign(x=xy[:, 0], y=xy[:, 1]), separation=13.0)
    spread = spacing_spread(found).set_index(["measure", "direction"])["std"]
    assert spread[("separation", "along")] == pytest.approx(1.35, rel=0.05)
    assert spread[("separation", "across")] < 0.1


def test_spacing_spread_refuses_what_it_cannot_measure():
    from atomstat.spacings import lattice_vectors, spacing_spread

    two = pair_dumbbells(_dumbbell_lattice(0.0, rng=0).assign(frame=np.repeat([0, 1], 320)))
    with pytest.raises(ValueError, match="one frame"):
        spacing_spread(two)
    with pytest.raises(ValueError, match="at least 8"):
        spacing_spread(two[two.frame == 0].head(5))
    with pytest.raises(ValueError, match="lattice"):
        lattice_vectors(np.random.default_rng(1).uniform(0, 500, (12, 2)) * [1, 0])


# ------------------------------------------------------------------ blob route: merging


def _pair_map(separation, width, shape=(200, 200)):
    """A probability-like map of horizontal column pairs (max of Gaussians), 40 px apart."""
    from atomstat.table import make_atoms

    yy, xx = np.mgrid[: shape[0], : shape[1]]
    prob = np.zeros(shape)
    centres = [(20.0 + 40 * i, 20.0 + 40 * j) for i in range(5) for j in range(5)]
    columns = []
    for cx, cy in centres:
        for x in (cx - separation / 2, cx + separation / 2):
            prob = np.maximum(prob, np.exp(-((xx - x) ** 2 + (yy - cy) ** 2) / (2 * width**2)))
            columns.append((x, cy))
    columns = np.array(columns)
    return prob.astype(np.float32), make_atoms({"x": columns[:, 0], "y": columns[:, 1]})


@pytest.mark.parametrize(
    ("separation", "width", "smoothed"),
    [(8.0, 3.0, False), (12.0, 2.0, True)],  # saddle 0.41: a lower level; 0.011: smoothing
)
def test_blob_route_merges_every_pair(separation, width, smoothed):
    """Columns close for their blobs merge at a lower level with no smoothing (Si[110] on a
    real probe: the fixed smoothing of a quarter separation and level 0.2 merged the
    whole lattice into one blob, 1 of 197 dumbbells); far ones need the smoothing."""
    from atomstat.dumbbell_finder import _merge_rule, _merged

    prob, columns = _pair_map(separation, width)
    smoothing, level = _merge_rule(prob, columns, separation)
    assert (smoothing > 0) == smoothed
    blobs = _merged(prob[None], prob[None], level, smoothing)
    found = pair_dumbbells(blobs, method="blob", separation=separation)
    assert len(found) == 25
    assert np.all(angle_error(found.angle, 0.0) < 1.0)


# ------------------------------------------------------------------ real Si[110] image


@pytest.fixture(scope="module")
def si110():
    """The real Si[110] HAADF image (AtomSegNet, MIT; atomstat/data/ATTRIBUTION.md)."""
    from PIL import Image

    from atomstat.examples import example_path

    return np.asarray(Image.open(example_path("Si110_dumbbells_HAADF_5nm")), np.float32)


@pytest.fixture(scope="module")
def si110_atoms(si110):
    return atomstat.analyze(si110)


def test_real_si110_dumbbells_keep_their_separation(si110_atoms):
    """On the real image analyze ran 139 of 413 columns away (reset to their blob centres),
    so the separations split into 15 and 17.8 px groups: spread 16.4/8.5 pm along/across
    the axis at 8.85 pm/px. Now one group (136 pm = 15.4 px), spread at most 7.0/6.0
    pm, no two atoms closer than an atom width (there were pairs 0.02-4 px apart
    on the border rows), and the merged dumbbell is split."""
    from atomstat.spacings import spacing_spread

    atoms = si110_atoms
    xy = atoms[["x", "y"]].to_numpy()
    d, _ = cKDTree(xy).query(xy, k=2)
    assert d[:, 1].min() > atoms.attrs["sigma"]
    found = pair_dumbbells(atoms)
    assert len(found) >= 190
    inner = found[~found.edge]
    assert inner.separation.between(13.0, 17.5).mean() > 0.97
    assert inner.separation.median() * 8.85 == pytest.approx(136, abs=4)
    spread = spacing_spread(found, pixel_size=8.85).set_index(["measure", "direction"])
    assert spread.loc[("separation", "along"), "std_units"] < 7.0
    assert spread.loc[("separation", "across"), "std_units"] < 6.0


def test_real_si110_blob_route_finds_the_dumbbells(si110, si110_atoms):
    """The blob route found 1 of the 197 dumbbells (the lattice merged into one blob)."""
    columns = pair_dumbbells(si110_atoms)
    blobs = find_dumbbells(si110, method="blob")
    d, _ = cKDTree(blobs[["x", "y"]].to_numpy()).query(columns[["x", "y"]].to_numpy())
    assert (d < 4).sum() >= 0.95 * len(columns)
    assert np.median(angle_error(blobs.angle, columns.angle.median())) < 3.0
