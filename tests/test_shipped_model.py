"""The shipped model: present, documented, the paper's architecture, and it finds known atoms."""

import json

import numpy as np
import pytest
from scipy.spatial import cKDTree

import atomstat
from atomstat.fcn.predict import load_model, model_path
from atomstat.simulate import Defects, Stem, simulate_lattice

CARD_FIELDS = ("command", "seed", "simulator", "training curve", "held-out")


def test_universal_model_has_a_card_that_says_how_it_was_made():
    path = model_path("universal")
    card = path.with_suffix(".md").read_text()
    for field in CARD_FIELDS:
        assert field in card.lower(), f"model card lacks '{field}'"
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["config"]["command"].startswith("atomstat train")
    assert meta["heldout"]["stem"]["f1"] > 0.98
    assert meta["heldout"]["f1"] > 0.95


def test_stm_model_has_a_card_and_is_the_papers_network():
    path = model_path("stm")
    card = path.with_suffix(".md").read_text()
    for field in CARD_FIELDS:
        assert field in card.lower(), f"model card lacks '{field}'"
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["config"]["command"].startswith("atomstat train")
    assert meta["config"]["stm_fraction"] >= 0.9
    assert load_model("stm", engine="tensorflow")[0].count_params() == 94468


def test_universal_model_is_the_papers_network():
    model, _ = load_model(engine="tensorflow")
    assert model.count_params() == 94468


def _f1(found, truth, tol=2.0):
    d, _ = cKDTree(found).query(truth)
    d2, _ = cKDTree(truth).query(found)
    recall, precision = (d < tol).mean(), (d2 < tol).mean()
    return 2 * recall * precision / (recall + precision), np.sqrt((d[d < tol] ** 2).mean())


@pytest.mark.parametrize(
    ("kind", "spacing", "sigma", "dose"),
    [
        ("square", 16, 2.2, 100),
        ("hexagonal", 14, 1.8, 60),
        ("honeycomb", 15, 2.0, 200),
        ("dumbbell", 7, 2.0, 100),
        ("amorphous", 16, 2.4, 60),
        ("square", 40, 5.5, 100),
    ],
)
def test_shipped_model_finds_simulated_atoms(kind, spacing, sigma, dose):
    sim = simulate_lattice(
        kind,
        shape=(256, 256),
        spacing=spacing,
        sigma=sigma,
        defects=Defects(vacancies=0.02, dopants=0.02),
        imaging=Stem(dose=dose),
        rng=123,
    )
    atoms = atomstat.analyze(sim.image)
    inside = atoms[~atoms.edge]
    truth = sim.atoms[["x", "y"]].to_numpy()
    keep = ((truth > 4) & (truth < 252)).all(axis=1)  # compare away from the border
    found = inside[["x", "y"]].to_numpy()
    f1, rmse = _f1(found[((found > 4) & (found < 252)).all(axis=1)], truth[keep])
    assert f1 > 0.98, f"{kind}: F1 {f1:.3f}"
    assert rmse < 0.25 * sigma, f"{kind}: RMSE {rmse:.3f} px"


@pytest.mark.parametrize("brightness, seed", [(10.0, 0), (50.0, 0)])
def test_lattice_around_bright_contamination_is_found(brightness, seed):
    """A contamination patch 10-50x brighter than the lattice does not sink the lattice
    around it (with one global contrast scale, recall there was 0.00-0.04)."""
    from atomstat.artefacts import Artefacts
    from atomstat.metrics import match_points

    sim = simulate_lattice(
        "hexagonal",
        shape=(256, 256),
        spacing=16.0,
        sigma=2.0,
        defects=Defects(vacancies=0.0, dopants=0.0),
        imaging=Stem(dose=40.0),
        artefacts=Artefacts(contamination=1, contamination_brightness=brightness),
        rng=seed,
    )
    atoms = atomstat.analyze(sim.image)
    xy = sim.atoms[["x", "y"]].to_numpy()
    yi, xi = np.round(xy[:, 1]).astype(int), np.round(xy[:, 0]).astype(int)
    around = (sim.overlay[np.clip(yi, 0, 255), np.clip(xi, 0, 255)] < 0.5) & (xy.min(1) > 4)
    around &= xy.max(1) < 251
    hits, _, _ = match_points(xy[around], atoms[["x", "y"]].to_numpy(), 2.0)
    assert around.sum() > 150
    assert len(hits) / around.sum() >= 0.95
