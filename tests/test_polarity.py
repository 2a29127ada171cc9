"""Dark atoms (ABF, bright field): analyze reads them inverted when the image as recorded
finds too few atoms for its lattice, and says so."""

import numpy as np
import pytest

import atomstat
from atomstat import polarity
from atomstat.metrics import match_points
from atomstat.simulate import simulate_lattice


@pytest.fixture(scope="module")
def lattice():
    return simulate_lattice("square", shape=(192, 192), spacing=16, sigma=2.2, rng=3)


def _abf(sim, seed=0):
    """Columns as dips in a bright background, with shot noise: an ABF-like frame."""
    rng = np.random.default_rng(seed)
    clean = sim.image / sim.image.max()
    return rng.poisson(200 * (1.2 - 0.8 * clean)).astype(np.float32)


def test_dark_atoms_are_found_inverted_with_a_warning(lattice):
    atoms = atomstat.analyze(_abf(lattice))
    truth = lattice.atoms[["x", "y"]].to_numpy()
    found = atoms[["x", "y"]].to_numpy()
    assert len(match_points(truth, found, 2.0)[0]) >= 0.9 * len(truth)
    assert atoms.attrs["preprocess"] == "invert"
    assert any("analysed inverted" in w for w in atoms.attrs["warnings"])


def test_none_keeps_the_image_as_recorded(lattice):
    atoms = atomstat.analyze(_abf(lattice), preprocess="none")
    truth = lattice.atoms[["x", "y"]].to_numpy()
    assert len(match_points(truth, atoms[["x", "y"]].to_numpy(), 2.0)[0]) < 0.5 * len(truth)
    assert atoms.attrs["preprocess"] == "none"
    assert not any("inverted" in w for w in atoms.attrs["warnings"])


def test_bright_atoms_are_not_inverted(lattice):
    atoms = atomstat.analyze(lattice.image)
    assert atoms.attrs["preprocess"] is None
    assert abs(len(atoms) - len(lattice.atoms)) <= 0.05 * len(lattice.atoms)
    assert not any("inverted" in w for w in atoms.attrs["warnings"])


def test_rules():
    assert polarity.doubtful(0.89) and not polarity.doubtful(0.9)
    assert not polarity.prefer_inverted(0.82, 0.85)  # STM frames, graphite: not dark atoms
    assert polarity.prefer_inverted(0.80, 0.99)
    assert not polarity.prefer_inverted(0.95, 1.0)  # read with confidence as recorded


@pytest.mark.parametrize("kind", ["square", "honeycomb", "dumbbell"])
def test_dark_lattices_whose_gaps_look_like_atoms(kind):
    """The gaps of a dark lattice form a lattice of their own (as many blobs as atoms or
    more): the contrast is told by the network's confidence, not by a count."""
    sim = simulate_lattice(kind, shape=(128, 128), spacing=16, sigma=2.2, rng=4)
    atoms = atomstat.analyze(_abf(sim, seed=2))
    truth = sim.atoms[["x", "y"]].to_numpy()
    ti, _, _ = match_points(truth, atoms[["x", "y"]].to_numpy(), 2.0)
    assert atoms.attrs["preprocess"] == "invert"
    assert len(ti) >= 0.9 * len(truth) and len(atoms) <= 1.1 * len(truth)
