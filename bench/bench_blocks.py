"""How far down block-averaged segmentation stays true (issue 15.2).

``segment(resolution=b)`` runs the network on ``b x b`` block means and
interpolates the map back. For each atom width ``sigma`` (px) and block size
``b``, on held-out simulated lattices (hexagonal, spacing 9 sigma, dose 100,
ellipticity 0.2: the columns are elongated along x, so the true orientation is
0 deg) and on drawn scenes of isolated elliptical atoms at known angles
(semi-axes ratio 1.6), against the full-resolution map (``b = 1``) of the same
image and against the truth:

- ``F1`` and ``RMSE`` (px) of the centres (refined on the raw image), matched
  within 0.5 spacing (lattices) or 3 sigma (drawn);
- ``area`` and ``circularity``: median ratio to the full map's value for the
  same atom (1 = unchanged);
- ``orient err``: median angular error (deg) against the true long axis;
- ``network s``: median seconds of ``segment``.

The column ``sigma/b`` is the atom width the network sees. ``BLOCK_SIGMA`` in
:mod:`atomstat.fcn.predict` is the narrowest width ``resolution="auto"`` goes to.

Run: ``.venv/bin/python bench/bench_blocks.py [--quick]``
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd
from common import table

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SIGMAS = (1.4, 1.8, 2.0, 2.2, 2.6, 3.0, 3.4)
BLOCKS = (1, 2, 3, 4)


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def lattice(sigma, seed, size):
    from atomstat.simulate import Defects, Stem, simulate_lattice

    sim = simulate_lattice(
        "hexagonal",
        shape=(size, size),
        spacing=9.0 * sigma,
        sigma=sigma,
        ellipticity=0.2,
        defects=Defects(vacancies=0.0, dopants=0.0),
        imaging=Stem(dose=100.0),
        rng=seed,
    )
    truth = sim.atoms[["x", "y"]].to_numpy()
    return sim.image, truth, np.zeros(len(truth)), 4.5 * sigma


def drawn(sigma, seed, size):
    """Isolated elliptical Gaussian atoms (sigma_x / sigma_y = 1.6) on a grid, each at its
    own angle, Poisson noise at 100 counts per atom peak over a background of 10."""
    rng = np.random.default_rng(seed)
    step = 10.0 * sigma
    centres = np.arange(step, size - step + 1, step)
    yy, xx = np.mgrid[:size, :size].astype(float)
    clean = np.zeros((size, size))
    rows = []
    a, b = sigma * 1.6**0.5, sigma / 1.6**0.5
    for cy in centres:
        for cx in centres:
            x0, y0 = cx + rng.uniform(-0.5, 0.5), cy + rng.uniform(-0.5, 0.5)
            angle = rng.uniform(0.0, 180.0)
            t = np.deg2rad(angle)
            dx, dy = xx - x0, -(yy - y0)  # angles counter-clockwise as displayed
            u, v = dx * np.cos(t) + dy * np.sin(t), -dx * np.sin(t) + dy * np.cos(t)
            clean += np.exp(-0.5 * ((u / a) ** 2 + (v / b) ** 2))
            rows.append((x0, y0, angle))
    image = rng.poisson(100.0 * clean + 10.0).astype(np.float32)
    truth = np.array(rows)
    return image, truth[:, :2], truth[:, 2], 3.0 * sigma


def axis_error(found, true):
    return np.abs((found - true + 90.0) % 180.0 - 90.0)


def measure(kind, sigma, blocks, seed, size, repeats):
    """Rows for one scene: every block size against the full map and the truth."""
    from atomstat import analyze, segment
    from atomstat.metrics import match_points

    image, truth, angles, max_dist = (lattice if kind == "lattice" else drawn)(sigma, seed, size)
    rows, full = [], None
    for b in blocks:
        if sigma / b < 0.55 or size // b < 16:
            continue
        seconds = []
        for _ in range(repeats):
            t = time.perf_counter()
            segment(image, sigma=sigma, resolution=b)
            seconds.append(time.perf_counter() - t)
        atoms = analyze(image, sigma=sigma, resolution=b)
        xy = atoms[["x", "y"]].to_numpy()
        ti, fi, _ = match_points(truth, xy, max_dist)
        tp = len(ti)
        f1 = 2 * tp / max(1, len(truth) + len(xy))
        err = xy[fi] - truth[ti]
        rmse = float(np.sqrt(np.mean(np.sum(err**2, axis=1)))) if tp else np.nan
        by_truth = pd.DataFrame(
            {c: atoms[c].to_numpy()[fi] for c in ("area", "circularity", "orientation")}, index=ti
        )
        row = {
            "scene": kind,
            "sigma": sigma,
            "b": b,
            "sigma/b": sigma / b,
            "F1": f1,
            "RMSE px": rmse,
            "orient err deg": float(np.median(axis_error(by_truth["orientation"], angles[ti]))),
            "network s": float(np.median(seconds)),
        }
        if full is None:
            full = by_truth
        common = by_truth.index.intersection(full.index)
        for c in ("area", "circularity"):
            ratio = by_truth.loc[common, c] / full.loc[common, c]
            row[f"{c} / full"] = float(np.median(ratio))
        rows.append(row)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer widths, one scene each")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from atomstat.fcn.predict import BLOCK_SIGMA, warm

    sigmas = (1.8, 2.2, 3.0) if args.quick else SIGMAS
    print("# bench_blocks")
    print(f"start: {loadavg()}")
    print(f"model load and trace: {warm():.2f} s; BLOCK_SIGMA = {BLOCK_SIGMA}", flush=True)
    rows = []
    for kind in ("lattice", "drawn"):
        for sigma in sigmas:
            rows += measure(kind, sigma, BLOCKS, seed=1500 + int(10 * sigma), size=args.size,
                            repeats=args.repeats)  # fmt: skip
            print(f"  {kind} sigma {sigma}: done ({loadavg()})", flush=True)
    print()
    print(table(pd.DataFrame(rows), floatfmt=".3f"))
    print(f"\nend: {loadavg()}")


if __name__ == "__main__":
    main()
