"""Dumbbell movies and drift on a Dask LocalCluster (two worker processes).

The dumbbell table found with ``client=`` must equal the single-process one row
for row, from a file the workers read, from a lazy stack and from an array; the
drift registered with the pair cross-correlations as tasks must equal the
single-process drift, and both must be the simulated truth.
"""

import numpy as np
import pandas as pd
import pytest

import atomstat
from atomstat import distributed
from atomstat.movie import simulate_movie
from atomstat.register import estimate_drift

pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    c = distributed.local_cluster(2, dashboard=False)
    yield c
    distributed.close(c)


@pytest.fixture(scope="module")
def movie(tmp_path_factory):
    sim = simulate_movie(7, shape=(128, 128), dose=2000, angle_spread=20, drift=6.0,
                         drift_max=8.0, rng=7)  # fmt: skip
    path = tmp_path_factory.mktemp("dumbbells") / "movie.npy"
    np.save(path, sim.frames)
    return sim, path


@pytest.fixture(scope="module")
def single(movie):
    sim, _ = movie
    return atomstat.find_dumbbells(sim.frames)


def _matched(found, truth, radius=2.0):
    """Share of the true (inside) dumbbells with a found centre within ``radius`` px."""
    from scipy.spatial import cKDTree

    hits = 0
    inside = truth[truth.inside]
    for frame, rows in inside.groupby("frame"):
        got = found[found.frame == frame][["x", "y"]].to_numpy()
        if not len(got):
            continue
        d, _ = cKDTree(got).query(rows[["x", "y"]].to_numpy())
        hits += int((d <= radius).sum())
    return hits / len(inside)


def test_dumbbells_on_the_cluster_equal_the_single_process_table(client, movie, single):
    sim, path = movie
    assert _matched(single, sim.dumbbells) >= 0.9  # the reference itself finds the truth
    from_file = atomstat.find_dumbbells(path, client=client, frames_per_task=2)
    lazy = atomstat.load(path, lazy=True)  # the workers read the file it came from
    from_lazy = atomstat.find_dumbbells(lazy, client=client, frames_per_task=3)
    import dask.array as da

    from_dask = atomstat.find_dumbbells(da.from_array(sim.frames, chunks=(2, 128, 128)),
                                        client=client, frames_per_task=4)  # fmt: skip
    for got in (from_file, from_lazy, from_dask):
        pd.testing.assert_frame_equal(got, single)
        assert got.attrs["sigma"] == single.attrs["sigma"]
    assert set(from_file["frame"]) == set(range(7))


def test_blob_route_on_the_cluster_equals_the_single_process_table(client, movie):
    sim, path = movie
    here = atomstat.find_dumbbells(sim.frames[:4], method="blob")
    there = atomstat.find_dumbbells(sim.frames[:4], method="blob", client=client,
                                    frames_per_task=2)  # fmt: skip
    pd.testing.assert_frame_equal(there, here)
    assert there.attrs["threshold"] == here.attrs["threshold"]


def test_cluster_dumbbells_refuse_a_model_object(client, movie):
    with pytest.raises(TypeError, match="shipped name or a .keras path"):
        atomstat.find_dumbbells(movie[0].frames[:1], client=client, model=object())


def test_drift_on_the_cluster_equals_the_single_process_drift(client, movie, single):
    sim, path = movie
    here = estimate_drift(single, sim.frames)
    err = (here[["dx", "dy"]] - sim.drift[["dx", "dy"]]).abs().to_numpy()
    assert err.max() < 0.5  # the simulated drift, to a fraction of a px
    lazy = atomstat.load(path, lazy=True)  # the workers read the file it came from
    for images, per_task in ((lazy, 2), (sim.frames, 4), (lazy.data, 3)):
        there = estimate_drift(single, images, client=client, frames_per_task=per_task)
        pd.testing.assert_frame_equal(there, here)
    points_only = estimate_drift(single, client=client)  # no images: nothing to send
    pd.testing.assert_frame_equal(points_only, estimate_drift(single))
