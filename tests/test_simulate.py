"""Tests for atomstat.simulate: the truth it returns is the truth it draws."""

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from atomstat.simulate import (
    LATTICES,
    Defects,
    Regions,
    Stem,
    Stm,
    lattice_points,
    random_scene,
    simulate_lattice,
)
from atomstat.table import ATOM_COLUMNS

PERFECT = Defects(vacancies=0.0, dopants=0.0, jitter=0.0)


def _xy(sim):
    return sim.atoms[["x", "y"]].to_numpy()


def _nn(xy):
    d, _ = cKDTree(xy).query(xy, k=2)
    return d[:, 1]


def test_same_rng_same_output_and_different_rng_different():
    kwargs = dict(shape=(64, 80), spacing=9.0, sigma=1.5, defects=Defects(dopants=0.1))
    a = simulate_lattice("hexagonal", rng=3, **kwargs)
    b = simulate_lattice("hexagonal", rng=3, **kwargs)
    c = simulate_lattice("hexagonal", rng=4, **kwargs)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    np.testing.assert_array_equal(a.clean, b.clean)
    assert a.atoms.equals(b.atoms)
    assert not np.array_equal(a.image, c.image)
    assert not np.array_equal(_xy(a)[:5], _xy(c)[:5])


def test_generator_rng_is_accepted_and_advanced():
    rng = np.random.default_rng(11)
    a = simulate_lattice("square", shape=(48, 48), spacing=8.0, rng=rng)
    b = simulate_lattice("square", shape=(48, 48), spacing=8.0, rng=rng)
    assert not np.array_equal(a.image, b.image)


def test_outputs_shapes_dtypes_and_schema():
    sim = simulate_lattice("square", shape=(40, 56), spacing=8.0, sigma=1.5, rng=0)
    assert sim.image.shape == sim.mask.shape == sim.clean.shape == (40, 56)
    assert sim.image.dtype == np.float32 and sim.clean.dtype == np.float32
    assert sim.mask.dtype == np.uint8 and set(np.unique(sim.mask)) <= {0, 1}
    assert list(sim.atoms.columns[: len(ATOM_COLUMNS)]) == list(ATOM_COLUMNS)
    for name in ("species", "amplitude", "sigma", "sigma_x", "sigma_y", "theta"):
        assert name in sim.atoms.columns
    assert (sim.atoms["frame"] == 0).all()


@pytest.mark.parametrize("kind", ["square", "hexagonal", "honeycomb"])
def test_nearest_neighbour_distance_is_the_spacing(kind):
    sim = simulate_lattice(
        kind,
        shape=(128, 128),
        spacing=11.0,
        sigma=1.5,
        rotation=17.0,
        defects=Defects(vacancies=0.0, dopants=0.0, jitter=0.1),
        rng=1,
    )
    nn = _nn(_xy(sim))
    assert len(nn) > 60
    assert np.median(nn) == pytest.approx(11.0, abs=0.35)


@pytest.mark.parametrize("kind", ["square", "hexagonal", "honeycomb"])
def test_number_of_neighbours_identifies_the_lattice(kind):
    """Square has 4 nearest neighbours, hexagonal 6 and honeycomb 3."""
    sim = simulate_lattice(
        kind, shape=(128, 128), spacing=10.0, sigma=1.2, rotation=0.0, defects=PERFECT, rng=2
    )
    xy = _xy(sim)
    interior = ((xy > 25) & (xy < 103)).all(axis=1)
    counts = cKDTree(xy).query_ball_point(xy[interior], 10.0 * 1.1, return_length=True) - 1
    expected = {"square": 4, "hexagonal": 6, "honeycomb": 3}[kind]
    assert (counts == expected).all()


def test_dumbbell_column_separation_is_the_spacing():
    sim = simulate_lattice(
        "dumbbell", shape=(128, 128), spacing=5.0, sigma=1.2, rotation=30.0, defects=PERFECT, rng=4
    )
    xy = _xy(sim)
    d, i = cKDTree(xy).query(xy, k=2)
    interior = ((xy > 6) & (xy < 122)).all(axis=1)  # the partner is inside the image too
    assert interior.sum() > 100
    np.testing.assert_allclose(d[interior, 1], 5.0, atol=1e-6)
    # partners are mutual: the columns come in pairs, and pairs are far apart
    assert (i[i[interior, 1], 1] == np.flatnonzero(interior)).all()
    d3, _ = cKDTree(xy).query(xy[interior], k=3)
    assert (d3[:, 2] > 1.5 * 5.0).all()


@pytest.mark.parametrize("rotation", [0.0, 10.0, 33.0, -20.0])
def test_rotation_is_counter_clockwise_as_displayed(rotation):
    sim = simulate_lattice(
        "square", shape=(96, 96), spacing=14.0, sigma=1.5, rotation=rotation, defects=PERFECT, rng=5
    )
    xy = _xy(sim)
    interior = ((xy > 20) & (xy < 76)).all(axis=1)
    assert interior.sum() >= 9
    _, idx = cKDTree(xy).query(xy[interior], k=5)
    v = xy[idx[:, 1:]] - xy[interior, None, :]
    np.testing.assert_allclose(np.hypot(*v.T), 14.0)
    angle = np.degrees(np.arctan2(-v[..., 1], v[..., 0]))  # y up, as displayed
    # a square lattice is symmetric under 90 deg: compare angles modulo 90
    err = (angle - rotation + 45) % 90 - 45
    assert np.abs(err).max() < 0.01


def test_lattice_points_rotation_convention():
    pts = lattice_points("square", (64, 64), 16.0, rotation=10.0, rng=0)
    d = (pts[:, None, :] - pts[None, :, :]).reshape(-1, 2)
    bonds = d[np.isclose(np.hypot(*d.T), 16.0)]
    assert len(bonds) > 50
    angle = np.degrees(np.arctan2(-bonds[:, 1], bonds[:, 0]))  # y up, as displayed
    np.testing.assert_allclose(np.sort(np.unique(np.round(angle % 180, 6))), [10.0, 100.0])


def test_lattice_points_cover_the_image_with_margin():
    pts = lattice_points("hexagonal", (64, 96), 8.0, rotation=12.0, rng=1)
    assert pts[:, 0].min() < 0 and pts[:, 0].max() > 96
    assert pts[:, 1].min() < 0 and pts[:, 1].max() > 64
    assert (pts > -16).all() and (pts[:, 0] < 96 + 16).all() and (pts[:, 1] < 64 + 16).all()
    # every image pixel is within one spacing of a site
    yy, xx = np.mgrid[0:64:4, 0:96:4]
    d, _ = cKDTree(pts).query(np.column_stack([xx.ravel(), yy.ravel()]))
    assert d.max() < 8.0


def test_vacancy_fraction():
    kwargs = dict(shape=(256, 256), spacing=7.0, sigma=1.2, rotation=8.0)
    full = simulate_lattice("square", defects=Defects(vacancies=0.0, dopants=0.0), rng=7, **kwargs)
    holed = simulate_lattice("square", defects=Defects(vacancies=0.1, dopants=0.0), rng=7, **kwargs)
    assert len(full.atoms) > 1200
    fraction = 1 - len(holed.atoms) / len(full.atoms)
    assert fraction == pytest.approx(0.1, abs=0.025)
    # the atoms that remain sit on the sites of the full lattice
    d, _ = cKDTree(_xy(full)).query(_xy(holed))
    assert d.max() < 1e-9


def test_dopant_fraction_and_amplitude_ratio():
    sim = simulate_lattice(
        "hexagonal",
        shape=(256, 256),
        spacing=7.0,
        sigma=1.2,
        defects=Defects(vacancies=0.0, dopants=0.15, dopant_ratio=1.8, jitter=0.0),
        rng=8,
    )
    species = sim.atoms["species"].astype(str)
    dopant = (species == "dopant").to_numpy()
    assert len(dopant) > 1200
    assert dopant.mean() == pytest.approx(0.15, abs=0.03)
    assert set(species) == {"host", "dopant"}
    amp = sim.atoms["amplitude"].to_numpy()
    np.testing.assert_allclose(amp[~dopant], 1.0)
    np.testing.assert_allclose(amp[dopant], 1.8)


def test_dopants_are_brighter_in_the_image_by_the_ratio():
    sim = simulate_lattice(
        "square",
        shape=(192, 192),
        spacing=14.0,
        sigma=2.0,
        defects=Defects(vacancies=0.0, dopants=0.2, dopant_ratio=0.5, jitter=0.0),
        imaging=Stem(dose=200.0, background=0.0),
        rng=9,
    )
    xy = np.round(_xy(sim)).astype(int)
    dopant = (sim.atoms["species"] == "dopant").to_numpy()
    peak = ndimage.uniform_filter(sim.image.astype(float), 3)[xy[:, 1], xy[:, 0]]
    ratio = peak[dopant].mean() / peak[~dopant].mean()
    assert ratio == pytest.approx(0.5, abs=0.05)


def test_stem_dose_and_poisson_noise():
    background = 0.2
    dose = 150.0
    sim = simulate_lattice(
        "square",
        shape=(192, 192),
        spacing=16.0,
        sigma=3.0,
        defects=PERFECT,
        imaging=Stem(dose=dose, background=background),
        rng=10,
    )
    xy = np.round(_xy(sim)).astype(int)
    counts = sim.image[xy[:, 1], xy[:, 0]].astype(float)
    assert counts.mean() == pytest.approx(dose * (1 + background), rel=0.03)
    # counts are integers and follow the noise-free image: mean dose * (clean + background)
    assert np.array_equal(sim.image, np.round(sim.image))
    expected = dose * (sim.clean.astype(float) + background)
    resid = sim.image - expected
    assert abs(resid.mean()) < 0.05 * np.sqrt(expected.mean())
    # Poisson: variance equals the mean
    z = resid / np.sqrt(expected)
    assert z.var() == pytest.approx(1.0, abs=0.05)


def test_stem_dose_scales_the_counts():
    kwargs = dict(shape=(64, 64), spacing=10.0, sigma=2.0, defects=PERFECT, rotation=0.0)
    low = simulate_lattice("square", imaging=Stem(dose=10.0), rng=1, **kwargs)
    high = simulate_lattice("square", imaging=Stem(dose=1000.0), rng=1, **kwargs)
    np.testing.assert_array_equal(low.clean, high.clean)
    assert high.image.mean() / low.image.mean() == pytest.approx(100.0, rel=0.05)


def test_mask_one_blob_per_atom_in_a_sparse_lattice():
    sim = simulate_lattice(
        "hexagonal",
        shape=(128, 128),
        spacing=12.0,
        sigma=1.8,
        defects=Defects(vacancies=0.05, dopants=0.1, jitter=0.3),
        rng=12,
    )
    labels, n = ndimage.label(sim.mask)
    xy = np.round(_xy(sim)).astype(int)
    at_centre = labels[xy[:, 1], xy[:, 0]]
    assert (at_centre > 0).all(), "every atom lies on a blob"
    assert len(np.unique(at_centre)) == len(at_centre), "no two atoms share a blob"
    # blobs well inside the image (atoms outside the image have blobs at its border)
    boxes = ndimage.find_objects(labels)
    interior = [
        k + 1
        for k, (rows, cols) in enumerate(boxes)
        if min(rows.start, cols.start) >= 4 and rows.stop <= 124 and cols.stop <= 124
    ]
    assert len(interior) > 70
    assert set(interior) <= set(at_centre.tolist()), "every interior blob holds an atom"


def test_mask_covers_the_bright_core_of_every_atom_up_to_the_border():
    """In a sparse lattice no two blobs touch, so every pixel brighter than 0.6 of
    a host peak belongs to the mask, also on the first and last rows and columns
    (blobs at opposite borders are not neighbours)."""
    report = []
    for seed in range(6):
        sim = simulate_lattice(
            "square",
            shape=(64, 64),
            spacing=16.0,
            sigma=3.0,
            rotation=0.0,
            defects=PERFECT,
            rng=seed,
        )
        missed = (sim.clean > 0.6) & (sim.mask == 0)
        rows, cols = np.nonzero(missed)
        if missed.any():
            edge_rows = sorted(set(rows.tolist()) & {0, 63})
            edge_cols = sorted(set(cols.tolist()) & {0, 63})
            report.append(f"rng={seed}: {missed.sum()} px, rows {edge_rows}, columns {edge_cols}")
    assert not report, "bright pixels left out of the mask: " + "; ".join(report)


def test_mask_blob_of_a_dimmer_atom_is_smaller():
    sim = simulate_lattice(
        "square",
        shape=(160, 160),
        spacing=14.0,
        sigma=2.0,
        rotation=0.0,
        defects=Defects(vacancies=0.0, dopants=0.2, dopant_ratio=0.5, jitter=0.0),
        rng=13,
    )
    labels, n = ndimage.label(sim.mask)
    xy = np.round(_xy(sim)).astype(int)
    lab = labels[xy[:, 1], xy[:, 0]]
    areas = ndimage.sum(np.ones_like(labels), labels, lab)
    dopant = (sim.atoms["species"] == "dopant").to_numpy()
    inner = ((xy > 8) & (xy < 152)).all(axis=1)
    host_area = np.median(areas[~dopant & inner])
    dopant_area = np.median(areas[dopant & inner])
    # host blob radius ~1.45 sigma, a half-bright atom's ~1.0 sigma
    assert host_area == pytest.approx(np.pi * (1.45 * 2.0) ** 2, rel=0.2)
    assert dopant_area < 0.7 * host_area


def test_mask_keeps_touching_blobs_apart():
    sim = simulate_lattice(
        "hexagonal", shape=(96, 96), spacing=5.0, sigma=1.7, defects=PERFECT, rng=14
    )
    labels, _ = ndimage.label(sim.mask)
    xy = np.round(_xy(sim)).astype(int)
    lab = labels[xy[:, 1], xy[:, 0]]
    inner = ((xy > 4) & (xy < 91)).all(axis=1)
    assert (lab[inner] > 0).all()
    assert len(np.unique(lab[inner])) == inner.sum()


@pytest.mark.parametrize("kind", LATTICES)
def test_truth_atoms_lie_inside_the_image(kind):
    sim = simulate_lattice(
        kind,
        shape=(64, 96),
        spacing=8.0,
        sigma=1.5,
        defects=Defects(adatoms=0.05, jitter=0.4),
        imaging=Stem(drift=0.03),
        rng=15,
    )
    x, y = sim.atoms["x"], sim.atoms["y"]
    assert len(sim.atoms) > 10
    assert ((x > -0.5) & (x < 96 - 0.5) & (y > -0.5) & (y < 64 - 0.5)).all()
    assert sim.atoms.index.is_unique


def test_adatoms_are_off_site_dim_and_broad():
    sim = simulate_lattice(
        "square",
        shape=(128, 128),
        spacing=10.0,
        sigma=1.5,
        defects=Defects(vacancies=0.0, dopants=0.0, adatoms=0.05, jitter=0.0),
        rng=16,
    )
    species = sim.atoms["species"].astype(str).to_numpy()
    ad = species == "adatom"
    assert ad.sum() > 0
    d, _ = cKDTree(_xy(sim)[~ad]).query(_xy(sim)[ad])
    assert (d > 0.45 * 10.0).all()
    np.testing.assert_allclose(sim.atoms["amplitude"][ad], Defects().adatom_ratio)
    np.testing.assert_allclose(sim.atoms["sigma"][ad], 1.5 * Defects().adatom_width)


def test_ellipticity_sets_the_column_widths():
    sim = simulate_lattice(
        "square", shape=(48, 48), spacing=10.0, sigma=2.0, ellipticity=0.25, rng=0
    )
    np.testing.assert_allclose(sim.atoms["sigma_x"], 2.5)
    np.testing.assert_allclose(sim.atoms["sigma_y"], 1.6)


def test_stm_imaging_gives_the_same_lattice_in_a_different_image():
    kwargs = dict(shape=(96, 96), spacing=14.0, sigma=3.0, defects=PERFECT, rotation=0.0)
    sim = simulate_lattice("square", imaging=Stm(noise=0.05, scars=0, tilt=0.0), rng=17, **kwargs)
    assert sim.image.shape == (96, 96)
    xy = np.round(_xy(sim)).astype(int)
    # atoms are the bright spots: the image at the atom centres beats the image between them
    between = np.clip(xy + 7, 0, 95)
    assert (sim.image[xy[:, 1], xy[:, 0]] > sim.image[between[:, 1], between[:, 0]]).mean() > 0.9
    labels, _ = ndimage.label(sim.mask)
    assert (labels[xy[:, 1], xy[:, 0]] > 0).all()


def test_regions_holes_remove_atoms():
    kwargs = dict(shape=(128, 128), spacing=8.0, sigma=1.5, defects=PERFECT, rotation=0.0)
    full = simulate_lattice("square", rng=18, **kwargs)
    holed = simulate_lattice("square", regions=Regions(holes=2), rng=18, **kwargs)
    assert len(holed.atoms) < len(full.atoms) - 20


@pytest.mark.parametrize("seed", range(4))
def test_random_scene_is_reproducible_and_consistent(seed):
    a = random_scene(seed, shape=(64, 64))
    b = random_scene(seed, shape=(64, 64))
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert a.image.shape == a.mask.shape == (64, 64)
    assert np.isfinite(a.image).all()
    x, y = a.atoms["x"], a.atoms["y"]
    assert ((x > -0.5) & (x < 63.5) & (y > -0.5) & (y < 63.5)).all()


def test_random_scene_modes():
    assert random_scene(1, shape=(48, 48), mode="stm").image.shape == (48, 48)
    with pytest.raises(ValueError, match="'afm'"):
        random_scene(1, shape=(48, 48), mode="afm")


def test_bad_kind_raises_naming_it():
    with pytest.raises(ValueError, match="'triangular'"):
        simulate_lattice("triangular", shape=(32, 32))
    with pytest.raises(ValueError, match="'kagome'"):
        lattice_points("kagome", (32, 32), 8.0)


@pytest.mark.parametrize("shape", [(4, 64), (64,), (64, 5)])
def test_bad_shape_raises_naming_it(shape):
    with pytest.raises(ValueError, match="shape") as info:
        simulate_lattice("square", shape=shape)
    assert str(shape) in str(info.value)


@pytest.mark.parametrize(("spacing", "sigma"), [(-3.5, 2.0), (0.0, 2.0), (8.0, -1.25)])
def test_bad_spacing_or_sigma_raises_naming_it(spacing, sigma):
    with pytest.raises(ValueError) as info:
        simulate_lattice("square", shape=(32, 32), spacing=spacing, sigma=sigma)
    bad = spacing if spacing <= 0 else sigma
    assert str(bad) in str(info.value)


def test_bad_imaging_raises_type_error():
    with pytest.raises(TypeError, match="dict"):
        simulate_lattice("square", shape=(32, 32), imaging={"dose": 10})


@pytest.mark.parametrize("spacing", [(3.3, 3.5), (5.5, 6.0)])
def test_random_stm_scene_spacing_in_widths(spacing):
    """Nearest-neighbour distance over atom width, typical over scenes of every lattice kind
    (dumbbells, interfaces and amorphous patches make single scenes stray)."""
    from scipy.spatial import cKDTree

    ratios = []
    for seed in range(16):
        sim = random_scene(seed, (160, 160), mode="stm", stm_spacing=spacing)
        hosts = sim.atoms[sim.atoms.species == "host"]
        d, _ = cKDTree(sim.atoms[["x", "y"]].to_numpy()).query(hosts[["x", "y"]].to_numpy(), k=2)
        ratios.append(np.median(d[:, 1]) / np.median(hosts.sigma))
    assert spacing[0] * 0.9 < np.median(ratios) < spacing[1] * 1.1


def test_random_scene_refuses_a_bad_stm_spacing():
    with pytest.raises(ValueError, match="stm_spacing"):
        random_scene(0, (64, 64), mode="stm", stm_spacing=(4.0, 3.0))


def test_model_card_renders_from_a_training_record():
    import json
    from importlib import resources

    from atomstat.fcn.card import _markdown

    meta = json.loads(resources.files("atomstat.models").joinpath("stm.json").read_text())
    assert "STM spacings (3.3, 5.0) atom widths" in _markdown("stm", meta)  # the shipped run's
    del meta["config"]["stm_spacing"]  # a record from before the setting existed
    assert "STM spacings (3.3, 5.9) atom widths" in _markdown("stm", meta)


# ------------------------------------------------------------------ bad input: clear errors

INF, NAN = float("inf"), float("nan")


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"shape": (64.5, 64)}, ValueError, r"shape must be \(H, W\), two integers"),
        ({"shape": 64}, ValueError, "shape must be"),
        ({"spacing": INF}, ValueError, "spacing must be a finite number > 0, got inf"),
        ({"spacing": "16"}, TypeError, "spacing must be a finite number, got '16'"),
        ({"sigma": INF}, ValueError, "sigma must be a finite number in"),
        ({"sigma": 40.0}, ValueError, r"sigma must be a finite number in \(0, 32\]"),
        ({"rotation": NAN}, ValueError, "rotation must be a finite number, got nan"),
        ({"ellipticity": NAN}, ValueError, r"ellipticity must be a finite number in \(-1, 1\)"),
        ({"ellipticity": -1}, ValueError, "ellipticity must be"),
        ({"ellipticity": -2}, ValueError, "ellipticity must be"),
        ({"ellipticity": -0.95}, ValueError, "widest column would be 40 px"),
        ({"sublattice_ratio": NAN}, ValueError, "sublattice_ratio must be"),
        ({"defects": Defects(adatoms=0.1, adatom_width=5.0), "sigma": 8.0}, ValueError, "widest"),
        ({"defects": Defects(jitter=20.0)}, ValueError, r"Defects\.jitter .*\(the spacing\)"),
        ({"imaging": Stem(blur=100.0)}, ValueError, "Stem.blur must be"),
        ({"imaging": Stem(scan_jitter=1e6)}, ValueError, "Stem.scan_jitter must be"),
        ({"defects": 3}, TypeError, "defects must be a Defects instance"),
        ({"regions": 3}, TypeError, "regions must be a Regions instance"),
        ({"imaging": "stem"}, TypeError, "imaging must be a Stem or Stm instance"),
        ({"rng": "x"}, TypeError, "rng must be None, an int .*or a numpy Generator"),
        ({"rng": -1}, TypeError, "rng must be None"),
        ({"rng": 1.5}, TypeError, "rng must be None"),
    ],
)
def test_bad_lattice_arguments_are_refused_naming_them(kwargs, error, match):
    with pytest.raises(error, match=match):
        simulate_lattice("square", **({"shape": (64, 64), "spacing": 16.0} | kwargs))


def test_a_spacing_far_too_small_for_the_image_is_refused_before_allocating(monkeypatch):
    """A lattice that would exceed MAX_POINTS points is refused, not run out of memory
    (spacing 1e-3 px on 64 x 64 px would ask for tens of GB)."""
    import atomstat.lattices as lattices

    monkeypatch.setattr(lattices, "MAX_POINTS", 2_000)
    for kind in ("square", "amorphous"):
        with pytest.raises(ValueError, match=f"the {kind} lattice of spacing 1 px .*raise spacing"):
            simulate_lattice(kind, shape=(64, 64), spacing=1.0, defects=PERFECT)
    with pytest.raises(ValueError, match="spacing 1 px"):
        lattice_points("hexagonal", (64, 64), 1.0)
    assert len(simulate_lattice("square", shape=(64, 64), spacing=8.0, rng=0).atoms) > 40


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rotation": NAN}, ValueError, "rotation must be a finite number"),
        ({"spacing": 0.0}, ValueError, "spacing must be a finite number > 0"),
        ({"margin": -1.0}, ValueError, "margin must be a finite number >= 0"),
        ({"shape": (64.5, 64)}, ValueError, "shape must be"),
        ({"rng": "x"}, TypeError, "rng must be None"),
    ],
)
def test_lattice_points_refuses_bad_arguments(kwargs, error, match):
    args = {"shape": (64, 64), "spacing": 8.0} | kwargs
    shape, spacing = args.pop("shape"), args.pop("spacing")
    with pytest.raises(error, match=match):
        lattice_points("square", shape, spacing, **args)


@pytest.mark.parametrize(
    ("cls", "field", "value", "error"),
    [
        (Defects, "vacancies", 2, ValueError),
        (Defects, "vacancies", -0.5, ValueError),
        (Defects, "vacancies", NAN, ValueError),
        (Defects, "dopants", 1.5, ValueError),
        (Defects, "dopants", "0.1", TypeError),
        (Defects, "dopant_ratio", 0.0, ValueError),
        (Defects, "dopant_ratio", INF, ValueError),
        (Defects, "dopant_width", 0.0, ValueError),
        (Defects, "dopant_width", 50.0, ValueError),
        (Defects, "adatoms", -0.1, ValueError),
        (Defects, "adatom_ratio", -1.0, ValueError),
        (Defects, "adatom_width", NAN, ValueError),
        (Defects, "strain", -0.1, ValueError),
        (Defects, "strain", 3.0, ValueError),
        (Defects, "jitter", -1.0, ValueError),
        (Defects, "jitter", INF, ValueError),
        (Stem, "dose", 0, ValueError),
        (Stem, "dose", -1, ValueError),
        (Stem, "dose", NAN, ValueError),
        (Stem, "dose", 1e30, ValueError),
        (Stem, "dose", None, TypeError),
        (Stem, "background", -1.0, ValueError),
        (Stem, "background", NAN, ValueError),
        (Stem, "blur", -1.0, ValueError),
        (Stem, "scan_jitter", NAN, ValueError),
        (Stem, "drift", -0.1, ValueError),
        (Stem, "drift", 2.0, ValueError),
        (Stm, "noise", -1, ValueError),
        (Stm, "noise", NAN, ValueError),
        (Stm, "charge", 1.5, ValueError),
        (Stm, "scars", -1, ValueError),
        (Stm, "scars", 2.5, TypeError),
        (Stm, "tilt", INF, ValueError),
        (Stm, "tip_change", 1.5, ValueError),
        (Regions, "holes", -1, ValueError),
        (Regions, "holes", 1.5, TypeError),
        (Regions, "amorphous", -2, ValueError),
        (Regions, "interface", "kagome", ValueError),
        (Regions, "interface", 3, ValueError),
        (Regions, "edge", "no", TypeError),
    ],
)
def test_settings_refuse_bad_fields_naming_them(cls, field, value, error):
    with pytest.raises(error, match=rf"{cls.__name__}\.{field} must be"):
        cls(**{field: value})


def test_settings_accept_their_defaults_none_and_numpy_numbers():
    for cls in (Defects, Stem, Stm, Regions):
        cls()
    Defects(dopant_ratio=None, vacancies=np.float32(0.1), jitter=np.float64(0.0))
    Stm(tip_change=None, scars=np.int64(3))
    Regions(interface="hexagonal", holes=np.int64(2), edge=np.bool_(True), amorphous=1)
    Stem(dose=np.float64(5000.0), drift=1.0)
    sim = simulate_lattice("square", shape=(48, 48), spacing=8.0, rng=np.int64(3))
    assert sim.image.shape == (48, 48)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"jitter": -1.0}, ValueError, "jitter must be a finite number >= 0, got -1"),
        ({"jitter": NAN}, ValueError, "jitter must be a finite number >= 0, got nan"),
        ({"substrate_spacing": 0}, ValueError, "substrate_spacing must be a finite number > 0"),
        ({"substrate_spacing": -1}, ValueError, "substrate_spacing must be"),
        ({"spacing": INF}, ValueError, "spacing must be a finite number > 0"),
        ({"radius": 100.0}, ValueError, r"radius must be a finite number in \[0, 48\]"),
        ({"sigma": NAN}, ValueError, "sigma must be"),
        ({"centre": -0.5}, ValueError, "centre must be"),
        ({"substrate": NAN}, ValueError, "substrate must be"),
        ({"switching": NAN}, ValueError, "switching must be"),
        ({"fold": 2.5}, TypeError, "fold must be an integer"),
        ({"shape": (96.5, 96)}, ValueError, "shape must be"),
        ({"rng": "x"}, TypeError, "rng must be None"),
    ],
)
def test_simulate_molecules_refuses_bad_numbers_naming_them(kwargs, error, match):
    from atomstat.molecule_scenes import simulate_molecules

    args = {"shape": (96, 96)} | kwargs
    with pytest.raises(error, match=match):
        simulate_molecules(args.pop("shape"), **args)
