"""Tests for the exports: tables (CSV, Parquet, HDF5), sessions, annotated figures, and the CLI."""

import json
import os

import h5py
import numpy as np
import pandas as pd
import pytest

import atomstat
from atomstat.cli import main
from atomstat.export import atomic_path, read_csv, read_table, write_figure, write_table
from atomstat.labels import LabelSet
from atomstat.plot import annotated_figure, label_groups, nice_length
from atomstat.session import file_sha256, load_session, save_session
from atomstat.table import make_atoms


@pytest.fixture
def labelled():
    """A small labelled atoms table with NaNs, categories, strings, float32 and bools."""
    rng = np.random.default_rng(0)
    n = 40
    atoms = make_atoms(
        {
            "x": rng.uniform(0, 60, n),
            "y": rng.uniform(0, 50, n),
            "area": rng.normal(20, 1, n),
            "circularity": rng.uniform(0.9, 1.0, n),
            "intensity": rng.normal(1000, 30, n),
            "nn_distance": rng.normal(12, 0.3, n),
            "confidence": rng.uniform(0.9, 1, n),
            "edge": np.arange(n) < 3,
        },
        attrs={"pixel_size": 0.0176, "units": "nm", "source": "scan.dm4", "model": "universal"},
        start_id=7,
    )
    atoms.loc[atoms.index[:2], "nn_distance"] = np.nan
    atoms.loc[atoms.index[5:9], "area"] = 8.0  # four small blobs: the dopants
    atoms = atomstat.add_anomalies(atoms)
    labels = LabelSet({"dopant": "#d62728"})
    labels.set_auto(atoms["anomaly"], name="dopant")
    labels.set_manual([atoms.index[6]], None)
    labels.set_manual([atoms.index[20]], "adatom")
    atoms = labels.apply(atoms)
    atoms["site"] = pd.cut(atoms["nn_distance"], [0, 11.8, 12.2, 99], labels=["a", "b", "c"])
    atoms["note"] = pd.Series(["", None] + ["x"] * (n - 2), index=atoms.index, dtype="str")
    atoms.attrs["threshold"] = 0.5
    return atoms, labels


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".h5"])
def test_tables_round_trip_with_their_metadata(tmp_path, labelled, suffix):
    atoms, _ = labelled
    path = write_table(atoms, tmp_path / f"atoms{suffix}", metadata={"operator": "me"})
    back = read_table(path)
    assert back.attrs["pixel_size"] == 0.0176 and back.attrs["units"] == "nm"
    assert back.attrs["source"] == "scan.dm4" and back.attrs["model"] == "universal"
    assert back.attrs["anomalies"]["method"] == "zscore"  # the default
    assert back.attrs["anomalies"]["columns"] == ["intensity", "area"]
    assert back.attrs["operator"] == "me"
    assert back.index.tolist() == atoms.index.tolist()
    np.testing.assert_array_equal(back["x"], atoms["x"])
    np.testing.assert_array_equal(back["nn_distance"], atoms["nn_distance"])  # NaN included
    assert back["anomaly"].tolist() == atoms["anomaly"].tolist()
    assert back["label"].astype(object).where(back["label"].notna(), None).tolist() == (
        atoms["label"].astype(object).where(atoms["label"].notna(), None).tolist()
    )
    if suffix != ".csv":  # binary formats keep every dtype and the index name
        pd.testing.assert_frame_equal(back, atoms)


def test_hdf5_is_plain_hdf5_with_calibration_attributes(tmp_path, labelled):
    atoms, _ = labelled
    path = write_table(atoms, tmp_path / "atoms.hdf5")
    with h5py.File(path, "r") as f:
        group = f["atoms"]
        assert group.attrs["pixel_size"] == 0.0176 and group.attrs["units"] == "nm"
        np.testing.assert_array_equal(group["area"][()], atoms["area"].to_numpy())
        meta = json.loads(group.attrs["atomstat"])
        assert meta["atomstat_version"] == atomstat.__version__
        assert meta["dtypes"]["label"] == "category"


def test_parquet_metadata_is_readable_with_pyarrow_alone(tmp_path, labelled):
    import pyarrow.parquet as pq

    atoms, _ = labelled
    path = write_table(atoms, tmp_path / "atoms.parquet")
    meta = json.loads(pq.read_schema(path).metadata[b"atomstat"])
    assert meta["pixel_size"] == 0.0176 and meta["threshold"] == 0.5


def test_unknown_table_or_figure_suffix_is_refused(tmp_path, labelled):
    atoms, _ = labelled
    with pytest.raises(ValueError, match="csv"):
        write_table(atoms, tmp_path / "atoms.xlsx")
    with pytest.raises(ValueError, match="png"):
        write_figure(tmp_path / "fig.jpg", np.zeros((50, 60)), atoms)


def test_atomic_writes_never_leave_half_a_file(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old content")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("crash while writing")
    assert target.read_text() == "old content"
    assert os.listdir(tmp_path) == ["table.csv"]  # no temporary file left behind


def test_a_session_reopens_the_same_table_and_labels(tmp_path, labelled):
    atoms, labels = labelled
    source = tmp_path / "scan.npy"
    np.save(source, np.arange(12.0))
    params = {"anomalies": {"method": "ocsvm", "fence": 5.0}, "threshold": 0.5}
    path = save_session(tmp_path / "s.json", atoms, labels, params=params, source=source)
    session = load_session(path)
    pd.testing.assert_frame_equal(session.atoms, atoms)
    assert session.atoms.attrs == atoms.attrs
    assert session.labels == labels
    assert session.labels.ids("adatom") == [atoms.index[20]]
    assert session.params == params
    assert session.source["sha256"] == file_sha256(source)
    assert session.source_changed is False
    json.loads(path.read_text(), parse_constant=pytest.fail)  # standard JSON: no NaN literal


def test_a_changed_source_file_is_noticed(tmp_path, labelled, caplog):
    atoms, labels = labelled
    source = tmp_path / "scan.npy"
    np.save(source, np.arange(12.0))
    path = save_session(tmp_path / "s.json", atoms, labels, source=source)
    np.save(source, np.arange(13.0))
    assert load_session(path).source_changed is True
    assert "changed" in caplog.text
    source.unlink()
    assert load_session(path).source_changed is None


def test_a_failed_session_write_keeps_the_previous_file(tmp_path, labelled):
    atoms, labels = labelled
    path = save_session(tmp_path / "s.json", atoms, labels)
    before = path.read_bytes()
    bad = atoms.assign(when=pd.Timestamp("2026-01-01"))  # a dtype sessions do not store
    with pytest.raises(TypeError, match="when"):
        save_session(path, bad, labels)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["s.json"]


def test_load_session_refuses_other_files(tmp_path):
    (tmp_path / "other.json").write_text(json.dumps({"hello": 1}))
    (tmp_path / "binary.json").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(ValueError, match="not an atomstat session"):
        load_session(tmp_path / "other.json")
    with pytest.raises(ValueError, match="not a session"):
        load_session(tmp_path / "binary.json")
    with pytest.raises(TypeError, match="LabelSet"):
        save_session(tmp_path / "x.json", make_atoms({}), labels={"a": 1})


@pytest.mark.parametrize(
    ("suffix", "magic"), [(".png", b"\x89PNG"), (".svg", b"<?xml"), (".pdf", b"%PDF")]
)
def test_annotated_figure_is_written_in_each_format(tmp_path, labelled, suffix, magic):
    atoms, labels = labelled
    image = np.random.default_rng(1).poisson(5.0, (50, 60)).astype(float)
    path = write_figure(tmp_path / f"fig{suffix}", image, atoms, labels, dpi=300)
    assert path.read_bytes()[: len(magic)] == magic


def test_png_is_written_at_publication_resolution(tmp_path, labelled):
    from PIL import Image

    atoms, labels = labelled
    path = write_figure(tmp_path / "fig.png", np.zeros((50, 60)), atoms, labels, scatter=None)
    with Image.open(path) as img:
        dpi = img.info["dpi"][0]
        width_px = img.size[0]
    assert round(dpi) == 300
    assert width_px > 3.0 * 300  # a 4.2-inch panel, less the tight margins


def test_figure_has_legend_scale_bar_and_scatter(labelled):
    import matplotlib.pyplot as plt

    atoms, labels = labelled
    fig = annotated_figure(np.zeros((50, 60)), atoms, labels, unlabelled="lattice")
    image_ax, scatter_ax = fig.axes
    legend = [t.get_text() for t in image_ax.get_legend().get_texts()]
    n_dopant = len(labels.ids("dopant"))
    assert n_dopant == 3  # four small blobs flagged, one taken out by hand
    assert legend == ["lattice (36)", "dopant (3)", "adatom (1)"]
    texts = [t.get_text() for t in image_ax.findobj(plt.Text)]
    assert "0.2 nm" in texts  # 60 px x 0.0176 nm = 1.06 nm wide; a fifth is 0.21
    assert scatter_ax.get_xlabel() == "area (nm$^2$)"
    plt.close(fig)


def test_scale_bar_lengths_are_round():
    assert [nice_length(v) for v in (0.21, 1.0, 3.7, 9.99, 250.0)] == [0.2, 1.0, 2.0, 5.0, 200.0]
    with pytest.raises(ValueError, match="positive"):
        nice_length(0.0)


def test_label_groups_of_each_kind(labelled):
    atoms, labels = labelled
    names, colors = label_groups(atoms, labels)
    assert colors == labels.classes
    assert names[atoms.index[20]] == "adatom" and names[atoms.index[6]] is None
    names, colors = label_groups(atoms, "anomaly")
    assert set(names.dropna()) == {"anomaly"} and list(colors) == ["anomaly"]
    clusters = pd.Series(np.r_[np.full(20, 0), np.full(20, 1)], index=atoms.index, name="cluster")
    clusters.iloc[0] = -1
    names, colors = label_groups(atoms, clusters)
    assert list(colors) == ["cluster 0", "cluster 1"] and names.iloc[0] is None
    with pytest.raises(ValueError, match="column"):
        label_groups(atoms, "species")


def test_contour_style_needs_the_probability_map(labelled):
    atoms, labels = labelled
    with pytest.raises(ValueError, match="prob"):
        annotated_figure(np.zeros((50, 60)), atoms, labels, style="contours")
    with pytest.raises(ValueError, match="style"):
        annotated_figure(np.zeros((50, 60)), atoms, labels, style="arrows")


@pytest.mark.parametrize("columns", [["--anomaly-columns", "area,intensity"], []])
def test_cli_anomalies_writes_the_figure_the_labelled_table_and_a_session(
    tmp_path, threshold_model, columns
):
    """With and without ``--anomaly-columns`` (the defaults: the run crashed there once)."""
    sim = atomstat.simulate_lattice(
        "hexagonal",
        shape=(160, 160),
        spacing=16,
        sigma=2.2,
        imaging=atomstat.simulate.Stem(dose=300),
        rng=7,
    )
    image = sim.image.copy()
    model = tmp_path / "threshold.keras"
    threshold_model.save(model)
    np.save(tmp_path / "lattice.npy", image)
    out = tmp_path / "out"
    code = main(
        [
            "analyze",
            str(tmp_path / "lattice.npy"),
            "--out",
            str(out),
            "--model",
            str(model),
            "--anomalies",
            "lof",
            *columns,
        ]
    )
    assert code == 0
    table = read_csv(out / "lattice_atoms.csv")
    expected = ["area", "intensity"] if columns else ["intensity", "area"]
    assert table.attrs["anomalies"]["columns"] == expected
    assert {"anomaly", "anomaly_score", "label", "label_source"} <= set(table.columns)
    assert table.attrs["anomalies"]["method"] == "lof"
    assert (out / "lattice_annotated.png").read_bytes()[:4] == b"\x89PNG"
    session = load_session(out / "lattice_session.json")
    assert session.labels.ids("anomaly") == table.index[table["anomaly"]].tolist()
    assert session.source["sha256"] == file_sha256(tmp_path / "lattice.npy")
    assert session.params["anomalies"] == "lof"


def test_cli_refuses_an_unknown_method(capsys):
    with pytest.raises(SystemExit):
        main(["analyze", "x.npy", "--out", "o", "--anomalies", "svm"])
    assert "invalid choice" in capsys.readouterr().err
