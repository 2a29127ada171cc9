"""Tests for atomstat.find_defects on scenes with planted defects.

Lattice scenes: a honeycomb lattice with a weak second sublattice (MoS2-like),
rendered with Poisson noise; vacancies, adatoms (off-site, at hexagon
centres) and heavy dopants are planted at known places. The atoms table
is the truth less the vacancies and less some weak atoms the "finder missed"
(they are still in the image, so they are not vacancies).

Image scenes: an unresolved surface (noise, scan-line offsets, a tilt) with
planted bright and dark round features of several widths.
"""

import numpy as np
import pandas as pd
import pytest

from atomstat.defects import find_blobs, find_defects
from atomstat.describe import add_intensity
from atomstat.gaussians import render
from atomstat.lattices import lattice_points
from atomstat.metrics import match_points
from atomstat.table import DEFECT_COLUMNS, make_atoms

SHAPE = (240, 240)


def lattice_scene(rng=0, rotation=17.0, weak=0.35, missed=0.1):
    rng = np.random.default_rng(rng)
    pts, site = lattice_points("honeycomb", SHAPE, 11.0, rotation=rotation, rng=rng, sites=True)
    inside = (pts > -0.5).all(1) & (pts[:, 0] < SHAPE[1] - 0.5) & (pts[:, 1] < SHAPE[0] - 0.5)
    pts, site = pts[inside] + rng.normal(0, 0.25, (inside.sum(), 2)), site[inside]
    n = len(pts)
    order = rng.permutation(n)
    inner = np.flatnonzero(((pts[order] > 12) & (pts[order] < SHAPE[0] - 12)).all(1))
    vac, dop = order[inner[:6]], order[inner[6:12]]
    miss = np.setdiff1d(order, np.r_[vac, dop])
    miss = miss[(site[miss] == 1)][: int(missed * n / 2)]
    amp = np.where(site == 1, weak, 1.0)
    amp[dop] *= 2.5
    present = np.ones(n, bool)
    present[vac] = False
    # adatoms at hexagon centres: the third site of the honeycomb cell, which no atom holds
    a1 = pts[site == 0]
    centres = []
    for p in a1[rng.permutation(len(a1))]:
        c = p + (_cell_centre(pts, site, p))
        if (c > 15).all() and (c < np.array(SHAPE[::-1]) - 15).all():
            centres.append(c)
        if len(centres) == 5:
            break
    ad = np.array(centres)
    xy = np.concatenate([pts[present], ad])
    amps = np.concatenate([amp[present], np.full(len(ad), 0.6)])
    clean = render(
        xy, SHAPE, amps * 60, np.full(len(xy), 1.8), np.full(len(xy), 1.8), np.zeros(len(xy))
    )
    image = rng.poisson(clean + 6.0).astype(float)
    keep = present.copy()
    keep[miss] = False  # the finder missed these weak columns (still in the image)
    table_xy = np.concatenate([pts[keep], ad])
    kind = np.concatenate(
        [np.where(np.isin(np.flatnonzero(keep), dop), "dopant", "host"), np.full(len(ad), "adatom")]
    )
    atoms = make_atoms({"x": table_xy[:, 0], "y": table_xy[:, 1], "truth": kind})
    atoms = add_intensity(atoms, image, half_width=2)
    # as locate marks them: atoms whose box is cut by the border
    xy_ = atoms[["x", "y"]].to_numpy()
    atoms["edge"] = ((xy_ < 2.5) | (xy_ > np.array(SHAPE[::-1]) - 3.5)).any(axis=1)
    atoms["area"] = rng.normal(20, 1, len(atoms))
    return atoms, image, pts[vac], ad, pts[dop]


def _cell_centre(pts, site, p):
    """Vector from a site-0 atom to the centre of a hexagon it borders."""
    d = pts[site == 1] - p
    near = d[np.argsort(np.hypot(*d.T))[:3]]  # its three B neighbours
    return -near[2]  # opposite a bond: the centre of a hexagon


def found(defects, kind, truth, tol=3.0):
    got = defects[defects.kind == kind][["x", "y"]].to_numpy()
    a, _, _ = match_points(np.asarray(truth, float).reshape(-1, 2), got, tol)
    return len(a), len(got)


@pytest.mark.parametrize("rng,rotation", [(0, 17.0), (1, 64.0)])
def test_vacancies_adatoms_and_dopants_are_found_exactly(rng, rotation):
    atoms, image, vacancies, adatoms, dopants = lattice_scene(rng, rotation)
    d = find_defects(atoms, image)
    assert d.attrs["method"] == ["lattice"]
    hit, n = found(d, "vacancy", vacancies)
    assert hit == len(vacancies) and n == len(vacancies)  # the missed weak columns are bright
    hit, n = found(d, "adatom", adatoms)
    assert hit == len(adatoms) and n == len(adatoms)
    hit, n = found(d, "anomaly", dopants)
    assert hit == len(dopants) and n == len(dopants)
    assert (d.loc[d.kind == "adatom", "atom_id"] >= 0).all()
    assert (d.loc[d.kind == "vacancy", "atom_id"] == -1).all()
    assert set(d.loc[d.kind == "vacancy", "sublattice"]) <= {0, 1}


def test_without_the_image_every_empty_site_is_a_vacancy():
    atoms, image, vacancies, _, _ = lattice_scene(2, missed=0.0)
    d = find_defects(atoms, None, method="lattice", anomalies=False)
    hit, n = found(d, "vacancy", vacancies)
    assert hit == len(vacancies) and n == len(vacancies)
    assert not (d.kind == "anomaly").any()


def surface(rng=0, shape=(320, 320)):
    rng = np.random.default_rng(rng)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = rng.normal(0, 1.0, shape) + 0.02 * xx + rng.normal(0, 2.0, (shape[0], 1))
    features = []
    for i, (x, y) in enumerate(rng.uniform(30, shape[0] - 30, (40, 2))):
        if features and min(np.hypot(x - fx, y - fy) for fx, fy, _, _ in features) < 40:
            continue
        sign = 1 if i % 2 else -1
        width = [2.5, 4.0, 6.0][i % 3]
        image += sign * 6.0 * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * width**2))
        features.append((x, y, sign, width))
    return image, pd.DataFrame(features, columns=["x", "y", "sign", "width"])


@pytest.mark.parametrize("rng", [0, 1])
def test_bright_and_dark_features_of_an_unresolved_surface_are_found_exactly(rng):
    image, truth = surface(rng)
    d = find_defects(None, image, scales=(1.5, 12))
    for kind, sign in (("bright", 1), ("dark", -1)):
        want = truth[truth.sign == sign][["x", "y"]].to_numpy()
        hit, n = found(d, kind, want, tol=3.0)
        assert hit == len(want) and n == len(want), kind
    # widths follow the features'
    a, b, _ = match_points(truth[["x", "y"]].to_numpy(), d[["x", "y"]].to_numpy(), 3.0)
    ratio = d["size"].to_numpy()[b] / truth["width"].to_numpy()[a]
    assert 0.7 < np.median(ratio) < 1.4


def test_scan_line_streaks_are_not_features():
    rng = np.random.default_rng(3)
    image = rng.normal(0, 1.0, (200, 200))
    for r in rng.choice(np.arange(10, 190, 4), 12, replace=False):
        c = rng.integers(0, 120)
        image[r, c : c + 60] += 8.0  # a scar: one scan line jumps
    assert len(find_blobs(image, scales=(1.5, 10))) == 0


def test_calibration_sets_the_feature_widths():
    image, truth = surface(4)
    atoms = make_atoms({"x": [], "y": []}, attrs={"pixel_size": 0.1, "units": "nm"})
    d = find_defects(atoms, image, method="blobs")
    assert d.attrs["method"] == ["blobs"]
    assert d["size"].between(3.0 - 1e-9, 15.0 + 1e-9).all()  # 0.3-1.5 nm at 0.1 nm/px


def test_frames_schema_and_empty_results():
    image, _ = surface(5, shape=(128, 128))
    stack = np.stack([image, np.random.default_rng(0).normal(0, 1, (128, 128))])
    d = find_defects(None, stack, scales=(1.5, 8))
    assert list(d.columns) == list(DEFECT_COLUMNS)
    assert set(d.frame) == {0}  # the second frame is plain noise
    empty = find_defects(None, np.zeros((64, 64)))
    assert len(empty) == 0 and list(empty.columns) == list(DEFECT_COLUMNS)


def test_bad_input_is_refused_by_name():
    with pytest.raises(ValueError, match="method must be"):
        find_defects(None, np.zeros((32, 32)), method="nope")
    with pytest.raises(ValueError, match="needs an atoms table, an image"):
        find_defects(None, None)
    with pytest.raises(ValueError, match="image must be"):
        find_defects(None, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="needs the image"):
        find_defects(make_atoms({"x": [1.0], "y": [1.0]}), None, method="blobs")
    with pytest.raises(ValueError, match="z must be"):
        find_defects(None, np.zeros((32, 32)), z=-1)


def test_public_names():
    import atomstat

    assert atomstat.find_defects is find_defects
    assert atomstat.sublattices.__name__ == "sublattices"


def test_cli_defects_writes_the_defects_table(tmp_path, threshold_model):
    from atomstat.cli import main
    from atomstat.simulate import Defects, Stem, simulate_lattice

    sim = simulate_lattice(
        "hexagonal", shape=(160, 160), spacing=16, sigma=2.2, rotation=10,
        defects=Defects(vacancies=0.0, dopants=0.0), imaging=Stem(dose=300), rng=7,
    )  # fmt: skip
    image = sim.image.copy()
    image[70:90, 70:90] = np.median(image)  # one lattice site emptied
    model = tmp_path / "threshold.keras"
    threshold_model.save(model)
    np.save(tmp_path / "lattice.npy", image)
    out = tmp_path / "out"
    args = ["analyze", str(tmp_path / "lattice.npy"), "--out", str(out), "--model", str(model)]
    assert main([*args, "--defects"]) == 0
    table = pd.read_csv(out / "lattice_defects.csv")
    assert list(table.columns) == ["defect_id", *DEFECT_COLUMNS]
    vac = table[table.kind == "vacancy"]
    inside = vac.x.between(68, 92) & vac.y.between(68, 92)
    assert inside.sum() >= 1
