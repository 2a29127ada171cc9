"""Kernels take turns for the heavy work (app.warmup): across processes, as kernels are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# One "kernel": waits for its turn, holds it HOLD s, writes when it had it.
_KERNEL = """
import json, sys, time
sys.path.insert(0, {root!r})
from app.warmup import heavy_turn, same_analysis
kind, key, out, hold = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
waited = []
turn = heavy_turn if kind == "slot" else (lambda **kw: same_analysis(key, **kw))
with turn(on_wait=lambda: waited.append(time.time())) as had:
    start = time.time()
    time.sleep(hold)
    stop = time.time()
with open(out, "w") as f:
    json.dump({{"had": had, "start": start, "stop": stop, "waited": bool(waited)}}, f)
"""


def _run_kernels(tmp_path, kind, keys, hold=1.0, slots="1"):
    script = tmp_path / "kernel.py"
    script.write_text(_KERNEL.format(root=str(ROOT)))
    env = {**os.environ, "TMPDIR": str(tmp_path), "ATOMSTAT_HEAVY_SLOTS": slots,
           "ATOMSTAT_TURNS": "test"}  # fmt: skip
    procs, outs = [], []
    for i, key in enumerate(keys):
        out = tmp_path / f"out-{i}.json"
        procs.append(subprocess.Popen([sys.executable, str(script), kind, key, str(out),
                                       str(hold)], env=env))  # fmt: skip
        outs.append(out)
    for proc in procs:
        assert proc.wait(timeout=120) == 0
    return [json.loads(out.read_text()) for out in outs]


def _overlaps(runs) -> int:
    """How many pairs of runs held their turn at the same time."""
    runs = sorted(runs, key=lambda r: r["start"])
    return sum(b["start"] < a["stop"] - 0.05 for a, b in zip(runs, runs[1:], strict=False))


def test_one_slot_means_one_network_run_at_a_time(tmp_path):
    runs = _run_kernels(tmp_path, "slot", ["-"] * 4, hold=0.8, slots="1")
    assert all(r["had"] for r in runs)
    assert _overlaps(runs) == 0  # one after another
    assert sum(r["waited"] for r in runs) >= 1  # the others were told they wait


def test_two_slots_let_two_run_together(tmp_path):
    runs = _run_kernels(tmp_path, "slot", ["-"] * 2, hold=2.0, slots="2")
    assert all(r["had"] for r in runs) and _overlaps(runs) == 1


def test_the_same_analysis_waits_for_the_one_making_it(tmp_path):
    same = _run_kernels(tmp_path, "key", ["file-a"] * 3, hold=0.8)
    assert _overlaps(same) == 0
    other = _run_kernels(tmp_path, "key", ["file-a", "file-b"], hold=2.0)
    assert _overlaps(other) == 1  # two files: no wait


def test_a_dead_kernel_lets_go_of_its_turn(tmp_path):
    script = tmp_path / "die.py"
    script.write_text(
        f"import os, sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom app.warmup import heavy_turn\n"
        "with heavy_turn():\n    os._exit(9)\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path), "ATOMSTAT_HEAVY_SLOTS": "1",
           "ATOMSTAT_TURNS": "test"}  # fmt: skip
    assert subprocess.run([sys.executable, str(script)], env=env, timeout=60).returncode == 9
    runs = _run_kernels(tmp_path, "slot", ["-"], hold=0.1)
    assert runs[0]["had"] and not runs[0]["waited"]


def test_a_turn_not_had_in_time_runs_anyway(tmp_path, monkeypatch):
    import tempfile

    from app import warmup

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("ATOMSTAT_HEAVY_SLOTS", "1")
    monkeypatch.setenv("ATOMSTAT_TURNS", "test")
    with warmup.heavy_turn() as first:
        result = {}

        def other():
            with warmup.heavy_turn(wait=0.5) as had:
                result["had"] = had

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(timeout=10)
    assert first and result == {"had": False}
    monkeypatch.setenv("ATOMSTAT_HEAVY_SLOTS", "0")  # no turns at all
    with warmup.heavy_turn() as had:
        assert had is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_background_threads_run_at_a_lower_priority():
    from app.warmup import BACKGROUND_NICE, background_priority

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    seen = {}

    def work():
        background_priority()
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    background_priority()  # the main thread: left as it is
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before
    assert seen["nice"] == min(19, before + BACKGROUND_NICE)


def test_a_visitors_analysis_goes_before_the_warm_ups(tmp_path, monkeypatch):
    import tempfile
    import time

    from app import warmup

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("ATOMSTAT_HEAVY_SLOTS", "1")
    monkeypatch.setenv("ATOMSTAT_TURNS", "test")
    order = []

    def take(name, polite):
        with warmup.heavy_turn(polite=polite):
            order.append(name)
            time.sleep(0.3)

    with warmup.heavy_turn():  # someone's network run
        warm = threading.Thread(target=take, args=("warm-up", True))
        warm.start()
        time.sleep(0.5)  # the warm-up waits first
        user = threading.Thread(target=take, args=("analysis", False))
        user.start()
        time.sleep(0.8)
    for thread in (warm, user):
        thread.join(timeout=20)
    assert order == ["analysis", "warm-up"]


def test_turns_are_taken_by_the_kernels_of_one_server_only(monkeypatch):
    from app.warmup import heavy_turn, turn_group

    monkeypatch.delenv("ATOMSTAT_TURNS", raising=False)
    monkeypatch.delenv("VOILA_BASE_URL", raising=False)
    assert turn_group() is None  # a script, a notebook, the tests: no turns
    with heavy_turn() as had:
        assert had is False
    monkeypatch.setenv("VOILA_BASE_URL", "/")  # a kernel that Voila started
    assert turn_group() == f"voila-{os.getppid()}"
    monkeypatch.setenv("ATOMSTAT_TURNS", "lab/../x")
    assert turn_group() == "labx"
    monkeypatch.setenv("ATOMSTAT_TURNS", "off")
    assert turn_group() is None


def test_lock_folders_of_servers_that_are_gone_are_removed(tmp_path, monkeypatch):
    import tempfile

    from app import warmup

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    root = tmp_path / f"atomstat-turns-{os.getuid()}"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (root / f"voila-{gone.pid}").mkdir(parents=True)
    (root / f"voila-{gone.pid}" / "slot-0.lock").touch()
    (root / f"voila-{os.getpid()}").mkdir()  # a server still running
    monkeypatch.setenv("ATOMSTAT_TURNS", "test")
    assert warmup._turn_folder() == root / "test"
    assert sorted(p.name for p in root.iterdir()) == ["test", f"voila-{os.getpid()}"]
