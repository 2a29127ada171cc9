"""Missed columns of a weak sublattice, added where the lattice predicts them
(atomstat.sublattices.complete_sublattices), on simulated images with known truth.

The finder's output is stood in for by the truth with most of the weak sublattice
dropped (what the network does on faint S2 or B-site columns); the added atoms are
then compared with the dropped ones (recall) and with every true column (false sites).
"""

import numpy as np
import pytest

from atomstat.describe import add_intensity
from atomstat.simulate import Defects, Stem, simulate_lattice
from atomstat.sublattices import complete_sublattices, sublattices
from atomstat.table import make_atoms


def scene(kind, ratio, *, dose=200.0, kept=0.2, vacancies=0.03, rng=0, spacing=14, sigma=2.0):
    sim = simulate_lattice(
        kind,
        shape=(320, 320),
        spacing=spacing,
        sigma=sigma,
        sublattice_ratio=ratio,
        defects=Defects(vacancies=vacancies, dopants=0.0, jitter=0.2),
        imaging=Stem(dose=dose),
        rng=rng,
    )
    truth = sim.atoms
    weak = np.isclose(truth["amplitude"].to_numpy(), ratio)
    keep = ~weak | (np.random.default_rng(rng).random(len(truth)) < kept)
    found = make_atoms({"x": truth.x.to_numpy()[keep], "y": truth.y.to_numpy()[keep]})
    found = add_intensity(found, sim.image, half_width=2)
    return sim, truth, weak, keep, found


def scores(added, truth, weak, keep, radius=1.5):
    """(recall of the dropped weak columns, share of added atoms on no true column)."""
    from scipy.spatial import cKDTree

    xy = added[["x", "y"]].to_numpy()
    d_true, _ = cKDTree(truth[["x", "y"]].to_numpy()).query(xy)
    dropped = truth[weak & ~keep][["x", "y"]].to_numpy()
    inside = ((dropped > 8) & (dropped < 312)).all(axis=1)  # a whole ring around it
    got = cKDTree(xy).query(dropped[inside])[0] <= radius if len(xy) else np.zeros(0, bool)
    return float(np.mean(got)), float(np.mean(d_true > radius)) if len(xy) else 0.0


@pytest.mark.parametrize("ratio", [0.1, 0.3, 0.5])
def test_weak_honeycomb_sublattice_is_completed(ratio):
    sim, truth, weak, keep, found = scene("honeycomb", ratio)
    out = complete_sublattices(found, sim.image, sigma=2.0)
    added = out.iloc[len(found) :]
    assert out.attrs["lattice_sites_added"] == len(added) > 0
    recall, false = scores(added, truth, weak, keep)
    assert recall >= 0.9
    assert false <= 0.05
    assert added["confidence"].isna().all()
    # the added atoms sit on the weak site
    sub = sublattices(out)
    assert (sub["sublattice"].iloc[len(found) :] == 1).mean() >= 0.9


def test_perovskite_like_b_sites_are_completed():
    sim, truth, weak, keep, found = scene(
        "centered_rectangular", 0.25, spacing=20, sigma=2.4, kept=0.1
    )
    out = complete_sublattices(found, sim.image, sigma=2.4)
    recall, false = scores(out.iloc[len(found) :], truth, weak, keep)
    assert recall >= 0.9 and false <= 0.05


def test_weak_vacancies_stay_empty_where_the_image_is_clear():
    # dose high enough that an empty weak site is told from a column one by one
    sim, truth, weak, keep, found = scene("honeycomb", 0.5, dose=2000, vacancies=0.08, rng=3)
    out = complete_sublattices(found, sim.image, sigma=2.0)
    added = out.iloc[len(found) :][["x", "y"]].to_numpy()
    from scipy.spatial import cKDTree

    d, _ = cKDTree(truth[["x", "y"]].to_numpy()).query(added)
    assert len(added) > 100 and np.mean(d > 1.5) <= 0.01


@pytest.mark.parametrize("kind", ["square", "hexagonal", "oblique"])
def test_a_lattice_of_one_site_gains_nothing(kind):
    sim = simulate_lattice(
        kind, shape=(256, 256), spacing=16, sigma=2.2, defects=Defects(0.03, 0.0), rng=1
    )
    found = add_intensity(make_atoms({"x": sim.atoms.x, "y": sim.atoms.y}), sim.image)
    found = found[(found.x > 0) & (found.y > 0)]
    out = complete_sublattices(found, sim.image, sigma=2.2)
    assert out.attrs["lattice_sites_added"] == 0 and len(out) == len(found)


def test_too_few_atoms_or_no_lattice_adds_nothing_and_bad_input_is_refused():
    rng = np.random.default_rng(0)
    image = rng.normal(0, 1, (64, 64))
    few = make_atoms({"x": rng.uniform(5, 60, 12), "y": rng.uniform(5, 60, 12)})
    assert complete_sublattices(few, image, sigma=2.0).attrs["lattice_sites_added"] == 0
    with pytest.raises(ValueError, match="image"):
        complete_sublattices(few, np.zeros(5), sigma=2.0)
    with pytest.raises(ValueError, match="sigma"):
        complete_sublattices(few, image, sigma=-1.0)
