"""Tests for atomstat.sublattices on lattices whose sites are known.

The tables stand for what the atom finder returns: positions with jitter,
intensities with noise, vacancies, and a weak sublattice that is only partly
found. Sites are numbered by brightness, so the truth is compared as given.
"""

import numpy as np
import pandas as pd
import pytest

from atomstat.lattices import _rot
from atomstat.sublattices import fit_lattice, sublattices
from atomstat.table import make_atoms


def crystal(
    cell,
    offsets,
    ratios,
    *,
    shape=(400, 400),
    rotation=0.0,
    vacancies=0.05,
    jitter=0.4,
    noise=0.08,
    found=None,
    rng=0,
):
    """Atoms of a lattice with basis ``cell`` (rows) and ``offsets`` (fractions), and the
    truth: ``site`` (index into ``offsets``). ``found`` is the share of each site kept."""
    rng = np.random.default_rng(rng)
    cell = np.asarray(cell, float) @ _rot(rotation).T
    n = int(max(shape) / min(np.linalg.norm(cell, axis=1))) + 3
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1))
    origins = np.stack([i.ravel(), j.ravel()], 1) @ cell
    pts, site = [], []
    for s, off in enumerate(np.asarray(offsets, float)):
        pts.append(origins + off @ cell)
        site.append(np.full(len(origins), s))
    pts = np.concatenate(pts) + np.array(shape[::-1]) / 2
    site = np.concatenate(site)
    keep = (pts > 5).all(1) & (pts[:, 0] < shape[1] - 5) & (pts[:, 1] < shape[0] - 5)
    keep &= rng.random(len(pts)) >= vacancies
    if found is not None:
        keep &= rng.random(len(pts)) < np.asarray(found)[site]
    pts, site = pts[keep] + rng.normal(0, jitter, (keep.sum(), 2)), site[keep]
    level = np.asarray(ratios, float)[site] * rng.normal(1, noise, len(site)) * 1000
    return make_atoms({"x": pts[:, 0], "y": pts[:, 1], "intensity": level, "site": site})


def accuracy(out):
    return float((out["sublattice"] == out["site"]).mean())


HONEYCOMB = ([[20.0, 0], [10.0, 20 * np.sqrt(3) / 2]], [[0, 0], [1 / 3, 1 / 3]])


@pytest.mark.parametrize("ratio", [0.1, 0.25, 0.5])
@pytest.mark.parametrize("rotation", [0.0, 23.0, 71.0])
def test_mos2_like_weak_sublattice_is_assigned(ratio, rotation):
    cell, offsets = HONEYCOMB
    atoms = crystal(cell, offsets, [1.0, ratio], rotation=rotation, noise=0.15, rng=3)
    out = sublattices(atoms)
    assert accuracy(out) >= 0.99
    info = out.attrs["sublattices"][0]
    assert len(info["sites"]) == 2
    # the basis found is the lattice's (20 px), not the 11.5 px Mo-S vector
    assert np.allclose(np.sort(np.linalg.norm(info["basis"], axis=1)), 20.0, atol=0.3)


def test_half_found_weak_sublattice_still_counts():
    cell, offsets = HONEYCOMB
    atoms = crystal(cell, offsets, [1.0, 0.3], found=[1.0, 0.4], rotation=11, rng=4)
    out = sublattices(atoms)
    assert set(out["sublattice"]) == {0, 1}
    assert accuracy(out) >= 0.99


@pytest.mark.parametrize("rotation", [0.0, 37.0])
def test_perovskite_a_and_b_share_one_geometric_lattice(rotation):
    # A at the corners, B at the centre: A->B is a translation of the geometry
    # alone, but joins a bright column to a faint one
    cell = [[24.0, 0], [0, 24.0]]
    atoms = crystal(cell, [[0, 0], [0.5, 0.5]], [1.0, 0.35], rotation=rotation, rng=5)
    out = sublattices(atoms)
    assert accuracy(out) >= 0.99
    side = np.linalg.norm(out.attrs["sublattices"][0]["basis"], axis=1)
    assert np.allclose(side, 24.0, atol=0.3)


def test_equal_sites_are_told_apart_by_position_alone():
    # graphene: both sites alike in brightness, so only the geometry separates them
    cell, offsets = HONEYCOMB
    atoms = crystal(cell, offsets, [1.0, 1.0], rotation=40, rng=6)
    out = sublattices(atoms)
    assert set(out["sublattice"]) == {0, 1}
    same = pd.crosstab(out["sublattice"], out["site"]).to_numpy()
    assert np.trace(same) / same.sum() >= 0.99 or np.trace(same[::-1]) / same.sum() >= 0.99


def test_bent_lattice_is_followed_locally():
    # a smooth displacement of a third of a cell across the image: a global cell
    # would put the far side on the wrong site
    cell, offsets = HONEYCOMB
    atoms = crystal(cell, offsets, [1.0, 0.4], shape=(600, 600), rng=7)
    xy = atoms[["x", "y"]].to_numpy()
    atoms["x"] = xy[:, 0] + 7.0 * np.sin(xy[:, 1] / 600 * np.pi)
    out = sublattices(atoms)
    assert accuracy(out) >= 0.98


def test_adatoms_sit_on_no_site():
    cell, offsets = HONEYCOMB
    atoms = crystal(cell, offsets, [1.0, 0.4], rng=8)
    rng = np.random.default_rng(0)
    # adatoms at the hexagon centres (2/3, 2/3), where no lattice atom is
    centres = (np.array([[2 / 3, 2 / 3]]) + rng.integers(-6, 6, (12, 2))) @ np.array(cell)
    centres += np.array([200.0, 200.0])
    extra = make_atoms(
        {
            "x": centres[:, 0],
            "y": centres[:, 1],
            "intensity": np.full(12, 500.0),
            "site": np.full(12, -1),
        }
    )
    out = sublattices(pd.concat([atoms, extra], ignore_index=True))
    assert accuracy(out) >= 0.99
    assert (out["sublattice"].iloc[-12:] == -1).all()
    tol = out.attrs["sublattices"][0]["tolerance"]
    assert (out["site_distance"].iloc[-12:] > tol).all()
    assert (out["site_distance"].iloc[:-12] <= tol).mean() >= 0.99
    assert out["sublattice_nn_distance"].iloc[-12:].isna().all()
    # intensity is relative to the same sublattice: the faint sites sit at 1 too
    assert abs(out["intensity_relative"].iloc[:-12].median() - 1) < 0.02


def test_frames_are_fitted_apart_and_sites_ordered_by_brightness():
    cell, offsets = HONEYCOMB
    a = crystal(cell, offsets, [0.4, 1.0], rotation=5, rng=9)  # site 1 is the bright one
    b = crystal(cell, offsets, [1.0, 0.4], rotation=50, rng=10).assign(frame=1)
    out = sublattices(pd.concat([a, b], ignore_index=True))
    bright_first = np.where(out["frame"] == 0, 1 - out["site"], out["site"])
    assert (out["sublattice"] == bright_first).mean() >= 0.99
    assert [f["frame"] for f in out.attrs["sublattices"]] == [0, 1]


def test_without_intensity_geometry_still_works():
    cell, offsets = HONEYCOMB
    atoms = crystal(cell, offsets, [1.0, 0.3], rng=11).drop(columns="intensity")
    out = sublattices(atoms)
    assert set(out["sublattice"]) == {0, 1}


def test_fit_lattice_basis_of_a_square_lattice():
    atoms = crystal([[15.0, 0], [0, 15.0]], [[0, 0]], [1.0], rotation=30, rng=12)
    basis, shifts = fit_lattice(atoms[["x", "y"]].to_numpy())
    assert np.allclose(np.linalg.norm(basis, axis=1), 15.0, atol=0.1)
    assert abs(abs(np.linalg.det(basis)) - 225.0) < 3


def test_too_few_atoms_give_minus_one_and_an_empty_table_works():
    atoms = make_atoms({"x": [1.0, 5.0, 9.0], "y": [1.0, 2.0, 3.0]})
    out = sublattices(atoms)
    assert (out["sublattice"] == -1).all()
    empty = sublattices(make_atoms({}))
    assert list(empty["sublattice"]) == [] and empty["sublattice"].dtype == np.int64


def test_bad_input_is_refused_by_name():
    with pytest.raises(TypeError, match="atoms table"):
        sublattices(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="tolerance"):
        sublattices(make_atoms({"x": [1.0], "y": [1.0]}), tolerance=2)
    with pytest.raises(ValueError, match="'x'"):
        sublattices(make_atoms({"x": [np.nan], "y": [1.0]}))


def test_a_second_fit_of_the_same_atoms_is_the_first_ones_and_cannot_be_spoiled():
    from atomstat.simulate import simulate_lattice as _simulate
    from atomstat.sublattices import _fit_lattice, fit_lattice

    xy = _simulate("hexagonal", shape=(160, 160), spacing=12, rng=3).atoms[["x", "y"]].to_numpy()
    first = fit_lattice(xy)
    first[0][:] = 0.0  # the caller's copy
    again = fit_lattice(xy.copy())
    fresh = _fit_lattice(np.asarray(xy, np.float64), None)
    assert np.array_equal(again[0], fresh[0]) and np.array_equal(again[1], fresh[1])
    moved = xy + [0.5, 0.0]  # other atoms: fitted anew
    assert np.allclose(fit_lattice(moved)[0], fresh[0])
    level = np.zeros(len(xy))
    assert np.array_equal(fit_lattice(xy, level)[0], _fit_lattice(xy, level)[0])
