"""STM clean-up (atomstat.preprocess) on simulated faults with known size, and its
wiring into analyze and the model choice."""

import numpy as np
import pytest

from atomstat.metrics import detection_scores
from atomstat.pipeline import analyze, choose_model
from atomstat.preprocess import get_preprocessor, level_lines, remove_background, remove_scars, stm
from atomstat.simulate import Stm, simulate_lattice

RNG = np.random.default_rng(7)


@pytest.fixture(scope="module")
def surface():
    """A clean STM-like hexagonal lattice (atom height 1) and a little white noise."""
    sim = simulate_lattice(
        "hexagonal",
        shape=(128, 128),
        spacing=11,
        sigma=2.0,
        imaging=Stm(noise=0.0, charge=0.0, scars=0, tilt=0.0),
        rng=2,
    )
    return sim, sim.clean + RNG.normal(0, 0.03, sim.clean.shape)


def _flat(image):
    return image - np.mean(image)


@pytest.mark.parametrize("order", [1, 2])
def test_background_removes_a_known_tilt_or_bow(surface, order):
    sim, image = surface
    yy, xx = np.mgrid[0:128, 0:128] / 128
    background = 2.5 * xx - 1.5 * yy + 4 + (3 * (xx - 0.5) ** 2 if order == 2 else 0)
    out = remove_background(image + background, order)
    # what is left of the background: within 2 % of the atom height everywhere
    assert np.abs(_flat(out - image)).max() < 0.02
    # a plane cannot remove a bow
    if order == 2:
        assert np.abs(_flat(remove_background(image + background, 1) - image)).max() > 0.1


@pytest.mark.parametrize("method", ["median", "diff", "poly"])
def test_line_levelling_removes_known_line_offsets(surface, method):
    sim, image = surface
    offsets = RNG.normal(0, 0.5, (128, 1))  # half the atom height, line to line
    out = level_lines(image + offsets, method)
    residual = _flat(out - image).mean(axis=1)  # offset left on each line
    # line-to-line jumps are gone ("diff" may leave a slow drift, the background's job)
    assert np.std(np.diff(residual)) < 0.05 * np.std(np.diff(offsets[:, 0]))
    if method != "diff":
        assert np.std(residual) < 0.05 * np.std(offsets)
    if method == "poly":  # a slope along each line goes too
        out = level_lines(image + offsets + np.linspace(0, 1, 128), "poly")
        assert np.std(_flat(out - image).mean(axis=1)) < 0.05


def test_scars_are_repaired_and_atoms_untouched(surface):
    sim, image = surface
    scarred = image.copy()
    scars = [(20, 5, 60, 0.5), (50, 30, 90, -0.7), (90, 0, 128, 0.4), (111, 60, 25, 1.0)]
    in_scar = np.zeros(image.shape, bool)
    for row, start, length, height in scars:
        scarred[row, start : start + length] += height
        in_scar[row, start : start + length] = True
    out = remove_scars(scarred)
    repaired = np.abs(out - image) < 0.15
    assert repaired[in_scar].mean() > 0.98
    # every pixel away from the scars is exactly as it was (to float32 precision)
    untouched = np.abs(out - scarred) < 1e-5
    assert untouched[~in_scar].mean() > 0.995
    # and an image without scars is left alone
    assert np.abs(remove_scars(image) - image).max() < 1e-5


def test_stm_cleanup_keeps_atoms_in_place():
    sim = simulate_lattice(
        "square",
        shape=(128, 128),
        spacing=12,
        sigma=2.2,
        imaging=Stm(noise=0.05, charge=0.1, scars=5, tilt=2.0),
        rng=4,
    )
    out = stm(sim.image)
    assert out.shape == sim.image.shape and out.dtype == np.float32
    # the cleaned image is closer to the clean one than the raw image is
    err_raw = np.std(_flat(sim.image - sim.clean))
    err_out = np.std(_flat(out - sim.clean))
    assert err_out < 0.5 * err_raw
    found = analyze(sim.image, preprocess="stm", model="universal")
    assert found.attrs["preprocess"] == "stm"
    assert abs(len(found) - len(sim.atoms)) <= 0.05 * len(sim.atoms)


def test_preprocess_option_is_validated():
    assert get_preprocessor(None) is None
    assert get_preprocessor("stm") is stm
    with pytest.raises(ValueError, match="preprocess must be"):
        get_preprocessor("magic")
    image = RNG.normal(0, 1, (64, 64)).astype(np.float32)
    with pytest.raises(ValueError, match="preprocess returned shape"):
        analyze(image, preprocess=lambda im: im[:10])


def test_stm_files_get_the_stm_model_and_arrays_the_universal_one(tmp_path):
    from test_io_stm import write_sxm

    from atomstat.io import load

    sim = simulate_lattice(
        "hexagonal", shape=(96, 96), spacing=10, sigma=2.0, imaging=Stm(scars=2), rng=5
    )
    z = sim.image * 1e-10  # heights in m
    signal = load(write_sxm(tmp_path / "scan.sxm", {"Z": ("m", z, z)}))
    atoms = analyze(signal)
    assert (atoms.attrs["imaging"], atoms.attrs["model"]) == ("stm", "stm")
    assert analyze(signal, model="universal").attrs["model"] == "universal"
    plain = analyze(sim.image)  # the STEM path: no metadata, the universal model
    assert (plain.attrs["imaging"], plain.attrs["model"]) == ("stem", "universal")
    assert abs(len(atoms) - len(sim.atoms)) <= 0.1 * len(sim.atoms)


def test_model_choice_follows_the_imaging_mode():
    assert choose_model(None, "stem") == "universal"
    assert choose_model("auto", None) == "universal"
    assert choose_model("universal", "stm") == "universal"
    assert choose_model("x.keras", "stm") == "x.keras"


def test_invert_finds_dark_atoms_on_a_bright_background():
    """An ABF-like image: the atoms are dips. Without inversion the finder sees the
    bright gaps between them; with ``preprocess="invert"`` it finds the atoms."""
    sim = simulate_lattice("hexagonal", shape=(192, 192), spacing=16, sigma=2.2, rng=3)
    dark = sim.image.max() - sim.image + 10.0
    truth = sim.atoms[["x", "y"]].to_numpy()
    found = analyze(dark, preprocess="invert")[["x", "y"]].to_numpy()
    assert detection_scores(truth, found, shape=dark.shape, margin=4)["f1"] >= 0.98
    raw = analyze(dark, preprocess="none")[["x", "y"]].to_numpy()
    assert detection_scores(truth, raw, shape=dark.shape, margin=4)["f1"] < 0.5
