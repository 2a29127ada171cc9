"""The dashboard state without widgets: opening, detection, selection rules, labels,
undo/redo, autosave and reopening, path confinement and uploads."""

import json
import os

import numpy as np
import pandas as pd
import pytest

import atomstat
from app.data import PathError, inside, list_folder, save_upload, session_path
from app.selection import IdsRule, IntervalRule, PolygonRule, RangeRule, Selection
from app.state import AppState
from atomstat.simulate import simulate_lattice
from atomstat.store import LabelStore, store_path


@pytest.fixture(scope="module")
def lattice():
    return simulate_lattice("square", shape=(128, 128), spacing=16, sigma=2.2, rotation=0, rng=4)


@pytest.fixture
def data_dir(tmp_path, lattice, threshold_model):
    np.save(tmp_path / "lattice.npy", lattice.image)
    threshold_model.save(tmp_path / "threshold.keras")
    (tmp_path / "broken.npy").write_bytes(b"not a numpy file at all")
    return tmp_path


@pytest.fixture
def state(data_dir):
    s = AppState(data_dir, model="threshold.keras")
    assert s.open_file("lattice.npy")
    assert s.detect()
    return s


def test_open_and_detect_with_a_model_from_the_data_dir(state, lattice):
    assert state.frames.shape == (1, 128, 128)
    assert "128 x 128 px" in state.summary() and "pixel size 1 px" in state.summary()
    assert state.progress == 1.0
    found = state.table[["x", "y"]].to_numpy()
    ti, fi, _ = atomstat.metrics.match_points(lattice.atoms[["x", "y"]].to_numpy(), found, 1.5)
    assert len(ti) >= 0.95 * len(lattice.atoms)
    assert state.status.startswith(f"{len(state.table)} atoms found")


def test_threshold_change_is_locate_at_that_threshold(state, lattice):
    prob = state.prob[0]
    for level in (0.2, 0.85):
        state.set_threshold(level)
        expected = atomstat.locate(
            prob, lattice.image, threshold=level, sigma=state.atoms.attrs["sigma"]
        )
        assert len(state.table) == len(expected)
        np.testing.assert_allclose(state.table.area.to_numpy(), expected.area.to_numpy())
    assert state.table.attrs["threshold"] == 0.85


def test_selection_rules_and_modes(state):
    table = state.table
    median = float(table.area.median())
    state.select(IntervalRule("area", median, 1e9))
    big = set(table.index[table.area >= median])
    assert set(state.selected) == big
    state.select(RangeRule("x", "y", (0, 64), (0, 200)), "intersect")
    left_big = {i for i in big if table.loc[i, "x"] <= 64}
    assert set(state.selected) == left_big
    first = int(table.index[0])
    state.select(IdsRule((first,)), "add")
    assert set(state.selected) == left_big | {first}
    state.select(IdsRule((first,)), "remove")
    assert set(state.selected) == left_big - {first}
    state.undo()
    assert set(state.selected) == left_big | {first}
    state.redo()
    assert set(state.selected) == left_big - {first}
    square = ((0, 0), (64, 0), (64, 64), (0, 64))
    state.select(PolygonRule("x", "y", square), "replace")
    expected = table.index[(table.x < 64) & (table.y < 64) & (table.x > 0) & (table.y > 0)]
    assert set(state.selected) == set(expected)
    restored = Selection.from_dict(json.loads(json.dumps(state.selection.to_dict())))
    assert restored == state.selection


def test_selection_rule_survives_a_threshold_change(state):
    state.select(RangeRule("x", "y", (0, 50), (0, 50)))
    state.set_threshold(0.3)
    table = state.table
    inside_box = table.index[table.x.between(0, 50) & table.y.between(0, 50)]
    assert set(state.selected) == set(inside_box) and len(inside_box) > 3


def test_labels_undo_redo_and_manual_refinement(state):
    ids = state.table.index[:5]
    state.select(IdsRule(tuple(int(i) for i in ids)))
    state.add_class("dopant", "#ff0000")
    state.label_selection("dopant")
    assert state.labels.ids("dopant") == sorted(int(i) for i in ids)
    state.select(IdsRule((int(ids[0]),)))
    state.unlabel_selection()  # move one point out of the class by hand
    assert state.labels.ids("dopant") == sorted(int(i) for i in ids[1:])
    state.undo()  # the unlabel
    assert len(state.labels.ids("dopant")) == 5
    state.undo()  # the selection of one atom
    assert len(state.selected) == 5
    state.redo()
    state.redo()
    assert len(state.labels.ids("dopant")) == 4
    state.select(IdsRule(tuple(int(i) for i in ids[1:])))
    state.label_selection("dopant")  # no change: not a command, so undo skips it
    state.undo()  # takes back the selection, not a label
    assert list(state.selected) == [ids[0]] and len(state.labels.ids("dopant")) == 4


def test_labels_stored_on_every_change_and_reopened(state, data_dir):
    store = LabelStore(store_path(data_dir))
    key = state.collab.file_key
    state.select(IdsRule((3, 4)))
    state.label_selection("adatom")
    assert [i for i, v in store.state(key)["manual"] if v == "adatom"] == [3, 4]
    state.select(IdsRule((7,)), "add")
    state.label_selection("adatom")
    assert [i for i, v in store.state(key)["manual"] if v == "adatom"] == [3, 4, 7]
    assert not session_path(data_dir, state.source).exists()  # no per-kernel autosave
    # A new kernel opens the same file: the table and the labels come back.
    again = AppState(data_dir)
    assert again.open_file("lattice.npy")
    assert again.labels.ids("adatom") == [3, 4, 7]
    pd.testing.assert_frame_equal(again.table, state.table, check_dtype=False)
    assert again.model == "threshold.keras" and "restored the last analysis" in again.status


def test_labels_follow_atoms_to_a_new_threshold(state):
    target = state.table.index[10]
    xy = state.table.loc[target, ["x", "y"]].to_numpy(float)
    state.select(IdsRule((int(target),)))
    state.label_selection("odd")
    state.set_threshold(0.35)
    (now,) = state.labels.ids("odd")
    np.testing.assert_allclose(state.table.loc[now, ["x", "y"]].to_numpy(float), xy, atol=0.5)


def test_anomalies_and_clusters_become_labels(state):
    state.anomaly_columns = ["area", "circularity"]
    state.contamination = "0.05"
    state.find_anomalies()
    flagged = state.labels.ids("anomaly")
    scorable = (~state.table.edge).sum()
    assert 0 < len(flagged) <= round(0.05 * scorable) + 1
    state.select(IdsRule(tuple(flagged)))
    state.cluster_columns = ["area"]
    state.cluster()
    clustered = set(state.labels.ids("cluster 0")) | set(state.labels.ids("cluster 1"))
    assert clustered == set(flagged)


def test_paths_cannot_leave_the_data_dir(state, data_dir, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    np.save(outside / "secret.npy", np.ones((32, 32)))
    os.symlink(outside / "secret.npy", data_dir / "link.npy")
    os.symlink(outside, data_dir / "linkdir")
    before = state.frames
    for bad in ("../outside/secret.npy", str(outside / "secret.npy"), "link.npy", "linkdir/a"):
        assert not state.open_file(bad)
        assert "Could not open" in state.status
        assert state.frames is before
    with pytest.raises(PathError, match=r"\.\."):
        inside(data_dir, "sub/../../x")
    listing = list_folder(data_dir)
    assert "link.npy" not in listing and "linkdir/" not in listing
    assert "lattice.npy" in listing and "lattice.npy.atomstat.json" not in listing


def test_a_bad_file_keeps_the_app_working(state, data_dir):
    n = len(state.table)
    assert not state.open_file("broken.npy")
    assert "broken.npy" in state.status and "Could not open" in state.status
    assert len(state.table) == n  # what was open stays open
    assert state.open_file("lattice.npy")


def test_upload_size_limit(data_dir):
    with pytest.raises(PathError, match=r"limited to 0\.0 MB"):
        save_upload(data_dir, "big.npy", b"x" * 5000, limit=4000)
    path = save_upload(data_dir, "../../evil name.npy", b"abc", limit=4000)
    assert path == data_dir / "uploads" / "evil_name.npy" and path.read_bytes() == b"abc"


def test_examples_open(data_dir):
    s = AppState(data_dir)
    assert s.open_example("MoS2 V-doped HAADF 9nm")
    assert s.units == "nm" and abs(s.pixel_size - 9 / 512) < 1e-6
    assert s.open_example("Simulated dumbbell movie") and s.n_frames == 12
    assert not s.open_example("nope") and "No example" in s.status


def test_movie_dumbbells_track_and_align(tmp_path, threshold_model):
    movie = atomstat.simulate_movie(4, shape=(128, 128), dose=400, drift=5.0, rng=2)
    np.save(tmp_path / "movie.npy", movie.frames)
    threshold_model.save(tmp_path / "m.keras")
    s = AppState(tmp_path, model="m.keras")
    s.open_file("movie.npy")
    s.set_dumbbell_mode(True)
    assert s.detect()
    assert {"angle", "separation"} <= set(s.table)
    assert s.track()
    drift = s.drift[["dx", "dy"]].to_numpy()
    np.testing.assert_allclose(drift, movie.drift[["dx", "dy"]].to_numpy(), atol=0.6)
    first = s.table[s.table.frame == 0].index[:2]
    s.select(IdsRule(tuple(int(i) for i in first)))
    assert s.selected_particles() == sorted(s.table.loc[first, "particle"].astype(int))
    s.aligned, s.frame = True, 3
    shifted = s.display_frame(s.frames)
    assert np.isfinite(shifted).mean() > 0.8 and shifted.shape == (128, 128)


def test_threshold_levels_are_ready_before_the_slider_moves(state, lattice):
    from app.levels import LEVELS
    from atomstat.maps import relocate

    cache = state._levels()
    cache._thread.join(timeout=120)
    assert cache.ready() == list(LEVELS)
    computed = []
    cache._compute = lambda level: computed.append(level)  # a look-up, no relocate now
    state.set_threshold(0.3)
    assert computed == []
    expected = relocate(state.prob[0], lattice.image, threshold=0.3, attrs=state.atoms.attrs)
    pd.testing.assert_frame_equal(state.table, expected)
    assert state.status == f"{len(expected)} atoms at threshold 0.30"


def test_calibration_is_refused_unless_positive_and_finite(state):
    for size, units in ((0, "nm"), (-2, "nm"), ("abc", "nm"), (float("inf"), "nm"), (1, "")):
        assert not state.set_calibration(size, units)
        assert (state.pixel_size, state.units) == (1.0, "px")
    assert state.set_calibration("0.0093", "nm")
    assert (state.pixel_size, state.units) == (0.0093, "nm")
    assert state.atoms.attrs["units"] == "nm" and "pixel size 0.0093 nm" in state.status


def test_an_analysis_finished_after_another_file_opened_is_dropped(data_dir, lattice):
    np.save(data_dir / "other.npy", np.random.default_rng(3).random((48, 48)))
    state = AppState(data_dir, model="threshold.keras")
    assert state.open_file("lattice.npy")
    real = state._analysis_input

    def open_meanwhile():  # the user opens a file while the background analysis runs
        found = real()
        state.open_file("other.npy")
        return found

    state._analysis_input = open_meanwhile
    assert not state.detect()
    assert state.name == "other.npy" and state.table is None and not state.busy


def test_dark_atoms_are_found_inverted_and_the_status_says_so(tmp_path, lattice):
    """An ABF-like frame (columns as dips) opened in the dashboard with its defaults: the
    atoms are found (the analysis reads it inverted) and the status line says so."""
    rng = np.random.default_rng(1)
    dark = rng.poisson(200 * (1.2 - 0.8 * lattice.image / lattice.image.max()))
    np.save(tmp_path / "abf.npy", dark.astype(np.float32))
    s = AppState(tmp_path)
    assert s.open_file("abf.npy") and s.detect()
    ti, _, _ = atomstat.metrics.match_points(
        lattice.atoms[["x", "y"]].to_numpy(), s.table[["x", "y"]].to_numpy(), 2.0
    )
    assert len(ti) >= 0.9 * len(lattice.atoms)
    assert "Note: " in s.status and "analysed inverted" in s.status
