"""Tests for atomstat.describe: neighbour distances and box intensities on known layouts."""

import numpy as np
import pytest

from atomstat.describe import add_intensity, add_neighbours
from atomstat.table import ATOM_COLUMNS, empty_atoms, make_atoms


def _grid(nx, ny, ax, ay, origin=(5.0, 7.0), frame=0):
    x, y = np.meshgrid(origin[0] + ax * np.arange(nx), origin[1] + ay * np.arange(ny))
    return {"x": x.ravel(), "y": y.ravel(), "frame": np.full(x.size, frame)}


def test_square_lattice_nn_and_nnn_are_the_spacing():
    """Every atom of a square lattice, edges and corners included, has two neighbours at a."""
    atoms = add_neighbours(make_atoms(_grid(6, 5, 4.5, 4.5)))
    np.testing.assert_allclose(atoms.nn_distance, 4.5)
    np.testing.assert_allclose(atoms.nnn_distance, 4.5)


def test_rectangular_lattice():
    atoms = add_neighbours(make_atoms(_grid(6, 5, 3.0, 5.0)))
    np.testing.assert_allclose(atoms.nn_distance, 3.0)
    # atoms at the ends of a row have one neighbour at a, the next is b away
    x = atoms.x.to_numpy()
    end = np.isclose(x, x.min()) | np.isclose(x, x.max())
    np.testing.assert_allclose(atoms.nnn_distance[~end], 3.0)
    np.testing.assert_allclose(atoms.nnn_distance[end], 5.0)


def test_hexagonal_lattice_interior():
    a = 6.0
    i, j = np.meshgrid(np.arange(8), np.arange(8))
    x = 10 + a * (i + 0.5 * (j % 2))
    y = 10 + a * np.sqrt(3) / 2 * j
    atoms = add_neighbours(make_atoms({"x": x.ravel(), "y": y.ravel()}))
    np.testing.assert_allclose(atoms.nn_distance, a)
    np.testing.assert_allclose(atoms.nnn_distance, a)


def test_dimers_nn_is_the_bond_and_nnn_the_next_dimer():
    """Dimers of bond 3 px on a 20 px square grid: nn = 3, nnn = 20 - 3 = 17
    (20 for the outer atom of the dimers at the left and right ends of a row)."""
    centres = _grid(4, 4, 20.0, 20.0, origin=(10.0, 10.0))
    x = np.concatenate([centres["x"] - 1.5, centres["x"] + 1.5])
    y = np.concatenate([centres["y"], centres["y"]])
    atoms = add_neighbours(make_atoms({"x": x, "y": y}))
    np.testing.assert_allclose(atoms.nn_distance, 3.0)
    outer = np.isclose(x, x.min()) | np.isclose(x, x.max())
    assert outer.sum() == 8
    np.testing.assert_allclose(atoms.nnn_distance[~outer], 17.0)
    np.testing.assert_allclose(atoms.nnn_distance[outer], 20.0)


def test_distances_are_euclidean():
    atoms = add_neighbours(make_atoms({"x": [0.0, 3.0, 0.0], "y": [0.0, 0.0, 4.0]}))
    np.testing.assert_allclose(atoms.nn_distance, [3.0, 3.0, 4.0])
    np.testing.assert_allclose(atoms.nnn_distance, [4.0, 5.0, 5.0])


def test_frames_do_not_see_each_other():
    """Frame 1 is frame 0 moved by 0.5 px: mixing frames would give distances of 0.5."""
    f0 = _grid(5, 5, 8.0, 8.0, frame=0)
    f1 = _grid(5, 5, 8.0, 8.0, origin=(5.5, 7.0), frame=1)
    f2 = {"x": [100.0, 102.0], "y": [100.0, 100.0], "frame": [2, 2]}
    f3 = {"x": [5.2], "y": [7.1], "frame": [3]}
    columns = {k: np.concatenate([f[k] for f in (f0, f1, f2, f3)]) for k in ("x", "y", "frame")}
    atoms = add_neighbours(make_atoms(columns))
    for f in (0, 1):
        rows = atoms[atoms.frame == f]
        np.testing.assert_allclose(rows.nn_distance, 8.0)
        np.testing.assert_allclose(rows.nnn_distance, 8.0)
    two = atoms[atoms.frame == 2]
    np.testing.assert_allclose(two.nn_distance, 2.0)
    assert two.nnn_distance.isna().all(), "two atoms have no second neighbour"
    one = atoms[atoms.frame == 3]
    assert one.nn_distance.isna().all() and one.nnn_distance.isna().all()


def test_frames_need_not_be_sorted():
    a = make_atoms({"x": [0.0, 50.0, 3.0, 52.0], "y": [0.0, 0.0, 0.0, 0.0], "frame": [0, 1, 0, 1]})
    out = add_neighbours(a)
    np.testing.assert_allclose(out.nn_distance, [3.0, 2.0, 3.0, 2.0])


def test_add_neighbours_keeps_rows_index_and_input():
    atoms = make_atoms(_grid(3, 3, 5.0, 5.0), start_id=100, attrs={"units": "nm"})
    before = atoms.copy()
    out = add_neighbours(atoms)
    assert out.index.tolist() == atoms.index.tolist()
    assert list(out.columns) == list(atoms.columns)
    assert out.attrs["units"] == "nm"
    assert atoms.nn_distance.isna().all(), "the input table is not modified"
    assert atoms.equals(before)


def test_add_neighbours_on_an_empty_table():
    out = add_neighbours(empty_atoms())
    assert len(out) == 0 and list(out.columns) == list(ATOM_COLUMNS)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_intensity_box_sums_on_a_constant_image(k):
    value = 2.5
    image = np.full((30, 40), value)
    atoms = make_atoms(
        {
            "x": [20.0, 0.0, 0.0, 39.0, 20.2, 20.0],
            "y": [15.0, 0.0, 15.0, 29.0, 0.4, 28.6],
        }
    )
    out = add_intensity(atoms, image, half_width=k)
    side = 2 * k + 1
    expected = value * np.array(
        [
            side * side,  # interior
            (k + 1) * (k + 1),  # top-left corner
            (k + 1) * side,  # left edge
            (k + 1) * (k + 1),  # bottom-right corner
            side * (k + 1),  # top edge (y rounds to 0)
            side * (k + 1),  # bottom edge (y rounds to 29)
        ]
    )
    np.testing.assert_allclose(out.intensity, expected)


def test_intensity_sums_the_box_around_the_rounded_centre():
    image = np.zeros((20, 20))
    image[10, 10] = 7.0
    image[10, 13] = 100.0
    atoms = make_atoms({"x": [10.4, 9.6, 11.6, 15.6], "y": [9.6, 10.4, 10.0, 10.0]})
    out = add_intensity(atoms, image, half_width=1)
    # boxes: cols 9-11, 9-11, 11-13, 15-17
    np.testing.assert_allclose(out.intensity, [7.0, 7.0, 100.0, 0.0])


def test_intensity_of_a_stack_follows_the_frame_column():
    image = np.stack([np.full((16, 16), 1.0), np.full((16, 16), 3.0), np.full((16, 16), 5.0)])
    atoms = make_atoms({"x": [8.0, 8.0, 8.0], "y": [8.0, 8.0, 8.0], "frame": [2, 0, 1]})
    out = add_intensity(atoms, image, half_width=1)
    np.testing.assert_allclose(out.intensity, [45.0, 9.0, 27.0])


def test_add_intensity_keeps_the_input_and_handles_empty():
    atoms = make_atoms({"x": [3.0], "y": [3.0]})
    add_intensity(atoms, np.ones((8, 8)))
    assert atoms.intensity.isna().all()
    out = add_intensity(empty_atoms(), np.ones((8, 8)))
    assert len(out) == 0 and "intensity" in out.columns


def test_relative_intensity_and_neighbours_follow_the_sublattice():
    from atomstat.describe import add_relative_intensity, add_sublattice_neighbours

    # a square lattice of bright A (10 px apart) with faint B at the cell centres
    a = np.array([(i, j) for j in range(8) for i in range(8)], float) * 10
    b = a + 5
    level = np.r_[np.full(64, 1000.0), np.full(64, 300.0)]
    level[64 + 27] = 150.0  # one B-site dopant at half the B level
    atoms = make_atoms(
        {
            "x": np.r_[a[:, 0], b[:, 0]],
            "y": np.r_[a[:, 1], b[:, 1]],
            "intensity": level,
            "sublattice": np.r_[np.zeros(64, int), np.ones(64, int)],
        }
    )
    rel = add_relative_intensity(atoms)["intensity_relative"].to_numpy()
    assert np.allclose(np.delete(rel, 64 + 27), 1.0)
    assert rel[64 + 27] == 0.5
    pooled = add_relative_intensity(atoms, by=None)["intensity_relative"].to_numpy()
    assert pooled[:64].max() > 1.5  # against a mixture of A and B neighbours
    nn = add_sublattice_neighbours(atoms)["sublattice_nn_distance"]
    assert np.allclose(nn, 10.0)
    with pytest.raises(ValueError, match="sublattice"):
        add_sublattice_neighbours(atoms.drop(columns="sublattice"))
