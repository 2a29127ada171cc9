"""Charge anomalies (the LCMO workflow, paper Fig. 6e): elongated blobs are flagged by the
one-class SVM on area and circularity, and their long axis is drawn as arrows."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.quiver import Quiver

from atomstat.gaussians import render
from atomstat.metrics import match_points
from atomstat.outliers import find_anomalies
from atomstat.pipeline import analyze
from atomstat.plot import elongation_vectors, plot_elongation


def charge_ordered(rng, n=16, spacing=14, share=0.08):
    """A square lattice of round blobs; a share of them is stretched along a known angle
    (degrees counter-clockwise as displayed)."""
    g = np.arange(n) * spacing + 10.0
    xx, yy = np.meshgrid(g, g)
    points = np.c_[xx.ravel(), yy.ravel()]
    stretched = rng.random(len(points)) < share
    theta = np.where(stretched, rng.uniform(0, 180, len(points)), 0.0)
    sigma_x = np.where(stretched, 3.6, 2.2)
    sigma_y = np.where(stretched, 1.6, 2.2)
    side = n * spacing + 6
    image = render(points, (side, side), np.ones(len(points)), sigma_x, sigma_y, theta)
    image = image + rng.normal(0, 0.03, image.shape)
    return image.astype(np.float32), points, stretched, theta


@pytest.fixture(scope="module")
def scene():
    image, points, stretched, theta = charge_ordered(np.random.default_rng(0))
    atoms = analyze(image)
    truth_i, found_i, _ = match_points(points, atoms[["x", "y"]].to_numpy(), 2.0)
    return image, atoms, stretched[truth_i], theta[truth_i], found_i


def _axis_error(a, b):
    """Difference of two axial angles (degrees, modulo 180)."""
    return np.abs((np.asarray(a) - np.asarray(b) + 90) % 180 - 90)


def test_orientation_of_elongated_blobs_is_their_known_angle(scene):
    image, atoms, stretched, theta, found_i = scene
    orientation = atoms["orientation"].to_numpy()[found_i]
    assert stretched.sum() >= 15
    assert _axis_error(orientation[stretched], theta[stretched]).max() < 3.0


def test_elongated_blobs_are_the_anomalies_in_area_and_circularity(scene):
    image, atoms, stretched, theta, found_i = scene
    flagged = find_anomalies(atoms, ["area", "circularity"], method="ocsvm", rng=0)
    flagged = flagged.to_numpy()[found_i]
    recall = (flagged & stretched).sum() / stretched.sum()
    precision = (flagged & stretched).sum() / max(flagged.sum(), 1)
    assert recall >= 0.9 and precision >= 0.9


def test_arrows_point_along_the_long_axis(scene):
    image, atoms, stretched, theta, found_i = scene
    mask = np.zeros(len(atoms), bool)
    mask[found_i[stretched]] = True
    ax = plot_elongation(image, atoms, mask)
    (quiver,) = [c for c in ax.collections if isinstance(c, Quiver)]
    u, v = np.asarray(quiver.U), np.asarray(quiver.V)
    assert len(u) == mask.sum()
    # image coordinates: y points down, so counter-clockwise as displayed is -v
    angle = np.degrees(np.arctan2(-v, u)) % 180
    order = np.argsort(found_i[stretched])  # quiver rows follow the table's order
    assert _axis_error(angle, theta[stretched][order]).max() < 3.0
    # length grows with the stretch: round blobs get (almost) no arrow
    vectors = elongation_vectors(atoms)
    lengths = np.hypot(vectors["u"], vectors["v"]).to_numpy()[found_i]
    assert lengths[stretched].min() > 3 * lengths[~stretched].max()
    plt.close(ax.figure)


def test_mask_defaults_and_checks(scene):
    image, atoms, *_ = scene
    ax = plot_elongation(image, atoms.assign(anomaly=False))
    (quiver,) = [c for c in ax.collections if isinstance(c, Quiver)]
    assert len(quiver.U) == 0
    with pytest.raises(ValueError, match="one value per atom"):
        plot_elongation(image, atoms, np.ones(3, bool))
    with pytest.raises(ValueError, match="no column 'orientation'"):
        elongation_vectors(atoms.drop(columns="orientation"))
    plt.close("all")
