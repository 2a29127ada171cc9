"""The shared label store: concurrent writers from several processes, a writer killed
mid-write, conflicts kept in the history, undo and redo per person, a damaged store
kept aside, a store that cannot be written, and the old autosaves migrated."""

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from atomstat.labels import LabelSet
from atomstat.sharing import SharedLabels
from atomstat.store import ABSENT, LabelStore, StoreUnavailable, label_changes

FORK = multiprocessing.get_context("fork")  # children start at once: atomstat is imported


def _writer(path, worker, n_changes, barrier):
    store = LabelStore(path)
    barrier.wait()
    for i in range(n_changes):
        key = str(worker * 10_000 + i)
        store.record("shared", {("manual", key): f"class {worker}"}, user=f"w{worker}", text="x")
    store.close()


def test_ten_processes_two_hundred_changes_each_all_kept(tmp_path):
    path = tmp_path / "labels.sqlite"
    LabelStore(path).close()
    barrier = FORK.Barrier(10)
    workers = [FORK.Process(target=_writer, args=(path, w, 200, barrier)) for w in range(10)]
    start = time.perf_counter()
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=240)
    seconds = time.perf_counter() - start
    assert [p.exitcode for p in workers] == [0] * 10
    store = LabelStore(path)
    manual = dict(store.state("shared")["manual"])
    expected = {w * 10_000 + i: f"class {w}" for w in range(10) for i in range(200)}
    assert manual == expected
    assert store.version("shared") == 2000
    history = store.history("shared")
    assert len(history) == 2000 and history["change_id"].is_unique
    assert sorted(history["user"].value_counts().tolist()) == [200] * 10
    print(f"10 processes x 200 changes: {seconds:.2f} s, {2000 / seconds:.0f} changes/s")


def _endless_writer(path):
    store = LabelStore(path)
    i = 0
    while True:  # five entries per action, until killed
        changes = {("manual", str(i * 5 + k)): f"c{i % 3}" for k in range(5)}
        store.record("f", changes, user="killed", text=f"action {i}")
        i += 1


def test_a_writer_killed_mid_write_leaves_a_readable_store(tmp_path):
    path = tmp_path / "labels.sqlite"
    LabelStore(path).close()
    child = FORK.Process(target=_endless_writer, args=(path,))
    child.start()
    reader = LabelStore(path)
    deadline = time.monotonic() + 60
    while reader.version("f") < 500 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    assert child.exitcode == -signal.SIGKILL
    reader.close()
    store = LabelStore(path)  # opens, checks and does not move it aside
    assert store.recovered is None
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    per_action = db.execute("SELECT count(*) FROM changes GROUP BY action_id").fetchall()
    assert len(per_action) >= 100 and {n for (n,) in per_action} == {5}  # no half action
    manual = store.state("f")["manual"]
    assert len(manual) == 5 * len(per_action)
    assert all(label == f"c{(key // 5) % 3}" for key, label in manual)
    store.record("f", {("manual", "0"): "after"}, user="next", text="still writable")
    assert dict(store.state("f")["manual"])[0] == "after"


def test_a_conflict_ends_as_the_latest_edit_and_keeps_the_overwritten_one(tmp_path):
    path = tmp_path / "labels.sqlite"
    ana, ben = LabelStore(path), LabelStore(path)
    ana.record("f", {("classes", "dopant"): "#d55e00", ("manual", "7"): "dopant"}, user="ana",
               text="label 7")  # fmt: skip
    ben.record("f", {("manual", "7"): "vacancy"}, user="ben", text="relabel 7")
    assert ana.state("f")["manual"] == [[7, "vacancy"]]
    lost = ana.overwritten("f", "ana")
    assert len(lost) == 1
    row = lost.iloc[0]
    assert (row.user, row.key, row.previous, row.value) == ("ben", "7", "dopant", "vacancy")
    assert ben.overwritten("f", "ben").empty
    atom7 = ana.history("f").query("layer == 'manual' and key == '7'")
    assert atom7["value"].tolist() == ["vacancy", "dopant"]  # newest first
    actions = ben.actions("f")
    assert actions[["user", "text", "changes"]].values.tolist() == [
        ["ben", "relabel 7", 1],
        ["ana", "label 7", 2],
    ]


def test_undo_and_redo_act_on_ones_own_changes(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    store.record("f", {("manual", "1"): "a", ("manual", "2"): "a"}, user="ana", text="ana 1")
    store.record("f", {("manual", "3"): "b"}, user="ben", text="ben 1")
    store.record("f", {("manual", "2"): "b"}, user="ben", text="ben 2")  # over ana's atom 2
    store.record("f", {("manual", "4"): "a"}, user="ana", text="ana 2")

    def shown():
        return dict(store.state("f")["manual"])

    assert store.undo("f", "ana") is not None  # ana 2
    assert shown() == {1: "a", 2: "b", 3: "b"}
    assert store.undo("f", "ana") is not None  # ana 1: atom 2 is ben's now and stays
    assert shown() == {2: "b", 3: "b"}
    assert store.undo("f", "ana") is None  # nothing of ana's is left
    assert store.redo("f", "ana") is not None  # ana 1 again
    assert shown() == {1: "a", 2: "b", 3: "b"}
    assert store.redo("f", "ana") is not None and shown()[4] == "a"
    assert store.redo("f", "ana") is None
    assert store.undo("f", "ben") is not None  # ben 2: atom 2 goes back to ana's "a"
    assert shown() == {1: "a", 2: "a", 3: "b", 4: "a"}
    store.record("f", {("manual", "9"): "a"}, user="ben", text="ben 3")
    assert store.redo("f", "ben") is None  # a new change ends what could be redone


def test_label_changes_round_trip_through_the_store(tmp_path):
    labels = LabelSet({"dopant": "#ff0000"})
    labels.set_auto({1: "dopant", 2: "dopant"})
    labels.set_manual([2], None)
    labels.set_manual([5], "adatom")
    changes = label_changes(LabelSet().to_dict(), labels.to_dict())
    assert changes[("manual", "2")] is None and ABSENT not in changes.values()
    store = LabelStore(tmp_path / "labels.sqlite")
    store.record("f", changes, user="ana", text="all")
    assert LabelSet.from_dict(store.state("f")) == labels
    labels.remove_class("adatom")
    store.record("f", label_changes(store.state("f"), labels.to_dict()), user="ana", text="rm")
    assert LabelSet.from_dict(store.state("f")) == labels
    assert store.record("f", {("manual", "2"): None}, user="ana", text="same") is None


def test_two_people_see_each_others_labels_and_undo_their_own(tmp_path):
    where = tmp_path / "labels.sqlite"
    ana = SharedLabels(LabelSet(), where, "f", user="ana")
    ben = SharedLabels(LabelSet(), where, "f", user="ben")
    ana.labels.set_manual([1, 2, 3], "dopant")
    ben.labels.set_manual([10, 11], "vacancy")
    ben.labels.set_manual([3], "vacancy")  # over one of ana's
    assert ana.poll() and ben.poll()  # each had written only their own
    assert ana.labels == ben.labels and ana.poll() is False
    assert ana.labels.ids("dopant") == [1, 2] and ana.labels.ids("vacancy") == [3, 10, 11]
    assert ana.notices == [ana.notices[0]] and "ben changed atom 3 from 'dopant'" in ana.notices[0]
    assert ben.undo()  # ben's relabel of 3 only
    assert (
        ana.poll() and ana.labels.label_of(3) == "dopant" and ana.labels.ids("vacancy") == [10, 11]
    )
    assert ana.undo()  # ana's labels go; ben's stay
    ben.poll()
    assert ben.labels.ids("dopant") == [] and ben.labels.ids("vacancy") == [10, 11]
    assert ana.redo() and ben.poll() and ben.labels.ids("dopant") == [1, 2, 3]


def test_a_damaged_store_is_kept_aside_and_reported(tmp_path):
    path = tmp_path / "labels.sqlite"
    store = LabelStore(path)
    store.record("f", {("manual", "1"): "a"}, user="ana", text="x")
    store.close()
    damaged = b"SQLite format 3\x00" + os.urandom(4096)
    path.write_bytes(damaged)
    again = LabelStore(path)
    assert again.recovered is not None and again.recovered.name.startswith("labels.sqlite.corrupt-")
    assert again.recovered.read_bytes() == damaged  # kept byte for byte, never written over
    assert again.state("f")["manual"] == []
    path.with_name("other.sqlite").write_text("not a database at all " * 100)
    assert LabelStore(path.with_name("other.sqlite")).recovered is not None


_READ_ONLY = """
import os, sys
from atomstat.labels import LabelSet
from atomstat.sharing import SharedLabels
folder = sys.argv[1]
if os.geteuid() == 0:
    os.setuid(65534)  # root writes anywhere: run as nobody
where = os.path.join(folder, ".atomstat", "labels.sqlite")
shared = SharedLabels(LabelSet(), where, "f", user="ana")
shared.labels.set_manual([1, 2], "dopant")
print(shared.problem)
print(shared.labels.ids("dopant"), shared.unsaved)
"""


def test_a_read_only_folder_says_so_and_keeps_the_labels_in_memory(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    folder.chmod(0o555)
    tmp_path.chmod(0o755)
    try:
        run = subprocess.run(
            [sys.executable, "-c", _READ_ONLY, str(folder)], capture_output=True, text=True,
            timeout=120, cwd=tmp_path,
        )  # fmt: skip
    finally:
        folder.chmod(0o755)
    assert run.returncode == 0, run.stderr[-2000:]
    problem, kept = run.stdout.strip().splitlines()[-2:]
    assert problem.startswith("Labels not saved: cannot make") and "Permission denied" in problem
    assert "3 change(s) are kept in memory" in problem  # the class and two atoms
    assert kept == "[1, 2] 3"


def test_a_full_disk_keeps_the_labels_until_a_save_works(tmp_path):
    where = tmp_path / "labels.sqlite"
    shared = SharedLabels(LabelSet(), where, "f", user="ana")
    db = sqlite3.connect(where)
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    shared.store._db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full
    shared.labels.set_manual(list(range(2000)), "dopant")
    assert "database or disk is full" in shared.problem and shared.unsaved == 2001
    assert len(shared.labels.ids("dopant")) == 2000
    assert shared.poll() is False and shared.labels.ids("dopant")[-1] == 1999  # still shown
    shared.store._db.execute("PRAGMA max_page_count = 1073741823")  # space again
    shared.labels.set_manual([5000], "dopant")  # the next change saves everything
    assert shared.problem is None and shared.unsaved == 0
    assert len(LabelStore(where).state("f")["manual"]) == 2001


def test_store_refuses_bad_arguments(tmp_path):
    store = LabelStore(tmp_path / "labels.sqlite")
    with pytest.raises(ValueError, match="layer must be one of"):
        store.record("f", {("colours", "a"): "red"}, user="ana", text="x")
    with pytest.raises(ValueError, match="user must be a non-empty string"):
        store.record("f", {("manual", "1"): "a"}, user=" ", text="x")
    blocked = tmp_path / "file"
    blocked.write_text("a file where the folder should be")
    with pytest.raises(StoreUnavailable, match="cannot make"):
        LabelStore(blocked / "labels.sqlite")
