"""Rigid template fits of molecules: Procrustes, template learning, n-fold symmetry.

The private engine of :mod:`atomstat.molecules`. Points are (x, up) arrays
of shape (K, 2) with up = -y (row axis flipped), so that every angle here is
counter-clockwise as displayed. A template is centred on its centroid.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "candidate_fits",
    "canonical",
    "find_symmetry",
    "fit_one",
    "learn_template",
    "procrustes",
    "radius_of",
    "rotation",
    "symmetrize",
    "to_up",
]

log = logging.getLogger(__name__)

_RING = 0.5  # template points farther than this fraction of the largest radius form the ring
_ROUNDS = 4  # template learning: align-and-average rounds


def to_up(xy):
    return np.asarray(xy, float) * [1.0, -1.0]


def rotation(theta):
    c, s = np.cos(theta), np.sin(theta)
    return np.array([[c, -s], [s, c]])


def radius_of(tmpl) -> float:
    return float(np.hypot(*tmpl.T).max()) if len(tmpl) else 0.0


def procrustes(a, b):
    """Rotation angle and translation that best map points a onto b (rows paired)."""
    ma, mb = a.mean(axis=0), b.mean(axis=0)
    ac, bc = a - ma, b - mb
    theta = np.arctan2(np.sum(ac[:, 0] * bc[:, 1] - ac[:, 1] * bc[:, 0]), np.sum(ac * bc))
    return theta, mb - rotation(theta) @ ma


def fit_one(p, tmpl):
    """Rigid fit of a centred template to points p (K, 2): theta, centre, rms, pairs (i, j)."""
    rms, theta, centre, i, j = min(candidate_fits(p, tmpl), key=lambda fit: fit[0])
    return theta, centre, rms, i, j


def candidate_fits(p, tmpl):
    """Candidate rigid fits (rms, theta, centre, i, j), one per start.

    A complete molecule starts from every alignment of the template's
    outermost blob with a ring blob of p around p's centroid; an incomplete
    one from every placement of two of its blobs on two template blobs (so
    that every way of completing it is tried). Each start is refined by two
    rounds of optimal assignment and Procrustes.
    """
    c0 = p.mean(axis=0)
    r_t = np.hypot(*tmpl.T)
    if len(p) < len(tmpl):
        pairs = [(a, b) for a in range(len(tmpl)) for b in range(len(tmpl)) if a != b]
        starts = [procrustes(tmpl[[a, b]], p[:2]) for a, b in pairs]
    else:
        t0 = tmpl[int(np.argmax(r_t))]
        q = p - c0
        ring = np.hypot(*q.T) > _RING * r_t.max()
        angles = np.arctan2(q[ring, 1], q[ring, 0]) - np.arctan2(t0[1], t0[0])
        starts = [(theta, c0) for theta in (angles if len(angles) else [0.0])]
    out = []
    for theta, centre in starts:
        for _ in range(2):
            model = tmpl @ rotation(theta).T + centre
            i, j = linear_sum_assignment(((p[:, None, :] - model[None]) ** 2).sum(-1))
            theta, centre = procrustes(tmpl[j], p[i])
        model = tmpl @ rotation(theta).T + centre
        rms = float(np.sqrt(np.mean(np.sum((p[i] - model[j]) ** 2, axis=1))))
        out.append((rms, theta, centre, i, j))
    return out


def learn_template(point_sets, limit=300):
    """Mean shape of the complete molecules (the most common blob count), by iterated
    Procrustes alignment: each round aligns every molecule to the current template
    and takes the blob-wise median."""
    sizes = np.array([len(p) for p in point_sets])
    multi = sizes[sizes >= 2]
    if not len(multi):
        raise ValueError("no molecule has two or more blobs: nothing to learn a template from")
    size = int(np.bincount(multi).argmax())
    complete = [p - p.mean(axis=0) for p in point_sets if len(p) == size]
    complete = [
        complete[k]
        for k in np.linspace(0, len(complete) - 1, min(limit, len(complete))).astype(int)
    ]
    tmpl = complete[0]
    for _ in range(_ROUNDS):
        aligned = np.empty((len(complete), size, 2))
        for k, p in enumerate(complete):
            theta, centre, _, i, j = fit_one(p, tmpl)
            aligned[k, j] = (p[i] - centre) @ rotation(theta)  # back into the template's frame
        tmpl = np.median(aligned, axis=0)
        tmpl -= tmpl.mean(axis=0)
    log.debug("learned a %d-blob template from %d molecules", size, len(complete))
    return tmpl


def _ring_mask(tmpl):
    r = np.hypot(*tmpl.T)
    return r > _RING * r.max() if r.max() > 0 else np.zeros(len(tmpl), bool)


def _rotation_error(tmpl, angle):
    """Largest blob displacement (over the radius) when turning the template by angle."""
    turned = tmpl @ rotation(angle).T
    cost = ((tmpl[:, None, :] - turned[None]) ** 2).sum(-1)
    i, j = linear_sum_assignment(cost)
    return float(np.sqrt(cost[i, j].max())) / max(radius_of(tmpl), 1e-12)


def find_symmetry(tmpl, symmetry, tol=0.15):
    """Check a given symmetry against the template's ring, or find the largest that fits."""
    n_ring = int(_ring_mask(tmpl).sum())
    if symmetry is not None:
        if n_ring == 0 or n_ring % symmetry:
            raise ValueError(
                f"symmetry={symmetry} does not fit the template: its ring has {n_ring} blob(s), "
                "not a multiple of the symmetry"
            )
        return int(symmetry)
    for n in range(max(n_ring, 1), 1, -1):
        if n_ring % n == 0 and _rotation_error(tmpl, 2 * np.pi / n) < tol:
            return n
    return 1


def symmetrize(tmpl, symmetry):
    """Average the template over its n rotations (blobs matched by assignment)."""
    total = np.zeros_like(tmpl)
    for k in range(symmetry):
        turned = tmpl @ rotation(2 * np.pi * k / symmetry).T
        i, j = linear_sum_assignment(((tmpl[:, None, :] - turned[None]) ** 2).sum(-1))
        total[i] += turned[j]
    return total / symmetry


def canonical(tmpl):
    """Turn the template so that its outermost ring blob points along +x; ring blobs
    first, by azimuth."""
    r = np.hypot(*tmpl.T)
    az = np.arctan2(tmpl[:, 1], tmpl[:, 0]) % (2 * np.pi)
    outer = np.flatnonzero(r >= 0.95 * r.max())
    first = outer[np.argmin(az[outer])]
    tmpl = tmpl @ rotation(-az[first]).T
    az = np.arctan2(tmpl[:, 1], tmpl[:, 0])
    az = np.where(az < -1e-9, az + 2 * np.pi, np.maximum(az, 0.0))  # the first blob at 0
    return tmpl[np.lexsort((az, ~_ring_mask(tmpl)))]
