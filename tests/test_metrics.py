"""The Cramer-Rao bound of simulated atom positions (atomstat.metrics.position_bound)."""

import numpy as np
import pandas as pd
import pytest

from atomstat.gaussians import render
from atomstat.metrics import position_bound


def _atoms(xy, sigma_xy=(2.0, 2.0), theta=0.0, amplitude=1.0):
    xy = np.asarray(xy, float)
    n = len(xy)
    return pd.DataFrame(
        {
            "x": xy[:, 0],
            "y": xy[:, 1],
            "amplitude": np.broadcast_to(amplitude, (n,)).astype(float),
            "sigma_x": np.full(n, sigma_xy[0]),
            "sigma_y": np.full(n, sigma_xy[1]),
            "theta": np.full(n, theta),
        }
    )


def _brute_force(atoms, shape, dose, background, step=1e-4):
    """Bound from the Fisher information of numerical derivatives, inverted whole."""
    cols = ("x", "y", "amplitude")

    def mean(table):
        img = render(
            table[["x", "y"]].to_numpy(),
            shape,
            table.amplitude.to_numpy(),
            table.sigma_x.to_numpy(),
            table.sigma_y.to_numpy(),
            table.theta.to_numpy(),
        )
        return dose * (background + img.ravel())

    lam = mean(atoms)
    grads = []
    for i in range(len(atoms)):
        for col in cols:
            up, down = atoms.copy(), atoms.copy()
            up.loc[i, col] += step
            down.loc[i, col] -= step
            grads.append((mean(up) - mean(down)) / (2 * step))
    grads = np.array(grads)
    info = (grads / lam) @ grads.T
    var = np.diagonal(np.linalg.inv(info))
    return np.sqrt(var[0::3] + var[1::3])


def test_isolated_round_atom_without_background_matches_the_closed_form():
    """sigma^2 / counts per axis, with 2 pi sigma^2 dose counts in the atom."""
    bound = position_bound(_atoms([[30.4, 29.7]], (2.5, 2.5)), (60, 60), dose=50)
    counts = 2 * np.pi * 2.5**2 * 50
    assert bound[0] == pytest.approx(np.sqrt(2 * 2.5**2 / counts), rel=2e-3)


def test_overlapping_astigmatic_atoms_match_the_brute_force_bound():
    """Five elliptical atoms, two pairs 5 px apart (2.3 widths): joint fit of x, y, amplitude."""
    atoms = _atoms(
        [[12.3, 14.6], [17.1, 15.8], [30.2, 30.45], [34.8, 28.9], [21.7, 40.2]],
        (2.4, 1.9),
        theta=35.0,
        amplitude=[1.0, 0.6, 1.0, 1.6, 1.0],
    )
    bound = position_bound(atoms, (52, 48), dose=40, background=0.15)
    expected = _brute_force(atoms, (52, 48), 40, 0.15)
    np.testing.assert_allclose(bound, expected, rtol=1e-4)
    alone = position_bound(
        atoms.iloc[[0]].reset_index(drop=True), (52, 48), dose=40, background=0.15
    )
    assert bound[0] > 1.1 * alone[0]  # the close neighbour costs precision
    assert bound[4] == pytest.approx(
        position_bound(atoms.iloc[[4]].reset_index(drop=True), (52, 48), dose=40, background=0.15)[
            0
        ],
        rel=1e-3,
    )


def test_atoms_cut_by_the_border_have_a_larger_bound_and_outside_ones_none():
    atoms = _atoms([[20.0, 20.0], [0.4, 20.0], [-3.0, 20.0]])
    bound = position_bound(atoms, (40, 40), dose=100, background=0.1)
    assert bound[1] > 1.3 * bound[0]
    assert np.isnan(bound[2])


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"dose": 0}, "dose"), ({"dose": 10, "background": -1}, "background")]
)
def test_bad_imaging_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        position_bound(_atoms([[10, 10]]), (20, 20), **kwargs)
