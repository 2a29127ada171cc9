"""Bad input to the table, figure and session files: clear errors that name what is wrong."""

import json
import os

import h5py
import numpy as np
import pandas as pd
import pytest

from atomstat.export import read_csv, read_table, write_csv, write_figure, write_table
from atomstat.labels import LabelSet
from atomstat.plot import annotated_figure, label_groups
from atomstat.session import load_session, save_session
from atomstat.table import make_atoms


@pytest.fixture
def atoms():
    rng = np.random.default_rng(0)
    n = 12
    return make_atoms(
        {
            "x": rng.uniform(0, 40, n),
            "y": rng.uniform(0, 30, n),
            "area": rng.normal(20, 1, n),
            "circularity": rng.uniform(0.9, 1.0, n),
        },
        attrs={"pixel_size": 0.02, "units": "nm"},
        start_id=3,
    )


# ------------------------------------------------------------------ writing tables


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".h5"])
@pytest.mark.parametrize("bad", [None, np.zeros((3, 3))], ids=["None", "ndarray"])
def test_write_table_refuses_what_is_not_a_table(tmp_path, suffix, bad):
    with pytest.raises(TypeError, match="DataFrame"):
        write_table(bad, tmp_path / f"t{suffix}")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".h5"])
def test_write_table_refuses_repeated_column_names(tmp_path, atoms, suffix):
    doubled = pd.concat([atoms[["x", "y"]], atoms[["x"]]], axis=1)
    with pytest.raises(ValueError, match=r"repeated column names \['x'\]"):
        write_table(doubled, tmp_path / f"t{suffix}")
    with pytest.raises(ValueError, match="repeated"):
        write_csv(doubled, tmp_path / "t.csv")
    assert os.listdir(tmp_path) == []


def test_write_table_refuses_a_table_without_coordinates_and_bad_metadata(tmp_path, atoms):
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['x', 'y'\]"):
        write_table(pd.DataFrame({"a": [1.0]}), tmp_path / "t.parquet")
    with pytest.raises(TypeError, match="metadata must be a dict"):
        write_table(atoms, tmp_path / "t.parquet", metadata="operator: me")


def test_parquet_names_the_column_of_mixed_types_and_keeps_the_old_file(tmp_path, atoms):
    path = write_table(atoms, tmp_path / "t.parquet")
    before = path.read_bytes()
    mixed = atoms.assign(note=([1, "a"] * len(atoms))[: len(atoms)])
    with pytest.raises(ValueError, match=r"column 'note' mixes value types \(int, str\)"):
        write_table(mixed, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["t.parquet"]
    back = read_table(write_table(mixed, tmp_path / "t.h5"))  # HDF5 keeps such a column
    assert back["note"].tolist() == mixed["note"].tolist()


def test_csv_keeps_values_that_contain_a_hash(tmp_path, atoms):
    notes = ["#d55e00", "a#b", "# not a comment"] + ["x"] * (len(atoms) - 3)
    back = read_table(write_table(atoms.assign(note=notes), tmp_path / "t.csv"))
    assert back["note"].tolist() == notes
    assert back.attrs["units"] == "nm"


# ------------------------------------------------------------------ reading tables


def _garbage(tmp_path, name, content):
    path = tmp_path / name
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    return path


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("other.csv", "hello,world\n1,2\n", r"lacks column\(s\) \['x', 'y'\]"),
        ("header.csv", "# pixel_size: not json\natom_id,x,y\n0,1,2\n", "header line 1"),
        ("note.csv", "# written by hand\natom_id,x,y\n0,1,2\n", "header line 1"),
        ("image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "not UTF-8 text"),
        ("empty.csv", "", "empty"),
        ("text.parquet", "atom_id,x,y\n0,1,2\n", "not a readable Parquet file"),
        ("text.h5", "atom_id,x,y\n0,1,2\n", "not an HDF5 file"),
        ("text.hdf5", "", "not an HDF5 file"),
    ],
)
def test_read_table_says_why_a_file_is_not_a_table(tmp_path, name, content, reason):
    path = _garbage(tmp_path, name, content)
    kind = {".csv": "csv", ".parquet": "parquet"}.get(path.suffix, "hdf5")
    with pytest.raises(ValueError, match=rf"is not an atomstat table \({kind}\): .*{reason}"):
        read_table(path)


def test_read_table_refuses_hdf5_files_without_an_atoms_table(tmp_path, atoms):
    with h5py.File(tmp_path / "image.h5", "w") as f:
        f["image"] = np.zeros((4, 4))
    with pytest.raises(ValueError, match=r"image.h5 is not an atomstat table.*no 'atoms' group"):
        read_table(tmp_path / "image.h5")
    path = write_table(atoms, tmp_path / "t.h5")
    with h5py.File(path, "a") as f:
        del f["atoms/area"]
    with pytest.raises(ValueError, match="no dataset 'area'"):
        read_table(path)


def test_read_table_refuses_a_parquet_file_without_coordinates(tmp_path):
    pd.DataFrame({"a": [1.0, 2.0]}).to_parquet(tmp_path / "other.parquet")
    with pytest.raises(ValueError, match=r"not an atomstat table \(parquet\).*lacks"):
        read_table(tmp_path / "other.parquet")


def test_read_csv_still_reads_tables_other_than_atoms(tmp_path):
    frames = pd.Index([0, 1], name="frame")
    drift = pd.DataFrame({"dx": [0.0, 0.5], "dy": [0.0, -0.5]}, index=frames)
    drift.attrs["units"] = "px"
    back = read_csv(write_csv(drift, tmp_path / "drift.csv"))
    pd.testing.assert_frame_equal(back, drift)
    assert back.attrs == {"units": "px"}
    with pytest.raises(ValueError, match=r"not an atomstat table \(csv\): header line 1"):
        read_csv(_garbage(tmp_path, "bad.csv", "# units: px\nframe,dx\n0,1\n"))


def test_missing_files_and_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.parquet does not exist"):
        read_table(tmp_path / "missing.parquet")
    (tmp_path / "folder.csv").mkdir()
    with pytest.raises(IsADirectoryError, match="folder.csv is a folder"):
        read_table(tmp_path / "folder.csv")


# ------------------------------------------------------------------ missing folders


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".h5"])
def test_writing_into_a_missing_folder_names_the_folder(tmp_path, atoms, suffix):
    folder = tmp_path / "nodir"
    with pytest.raises(FileNotFoundError, match=f"folder {folder} does not exist") as info:
        write_table(atoms, folder / f"t{suffix}")
    assert ".tmp" not in str(info.value)
    with pytest.raises(FileNotFoundError, match=f"folder {folder} does not exist"):
        write_figure(folder / "f.png", np.zeros((30, 40)), atoms)
    with pytest.raises(FileNotFoundError, match=f"folder {folder} does not exist"):
        save_session(folder / "s.json", atoms)
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------ damaged sessions


def _session_doc(tmp_path, atoms):
    labels = LabelSet()
    labels.set_manual([atoms.index[0]], "adatom")
    return json.loads(save_session(tmp_path / "good.json", atoms, labels).read_text())


def _drop_dtype(doc):
    del doc["table"]["columns"][0]["dtype"]


def _unknown_dtype(doc):
    doc["table"]["columns"][1]["dtype"] = "floaty"


def _short_column(doc):
    doc["table"]["columns"][1]["values"].pop()


def _bad_values(doc):
    doc["table"]["columns"][0]["values"][0] = "many"


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda doc: doc.pop("table"), "it holds no 'table'"),
        (_drop_dtype, "column 'frame' needs a 'dtype'"),
        (_unknown_dtype, "column 'x' .floaty. cannot be restored"),
        (_short_column, "column 'x' has 11 values for 12 atoms"),
        (_bad_values, "column 'frame' .int64. cannot be restored"),
        (lambda doc: doc.update(version="2"), "'version' must be an integer, got '2'"),
        (lambda doc: doc.update(table=[]), "'table' must hold"),
        (lambda doc: doc.update(attrs=[1]), "'attrs' must be a JSON object"),
        (lambda doc: doc.update(labels={"classes": {}}), "not a label set"),
    ],
)
def test_a_damaged_session_is_refused_with_the_reason(tmp_path, atoms, damage, reason):
    doc = _session_doc(tmp_path, atoms)
    damage(doc)
    path = tmp_path / "damaged.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=rf"damaged.json is a damaged atomstat session: {reason}"):
        load_session(path)


def test_an_undamaged_session_still_loads(tmp_path, atoms):
    _session_doc(tmp_path, atoms)
    session = load_session(tmp_path / "good.json")
    pd.testing.assert_frame_equal(session.atoms, atoms)
    assert session.labels.ids("adatom") == [atoms.index[0]]


# ------------------------------------------------------------------ figures


@pytest.mark.parametrize(
    ("table", "error", "message"),
    [
        (None, TypeError, "DataFrame"),
        (pd.DataFrame({"a": [1]}), ValueError, r"lacks column\(s\) \['x', 'y'\]"),
    ],
)
def test_figures_refuse_what_is_not_an_atoms_table(tmp_path, table, error, message):
    image = np.zeros((30, 40))
    with pytest.raises(error, match=message):
        annotated_figure(image, table)
    with pytest.raises(error, match=message):
        write_figure(tmp_path / "f.png", image, table)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("dpi", ["high", 0, -1, np.nan, True, None])
def test_write_figure_refuses_a_bad_dpi(tmp_path, atoms, dpi):
    with pytest.raises(ValueError, match="dpi must be a positive number"):
        write_figure(tmp_path / "f.png", np.zeros((30, 40)), atoms, dpi=dpi)


def test_figures_refuse_labels_that_are_measurements_not_classes(tmp_path, atoms):
    image = np.zeros((30, 40))
    with pytest.raises(TypeError, match="labels 'x' holds measurements"):
        write_figure(tmp_path / "f.png", image, atoms, labels="x")
    with pytest.raises(TypeError, match="LabelSet"):
        write_figure(tmp_path / "f.png", image, atoms, labels=3)
    assert os.listdir(tmp_path) == []
    # whole numbers stay classes, even as floats (an integer column reindexed with gaps)
    clusters = pd.Series([0.0, 1.0, np.nan], index=atoms.index[:3], name="cluster")
    names, colors = label_groups(atoms, clusters)
    assert list(colors) == ["cluster 0", "cluster 1"] and names.isna().sum() == len(atoms) - 2
