"""Tests for atomstat.pipeline.analyze: arguments, calibration and the stages wired together.

``threshold_model`` (conftest.py) marks the bright pixels of the normalised
image, so on a clean high-dose lattice its blobs sit on the atoms and analyze
can be checked against the simulated truth without the shipped model.
"""

import hyperspy.api as hs
import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

import atomstat
from atomstat.pipeline import analyze, calibration
from atomstat.simulate import Defects, Stem, simulate_lattice
from atomstat.table import ATOM_COLUMNS

SPACING = 12.0


def _sim(rng, shape=(96, 96)):
    return simulate_lattice(
        "square",
        shape=shape,
        spacing=SPACING,
        sigma=2.0,
        rotation=5.0,
        defects=Defects(vacancies=0.0, dopants=0.0),
        imaging=Stem(dose=400.0),
        rng=rng,
    )


def _calibrated(data, scale=0.02, units="nm"):
    signal = hs.signals.Signal2D(data)
    for axis in signal.axes_manager.signal_axes:
        axis.scale = scale
        axis.units = units
    return signal


def _match(atoms, truth, margin=6.0, shape=(96, 96)):
    """Distances from the truth atoms away from the border to the nearest found atom."""
    inner = (
        (truth[:, 0] > margin)
        & (truth[:, 0] < shape[1] - margin)
        & (truth[:, 1] > margin)
        & (truth[:, 1] < shape[0] - margin)
    )
    d, idx = cKDTree(atoms[["x", "y"]].to_numpy()).query(truth[inner])
    return d, idx


def test_finds_the_atoms_of_a_clean_lattice(threshold_model):
    sim = _sim(rng=1)
    atoms = analyze(sim.image, model=threshold_model)
    truth = sim.atoms[["x", "y"]].to_numpy()
    d, idx = _match(atoms, truth)
    assert len(d) > 30
    assert d.max() < 0.3
    assert len(np.unique(idx)) == len(idx)
    interior = atoms[~atoms.edge]
    assert len(interior) <= len(truth)
    nn_truth = cKDTree(truth).query(truth, k=2)[0][:, 1]
    assert interior.nn_distance.median() == pytest.approx(np.median(nn_truth), abs=0.15)
    assert interior.intensity.notna().all() and (interior.intensity > 0).all()
    assert list(atoms.columns[: len(ATOM_COLUMNS)]) == list(ATOM_COLUMNS)
    assert atoms.attrs["sigma"] == pytest.approx(2.0, rel=0.25)
    assert atoms.attrs["model"] == "threshold"
    assert atoms.attrs["threshold"] == 0.5
    assert atoms.attrs["pixel_size"] == 1.0 and atoms.attrs["units"] == "px"


def test_stack_gives_frames_and_each_frame_matches_its_image(threshold_model):
    sims = [_sim(rng=r) for r in (2, 3, 4)]
    atoms = analyze(np.stack([s.image for s in sims]), model=threshold_model)
    assert sorted(atoms.frame.unique().tolist()) == [0, 1, 2]
    assert atoms.index.is_unique
    for t, sim in enumerate(sims):
        d, _ = _match(atoms[atoms.frame == t], sim.atoms[["x", "y"]].to_numpy())
        assert d.max() < 0.3


def test_long_stack_is_processed_in_chunks_with_the_right_frame_numbers(
    threshold_model, monkeypatch
):
    import atomstat.pipeline as pipeline

    monkeypatch.setattr(pipeline, "_FRAMES_PER_CHUNK", 2)
    sims = [_sim(rng=10 + r, shape=(48, 48)) for r in range(5)]
    atoms = analyze(np.stack([s.image for s in sims]), model=threshold_model)
    assert sorted(atoms.frame.unique().tolist()) == [0, 1, 2, 3, 4]
    for t, sim in enumerate(sims):
        d, _ = _match(atoms[atoms.frame == t], sim.atoms[["x", "y"]].to_numpy(), shape=(48, 48))
        assert d.max() < 0.3, f"frame {t}"


def test_calibration_comes_from_the_signal(threshold_model):
    sim = _sim(rng=5)
    atoms = analyze(_calibrated(sim.image), model=threshold_model)
    assert atoms.attrs["pixel_size"] == pytest.approx(0.02)
    assert atoms.attrs["units"] == "nm"
    # positions stay in pixels
    d, _ = _match(atoms, sim.atoms[["x", "y"]].to_numpy())
    assert d.max() < 0.3


def test_calibration_of_a_plain_array_and_of_an_uncalibrated_signal():
    assert calibration(np.zeros((4, 4))) == {"pixel_size": 1.0, "units": "px", "source": None}
    info = calibration(hs.signals.Signal2D(np.zeros((4, 4))))
    assert info["pixel_size"] == 1.0 and info["units"] == "px"
    info = calibration(_calibrated(np.zeros((3, 4, 4)), scale=0.5, units="Å"))
    assert info["pixel_size"] == 0.5 and info["units"] == "Å"


def test_file_path_is_loaded_with_its_calibration(threshold_model, tmp_path):
    sim = _sim(rng=6)
    path = tmp_path / "lattice.hspy"
    _calibrated(sim.image, scale=0.05, units="nm").save(path)
    atoms = analyze(str(path), model=threshold_model)
    assert atoms.attrs["pixel_size"] == pytest.approx(0.05)
    assert atoms.attrs["units"] == "nm"
    d, _ = _match(atoms, sim.atoms[["x", "y"]].to_numpy())
    assert d.max() < 0.3
    # a pathlib.Path works too
    assert len(analyze(path, model=threshold_model)) == len(atoms)


@pytest.mark.parametrize("value", [0.0, 7.0])
def test_blank_image_gives_an_empty_table(threshold_model, value):
    """A blank frame has no atoms (and no measurable atom width): an empty table."""
    atoms = analyze(np.full((48, 48), value, np.float32), model=threshold_model)
    assert len(atoms) == 0
    assert list(atoms.columns[: len(ATOM_COLUMNS)]) == list(ATOM_COLUMNS)


def test_faint_blobs_are_fragments_unless_the_margin_is_zero(threshold_model):
    """Blobs whose map peaks barely above 0.5 are fragments: dropped by default, kept with
    ``peak_margin=0``; re-thresholding keeps the same rule.

    The map is drawn here, so the rule is tested apart from the network and from the
    image's contrast scaling (which by design lifts a faint atom far from bright ones).
    """
    from atomstat.locate import locate
    from atomstat.maps import relocate

    yy, xx = np.mgrid[:96, :96].astype(float)
    image, prob = np.zeros((96, 96)), np.zeros((96, 96), np.float32)
    bright, faint = [(20.0, 20.0), (60.0, 30.0)], [(30.0, 70.0), (72.0, 72.0)]
    for (x, y), peak in [(c, 0.98) for c in bright] + [(c, 0.6) for c in faint]:
        blob = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.5**2))
        image += peak * blob
        prob = np.maximum(prob, (peak * blob).astype(np.float32))
    default = locate(prob, image)
    assert len(default) == 2 and default.attrs["fragments"] == 2
    every = locate(prob, image, peak_margin=0.0)
    assert len(every) == 4 and every.attrs["fragments"] == 0
    faint_peaks = np.sort(every.confidence.to_numpy())[:2]
    assert ((faint_peaks > 0.5) & (faint_peaks < 0.7)).all()
    assert len(relocate(prob, image, attrs={"peak_margin": 0.0})) == 4
    assert len(relocate(prob, image, attrs={"peak_margin": 0.2})) == 2
    assert analyze(image, model=threshold_model).attrs["peak_margin"] == 0.2
    with pytest.raises(ValueError, match="peak_margin"):
        analyze(image, model=threshold_model, peak_margin=1.0)


@pytest.mark.parametrize("threshold", [0.0, 1.0, 1.5, -0.1])
def test_bad_threshold_raises(threshold, threshold_model):
    with pytest.raises(ValueError, match="threshold") as info:
        analyze(np.ones((32, 32)), threshold=threshold, model=threshold_model)
    assert str(threshold) in str(info.value)


def test_missing_file_raises_load_error(tmp_path, threshold_model):
    path = tmp_path / "nowhere" / "image.dm4"
    with pytest.raises(atomstat.LoadError, match="image.dm4"):
        analyze(path, model=threshold_model)
    with pytest.raises(atomstat.LoadError):
        analyze(str(path), model=threshold_model)


def test_non_image_array_raises(threshold_model):
    with pytest.raises(ValueError, match="shape"):
        analyze(np.ones(64), model=threshold_model)
    with pytest.raises(ValueError, match="shape"):
        analyze(np.ones((2, 2, 32, 32)), model=threshold_model)


def test_bad_model_raises_before_any_work(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.keras"):
        analyze(np.ones((32, 32)), model=str(tmp_path / "absent.keras"))


def test_chunks_shrink_with_the_memory_available():
    from atomstat.pipeline import frames_per_chunk

    assert frames_per_chunk((512, 512), 100, available=24e9) == 16
    assert frames_per_chunk((512, 512), 5, available=24e9) == 5
    # 4096^2 frames: one needs ~1.07 GB, each further one ~0.13 GB
    assert frames_per_chunk((4096, 4096), 100, available=2e9) == 4
    assert frames_per_chunk((4096, 4096), 100, available=1.4e9) == 1
    assert frames_per_chunk((64, 64), 3, available=float("inf")) == 3


def test_a_frame_too_large_for_the_memory_is_refused_clearly(threshold_model, monkeypatch):
    import atomstat.pipeline as pipeline

    monkeypatch.setattr(pipeline, "available_memory", lambda: 1e6)
    with pytest.raises(MemoryError, match=r"128 x 160 px frame needs about .* GB .* bin it"):
        analyze(np.random.default_rng(0).random((128, 160)), model=threshold_model)


def test_split_is_on_for_stm_only_by_default():
    sim = simulate_lattice("square", shape=(96, 96), spacing=16, rng=0)
    assert analyze(sim.image).attrs["split"] is False
    assert analyze(sim.image, model="stm").attrs["split"] is True
    assert analyze(sim.image, split=True).attrs["split"] is True
    with pytest.raises(ValueError, match="split"):
        analyze(sim.image, split="yes")


@pytest.mark.parametrize(("kind", "seed"), [("hexagonal", 0), ("square", 1)])
def test_split_finds_the_atoms_of_a_dense_stm_lattice(kind, seed):
    """Atoms 3.5 widths apart, blunted by a tip change: neighbours share blobs,
    and splitting them recovers atoms (F1 measured against the truth). Without
    ``split`` the blobs that plainly hold two atoms are split too (F1 0.89-0.92 ->
    0.95-0.97 here), so ``split=True`` adds less than it did."""
    from atomstat.metrics import detection_scores
    from atomstat.simulate import Stm

    sim = simulate_lattice(
        kind,
        shape=(192, 192),
        spacing=3.5 * 2.4,
        sigma=2.4,
        imaging=Stm(noise=0.15, tip_change=0.4, scars=3, tilt=1.0),
        defects=Defects(vacancies=0.02, dopants=0.0),
        rng=seed,
    )
    f1 = {}
    for split in (False, True):
        atoms = analyze(sim.image, model="stm", preprocess="stm", split=split)
        f1[split] = detection_scores(
            sim.atoms[["x", "y"]], atoms[["x", "y"]], shape=sim.image.shape, margin=3
        )["f1"]
    assert f1[True] >= f1[False] > 0.94


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        (None, TypeError, "NoneType"),
        (pd.DataFrame({"x": [1.0]}), TypeError, "DataFrame"),
        (np.float32(1), ValueError, "shape"),
        (np.zeros((0, 64, 64)), ValueError, "no frames|too small"),
        (np.zeros((64, 64), complex), ValueError, "complex"),
        (np.zeros((96, 96, 3)), ValueError, "too small"),
    ],
)
def test_analyze_refuses_what_is_not_an_image(data, error, match):
    with pytest.raises(error, match=match):
        atomstat.analyze(data)


def test_analyze_refuses_a_spectrum_map():
    with pytest.raises(ValueError, match="spectrum"):
        atomstat.analyze(hs.signals.Signal1D(np.zeros((96, 96, 32), np.float32)))


@pytest.mark.parametrize("threshold", ["0.5", None, True])
def test_analyze_refuses_a_threshold_that_is_not_a_number(threshold):
    with pytest.raises(ValueError, match="threshold"):
        atomstat.analyze(np.zeros((64, 64), np.float32), threshold=threshold)
