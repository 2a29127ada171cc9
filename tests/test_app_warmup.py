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
    import numpy as np

    from atomstat.fcn.predict import load_model

    _, call = load_model(None)  # loaded by the warm-up: LiteRT's, or TensorFlow's traced call
    assert np.asarray(call(np.zeros((1, 32, 32, 1), np.float32))).shape == (1, 32, 32, 2)
    assert "oneDNN" not in capfd.readouterr().err


def test_warm_up_image_is_not_taken_for_a_flat_one(caplog):
    """The warm-up once ran on a blank image: the page then said 'the image is flat'."""
    import logging

    from app.warmup import _first_prediction, warmup_image

    image = warmup_image()
    assert image.std() > 0.05 * abs(image.mean())
    with caplog.at_level(logging.INFO, logger="atomstat"):
        _first_prediction()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


class _Box:
    """Stands in for the page's error Output: counts how often it captured."""

    def __init__(self):
        self.entered = 0

    def __enter__(self):
        self.entered += 1

    def __exit__(self, *exc):
        return None


def test_warnings_and_log_lines_never_reach_the_error_box():
    import logging
    import types
    import warnings

    import pytest

    from app.report import report

    state, box = types.SimpleNamespace(status="opened"), _Box()
    with report(state, box):
        warnings.warn("this HyperSpy API is deprecated", DeprecationWarning, stacklevel=1)
        logging.getLogger("hyperspy.io").warning("a library's log line")
        logging.getLogger("atomstat.fcn.predict").warning("the image is flat (all pixels 0)")
    assert box.entered == 0  # the box captured nothing while the callback ran
    assert state.status == "opened (note: the image is flat (all pixels 0))"
    with pytest.raises(ValueError, match="bad value"), report(state, box):
        raise ValueError("bad value")
    assert box.entered == 1 and state.status == "Error: ValueError: bad value"
