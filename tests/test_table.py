"""Tests for atomstat.table: the schema of the atoms table and its validation."""

import numpy as np
import pandas as pd
import pytest

import atomstat
from atomstat.table import ATOM_COLUMNS, INDEX_NAME, empty_atoms, make_atoms, validate_atoms


def test_empty_table_has_every_column_with_its_dtype():
    atoms = empty_atoms()
    assert len(atoms) == 0
    assert list(atoms.columns) == list(ATOM_COLUMNS)
    for name, dtype in ATOM_COLUMNS.items():
        assert atoms[name].dtype == np.dtype(dtype), name
    assert atoms.index.name == INDEX_NAME
    assert atoms.attrs["pixel_size"] == 1.0
    assert atoms.attrs["units"] == "px"


def test_schema_names_the_contract_columns():
    contract = {"frame", "x", "y", "area", "perimeter", "circularity", "orientation"}
    contract |= {"axis_major", "axis_minor", "eccentricity", "intensity"}
    contract |= {"nn_distance", "nnn_distance"}
    assert contract <= set(ATOM_COLUMNS)
    assert atomstat.ATOM_COLUMNS is ATOM_COLUMNS
    assert ATOM_COLUMNS["frame"].startswith("int")
    assert ATOM_COLUMNS["x"] == ATOM_COLUMNS["y"] == "float64"


def test_make_atoms_fills_missing_columns_and_casts():
    atoms = make_atoms({"x": [1, 2, 3], "y": np.array([4.5, 5.5, 6.5], np.float32)})
    assert len(atoms) == 3
    assert list(atoms.columns) == list(ATOM_COLUMNS)
    for name, dtype in ATOM_COLUMNS.items():
        assert atoms[name].dtype == np.dtype(dtype), name
    np.testing.assert_array_equal(atoms["x"], [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(atoms["y"], [4.5, 5.5, 6.5])
    np.testing.assert_array_equal(atoms["frame"], [0, 0, 0])
    assert not atoms["edge"].any()
    assert atoms["area"].isna().all()
    assert atoms["nn_distance"].isna().all()


def test_make_atoms_keeps_extra_columns_after_the_schema():
    atoms = make_atoms({"x": [1.0, 2.0], "y": [3.0, 4.0], "species": ["host", "dopant"]})
    assert list(atoms.columns[: len(ATOM_COLUMNS)]) == list(ATOM_COLUMNS)
    assert list(atoms.columns[len(ATOM_COLUMNS) :]) == ["species"]
    assert atoms["species"].tolist() == ["host", "dopant"]


def test_make_atoms_index_and_attrs():
    atoms = make_atoms(
        {"x": [0.0, 1.0, 2.0]}, attrs={"pixel_size": 0.05, "units": "nm"}, start_id=7
    )
    assert atoms.index.name == INDEX_NAME
    assert atoms.index.tolist() == [7, 8, 9]
    assert atoms.attrs["pixel_size"] == 0.05
    assert atoms.attrs["units"] == "nm"
    assert "source" in atoms.attrs


def test_make_atoms_attrs_are_not_shared_between_tables():
    a = make_atoms({"x": [0.0]})
    a.attrs["units"] = "nm"
    assert make_atoms({"x": [0.0]}).attrs["units"] == "px"
    assert empty_atoms().attrs["units"] == "px"


def test_make_atoms_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="same length") as info:
        make_atoms({"x": [0.0, 1.0, 2.0], "y": [0.0, 1.0]})
    assert "2" in str(info.value) and "3" in str(info.value)


def test_validate_atoms_accepts_a_table_and_returns_it():
    atoms = make_atoms({"x": [0.0], "y": [1.0]})
    assert validate_atoms(atoms) is atoms
    assert validate_atoms(empty_atoms()) is not None


def test_validate_atoms_rejects_a_non_table():
    with pytest.raises(TypeError, match="ndarray"):
        validate_atoms(np.zeros((3, 2)))
    with pytest.raises(TypeError, match="dict"):
        validate_atoms({"x": [0.0], "y": [0.0], "frame": [0]})


@pytest.mark.parametrize("missing", ["frame", "x", "y"])
def test_validate_atoms_names_the_missing_column(missing):
    table = pd.DataFrame({c: [0.0] for c in ("frame", "x", "y") if c != missing})
    with pytest.raises(ValueError, match=repr(missing)):
        validate_atoms(table)


def test_validate_atoms_custom_required_columns():
    atoms = make_atoms({"x": [0.0], "y": [1.0]})
    with pytest.raises(ValueError, match="particle"):
        validate_atoms(atoms, required=("x", "particle"))
