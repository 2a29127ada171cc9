"""Shared helpers for the benchmarks: held-out scenes, matching, metrics, timing, peers.

Everything here is deterministic: a scene is fixed by its parameters and a
seed at or above ``HELDOUT_SEED`` (10_000_000), which training never draws.

Matching rule (used for every method alike)
-------------------------------------------
A true atom is matched to a found atom within ``MAX_DIST`` = 2 px, one to one,
maximising the number of matches and then minimising the summed distance
(``scipy.optimize.linear_sum_assignment`` on each connected group of
candidate pairs). Scenes are simulated on a canvas padded by about 3 widths
and then cropped, so the truth also holds the atoms just outside the image,
whose tails are visible at the border. A found atom matched to such an
outside atom is neither a hit nor a false positive; missing one is not a
miss. Only true atoms whose centre lies inside the image
(-0.5 < x < W - 0.5) count towards recall.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import shutil
import statistics
import sys
import time
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from atomstat.fcn.train import HELDOUT_SEED
from atomstat.metrics import match_points
from atomstat.simulate import Defects, Regions, Stem, simulate_lattice

MAX_DIST = 2.0

# ----------------------------------------------------------------------------- output


def table(df: pd.DataFrame, *, floatfmt: str = ".3f", index: bool = False) -> str:
    """Markdown table (``to_markdown`` when ``tabulate`` is installed, else ``to_string``)."""
    try:
        return df.to_markdown(index=index, floatfmt=floatfmt)
    except ImportError:
        fmt = floatfmt.lstrip(".")
        digits = int(fmt[:-1]) if fmt[:-1].isdigit() else 3
        return df.to_string(index=index, float_format=lambda v: f"{v:.{digits}f}")


def header(title: str) -> None:
    print(f"\n## {title}\n", flush=True)


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def quiet() -> None:
    """Silence the peers' progress bars, logging and warnings, and TensorFlow's banner."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    for name in ("hyperspy", "atomap", "trackpy", "tensorflow", "absl", "rsciio"):
        logging.getLogger(name).setLevel(logging.ERROR)


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--model",
        default=None,
        help="a .keras file (copied to a temporary file first, as checkpoints are overwritten "
        "during training); default: the shipped universal model",
    )
    parser.add_argument("--quick", action="store_true", help="a small, fast run")
    parser.add_argument("--out", type=Path, default=None, help="save the raw numbers (JSON)")
    return parser


def resolve_model(path: str | None) -> str | None:
    """Copy a model file to a private temporary file (checkpoints are rewritten while training)."""
    if path is None:
        return None
    src = Path(path)
    if not src.is_file():
        sys.exit(f"model file {src} does not exist")
    dst = Path(os.environ.get("TMPDIR", "/tmp")) / f"atomstat-bench-{os.getpid()}-{src.name}"
    shutil.copyfile(src, dst)
    atexit.register(dst.unlink, missing_ok=True)
    return str(dst)


def describe_model(path: str | None, copy: str | None) -> str:
    if path is None:
        return "shipped universal model"
    mtime = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(Path(path).stat().st_mtime))
    return f"{path} (modified {mtime}, copied to {copy})"


# ----------------------------------------------------------------------------- scenes


def heldout_seed(*key) -> int:
    """A seed at or above ``HELDOUT_SEED`` fixed by ``key`` (training never uses these)."""
    return HELDOUT_SEED + zlib.crc32(repr(key).encode()) % 1_000_000_000


@dataclass
class Scene:
    """A held-out image with its truth.

    ``truth`` holds every atom of the padded canvas in image coordinates;
    ``inside`` marks the ones whose centre lies in the image.
    """

    image: np.ndarray
    truth: pd.DataFrame
    inside: np.ndarray
    params: dict = field(default_factory=dict)

    @property
    def n_atoms(self) -> int:
        return int(self.inside.sum())


def heldout_scene(
    kind: str,
    *,
    shape=(512, 512),
    spacing: float,
    sigma: float,
    dose: float,
    seed: int,
    dopant_ratio: float = 1.6,
    interface: str | None = None,
    ellipticity: float = 0.1,
    background: float = 0.15,
    vacancies: float = 0.02,
    dopants: float = 0.02,
    jitter: float = 0.3,
) -> Scene:
    """Simulate a STEM image (defaults as in ANCHORS.md) with the truth around it too.

    The lattice is drawn on a canvas padded by ``ceil(3 * sigma) + 2`` px on
    every side and cropped; Poisson noise is per pixel, so the crop is an
    exact image of the requested shape.
    """
    if seed < HELDOUT_SEED:
        raise ValueError(f"held-out seeds start at {HELDOUT_SEED}, got {seed}")
    params = {
        "kind": kind,
        "shape": list(shape),
        "spacing": spacing,
        "sigma": sigma,
        "dose": dose,
        "seed": seed,
        "dopant_ratio": dopant_ratio,
        "interface": interface,
        "background": background,
    }
    return simulate_cropped(
        kind,
        shape,
        params,
        spacing=spacing,
        sigma=sigma,
        ellipticity=ellipticity,
        defects=Defects(
            vacancies=vacancies, dopants=dopants, dopant_ratio=dopant_ratio, jitter=jitter
        ),
        imaging=Stem(dose=dose, background=background),
        regions=Regions(interface=interface),
        rng=seed,
    )


def simulate_cropped(kind: str, shape, params: dict, *, sigma: float, **settings) -> Scene:
    """``simulate_lattice(kind, sigma=sigma, **settings)`` drawn on a canvas padded by
    ``ceil(3 * sigma) + 2`` px and cropped to ``shape`` (see :func:`crop_scene`)."""
    h, w = shape
    pad = int(np.ceil(3 * sigma)) + 2
    sim = simulate_lattice(kind, shape=(h + 2 * pad, w + 2 * pad), sigma=sigma, **settings)
    return crop_scene(sim, pad, shape, params)


def crop_scene(sim, pad: int, shape, params: dict) -> Scene:
    """The ``shape`` image cut from a simulation padded by ``pad`` px, with all of its truth
    (shifted to the crop) and the mask of the true atoms centred inside the crop."""
    h, w = shape
    image = np.ascontiguousarray(sim.image[pad : pad + h, pad : pad + w])
    truth = sim.atoms.copy()
    truth["x"] -= pad
    truth["y"] -= pad
    x, y = truth["x"].to_numpy(), truth["y"].to_numpy()
    inside = (x > -0.5) & (x < w - 0.5) & (y > -0.5) & (y < h - 0.5)
    return Scene(image, truth.reset_index(drop=True), inside, params)


# ----------------------------------------------------------------------------- matching


def match(found: np.ndarray, truth: np.ndarray, max_dist: float = MAX_DIST):
    """One-to-one matching (atomstat.metrics.match_points) as (found index, truth index) pairs."""
    ti, fi, _ = match_points(truth, found, max_dist)
    return np.column_stack([fi, ti]).astype(int)


def evaluate(found, scene: Scene, *, interior: float = 0.0) -> dict:
    """Counts and per-atom errors of one method on one scene.

    Parameters
    ----------
    found : array-like of shape (N, 2)
        Found (x, y) positions in px.
    scene : Scene
    interior : float
        Also count on the interior only: true atoms at least ``interior`` px
        from every border, and found atoms in that box.

    Returns
    -------
    dict with ``tp``, ``fp``, ``fn``, ``sq`` (summed squared 2-D error of the
    hits), the same with an ``_int`` suffix for the interior, and ``err``:
    the 2-D error of every true atom inside the image (NaN where missed).
    """
    found = np.asarray(found, float).reshape(-1, 2)
    truth = scene.truth[["x", "y"]].to_numpy()
    pairs = match(found, truth)
    h, w = scene.image.shape
    err_all = np.full(len(truth), np.nan)
    matched_found = np.zeros(len(found), bool)
    if len(pairs):
        d = np.hypot(*(found[pairs[:, 0]] - truth[pairs[:, 1]]).T)
        err_all[pairs[:, 1]] = d
        matched_found[pairs[:, 0]] = True
    owner = np.full(len(found), -1)
    if len(pairs):
        owner[pairs[:, 0]] = pairs[:, 1]

    def counts(true_in, found_box):
        hit = true_in & np.isfinite(err_all)
        fp = (~matched_found) & found_box
        return {
            "tp": int(hit.sum()),
            "fn": int((true_in & ~hit).sum()),
            "fp": int(fp.sum()),
            "sq": float(np.sum(err_all[hit] ** 2)),
        }

    full = counts(scene.inside, np.ones(len(found), bool))
    m = interior
    tx, ty = truth[:, 0], truth[:, 1]
    fx, fy = found[:, 0], found[:, 1]
    true_int = (tx >= m) & (tx <= w - 1 - m) & (ty >= m) & (ty <= h - 1 - m)
    found_int = (fx >= m) & (fx <= w - 1 - m) & (fy >= m) & (fy <= h - 1 - m)
    inner = counts(true_int, found_int)
    out = dict(full)
    out.update({f"{k}_int": v for k, v in inner.items()})
    out["err"] = err_all[scene.inside]
    return out


def scores(tp, fp, fn, sq) -> dict:
    """Precision, recall, F1 and 2-D RMSE (px) from pooled counts."""
    tp, fp, fn = int(tp), int(fp), int(fn)
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    rmse = float(np.sqrt(sq / tp)) if tp else float("nan")
    return {"precision": precision, "recall": recall, "F1": f1, "RMSE": rmse}


def pooled(rows: pd.DataFrame, suffix: str = "") -> dict:
    """Scores of several evaluations pooled (counts summed before the ratios)."""
    return scores(*(rows[f"{k}{suffix}"].sum() for k in ("tp", "fp", "fn", "sq")))


def rmse_common(errors: list[np.ndarray]) -> list[float]:
    """2-D RMSE of each method over the true atoms that every method found."""
    both = np.logical_and.reduce([np.isfinite(e) for e in errors])
    if not both.any():
        return [float("nan")] * len(errors)
    return [float(np.sqrt(np.mean(e[both] ** 2))) for e in errors]


# ----------------------------------------------------------------------------- timing


def median_time(fn, *args, repeats: int = 5, warmup: int = 1, **kwargs):
    """Median wall time (s) of ``fn(*args, **kwargs)`` over ``repeats`` calls after warm-up.

    Returns ``(seconds, last_result)``.
    """
    result = None
    for _ in range(warmup):
        result = fn(*args, **kwargs)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def timed(fn, *args, **kwargs):
    """``(seconds, result)`` of one call."""
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - t0, result


# ----------------------------------------------------------------------------- atomstat


def atomstat_xy(image, model=None) -> np.ndarray:
    import atomstat

    atoms = atomstat.analyze(image, model=model)
    return atoms[["x", "y"]].to_numpy()


# ----------------------------------------------------------------------------- trackpy


@dataclass
class TrackpyParams:
    """Hand-tuned trackpy settings: ``diameter``, ``minmass`` and ``separation``."""

    diameter: int
    minmass: float = 0.0
    separation: float | None = None  # None: trackpy's default, diameter + 1

    def label(self) -> str:
        sep = "default" if self.separation is None else f"{self.separation:g}"
        return f"d={self.diameter} minmass={self.minmass:.0f} sep={sep}"


def trackpy_locate(image, params: TrackpyParams) -> pd.DataFrame:
    import trackpy

    trackpy.quiet()
    kwargs = {} if params.separation is None else {"separation": params.separation}
    return trackpy.locate(
        image, params.diameter, minmass=params.minmass, characterize=False, **kwargs
    )


def trackpy_xy(image, params: TrackpyParams) -> np.ndarray:
    return trackpy_locate(image, params)[["x", "y"]].to_numpy()


MINMASS_FRACTIONS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5)


def tune_trackpy(
    scene: Scene, *, sigma: float, nn: float, diameters=None
) -> tuple[TrackpyParams, pd.DataFrame]:
    """Best trackpy settings on a tuning scene (see :func:`pick_best`).

    The grid is every odd diameter from 3 to about 8 widths, separation =
    trackpy's default (diameter + 1) or 0.8 x the nearest-neighbour
    distance ``nn``, and minmass = a fraction (:data:`MINMASS_FRACTIONS`) of
    the median mass of the features found with minmass 0 (trackpy filters on
    mass after refining, so filtering the minmass-0 result is the same as
    passing ``minmass``). Scores are taken on the interior (true atoms more
    than the largest radius tried from the border), so a small diameter is
    not rewarded for trackpy's smaller edge margin.
    """
    if diameters is None:
        diameters = range(3, 2 * int(np.ceil(4 * sigma)) + 2, 2)
    diameters = [int(d) for d in diameters]
    margin = max(diameters) // 2 + 1
    seps = [None, max(1.0, round(0.8 * nn))]
    rows = []
    for d in diameters:
        for sep in seps:
            if sep is not None and sep >= d + 1:
                continue  # same or looser than the default
            feats = trackpy_locate(scene.image, TrackpyParams(d, 0.0, sep))
            med = float(feats["mass"].median()) if len(feats) else 0.0
            for frac in MINMASS_FRACTIONS:
                keep = feats[feats["mass"] > frac * med]
                res = evaluate(keep[["x", "y"]].to_numpy(), scene, interior=margin)
                s = scores(res["tp_int"], res["fp_int"], res["fn_int"], res["sq_int"])
                rows.append({"diameter": d, "separation": sep, "minmass": frac * med, **s})
    grid = pd.DataFrame(rows)
    best = pick_best(grid, ["minmass"])
    sep = None if pd.isna(best["separation"]) else float(best["separation"])
    params = TrackpyParams(int(best["diameter"]), float(best["minmass"]), sep)
    return params, grid


def retune_minmass(scene: Scene, diameter: int, separation, margin: int) -> TrackpyParams:
    """Best minmass for a fixed diameter and separation (for the mis-tuned runs)."""
    feats = trackpy_locate(scene.image, TrackpyParams(diameter, 0.0, separation))
    med = float(feats["mass"].median()) if len(feats) else 0.0
    rows = []
    for frac in MINMASS_FRACTIONS:
        keep = feats[feats["mass"] > frac * med]
        res = evaluate(keep[["x", "y"]].to_numpy(), scene, interior=margin)
        s = scores(res["tp_int"], res["fp_int"], res["fn_int"], res["sq_int"])
        rows.append({"minmass": frac * med, **s})
    best = pick_best(pd.DataFrame(rows), ["minmass"])
    return TrackpyParams(diameter, float(best["minmass"]), separation)


def pick_best(grid: pd.DataFrame, then=()) -> pd.Series:
    """The row with the best F1 (to 3 decimals), then the lowest RMSE, then ``then`` ascending."""
    g = grid.assign(_f1=grid["F1"].round(3).fillna(-1), _rmse=grid["RMSE"].fillna(np.inf))
    cols = ["_f1", "_rmse", *then]
    return g.sort_values(cols, ascending=[False, True, *[True] * len(then)]).iloc[0]


# ----------------------------------------------------------------------------- atomap


def atomap_positions(image, separation: int) -> np.ndarray:
    """Atomap's peak finder: ``get_atom_positions(signal, separation)`` (integer pixels)."""
    import atomap.api as am
    import hyperspy.api as hs

    return np.asarray(am.get_atom_positions(hs.signals.Signal2D(image), separation), float)


def atomap_xy(image, separation: int, *, gaussian: bool = False) -> np.ndarray:
    """Atomap's recipe: peaks, centre-of-mass refine, then optionally the 2-D Gaussian refine."""
    import atomap.api as am

    pos = atomap_positions(image, separation)
    if len(pos) < 2:
        return pos.reshape(-1, 2)
    sub = am.Sublattice(pos, image=np.asarray(image, float))
    sub.find_nearest_neighbors()
    sub.refine_atom_positions_using_center_of_mass(show_progressbar=False)
    if gaussian:
        sub.refine_atom_positions_using_2d_gaussian(show_progressbar=False)
    return np.column_stack([sub.x_position, sub.y_position])


SEPARATION_FRACTIONS = (0.4, 0.5, 0.6, 0.7, 0.8)


def tune_atomap(scene: Scene, *, nn: float) -> tuple[int, pd.DataFrame]:
    """Best ``separation`` (integer px) on a tuning scene (see :func:`pick_best`).

    Scored on the centre-of-mass result, on the interior (true atoms more
    than the largest separation tried from the border), since atomap drops
    every peak within ``separation`` of the border.
    """
    seps = sorted({max(1, round(f * nn)) for f in SEPARATION_FRACTIONS})
    margin = max(seps) + 1
    rows = []
    for sep in seps:
        res = evaluate(atomap_xy(scene.image, sep), scene, interior=margin)
        s = scores(res["tp_int"], res["fp_int"], res["fn_int"], res["sq_int"])
        rows.append({"separation": sep, **s})
    grid = pd.DataFrame(rows)
    return int(pick_best(grid)["separation"]), grid
