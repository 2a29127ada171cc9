"""The analysis cache: maps and tables kept exactly, keyed by file, model and settings;
a second visitor (or a reload) gets the analysis without running the network."""

import numpy as np
import pandas as pd
import pytest

import atomstat.pipeline
from app.state import AppState
from atomstat.cache import AnalysisCache, cache_dir, model_key
from atomstat.simulate import simulate_lattice
from atomstat.table import make_atoms


@pytest.fixture(scope="module")
def lattice():
    return simulate_lattice("square", shape=(128, 128), spacing=16, sigma=2.2, rotation=0, rng=4)


@pytest.fixture
def data_dir(tmp_path, lattice, threshold_model):
    np.save(tmp_path / "lattice.npy", lattice.image)
    threshold_model.save(tmp_path / "threshold.keras")
    return tmp_path


@pytest.fixture
def no_network(monkeypatch):
    """Make any run of the network fail the test."""

    def segment(*args, **kwargs):
        raise AssertionError("the network ran")

    monkeypatch.setattr(atomstat.pipeline, "segment", segment)


def test_cache_keeps_maps_and_tables_exactly_under_their_keys(tmp_path):
    cache = AnalysisCache(tmp_path)
    rng = np.random.default_rng(0)
    prob = rng.random((2, 40, 50), dtype=np.float32)
    atoms = make_atoms({"x": [1.25, 2.5], "y": [3.0, np.nan]}, attrs={"units": "nm", "sigma": 2.0})
    atoms["frame"] = np.array([0, 1], np.int64)
    written = cache.save("f1", "m1", {"threshold": 0.5}, atoms=atoms, prob=prob)
    assert len(written) == 2 and all(p.parent == tmp_path for p in written)
    np.testing.assert_array_equal(cache.load_map("f1", "m1"), prob)
    back = cache.load_atoms("f1", "m1", {"threshold": 0.5})
    pd.testing.assert_frame_equal(back, atoms)
    assert back.attrs["units"] == "nm" and back.attrs["sigma"] == 2.0
    assert cache.load_map("f2", "m1") is None and cache.load_map("f1", "m2") is None
    assert cache.load_atoms("f1", "m1", {"threshold": 0.55}) is None


def test_a_damaged_entry_is_a_miss_and_the_cache_stays_under_its_limit(tmp_path):
    cache = AnalysisCache(tmp_path, limit=10_000)
    path = cache.save("f1", "m", {}, prob=np.zeros((30, 30), np.float32))[0]
    path.write_bytes(b"PK\x03\x04 not a zip")
    assert cache.load_map("f1", "m") is None and not path.exists()
    for i in range(5):  # 3.6 kB each: only the last two fit in 10 kB
        cache.save(f"f{i}", "m", {}, prob=np.zeros((30, 30), np.float32))
    assert [cache.load_map(f"f{i}", "m") is not None for i in range(5)] == [0, 0, 0, 1, 1]


def test_model_key_follows_the_model_file(tmp_path, threshold_model):
    path = tmp_path / "mine.keras"
    threshold_model.save(path)
    first = model_key(path)
    assert first.startswith("mine-") and model_key(path) == first
    path.write_bytes(path.read_bytes() + b"\0")  # the file changed: another model
    assert model_key(path) != first


def test_a_second_visitor_gets_the_analysis_without_the_network(data_dir, monkeypatch):
    first = AppState(data_dir, model="threshold.keras", user="ana")
    assert first.open_file("lattice.npy") and first.detect()
    assert list(cache_dir(data_dir).glob("*-map.npz"))
    monkeypatch.setattr(atomstat.pipeline, "segment", _fail)
    second = AppState(data_dir, user="ben")  # another kernel, with the default model
    assert second.open_file("lattice.npy")  # opened: analysed at once
    assert second.model == "threshold.keras" and "restored the last analysis" in second.status
    pd.testing.assert_frame_equal(second.table, first.table)
    np.testing.assert_array_equal(second.prob, first.prob)  # the map is back too
    assert second.detect() and len(second.table) == len(first.table)  # a cache hit
    second.set_threshold(0.3)  # from the cached map, no network
    third = AppState(data_dir, user="cy")
    assert third.open_file("lattice.npy") and third.threshold == 0.3
    pd.testing.assert_frame_equal(third.table, second.table)


def test_a_changed_file_is_not_given_the_old_analysis(data_dir, lattice, monkeypatch):
    first = AppState(data_dir, model="threshold.keras")
    assert first.open_file("lattice.npy") and first.detect()
    np.save(data_dir / "lattice.npy", lattice.image[:, ::-1].copy())  # other content, same name
    monkeypatch.setattr(atomstat.pipeline, "segment", _fail)
    again = AppState(data_dir, model="threshold.keras")
    assert again.open_file("lattice.npy")
    assert again.table is None and again.prob is None
    with pytest.raises(AssertionError, match="the network ran"):
        again.detect()


def _fail(*args, **kwargs):
    raise AssertionError("the network ran")
