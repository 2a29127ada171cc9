"""Tests for atomstat.artefacts: each microscope artefact does to the truth what it says."""

import numpy as np
import pytest
from scipy import ndimage

from atomstat.artefacts import Artefacts, random_artefacts
from atomstat.simulate import Defects, Stem, Stm, random_scene, real_scene, simulate_lattice

PERFECT = Defects(vacancies=0.0, dopants=0.0, jitter=0.0)


def _sim(art=None, *, kind="square", shape=(160, 160), spacing=16.0, sigma=2.0, rng=0, **kw):
    kw.setdefault("imaging", Stem(dose=100.0, background=0.1))
    return simulate_lattice(
        kind,
        shape=shape,
        spacing=spacing,
        sigma=sigma,
        rotation=0.0,
        defects=PERFECT,
        artefacts=art,
        rng=rng,
        **kw,
    )


def _mask_at_atoms(sim):
    xi = np.clip(np.round(sim.atoms.x).astype(int), 0, sim.mask.shape[1] - 1)
    yi = np.clip(np.round(sim.atoms.y).astype(int), 0, sim.mask.shape[0] - 1)
    return sim.mask[yi, xi].astype(bool), yi, xi


def test_no_artefacts_is_the_ideal_image():
    a, b = _sim(None), _sim(Artefacts())
    np.testing.assert_array_equal(a.image, b.image)
    assert b.overlay is None


def test_contamination_is_bright_and_hides_only_the_atoms_under_it():
    sim = _sim(Artefacts(contamination=1, contamination_brightness=30.0), rng=3)
    assert 15 < sim.overlay.max() < 100  # 30 host peaks, times its texture (0.2-2.6)
    visible, yi, xi = _mask_at_atoms(sim)
    under = sim.overlay[yi, xi] > 1.5
    assert under.any() and not visible[under].any()
    assert visible[sim.overlay[yi, xi] < 0.5].mean() > 0.97
    assert sim.image[sim.overlay > 10].mean() > 8 * sim.image[sim.overlay < 0.1].mean()


def test_clusters_are_compact_bright_blobs_off_the_mask():
    sim = _sim(Artefacts(clusters=3, cluster_brightness=8.0), rng=4, shape=(256, 256))
    labels, n = ndimage.label(sim.overlay > 4.0)
    assert 1 <= n <= 3
    sizes = ndimage.sum(np.ones_like(labels), labels, range(1, n + 1))
    assert sizes.max() < (4 * 2.0 * 2.5) ** 2 * np.pi  # at most about 4 atom widths
    assert not sim.mask[sim.overlay > 1.5].any()


def test_probe_tail_keeps_the_intensity_and_spreads_it():
    ideal = _sim(None, spacing=40.0, shape=(120, 120))
    tail = _sim(Artefacts(probe_tail=0.3, tail_width=3.0), spacing=40.0, shape=(120, 120))
    assert tail.clean.sum() == pytest.approx(ideal.clean.sum(), rel=0.02)
    assert tail.clean.max() < 0.8 * ideal.clean.max()
    x, y = int(round(ideal.atoms.x.iloc[5])), int(round(ideal.atoms.y.iloc[5]))
    ring = tail.clean[y, x + 9] - ideal.clean[y, x + 9]  # 4.5 atom widths out
    assert ring > 0.005 * ideal.clean.max()  # a Gaussian has 4e-5 of its peak there


def test_tilt_smear_elongates_the_columns():
    smear = _sim(Artefacts(tilt_smear=4.0), spacing=30.0, shape=(120, 120), rng=2)
    x, y = int(round(smear.atoms.x.iloc[4])), int(round(smear.atoms.y.iloc[4]))
    win = smear.clean[y - 8 : y + 9, x - 8 : x + 9]
    win = win - win.min()
    yy, xx = np.mgrid[-8:9, -8:9]
    cov = np.cov(np.vstack([xx.ravel(), yy.ravel()]), aweights=win.ravel())
    lo, hi = np.linalg.eigvalsh(cov)
    assert hi / lo > 1.3  # round without the smear


def test_scan_wobble_moves_the_truth_along_x_with_y():
    sim = _sim(Artefacts(scan_wobble=1.2), shape=(256, 256), rng=5)
    col = sim.atoms.x - 16.0 * np.round(sim.atoms.x / 16.0)
    residual = col - np.median(col)
    assert 0.4 < residual.std() < 1.2  # a sinusoid of amplitude 1.2 px, rms 0.85
    assert np.corrcoef(residual, np.sin(sim.atoms.y / 40.0))[0, 1] ** 2 < 0.99  # not constant


def test_line_noise_offsets_whole_rows():
    ideal = _sim(None, rng=6)
    lines = _sim(Artefacts(line_noise=0.2), rng=6)
    step = np.std(np.diff(lines.image.mean(axis=1))) - np.std(np.diff(ideal.image.mean(axis=1)))
    assert step > 0.1 * 100  # 0.2 host peaks rms per row, at 100 counts a peak


def test_jpeg_quantises_to_8_bits_and_stays_close():
    ideal = _sim(None, rng=7)
    jpeg = _sim(Artefacts(jpeg_quality=50), rng=7)
    assert len(np.unique(jpeg.image)) <= 256
    assert np.corrcoef(ideal.image.ravel(), jpeg.image.ravel())[0, 1] > 0.9
    assert not np.array_equal(ideal.image, jpeg.image)


def test_scale_bar_is_burned_in_and_off_the_mask():
    ideal = _sim(None, rng=8)
    bar = _sim(Artefacts(scale_bar=True), rng=8)
    white = bar.image != ideal.image  # the noise is drawn before the bar: only it differs
    assert bar.image[white].min() > np.percentile(ideal.image, 99.9)
    assert white.sum() > 0.003 * white.size
    assert not bar.mask[white].any()
    assert len(bar.atoms) == len(ideal.atoms)  # the atoms are still there, only hidden


def test_stm_artefacts_apply_too():
    sim = _sim(Artefacts(clusters=2, line_noise=0.1, jpeg_quality=70), imaging=Stm(), rng=9)
    assert sim.overlay is not None and sim.image.shape == (160, 160)


@pytest.mark.parametrize(
    "field, value",
    [("contamination", -1), ("probe_tail", 0.95), ("jpeg_quality", 100), ("tail_width", 0)],
)
def test_bad_artefact_settings_are_refused_by_name(field, value):
    with pytest.raises(ValueError, match=f"Artefacts.{field}"):
        Artefacts(**{field: value})


def test_real_scenes_hold_weak_sublattices_and_very_low_dose_graphene():
    scenes = [real_scene(seed, shape=(64, 64)).atoms.attrs["scene"] for seed in range(60)]
    weak = [s for s in scenes if s["sublattice_ratio"] < 1]
    assert weak and all(0.1 <= s["sublattice_ratio"] <= 0.5 for s in weak)
    low = [s for s in scenes if s["kind"] == "honeycomb" and s["imaging"].get("dose", 99) <= 5]
    assert sum(s["imaging"]["background"] >= 0.3 for s in low) >= 3  # graphene on a background
    assert any(s["artefacts"]["contamination"] for s in scenes)


def test_weak_sublattice_is_in_the_truth():
    sim = real_scene(next(s for s in range(60) if _ratio(s) < 1), shape=(96, 96))
    amps = np.unique(np.round(sim.atoms.amplitude[sim.atoms.species == "host"], 3))
    assert amps.min() == pytest.approx(sim.atoms.attrs["scene"]["sublattice_ratio"], abs=1e-3)


def _ratio(seed):
    return real_scene(seed, shape=(64, 64)).atoms.attrs["scene"]["sublattice_ratio"]


def test_random_scene_without_real_is_unchanged():
    a = random_scene(11, (64, 64))
    b = random_scene(11, (64, 64), real=0.0)
    np.testing.assert_array_equal(a.image, b.image)
    c = random_scene(11, (64, 64), real=1.0)
    assert "artefacts" in c.atoms.attrs["scene"]


def test_random_artefacts_draw_every_kind():
    rng = np.random.default_rng(0)
    drawn = [random_artefacts(rng, mode) for mode in ("stem", "stm") * 40]
    for field in ("contamination", "clusters", "probe_tail", "tilt_smear", "scan_wobble"):
        assert any(getattr(a, field) for a in drawn), field
    assert any(a.jpeg_quality for a in drawn) and any(a.scale_bar for a in drawn)
