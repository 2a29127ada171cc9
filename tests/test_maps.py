"""Stored probability maps: analyze once, re-threshold without the network."""

import numpy as np
import pandas as pd
import pytest

import atomstat
from atomstat.maps import analyze_maps, blob_contours, match_ids, relocate
from atomstat.simulate import simulate_lattice


@pytest.fixture(scope="module")
def lattice():
    return simulate_lattice("square", shape=(128, 128), spacing=16, sigma=2.2, rotation=0, rng=3)


def test_analyze_maps_matches_analyze(lattice, threshold_model):
    atoms, prob = analyze_maps(lattice.image, model=threshold_model)
    expected = atomstat.analyze(lattice.image, model=threshold_model)
    assert prob.shape == lattice.image.shape and prob.dtype == np.float32
    pd.testing.assert_frame_equal(atoms, expected)
    assert atoms.attrs["sigma"] == expected.attrs["sigma"]


def test_relocate_is_locate_at_the_new_threshold(lattice, threshold_model):
    atoms, prob = analyze_maps(lattice.image, model=threshold_model)
    for level in (0.2, 0.8):
        again = relocate(prob, lattice.image, threshold=level, attrs=atoms.attrs)
        direct = atomstat.locate(prob, lattice.image, threshold=level, sigma=atoms.attrs["sigma"])
        pd.testing.assert_frame_equal(again, direct, check_like=False)
        assert again.attrs["threshold"] == level
        assert again.attrs["pixel_size"] == atoms.attrs["pixel_size"]
    # A higher level shrinks every blob: the areas fall.
    low = relocate(prob, lattice.image, threshold=0.2, attrs=atoms.attrs)
    high = relocate(prob, lattice.image, threshold=0.8, attrs=atoms.attrs)
    assert high.area.median() < low.area.median()


def test_stack_progress_and_frames(lattice, threshold_model):
    stack = np.stack([lattice.image, np.roll(lattice.image, 5, axis=1)])
    calls = []
    atoms, prob = analyze_maps(
        stack, model=threshold_model, callback=lambda d, n: calls.append((d, n))
    )
    assert prob.shape == stack.shape
    assert calls == [(2, 2)]
    assert set(atoms.frame) == {0, 1}
    assert atoms.index.is_monotonic_increasing and atoms.index[0] == 0


def test_blob_contours_belong_to_their_atom():
    prob = np.zeros((40, 40), np.float32)
    yy, xx = np.mgrid[:40, :40]
    prob[np.hypot(xx - 10, yy - 12) < 4] = 1
    prob[np.hypot(xx - 28, yy - 30) < 5] = 1
    atoms = pd.DataFrame({"x": [28.0, 10.0], "y": [30.0, 12.0]}, index=[7, 3])
    v = blob_contours(prob, 0.5, atoms)
    for atom_id, (x, y), r in ((7, (28, 30), 5), (3, (10, 12), 4)):
        pts = v[(v.atom_id == atom_id) & v.x.notna()]
        radius = np.hypot(pts.x - x, pts.y - y)
        assert abs(radius.mean() - r) < 0.6
    assert v.x.isna().sum() == 2  # one break after each contour


def test_blob_contours_without_atoms_and_bad_input():
    prob = np.zeros((20, 20), np.float32)
    prob[5:9, 5:9] = 1
    far = pd.DataFrame({"x": [18.0], "y": [18.0]}, index=[0])
    assert set(blob_contours(prob, 0.5, far).atom_id) == {-1}
    assert len(blob_contours(prob, 0.5, far.iloc[:0])) == 0
    with pytest.raises(ValueError, match="threshold"):
        blob_contours(prob, 1.5, far)
    with pytest.raises(ValueError, match="prob"):
        blob_contours(prob[None], 0.5, far)
    with pytest.raises(ValueError, match="threshold"):
        analyze_maps(prob, threshold=0)


def test_match_ids_follows_atoms_to_a_new_table(lattice, threshold_model):
    atoms, prob = analyze_maps(lattice.image, model=threshold_model)
    shuffled = atoms.sample(frac=1.0, random_state=0).reset_index(drop=True)
    shuffled["x"] += 0.2
    mapping = match_ids(atoms, shuffled)
    assert len(mapping) == len(atoms)
    for old_id, new_id in list(mapping.items())[:20]:
        assert abs(shuffled.loc[new_id, "y"] - atoms.loc[old_id, "y"]) < 1e-9
    far = shuffled.assign(x=shuffled.x + 50)
    assert len(match_ids(atoms, far, tol=1.0)) < len(atoms) // 2
    with pytest.raises(ValueError, match="tol"):
        match_ids(atoms, shuffled, tol=0)
