"""Wrong arguments to the finder's stages get a clear error that names them, or a warning;
never a traceback from inside numpy, scipy or keras, and never a silent wrong result."""

import logging

import numpy as np
import pandas as pd
import pytest

import atomstat
from atomstat.dumbbells import reference_angle
from atomstat.fcn.normalize import normalize
from atomstat.register import align_frames
from atomstat.simulate import simulate_lattice
from atomstat.timeseries import unwrap_angles


@pytest.fixture(scope="module")
def lattice():
    sim = simulate_lattice("hexagonal", shape=(96, 96), spacing=14, rng=0)
    return sim.image, atomstat.segment(sim.image)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sigma": "2"}, "sigma must be a finite number"),
        ({"sigma": 1e6}, r"sigma must be a finite number in \(0, 24\]"),
        ({"threshold": "0.5"}, "threshold must be a finite number"),
        ({"split": "no"}, "split must be True or False"),
        ({"refine": "no"}, "refine must be True or False"),
    ],
)
def test_locate_names_the_wrong_argument(lattice, kwargs, match):
    image, prob = lattice
    with pytest.raises(ValueError, match=match):
        atomstat.locate(prob, image, **kwargs)


@pytest.mark.parametrize(
    "scale", [lambda p: p * 100, lambda p: (p * 255).astype(np.uint8), lambda p: p - 0.5]
)
def test_locate_refuses_a_map_that_is_not_probabilities(lattice, scale):
    """A raw image or a 0-255 map passed as ``prob`` found 1 or 70 atoms silently."""
    with pytest.raises(ValueError, match=r"finite values in \[0, 1\]"):
        atomstat.locate(scale(lattice[1]))


def test_locate_refuses_nan_in_the_map_or_the_image(lattice):
    image, prob = lattice
    holed = image.copy()
    holed[26:38, 26:38] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        atomstat.locate(prob, holed)
    bad = prob.copy()
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        atomstat.locate(bad)


def test_locate_and_segment_refuse_a_path():
    with pytest.raises(TypeError, match="segment"):
        atomstat.locate("prob.npy")
    with pytest.raises(TypeError, match="atomstat.load"):
        atomstat.segment("image.npy")


@pytest.mark.parametrize("sigma", ["2", 1e-6, 1e6, np.nan])
def test_segment_refuses_a_width_it_cannot_resample_to(lattice, sigma):
    """1e-6 asked for a 158 PiB array; 1e6 ran the network on a 16 x 16 thumbnail."""
    with pytest.raises(ValueError, match="sigma"):
        atomstat.segment(lattice[0], sigma=sigma)


def test_a_faint_image_is_not_taken_for_a_flat_one(lattice):
    """A current in amperes (contrast 1e-15) found no atom: the flat test was absolute."""
    image = lattice[0].astype(np.float64)
    assert normalize(image * 1e-15).max() == pytest.approx(normalize(image).max(), rel=1e-3)
    assert not normalize(np.full((32, 32), 7.0)).any()


def test_a_flat_image_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="atomstat"):
        atoms = atomstat.analyze(np.zeros((64, 64), np.float32))
    assert len(atoms) == 0
    assert "flat" in caplog.text


def test_a_file_that_is_not_a_keras_model_is_named(tmp_path):
    fake = tmp_path / "fake.keras"
    fake.write_text("not a model")
    with pytest.raises(ValueError, match="not a .keras model file"):
        atomstat.analyze(np.zeros((64, 64), np.float32), model=str(fake))


def test_find_dumbbells_refuses_threshold_zero():
    """0 was read as "not given" and replaced by 0.5."""
    with pytest.raises(ValueError, match="threshold"):
        atomstat.find_dumbbells(np.zeros((64, 64), np.float32), threshold=0)
    with pytest.raises(TypeError, match="None"):
        atomstat.find_dumbbells(None)


@pytest.mark.parametrize("reference", [[[0, 0], [1]], "north", np.nan])
def test_reference_angle_says_what_a_reference_is(reference):
    with pytest.raises(ValueError, match="reference must be None, an angle"):
        reference_angle(reference)


def test_pair_dumbbells_refuses_nan_positions():
    atoms = pd.DataFrame({"frame": [0, 0], "x": [1.0, np.nan], "y": [2.0, 3.0]})
    with pytest.raises(ValueError, match="table column 'x' holds NaN or inf"):
        atomstat.pair_dumbbells(atoms)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda a: atomstat.pair_dumbbells(a, separation="5"),
            "separation must be a finite",
        ),
        (
            lambda a: atomstat.find_molecules(a, max_distance="5"),
            "max_distance must be a finite",
        ),
        (lambda a: atomstat.find_anomalies(a, fence="5"), "fence must be a finite number"),
        (lambda a: atomstat.find_anomalies(a, contamination=None), "contamination must be"),
        (lambda a: unwrap_angles([1.0, 2.0], period="180"), "period must be a finite number"),
    ],
)
def test_parameters_that_are_not_numbers_are_named(lattice, call, match):
    atoms = atomstat.locate(lattice[1], lattice[0])
    with pytest.raises(ValueError, match=match):
        call(atoms)


def test_anomalies_warn_when_no_atom_can_be_scored(lattice, caplog):
    atoms = atomstat.locate(lattice[1], lattice[0]).assign(area=np.nan)
    with caplog.at_level(logging.WARNING, logger="atomstat"):
        flagged = atomstat.find_anomalies(atoms, ["area"])
    assert not flagged.any()
    assert "no atom has finite values" in caplog.text


@pytest.mark.parametrize(
    ("drift", "fill", "match"),
    [
        (None, 0.0, "DataFrame with columns 'dx' and 'dy'"),
        (pd.DataFrame({"x": [0, 0, 0]}), 0.0, "DataFrame with columns 'dx' and 'dy'"),
        (pd.DataFrame({"dx": [0.0, np.nan, 0.0], "dy": 0.0}), 0.0, r"dx. holds NaN.*index 1"),
        (pd.DataFrame({"dx": [0.0, 1.0], "dy": 0.0}), 0.0, r"no row for frame\(s\) \[2\]"),
        (pd.DataFrame({"dx": [0.0] * 3, "dy": 0.0}), "x", "fill must be a number"),
    ],
)
def test_align_frames_checks_the_drift(drift, fill, match):
    """A NaN drift returned all-NaN frames without a word."""
    with pytest.raises(ValueError, match=match):
        align_frames(np.zeros((3, 16, 16), np.float32), drift, fill=fill)


def test_registration_refuses_frames_with_nan():
    frames = np.zeros((3, 32, 32), np.float32)
    frames[1] = np.nan
    table = pd.DataFrame({"frame": [0, 1, 2], "x": [5.0] * 3, "y": [5.0] * 3})
    with pytest.raises(ValueError, match="frame 1 holds NaN"):
        atomstat.estimate_drift(table, frames)
