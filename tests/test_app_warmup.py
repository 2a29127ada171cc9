"""The dashboard's warm-up: TensorFlow's start-up lines must not reach the page."""

import os

from app.warmup import silenced_stderr, start_warmup


def test_descriptor_2_is_silenced_then_restored(capfd):
    silenced_stderr(lambda: os.write(2, b"oneDNN custom operations are on\n"))
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"


def test_a_failing_warm_up_does_not_raise(capfd):
    def boom():
        os.write(2, b"noise\n")
        raise RuntimeError("no model")

    silenced_stderr(boom)
    assert capfd.readouterr().err == ""


def test_warm_up_loads_the_shipped_model_quietly(capfd):
    start_warmup().join(timeout=120)
    from atomstat.fcn.predict import load_model

    model, _ = load_model(None)
    assert model.count_params() == 94468
    assert "oneDNN" not in capfd.readouterr().err
