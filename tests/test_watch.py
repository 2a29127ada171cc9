"""Live mode: files written all at once, slowly in pieces, under a lock, as a growing stack
or a folder of numbered frames; a crash and a restart in between. Every frame is analysed
and written exactly once, and its rows are those of the batch analysis."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pandas as pd
import pytest

import atomstat
from atomstat.dataset import Dataset, read_atoms, source_id
from atomstat.distributed import Settings
from atomstat.simulate import simulate_lattice
from atomstat.watch import Watcher

SETTINGS = Settings(anomalies=None)


def _image(seed, shape=(80, 96)):
    return simulate_lattice("hexagonal", shape=shape, spacing=12, rotation=5.0, rng=seed).image


def _npy_bytes(array):
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _write_slowly(path, data: bytes, pieces=4, pause=0.15):
    with open(path, "wb") as f:
        for part in np.array_split(np.frombuffer(data, np.uint8), pieces):
            f.write(part.tobytes())
            f.flush()
            time.sleep(pause)


def assert_same_rows(got, expected, **kwargs):
    """The same rows, in the same order, with the same columns and dtypes; floats equal to
    float32 round-off (TensorFlow may round a batch of one frame differently in the last bit)."""
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-4, atol=1e-3, **kwargs)


class Running:
    """A watcher in a thread, stopped on exit."""

    def __init__(self, folder, out, **kwargs):
        kwargs.setdefault("settings", SETTINGS)
        self.watcher = Watcher(folder, out, settle=0.4, rescan=0.5, **kwargs)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.watcher.run, args=(self.stop,))

    def __enter__(self):
        self.thread.start()
        return self.watcher

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(60)


def _wait(condition, timeout=120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the watcher")


def _complete(out, path):
    record = Dataset(out).record(source_id(path))
    return record is not None and bool(record["complete"])


def test_files_written_at_once_in_pieces_and_under_a_lock(tmp_path):
    folder, out = tmp_path / "microscope", tmp_path / "results"
    folder.mkdir()
    images = {name: _image(seed) for seed, name in enumerate(("a.npy", "b.npy", "c.npy", "d.png"))}
    with Running(folder, out):
        tmp = folder / ".a.partial.npy"  # hidden while it is written
        np.save(tmp, images["a.npy"])
        os.replace(tmp, folder / "a.npy")  # all at once
        _write_slowly(folder / "b.npy", _npy_bytes(images["b.npy"]))  # in pieces
        lock = folder / "c.npy.lock"
        lock.touch()
        _write_slowly(folder / "c.npy", _npy_bytes(images["c.npy"]), pieces=2, pause=1.0)
        time.sleep(1.0)  # complete by its size, but the writer still holds the lock
        assert not _complete(out, folder / "c.npy")
        lock.unlink()
        png = (images["d.png"] / images["d.png"].max() * 65535).astype(np.uint16)
        from PIL import Image

        buffer = __import__("io").BytesIO()
        Image.fromarray(png).save(buffer, format="PNG")
        _write_slowly(folder / "d.png", buffer.getvalue(), pieces=3, pause=0.1)
        for name in images:
            _wait(lambda n=name: _complete(out, folder / n))
    for name in images:
        expected = atomstat.analyze(atomstat.load(folder / name))
        got = read_atoms(out, folder / name)
        assert_same_rows(got, expected)
    assert len(pd.read_parquet(out / "atoms").groupby(["source_id", "frame"])) == 4


def test_a_growing_stack_is_followed_frame_by_frame(tmp_path):
    folder, out = tmp_path / "microscope", tmp_path / "results"
    folder.mkdir()
    frames = np.stack([_image(10 + i) for i in range(4)])
    path = folder / "movie.npy"
    header = _npy_bytes(frames)[: -frames.nbytes]  # the header declares all 4 frames
    seen = []
    with Running(folder, out):
        with open(path, "wb") as f:
            f.write(header)
            for frame in frames:
                f.write(frame.tobytes()[:1000])  # a frame lands in two writes
                f.flush()
                time.sleep(0.1)
                f.write(frame.tobytes()[1000:])
                f.flush()
                done = len(seen)
                _wait(lambda d=done: len(Dataset(out).done_frames(source_id(path))) > d)
                seen.append(sorted(Dataset(out).done_frames(source_id(path))))
        _wait(lambda: _complete(out, path))
    assert seen == [[0], [0, 1], [0, 1, 2], [0, 1, 2, 3]]  # each as soon as it landed
    assert_same_rows(read_atoms(out, path), atomstat.analyze(frames))
    assert Dataset(out).record(source_id(path))["sha256"] is not None


def test_a_folder_of_numbered_frames(tmp_path):
    folder, out = tmp_path / "microscope", tmp_path / "results"
    (folder / "run7").mkdir(parents=True)
    frames = np.stack([_image(20 + i) for i in range(3)])
    with Running(folder, out, polling=True):  # as on a network share
        for i, frame in enumerate(frames, start=1):
            _write_slowly(folder / "run7" / f"frame_{i:04d}.npy", _npy_bytes(frame), pieces=2)
        sid = source_id(folder / "run7")
        _wait(lambda: Dataset(out).done_frames(sid) == {1, 2, 3})
    expected = atomstat.analyze(frames).assign(frame=lambda t: t["frame"] + 1)
    got = read_atoms(out, sid)
    assert_same_rows(got, expected, check_names=False)


def test_a_crash_and_a_restart_analyse_every_frame_exactly_once(tmp_path):
    folder, out = tmp_path / "microscope", tmp_path / "results"
    folder.mkdir()
    frames = np.stack([_image(30 + i) for i in range(5)])
    path = folder / "movie.npy"
    header = _npy_bytes(frames)[: -frames.nbytes]
    log = tmp_path / "watch.log"
    command = [sys.executable, "-m", "atomstat.cli", "watch", str(folder), "--out", str(out),
               "--anomalies", "ocsvm", "--settle", "0.4"]  # fmt: skip
    with open(log, "w") as stream:
        proc = subprocess.Popen(command, stdout=stream, stderr=subprocess.STDOUT)
    try:
        with open(path, "wb") as f:
            f.write(header)
            for frame in frames[:2]:
                f.write(frame.tobytes())
            f.flush()
            _wait(lambda: len(Dataset(out).done_frames(source_id(path))) == 2, timeout=240)
            proc.send_signal(signal.SIGKILL)  # a crash, mid-movie
            proc.wait(30)
            for frame in frames[2:]:
                f.write(frame.tobytes())
    finally:
        proc.kill()
    settings = Settings(anomalies="ocsvm")
    restarted = Watcher(folder, out, settings=settings, settle=0.4).run(once=True)
    assert restarted == 3  # frames 2, 3, 4: nothing written twice
    again = Watcher(folder, out, settings=settings, settle=0.4).run(once=True)
    assert again == 0
    written = [line for line in log.read_text().splitlines() if "wrote movie.npy frame" in line]
    assert len(written) == 2
    atoms = read_atoms(out, path)
    assert atoms.groupby("frame").size().index.tolist() == [0, 1, 2, 3, 4]
    expected = atomstat.analyze(frames)
    assert_same_rows(atoms.drop(columns=["anomaly", "anomaly_score"]), expected)
    assert atoms["anomaly"].dtype == bool


def test_an_unreadable_file_is_reported_and_skipped(tmp_path, caplog):
    folder, out = tmp_path / "microscope", tmp_path / "results"
    folder.mkdir()
    (folder / "broken.npy").write_bytes(b"\x93NUMPY\x01\x00garbage that is no header" * 8)
    (folder / "broken.tif").write_bytes(b"II*\x00 not a tiff at all")
    np.save(folder / "good.npy", _image(40))
    with caplog.at_level("ERROR", logger="atomstat"):
        Watcher(folder, out, settings=SETTINGS, settle=0.3, polling=True).run(once=True)
    assert _complete(out, folder / "good.npy")
    failures = json.loads((out / "watch_failures.json").read_text())
    assert set(failures) == {str(folder / "broken.npy"), str(folder / "broken.tif")}
    assert sum("skipped" in r.message and "broken" in r.message for r in caplog.records) == 2
    caplog.clear()
    with caplog.at_level("ERROR", logger="atomstat"):  # a restart does not retry them
        assert Watcher(folder, out, settings=SETTINGS, settle=0.3).run(once=True) == 0
    assert not [r for r in caplog.records if "broken" in r.message]
    np.save(folder / "broken.npy", _image(41))  # fixed: analysed now
    Watcher(folder, out, settings=SETTINGS, settle=0.3).run(once=True)
    assert _complete(out, folder / "broken.npy")


def test_the_warm_up_writes_nothing_and_leaves_nothing_behind(tmp_path, monkeypatch):
    """A live watcher analyses a small simulated lattice before the first file comes
    (the whole per-file path, so that the first file does not pay the first calls), into
    a scratch dataset that is removed: the user's dataset stays empty."""
    import tempfile

    from atomstat import watch as watch_module

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    seen = []
    real = watch_module.analyze_files

    def counted(files, out, **kwargs):
        seen.append(real(files, out, **kwargs))
        return seen[-1]

    monkeypatch.setattr(watch_module, "analyze_files", counted)
    folder, out = tmp_path / "incoming", tmp_path / "results"
    folder.mkdir()
    with Running(folder, out):
        _wait(lambda: len(seen) == 1)
    assert seen[0].frames == 1 and not seen[0].failed  # the warm-up's one frame
    assert Dataset(out).sources().empty and list(scratch.iterdir()) == []


def test_bad_arguments(tmp_path):
    with pytest.raises(NotADirectoryError, match="not a folder"):
        Watcher(tmp_path / "missing", tmp_path / "out")
