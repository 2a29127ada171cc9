"""Analysis on a Dask LocalCluster (two worker processes) and the Parquet dataset batch.

One cluster serves the whole module. The distributed tables are checked against
the single-process :func:`atomstat.analyze` row for row; a worker killed in the
middle of a batch, a failing chunk and an interrupted batch are survived.
"""

import importlib.util
import os
import signal
import threading
import time

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

import atomstat
from atomstat import distributed
from atomstat.batch import analyze_files
from atomstat.dataset import Dataset, read_atoms, source_id
from atomstat.simulate import simulate_lattice

pytest.importorskip("distributed")


def _stack(n, shape=(96, 96), seed=0):
    return np.stack(
        [
            simulate_lattice(
                "hexagonal", shape=shape, spacing=12, rotation=10.0, rng=seed + i
            ).image
            for i in range(n)
        ]
    )


@pytest.fixture(scope="module")
def client():
    c = distributed.local_cluster(2, dashboard=False)
    yield c
    distributed.close(c)


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    folder = tmp_path_factory.mktemp("movie")
    stack = _stack(6)
    np.save(folder / "movie.npy", stack)
    np.save(folder / "image.npy", _stack(1, (112, 128), seed=50)[0])
    return folder, stack


@pytest.fixture(scope="module")
def reference(movie):
    folder, stack = movie
    return atomstat.analyze(stack), atomstat.analyze(np.load(folder / "image.npy"))


def test_cluster_table_equals_single_process_row_for_row(client, movie, reference):
    folder, stack = movie
    from_file = distributed.analyze(folder / "movie.npy", client=client, frames_per_task=2)
    from_array = distributed.analyze(stack, client=client, frames_per_task=4)
    pd.testing.assert_frame_equal(from_file, reference[0])  # the same batches: exactly equal
    pd.testing.assert_frame_equal(from_array, reference[0])
    assert from_file.attrs["sigma"] == reference[0].attrs["sigma"]
    assert set(from_file["frame"]) == set(range(6))


def test_batch_on_cluster_writes_the_single_process_tables(client, movie, reference, tmp_path):
    folder, _ = movie
    files = [folder / "movie.npy", folder / "image.npy"]
    report = analyze_files(files, tmp_path, client=client, material="graphene", frames_per_task=2)
    assert report.failed == [] and report.frames == 7
    for path, ref in zip(files, reference, strict=True):
        got = read_atoms(tmp_path, path)
        assert_same_rows(got, ref)
        assert got.attrs["material"] == "graphene" and got.attrs["frames"] == ref.frame.max() + 1
    records = Dataset(tmp_path).sources().set_index("name")
    assert records.loc["movie.npy", "sha256"] == _sha256(folder / "movie.npy")
    assert records["complete"].all() and set(records["model"]) == {"universal"}
    # every reader sees the same rows: pandas on the folder, DuckDB on the files
    import duckdb

    all_rows = pd.read_parquet(tmp_path / "atoms")
    assert len(all_rows) == len(reference[0]) + len(reference[1])
    sql = f"select count(*) from read_parquet('{tmp_path}/atoms/*/*.parquet')"
    n = duckdb.connect().execute(sql).fetchone()
    assert n[0] == len(all_rows)


def test_each_worker_loads_the_model_once(client, movie, tmp_path):
    before = distributed.load_counts(client)
    analyze_files([movie[0] / "movie.npy"], tmp_path, client=client, frames_per_task=1)
    after = distributed.load_counts(client)
    assert len(after) == 2 and after == before
    assert all(1 <= n <= 2 for n in after.values())  # universal, and stm for STM files


def test_a_rerun_skips_what_is_written(movie, reference, tmp_path):
    folder, _ = movie
    path = folder / "movie.npy"
    first = analyze_files([path], tmp_path, frames_per_task=2)  # in this process
    assert first.frames == 6 and first.written == [str(path)]
    again = analyze_files([path], tmp_path, frames_per_task=2)
    assert again.frames == 0 and again.skipped == [str(path)]
    has_finder = importlib.util.find_spec("atomstat.defects") is not None
    assert bool(list((tmp_path / "defects").glob("*/*.parquet"))) == has_finder
    plain = analyze_files([path], tmp_path / "plain", frames_per_task=3, defects=False)
    assert plain.frames == 6 and not list((tmp_path / "plain" / "defects").glob("*/*"))
    # an interrupted batch: one partition never written, the file not marked complete
    ds, sid = Dataset(tmp_path), source_id(path)
    (tmp_path / "atoms" / sid / "frames-000002-000003.parquet").unlink()
    ds.write_source({**ds.record(sid), "complete": False})
    resumed = analyze_files([path], tmp_path, frames_per_task=2)
    assert resumed.frames == 2 and ds.record(sid)["complete"]
    assert_same_rows(read_atoms(tmp_path, path), reference[0])


def test_a_failing_chunk_is_retried_once_named_and_the_batch_goes_on(client, tmp_path):
    stack = _stack(4)
    stack[3, 0, 0] = 1e6  # the preprocessing below fails on this frame
    np.save(tmp_path / "bad_frame.npy", stack)
    (tmp_path / "corrupt.npy").write_bytes(b"\x93NUMPY not really")
    np.save(tmp_path / "good.npy", stack[:2])
    calls = tmp_path / "calls"

    def fragile(image):
        if image.max() > 1e5:
            with open(calls, "a") as f:
                f.write("x")
            raise RuntimeError("detector saturated")
        return image

    files = [tmp_path / n for n in ("bad_frame.npy", "corrupt.npy", "good.npy")]
    report = analyze_files(
        files, tmp_path / "ds", client=client, preprocess=fragile, frames_per_task=2
    )
    failed = {(f["file"], f["frames"]): f["error"] for f in report.failed}
    assert set(failed) == {(str(files[0]), "2-3"), (str(files[1]), None)}
    assert "frames 2-3" in failed[(str(files[0]), "2-3")]
    assert "detector saturated" in failed[(str(files[0]), "2-3")]
    assert "corrupt.npy" in failed[(str(files[1]), None)]
    assert calls.read_text() == "xx"  # the first try and one retry
    assert report.written == [str(files[2])]
    ds = Dataset(tmp_path / "ds")
    assert ds.done_frames(source_id(files[0])) == {0, 1}
    assert not ds.record(source_id(files[0]))["complete"]
    assert "FAILED" in report.summary() and "corrupt.npy" in report.summary()


def test_a_worker_killed_mid_batch_is_survived(client, tmp_path):
    stack = _stack(6, seed=20)
    np.save(tmp_path / "long.npy", stack)
    reference = atomstat.analyze(stack)
    pids = client.run(os.getpid)
    atoms = tmp_path / "ds" / "atoms"

    def kill_after_first_partition():
        deadline = time.time() + 300
        while time.time() < deadline and not list(atoms.glob("*/*.parquet")):
            time.sleep(0.05)
        os.kill(next(iter(pids.values())), signal.SIGKILL)

    killer = threading.Thread(target=kill_after_first_partition)
    killer.start()
    report = analyze_files(
        [tmp_path / "long.npy"], tmp_path / "ds", client=client, frames_per_task=1
    )
    killer.join()
    assert report.failed == [] and report.frames == 6
    assert sorted(Dataset(tmp_path / "ds").done_frames(source_id(tmp_path / "long.npy"))) == list(
        range(6)
    )
    assert_same_rows(read_atoms(tmp_path / "ds", tmp_path / "long.npy"), reference)


def test_tiles_of_a_huge_frame_find_the_same_atoms(client):
    image = simulate_lattice("square", shape=(256, 240), spacing=12, rotation=5.0, rng=3).image
    whole = atomstat.analyze(image)
    tiled = distributed.analyze(image, client=client, tile=128, tile_margin=40)
    assert distributed.tiles(image.shape, 128, 40)[-1][1] == ((128, 256), (120, 240))
    assert abs(len(tiled) - len(whole)) <= 2
    dist, _ = cKDTree(whole[["x", "y"]]).query(tiled[["x", "y"]])
    assert np.mean(dist < 0.05) > 0.97


def test_the_command_line_runs_a_batch_on_the_cluster(client, movie, reference, tmp_path, caplog):
    from atomstat.cli import main

    folder, _ = movie
    address = client.scheduler.address
    args = ["analyze", str(folder / "movie.npy"), "--out", str(tmp_path), "--material", "Si"]
    with caplog.at_level("INFO", logger="atomstat"):
        assert main([*args, "--scheduler", address]) == 0
    assert_same_rows(read_atoms(tmp_path, folder / "movie.npy"), reference[0])
    assert any("1 file(s) analysed (6 frames)" in r.message for r in caplog.records)
    (tmp_path / "bad.npy").write_bytes(b"no image")
    bad = ["analyze", str(tmp_path / "bad.npy"), "--out", str(tmp_path), "--dataset"]
    assert main(bad) == 1  # in this process; the failure is named and the exit code says so
    assert any("FAILED" in r.message and "bad.npy" in r.message for r in caplog.records)


def _worker_settings():
    import os

    import dask

    return os.environ.get("MALLOC_TRIM_THRESHOLD_"), dask.config.get(
        "distributed.worker.profile.enabled"
    )


def test_workers_keep_glibcs_memory_reuse_and_no_profiler(client):
    """Dask's MALLOC_TRIM_THRESHOLD_ made every large numpy temporary a fresh mapping
    (850,000 page faults per 4-frame task) and its profiler sampled every task's stack:
    neither is set on the workers that local_cluster starts."""
    import dask

    assert set(client.run(_worker_settings).values()) == {(None, False)}
    # and only there: the user's own Dask settings are not changed
    assert dask.config.get("distributed.worker.profile.enabled") is True


def test_bad_arguments_are_named():
    class Model:
        pass

    with pytest.raises(TypeError, match="shipped name or a .keras path"):
        distributed.Settings(model=Model())
    with pytest.raises(ValueError, match="not both"):
        distributed.connect("tcp://127.0.0.1:1", 2)
    with pytest.raises(ValueError, match="frames_per_task"):
        analyze_files([], "unused", frames_per_task=0)


def assert_same_rows(got, expected, **kwargs):
    """The same rows, in the same order, with the same columns and dtypes; floats equal to
    float32 round-off (TensorFlow may round a batch of one frame differently in the last bit)."""
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-4, atol=1e-3, **kwargs)


def _sha256(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
