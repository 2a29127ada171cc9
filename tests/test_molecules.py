"""Molecules: simulated scenes with known truth, grouping, orientations, misfits, bad input."""

import doctest

import numpy as np
import pandas as pd
import pytest

import atomstat
import atomstat.molecule_scenes as scenes_module
import atomstat.molecules as molecules_module
from atomstat.metrics import match_points
from atomstat.molecules import MOLECULE_COLUMNS
from atomstat.table import empty_atoms, make_atoms


def _wrap(angle, period=120.0):
    """Signed difference folded into [-period / 2, period / 2)."""
    return (np.asarray(angle) + period / 2) % period - period / 2


@pytest.fixture(scope="module")
def scene():
    return atomstat.simulate_molecules((384, 384), switching=0.15, rng=11)


def _noisy_blobs(scene, noise, seed=0):
    rng = np.random.default_rng(seed)
    blobs = scene.blobs.drop(columns=["molecule"])
    blobs["x"] += rng.normal(0, noise, len(blobs))
    blobs["y"] += rng.normal(0, noise, len(blobs))
    return blobs


def _triangles(centres, azimuths, radius=6.0, frame=0):
    """Blobs of ideal 3-fold molecules; azimuth counter-clockwise as displayed."""
    x, y = [], []
    for (cx, cy), phi in zip(centres, azimuths, strict=True):
        t = np.deg2rad(phi + np.array([0.0, 120.0, 240.0]))
        x += list(cx + radius * np.cos(t))
        y += list(cy - radius * np.sin(t))
    return make_atoms({"x": x, "y": y, "frame": np.full(len(x), frame)})


def _owners(atoms, scene):
    """True molecule holding most blobs of each found molecule (atoms are the true blobs)."""
    truth = pd.Series(scene.blobs.molecule.to_numpy(), index=atoms.molecule.to_numpy())
    return truth.groupby(level=0).agg(lambda v: v.mode().iloc[0]).sort_index().to_numpy()


def test_doctests():
    assert doctest.testmod(molecules_module).failed == 0
    assert doctest.testmod(scenes_module).failed == 0


# ------------------------------------------------------------------ the simulator


def test_scene_truth_is_consistent(scene):
    mol, blobs = scene.molecules, scene.blobs
    assert scene.image.shape == (384, 384) and len(mol) > 150
    assert ((mol.azimuth >= 0) & (mol.azimuth < 120)).all()
    assert mol.switching.mean() == pytest.approx(0.15, abs=0.01)
    calm = mol[~mol.switching & ~mol.edge]
    mine = blobs[blobs.molecule.isin(calm.index)]
    assert (mine.groupby("molecule").size() == 3).all()
    centre = calm.loc[mine.molecule]
    dx, dy = mine.x.to_numpy() - centre.x.to_numpy(), mine.y.to_numpy() - centre.y.to_numpy()
    np.testing.assert_allclose(np.hypot(dx, dy), 6.0, atol=1e-9)
    # azimuth: one blob at the molecule's azimuth, counter-clockwise as displayed (y down)
    blob_az = np.degrees(np.arctan2(-dy, dx)) % 120
    assert np.abs(_wrap(blob_az - centre.azimuth.to_numpy())).max() < 1e-6


def test_switching_molecules_show_both_states(scene):
    mol, blobs = scene.molecules, scene.blobs
    switching = mol[mol.switching & ~mol.edge]
    assert len(switching) >= 10
    for mid, row in switching.iterrows():
        mine = blobs[blobs.molecule == mid]
        above, below = mine[mine.state == 0], mine[mine.state == 1]
        assert len(above) and len(below), "the switch must show in the image"
        assert (np.round(above.y) < row.switch_row).all()
        assert (np.round(below.y) >= row.switch_row).all()
    assert (mol.loc[~mol.switching, "switch_row"] == -1).all()
    rotated = mol[mol.kind == "rotate"]
    assert (np.abs(_wrap(rotated.azimuth_after - rotated.azimuth)) >= 29.9).all()


def test_scene_is_reproducible_and_checks_input():
    a = atomstat.simulate_molecules((64, 64), rng=3)
    b = atomstat.simulate_molecules((64, 64), rng=3)
    np.testing.assert_array_equal(a.image, b.image)
    pd.testing.assert_frame_equal(a.molecules, b.molecules)
    with pytest.raises(ValueError, match="fold"):
        atomstat.simulate_molecules((64, 64), fold=0)
    with pytest.raises(ValueError, match="switch must"):
        atomstat.simulate_molecules((64, 64), switch="explode")
    with pytest.raises(ValueError, match="switching"):
        atomstat.simulate_molecules((64, 64), switching=1.5)
    with pytest.raises(TypeError, match="imaging"):
        atomstat.simulate_molecules((64, 64), imaging="stm")


# ------------------------------------------------------------------ grouping


def test_grouping_recovers_the_true_molecules(scene):
    ids = atomstat.group_molecules(_noisy_blobs(scene, 0.3))
    table = pd.crosstab(ids.to_numpy(), scene.blobs.molecule.to_numpy()) > 0
    calm = scene.molecules.index[~scene.molecules.switching & ~scene.molecules.edge]
    assert (table[calm].sum(axis=0) == 1).all(), "a true molecule is split"
    mine = table[calm].any(axis=1)
    assert (table[mine].sum(axis=1) == 1).all(), "a found molecule mixes two true ones"
    # two switching neighbours may come closer than the cut; most molecules stay apart
    assert (table.sum(axis=1) == 1).mean() > 0.98
    assert 6.0 * np.sqrt(3) < ids.attrs["max_distance"] < 27 - 12


def test_grouping_with_a_given_distance_and_per_frame():
    one = _triangles([(20, 20), (50, 20)], [0, 30])
    two = _triangles([(20, 20), (50, 20)], [60, 90], frame=1)  # same place, next frame
    atoms = pd.concat([one, two], ignore_index=True).rename_axis("atom_id")
    ids = atomstat.group_molecules(atoms, max_distance=12.0)
    assert ids.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert atomstat.group_molecules(atoms, max_distance=40.0).nunique() == 2


# ------------------------------------------------------------------ orientation and misfits


def test_orientation_and_switching_from_true_blobs(scene):
    atoms, mol = atomstat.find_molecules(_noisy_blobs(scene, 0.1))
    true = scene.molecules.loc[_owners(atoms, scene)].set_index(mol.index)
    assert mol.attrs["symmetry"] == 3
    calm = ~true.switching & ~true.edge
    err = np.abs(_wrap(mol.orientation[calm] - true.azimuth[calm]))
    assert np.median(err) < 0.5 and err.max() < 2.0
    sw = true.switching & ~true.edge
    flagged = mol.misfit & ~true.edge
    assert (flagged & sw).sum() / sw.sum() >= 0.9  # recall
    assert (flagged & sw).sum() / flagged.sum() >= 0.9  # precision
    # molecules cut by the border are marked, never flagged
    assert not mol.misfit[mol.edge].any()
    assert mol.edge[true.edge & (mol.n_blobs < 3)].all()


def test_template_given_by_the_user_sets_the_reference():
    centres = [(20 + 30 * i, 20 + 30 * j) for i in range(3) for j in range(3)]
    azimuths = np.linspace(0, 110, 9)
    atoms = _triangles(centres, azimuths)
    _, learned = atomstat.find_molecules(atoms)
    np.testing.assert_allclose(learned.orientation, azimuths, atol=1e-6)
    np.testing.assert_allclose(learned.attrs["template"][0], [6.0, 0.0], atol=1e-6)
    t = np.deg2rad([10.0, 130.0, 250.0])
    template = np.column_stack([6 * np.cos(t), -6 * np.sin(t)])  # turned by 10 degrees
    _, given = atomstat.find_molecules(atoms, template=template)
    np.testing.assert_allclose(_wrap(given.orientation - (azimuths - 10.0)), 0, atol=1e-6)
    np.testing.assert_allclose(given[["x", "y"]], np.array(centres, float), atol=1e-9)


def test_centre_blob_and_symmetry_inference():
    scene = atomstat.simulate_molecules((160, 160), centre=0.6, switching=0.0, rng=5)
    atoms, mol = atomstat.find_molecules(scene.blobs.drop(columns=["molecule"]))
    assert mol.attrs["symmetry"] == 3 and len(mol.attrs["template"]) == 4
    true = scene.molecules.loc[_owners(atoms, scene)].set_index(mol.index)
    inner = ~true.edge
    assert (mol.n_blobs[inner] == 4).all()
    assert np.abs(_wrap(mol.orientation - true.azimuth)[inner]).max() < 1e-6
    assert not mol.misfit.any()


def test_two_fold_molecules_follow_the_dumbbell_angle_convention():
    angles = np.array([5.0, 35.0, 80.0, 120.0, 170.0])
    x = np.concatenate(
        [
            [30 * i + 4 * np.cos(np.deg2rad(a)), 30 * i - 4 * np.cos(np.deg2rad(a))]
            for i, a in enumerate(angles)
        ]
    )
    y = np.concatenate(
        [[50 - 4 * np.sin(np.deg2rad(a)), 50 + 4 * np.sin(np.deg2rad(a))] for a in angles]
    )
    atoms = make_atoms({"x": x + 20, "y": y})
    _, mol = atomstat.find_molecules(atoms)
    assert mol.attrs["symmetry"] == 2
    dumbbells = atomstat.pair_dumbbells(atoms, separation=8.0)
    np.testing.assert_allclose(mol.orientation, angles, atol=1e-6)
    np.testing.assert_allclose(np.sort(dumbbells.angle), np.sort(angles), atol=1e-6)


def test_movies_are_fitted_frame_by_frame():
    one = _triangles([(20, 20), (50, 20)], [10, 40])
    two = _triangles([(21, 20), (51, 21)], [15, 45], frame=1)
    atoms = pd.concat([one, two], ignore_index=True).rename_axis("atom_id")
    atoms, mol = atomstat.find_molecules(atoms)
    assert mol.frame.tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(mol.orientation, [10, 40, 15, 45], atol=1e-6)
    assert (atoms.groupby("molecule").frame.nunique() == 1).all()


# ------------------------------------------------------------------ schema and bad input


def test_empty_input_gives_the_full_schema():
    atoms, mol = atomstat.find_molecules(empty_atoms())
    assert len(atoms) == 0 and atoms["molecule"].dtype == np.int64
    assert list(mol.columns) == list(MOLECULE_COLUMNS) and len(mol) == 0
    assert {c: str(t) for c, t in mol.dtypes.items()} == MOLECULE_COLUMNS
    assert mol.index.name == "molecule_id"


def test_bad_input_gives_clear_errors():
    atoms = _triangles([(20, 20), (50, 20)], [0, 30])
    with pytest.raises(TypeError, match="atoms table"):
        atomstat.find_molecules(atoms[["x", "y"]].to_numpy())
    with pytest.raises(ValueError, match="lacks column"):
        atomstat.find_molecules(atoms.drop(columns=["frame"]))
    with pytest.raises(ValueError, match="lacks column.*molecule"):
        atomstat.fit_molecules(atoms)
    with pytest.raises(ValueError, match="symmetry=4 does not fit"):
        atomstat.find_molecules(atoms, symmetry=4)
    with pytest.raises(TypeError, match="symmetry must be an integer"):
        atomstat.find_molecules(atoms, symmetry=1.5)
    with pytest.raises(ValueError, match="symmetry must be at least 1"):
        atomstat.find_molecules(atoms, symmetry=0)
    with pytest.raises(ValueError, match="template must be"):
        atomstat.find_molecules(atoms, template=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="misfit must be"):
        atomstat.find_molecules(atoms, misfit=-1)
    with pytest.raises(ValueError, match="max_distance must be"):
        atomstat.find_molecules(atoms, max_distance=0)
    lonely = make_atoms({"x": [10.0], "y": [10.0]})
    with pytest.raises(ValueError, match="no molecule has two or more blobs"):
        atomstat.find_molecules(lonely)
    # with a template, a lone blob is a molecule with a wrong blob count
    _, mol = atomstat.find_molecules(lonely, template=[[6, 0], [-3, 5.2], [-3, -5.2]])
    assert mol.n_blobs.tolist() == [1] and mol.orientation.isna().all()


# ------------------------------------------------------------------ end to end and plot


def test_end_to_end_with_the_shipped_model():
    scene = atomstat.simulate_molecules((192, 192), switching=0.2, rng=21)
    atoms, mol = atomstat.find_molecules(atomstat.analyze(scene.image))
    ti, fi, _ = match_points(scene.blobs[["x", "y"]].to_numpy(), atoms[["x", "y"]].to_numpy())
    assert len(ti) >= 0.95 * len(scene.blobs)
    owner = np.full(len(atoms), -1)
    owner[fi] = scene.blobs.molecule.to_numpy()[ti]
    first = pd.Series(owner, index=atoms.molecule.to_numpy())
    first = first[first >= 0].groupby(level=0).agg(lambda v: v.mode().iloc[0])
    true = scene.molecules.loc[first.to_numpy()].set_index(first.index)
    fitted = mol.loc[true.index]
    calm = ~true.switching & ~true.edge & (fitted.n_blobs == 3)
    err = np.abs(_wrap(fitted.orientation[calm] - true.azimuth[calm]))
    assert calm.sum() >= 30 and np.median(err) < 1.5
    found = set(true.index[fitted.misfit & true.switching])
    switching = scene.molecules.index[scene.molecules.switching & ~scene.molecules.edge]
    assert len(found) >= len(switching) - 1


def test_plot_molecules_returns_axes(scene):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from atomstat.plot import plot_molecules

    atoms, mol = atomstat.find_molecules(scene.blobs.drop(columns=["molecule"]))
    ax = plot_molecules(scene.image, mol, atoms)
    assert len(ax.collections) >= 3  # blobs, bars, misfit rings
    plt.close(ax.figure)
