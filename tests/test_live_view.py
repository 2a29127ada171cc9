"""The Live view's feed and widgets on a dataset that grows while they watch."""

import io

import numpy as np
import pandas as pd
import PIL.Image
import pytest

from atomstat.batch import analyze_files
from atomstat.simulate import Defects, simulate_lattice

pytest.importorskip("bqplot")

from app.live_view import LiveFeed, LiveView  # noqa: E402


def _save(folder, name, seed):
    sim = simulate_lattice(
        "hexagonal", shape=(96, 96), spacing=12, defects=Defects(dopants=0.03, dopant_ratio=2.5),
        rng=seed,
    )  # fmt: skip
    np.save(folder / name, sim.image)
    return folder / name


def test_the_feed_follows_new_partitions(tmp_path):
    out = tmp_path / "results"
    first = _save(tmp_path, "a.npy", 0)
    analyze_files([first], out, anomalies="ocsvm")
    feed = LiveFeed(out, bins=20)
    view = LiveView(feed)
    assert view.refresh()
    rows = pd.read_parquet(out / "atoms")
    assert feed.atoms == len(rows) and feed.frames == 1
    assert feed.counts["area"].sum() == np.isfinite(rows["area"]).sum()
    assert feed.kinds["anomaly flag"] == int(rows["anomaly"].sum())
    defects = out / "defects"
    if defects.is_dir() and list(defects.glob("*/*.parquet")):  # where a defect finder ran
        kinds = pd.read_parquet(defects)["kind"].value_counts()
        assert all(feed.kinds[k] == n for k, n in kinds.items())
    assert np.array_equal(feed.newest_image(), np.load(first))
    assert len(view.points.x) == len(rows) and "frame 0" in view.frame.title
    assert not view.refresh()  # nothing new
    shown = view.image.image
    second = _save(tmp_path, "b.npy", 1)
    analyze_files([second], out, anomalies="ocsvm")
    assert view.refresh()
    rows = pd.read_parquet(out / "atoms")
    assert feed.atoms == len(rows) and feed.frames == 2
    assert feed.counts["nn_distance"].sum() == np.isfinite(rows["nn_distance"]).sum()
    assert np.array_equal(feed.newest_image(), np.load(second))
    assert f"{len(rows)} atoms" in view.table.value
    # the frame drawn under the atoms is the newest one, in a new Image widget (bqplot does
    # not redraw on a changed value), the old one closed, and the scales span it
    assert view.image.image is not shown and shown.comm is None
    drawn = np.asarray(PIL.Image.open(io.BytesIO(view.image.image.value)))
    assert drawn.shape[:2] == np.load(second).shape
    assert (view.sx.min, view.sx.max) == (-0.5, 95.5) and (view.sy.min, view.sy.max) == (-0.5, 95.5)
    other = LiveFeed(out)  # a second viewer sees the same run
    other.poll()
    assert other.atoms == feed.atoms and other.kinds == feed.kinds


def test_an_empty_run_shows_nothing_yet(tmp_path):
    feed = LiveFeed(tmp_path)
    assert not feed.poll() and feed.newest_image() is None
    view = LiveView(feed, interval=0.05)
    view.start()
    view.stop()
    assert view.frame.title == "waiting"
