"""The shipped networks on LiteRT (atomstat.fcn.lite): the same maps as TensorFlow, the
right engine for each model, and a stale ``.tflite`` never used."""

import json
import shutil

import numpy as np
import pytest

import atomstat
from atomstat.fcn import lite, predict
from atomstat.fcn.predict import load_model, model_path, segment
from atomstat.simulate import Stem, simulate_lattice


@pytest.fixture(scope="module")
def sim():
    return simulate_lattice("hexagonal", shape=(300, 340), spacing=18, sigma=2.2,
                            imaging=Stem(dose=60), rng=11)  # fmt: skip


@pytest.mark.parametrize("name", ["universal", "stm"])
def test_every_shipped_model_has_a_fresh_tflite(name):
    path = model_path(name)
    assert lite.usable(path) == path.with_suffix(".tflite")
    record = json.loads(path.with_suffix(".tflite.json").read_text())
    assert record["max_abs_difference"] <= lite.AGREEMENT


def test_the_shipped_model_runs_on_litert_by_default_and_users_files_on_tensorflow(tmp_path):
    model, call = load_model()
    assert isinstance(model, lite.LiteModel) and isinstance(call, lite.LiteCall)
    copy = tmp_path / "mine.keras"
    shutil.copy(model_path("universal"), copy)
    model, call = load_model(str(copy))
    assert not isinstance(call, lite.LiteCall) and hasattr(model, "predict")
    with pytest.raises(ValueError, match="only the shipped models"):
        load_model(str(copy), engine="litert")
    with pytest.raises(ValueError, match="ATOMSTAT_ENGINE"):
        load_model(engine="onnx")


@pytest.mark.parametrize("resolution", ["full", 2])
def test_litert_maps_equal_tensorflow_maps(sim, resolution, monkeypatch):
    """The whole segment path (normalisation, margins, tiles of a 1100 px image, block
    means) gives the same map on both engines, to 1e-5."""
    monkeypatch.setenv("ATOMSTAT_ENGINE", "litert")
    on_lite = segment(sim.image, sigma=2.2, resolution=resolution)
    monkeypatch.setenv("ATOMSTAT_ENGINE", "tensorflow")
    on_tf = segment(sim.image, sigma=2.2, resolution=resolution)
    assert np.abs(on_lite - on_tf).max() <= 1e-5
    if resolution == "full":  # a frame larger than a tile: tiled on both
        big = np.tile(sim.image, (4, 4))[:1100, :1100]
        monkeypatch.setenv("ATOMSTAT_ENGINE", "litert")
        a = segment(big, sigma=2.2)
        monkeypatch.setenv("ATOMSTAT_ENGINE", "tensorflow")
        assert np.abs(a - segment(big, sigma=2.2)).max() <= 1e-5


def test_litert_atoms_match_the_truth(sim, monkeypatch):
    monkeypatch.setenv("ATOMSTAT_ENGINE", "litert")
    atoms = atomstat.analyze(sim.image)
    from atomstat.metrics import match_points

    truth = sim.atoms[["x", "y"]].to_numpy()
    ti, fi, _ = match_points(truth, atoms[["x", "y"]].to_numpy(), 3.0)
    assert len(ti) >= 0.99 * len(truth) and len(fi) >= 0.99 * len(atoms)


def test_a_tflite_made_from_another_keras_is_not_used(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    for suffix in (".keras", ".tflite", ".tflite.json"):
        shutil.copy(model_path("universal").with_suffix(suffix), folder / f"universal{suffix}")
    monkeypatch.setattr(predict, "_MODELS", folder)
    assert isinstance(load_model()[1], lite.LiteCall)
    with open(folder / "universal.keras", "ab") as f:  # retrained since: another file
        f.write(b"\0")
    assert lite.usable(folder / "universal.keras") is None
    with pytest.raises(ValueError, match="made from universal.keras"):
        load_model(engine="litert")


def test_one_interpreter_per_shape_gives_the_same_map_and_stays_within_its_budget(monkeypatch):
    """Shapes that alternate (the block check's crops, then the image) each keep their
    interpreter; a map is the same whatever ran between, and the least recently used
    interpreter goes once the pool holds more pixels than its budget."""
    monkeypatch.setattr(lite, "POOL_PIXELS", 96 * 96 + 80 * 80)
    call = lite.LiteCall(model_path("universal").with_suffix(".tflite"))
    rng = np.random.default_rng(0)
    big, small = rng.random((1, 96, 96, 1)), rng.random((1, 64, 64, 1))
    first = call(big)
    assert call(small).shape == (1, 64, 64, 2)
    np.testing.assert_array_equal(call(big), first)  # after another shape ran
    # 32^2 is the model's check at load; the most recently used last
    assert list(call._pool) == [(1, 32, 32, 1), (1, 64, 64, 1), (1, 96, 96, 1)]
    call(rng.random((1, 80, 80, 1)))
    assert list(call._pool) == [(1, 96, 96, 1), (1, 80, 80, 1)]  # the oldest went, to budget
    np.testing.assert_allclose(first.sum(axis=-1), 1.0, atol=1e-5)
