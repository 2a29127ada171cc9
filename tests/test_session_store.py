"""Sessions and the shared store in the dashboard state: old autosaves migrated without
loss, a damaged autosave or store kept aside, exported sessions reopened, a session
refused on a changed or other file, undo per person, and changes seen within 2 s."""

import queue
import time

import numpy as np
import pandas as pd
import pytest

import atomstat
from app.collab import Workbench
from app.data import session_path
from app.exporting import export
from app.selection import IdsRule
from app.state import AppState
from atomstat.session import SourceMismatch
from atomstat.simulate import simulate_lattice
from atomstat.store import LabelStore, store_path


@pytest.fixture(scope="module")
def lattice():
    return simulate_lattice("square", shape=(128, 128), spacing=16, sigma=2.2, rotation=0, rng=4)


@pytest.fixture
def data_dir(tmp_path, lattice, threshold_model):
    np.save(tmp_path / "lattice.npy", lattice.image)
    threshold_model.save(tmp_path / "threshold.keras")
    return tmp_path


def _analysed(data_dir, user="ana"):
    state = AppState(data_dir, model="threshold.keras", user=user)
    assert state.open_file("lattice.npy") and state.detect()
    return state


def _old_autosave(data_dir, lattice):
    """A ``<file>.atomstat.json`` as the dashboard wrote it before the store."""
    atoms = atomstat.analyze(lattice.image, model=str(data_dir / "threshold.keras"))
    atoms.attrs["source"] = str(data_dir / "lattice.npy")
    labels = atomstat.LabelSet({"dopant": "#123456", "unused": "#abcdef"})
    labels.set_auto(pd.Series(atoms.index < 5, index=atoms.index), name="anomaly")
    labels.set_manual([1, 2, 9], "dopant")
    labels.set_manual([3], None)  # taken out of 'anomaly' by hand
    path = session_path(data_dir, str(data_dir / "lattice.npy"))
    params = {"threshold": 0.5, "model": "threshold.keras"}
    atomstat.save_session(path, atoms, labels, params=params)
    return path, atoms, labels


def test_an_old_autosave_is_migrated_once_and_nothing_is_lost(data_dir, lattice):
    path, atoms, labels = _old_autosave(data_dir, lattice)
    before = path.read_bytes()
    state = AppState(data_dir, user="ana")
    assert state.open_file("lattice.npy")
    assert state.labels == labels and state.labels.classes == labels.classes
    pd.testing.assert_frame_equal(state.table, atoms, check_dtype=False)
    assert path.read_bytes() == before  # the autosave itself is left as it was
    store = LabelStore(store_path(data_dir))
    assert atomstat.LabelSet.from_dict(store.state(state.collab.file_key)) == labels
    assert store.has_action(state.collab.file_key, f"migrated from {path.name}")
    state.select(IdsRule((20,)))
    state.label_selection("dopant")
    again = AppState(data_dir, user="ben")  # reopened: from the store, not migrated again
    assert again.open_file("lattice.npy")
    assert again.labels.ids("dopant") == [1, 2, 9, 20] and again.labels.label_of(3) is None
    history = store.history(state.collab.file_key)
    assert history["text"].value_counts()[f"migrated from {path.name}"] == 3 + 5 + 4
    assert len(history) == 13  # 3 classes, 5 automatic and 4 manual labels, then one more


def test_a_damaged_autosave_is_kept_aside_and_the_page_says_so(data_dir):
    path = session_path(data_dir, str(data_dir / "lattice.npy"))
    path.write_text('{"format": "atomstat-session", "table": {')  # cut short
    state = AppState(data_dir)
    assert state.open_file("lattice.npy")
    (aside,) = data_dir.glob("lattice.npy.atomstat.json.corrupt-*")
    assert aside.read_text() == '{"format": "atomstat-session", "table": {'
    assert not path.exists()
    assert "is damaged" in state.store_message and aside.name in state.store_message


def test_a_damaged_store_is_kept_aside_and_the_page_says_so(data_dir):
    first = _analysed(data_dir)
    first.select(IdsRule((1,)))
    first.label_selection("dopant")
    first.collab.close()
    LabelStore(store_path(data_dir)).close()
    for part in store_path(data_dir).parent.glob("labels.sqlite*"):
        part.write_bytes(b"\0" * 8192 if part.name == "labels.sqlite" else b"")
    state = AppState(data_dir, model="threshold.keras", user="ben")
    assert state.open_file("lattice.npy")
    assert "label store was damaged" in state.store_message
    assert "labels.sqlite.corrupt-" in state.store_message
    assert state.detect()  # the settings went with the store; the cached analysis did not
    state.select(IdsRule((2,)))
    state.label_selection("vacancy")  # a new store works
    assert LabelStore(store_path(data_dir)).state(state.collab.file_key)["manual"] == [
        [2, "vacancy"]
    ]


def test_an_exported_session_reopens_in_the_dashboard(data_dir):
    state = _analysed(data_dir)
    state.select(IdsRule((4, 5)))
    state.label_selection("dopant")
    saved = export(state, "session")
    other = AppState(data_dir, user="ben")
    assert other.open_file(str(saved.relative_to(data_dir)))  # from the file browser
    assert other.source == str(data_dir / "lattice.npy")
    assert other.labels.ids("dopant") == [4, 5]
    pd.testing.assert_frame_equal(other.table, state.table, check_dtype=False)
    assert f"opened {saved.name}" in other.status
    assert atomstat.load_session(saved).labels.ids("dopant") == [4, 5]  # and in the library


def test_a_session_is_refused_on_a_changed_file(data_dir, lattice):
    state = _analysed(data_dir)
    saved = export(state, "session")
    np.save(data_dir / "lattice.npy", np.roll(lattice.image, 40, axis=1))  # same name, moved
    other = AppState(data_dir, user="ben")
    assert not other.open_file(str(saved.relative_to(data_dir)))
    assert "SHA-256" in other.status and "not applied" in other.status
    assert other.table is None or not other.table.equals(state.table)
    with pytest.raises(SourceMismatch, match="changed or is another file"):
        atomstat.load_session(saved, source=data_dir / "lattice.npy")
    assert atomstat.load_session(saved).atoms.equals(state.table)  # reading alone still works


def test_a_session_of_another_image_is_refused_on_an_example(data_dir):
    state = _analysed(data_dir)
    state.table["x"] += 500  # as if from a larger image, of no known file
    state.table.attrs["source"] = None
    saved = atomstat.save_session(data_dir / "big_session.json", state.table, state.labels)
    other = AppState(data_dir)
    assert other.open_example("Simulated square lattice with dopants")
    n_atoms = len(state.table)
    assert not other.open_file("big_session.json")
    assert f"{n_atoms} of the session's {n_atoms} atoms lie outside" in other.status
    assert saved.exists()


def test_undo_takes_back_only_ones_own_labels(data_dir):
    ana = _analysed(data_dir, "ana")
    ben = AppState(data_dir, user="ben")
    assert ben.open_file("lattice.npy")
    ana.select(IdsRule((1, 2)))
    ana.label_selection("dopant")
    ben.select(IdsRule((7,)))
    ben.label_selection("vacancy")
    ana.collab.sync()
    assert ana.labels.ids("vacancy") == [7]
    ana.undo()  # ana's labels
    ben.collab.sync()
    assert ben.labels.ids("dopant") == [] and ben.labels.ids("vacancy") == [7]
    assert ana.labels.ids("vacancy") == [7]
    ana.redo()
    ben.collab.sync()
    assert ben.labels.ids("dopant") == [1, 2]
    ben.select(IdsRule((2,)))
    ben.label_selection("vacancy")  # over one of ana's: the page tells her
    ana.collab.sync()
    assert ana.labels.label_of(2) == "vacancy"
    assert "Overwritten: ben changed atom 2 from 'dopant' (yours) to 'vacancy'" in ana.store_message


def test_a_new_threshold_is_followed_by_the_other_kernel_with_its_labels(data_dir):
    ana = _analysed(data_dir, "ana")
    ben = AppState(data_dir, user="ben")
    assert ben.open_file("lattice.npy")
    target = int(ana.table.index[10])
    ana.select(IdsRule((target,)))
    ana.label_selection("odd")
    ana.set_threshold(0.3)  # other atoms (ids); her label moves to the same atom
    assert ben.collab.sync()
    assert ben.threshold == 0.3 and "ana changed the analysis" in ben.status
    pd.testing.assert_frame_equal(ben.table, ana.table)
    assert ben.labels == ana.labels and len(ben.labels.ids("odd")) == 1
    assert ben.collab.sync() is False  # nothing new since


def test_a_change_reaches_the_other_kernel_within_two_seconds(data_dir):
    ana = _analysed(data_dir, "ana")
    ben = AppState(data_dir, user="ben")
    assert ben.open_file("lattice.npy")
    due = queue.Queue()  # stands in for the kernel's IO loop
    poller_bench = Workbench(ben, schedule=due.put, interval=0.25)
    ben.collab.close()
    ben.collab = poller_bench
    poller_bench.open()
    try:
        ana.select(IdsRule((3, 4, 5)))
        start = time.perf_counter()
        ana.label_selection("adatom")
        callback = due.get(timeout=2.0)  # the poller thread noticed the change
        callback()  # runs on the "IO loop" (this thread), as the kernel would
        seconds = time.perf_counter() - start
    finally:
        poller_bench.close()
    assert ben.labels.ids("adatom") == [3, 4, 5] and seconds < 2.0
    print(f"change seen by the other kernel after {seconds:.3f} s (poll every 0.25 s)")


def test_a_calibration_set_by_hand_is_kept_for_the_next_visitor(data_dir):
    ana = _analysed(data_dir, "ana")
    assert ana.set_calibration(0.0125, "nm")
    ben = AppState(data_dir, user="ben")
    assert ben.open_file("lattice.npy")
    assert (ben.pixel_size, ben.units) == (0.0125, "nm")


def test_the_shipped_stm_model_is_keyed_by_name_not_as_a_file(tmp_path):
    from atomstat.cache import model_key

    state = AppState(tmp_path, model="stm")
    assert state.collab._model() == model_key("stm")
    assert model_key("stm").startswith("stm-")
