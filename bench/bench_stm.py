"""STM: atoms found on held-out simulated STM images with scars, tilt and tip changes.

Every scene is an STM-like image (``atomstat.simulate.Stm``) of a random
lattice kind, drawn like ``random_scene(mode="stm")`` but with every fault
switched on: 2-8 scars, a plane tilt of 0.5-3 host heights over the image, a
tip change (blunter, dimmer atoms below a random row, 20-80 % down), plus
noise 0.03-0.3, charge modulation 0-0.4 and line-to-line offsets. Seeds
come from ``heldout_seed("stm", i)``, which training never draws.

Methods, all on the same images: the shipped ``universal`` and ``stm``
models, each on the raw image and after ``preprocess="stm"`` (plane
background, median line levelling, scar repair), with blob splitting as
``analyze`` sets it for STM data (on with the stm model, off with the
universal one), plus the universal model with preprocessing and splitting
switched on; and trackpy with its best
settings *for each image* (diameter, separation and minmass tuned on the
image's own truth: an upper bound of what trackpy can do), on the raw and
the preprocessed image.

Run: ``.venv/bin/python bench/bench_stm.py [--quick] [--images N] [--stm-model PATH]``
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
from common import (
    Scene,
    base_parser,
    describe_model,
    evaluate,
    header,
    heldout_seed,
    loadavg,
    pooled,
    quiet,
    resolve_model,
    simulate_cropped,
    table,
    timed,
    trackpy_xy,
    tune_trackpy,
)

import atomstat
from atomstat.preprocess import stm as stm_cleanup
from atomstat.simulate import LATTICES, Defects, Stm

TARGET_F1 = 0.97


def stm_scene(index: int, shape=(256, 256)) -> Scene:
    """A held-out STM scene with scars, tilt and a tip change (truth padded around it)."""
    seed = heldout_seed("stm", index)
    rng = np.random.default_rng(seed)
    kind = LATTICES[rng.integers(len(LATTICES))]
    sigma = float(np.exp(rng.uniform(np.log(1.3), np.log(3.4))))
    if kind == "dumbbell":
        spacing = sigma * rng.uniform(2.4, 5.0)
    else:
        spacing = sigma / rng.uniform(0.17, 0.3)
    defects = Defects(
        vacancies=rng.uniform(0, 0.05),
        dopants=rng.uniform(0, 0.05),
        dopant_width=rng.uniform(0.8, 1.05),
        jitter=rng.uniform(0, 0.5),
    )
    imaging = Stm(
        noise=rng.uniform(0.03, 0.3),
        charge=rng.uniform(0, 0.4),
        scars=int(rng.integers(2, 9)),
        tilt=rng.uniform(0.5, 3),
        tip_change=rng.uniform(0.2, 0.8),
    )
    params = {
        "index": index,
        "seed": seed,
        "kind": kind,
        "sigma": round(sigma, 3),
        "spacing": round(spacing, 3),
        "noise": round(imaging.noise, 3),
        "scars": imaging.scars,
        "tilt": round(imaging.tilt, 3),
        "tip_change": round(imaging.tip_change, 3),
    }
    return simulate_cropped(
        kind,
        shape,
        params,
        spacing=spacing,
        sigma=sigma,
        ellipticity=rng.uniform(0, 0.25),
        defects=defects,
        imaging=imaging,
        rng=rng,
    )


def nearest_neighbour(sc: Scene) -> float:
    from scipy.spatial import cKDTree

    xy = sc.truth[["x", "y"]].to_numpy()
    d, _ = cKDTree(xy).query(xy, k=2)
    return float(np.median(d[:, 1]))


def run(args, models):
    records, errors = [], {}
    warm = stm_scene(-1, (128, 128))
    for model in models.values():
        atomstat.analyze(warm.image, model=model)
    for i in range(args.images):
        sc = stm_scene(i, (args.size, args.size))
        cleaned = stm_cleanup(sc.image)
        results = {}
        for name, model in models.items():
            split = name == "stm"  # what analyze does by default for STM data or the stm model
            results[name] = timed(atomstat.analyze, sc.image, model=model, split=split)
            results[f"{name} + stm preprocess"] = timed(
                atomstat.analyze, sc.image, model=model, preprocess="stm", split=split
            )
        results["universal + stm preprocess + split"] = timed(
            atomstat.analyze, sc.image, model=models["universal"], preprocess="stm", split=True
        )
        nn = nearest_neighbour(sc)
        for label, image in (("trackpy best", sc.image), ("trackpy best + preprocess", cleaned)):
            tuned, _ = tune_trackpy(
                Scene(image, sc.truth, sc.inside), sigma=sc.params["sigma"], nn=nn
            )
            seconds, xy = timed(trackpy_xy, image, tuned)
            results[label] = (seconds, xy, tuned.label())
        for method, result in results.items():
            seconds, found = result[0], result[1]
            xy = found[["x", "y"]].to_numpy() if hasattr(found, "columns") else found
            res = evaluate(xy, sc)
            errors.setdefault(method, []).append(res.pop("err"))
            records.append(
                {
                    **sc.params,
                    "method": method,
                    "seconds": seconds,
                    "settings": result[2] if len(result) > 2 else "",
                    **res,
                }
            )
        this = pd.DataFrame(records[-len(results) :])
        line = ", ".join(
            f"{m}: F1 {pooled(g)['F1']:.3f}" for m, g in this.groupby("method", sort=False)
        )
        print(f"image {i + 1}/{args.images} ({sc.params['kind']}): {line}", flush=True)
    return pd.DataFrame(records)


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for method, g in df.groupby("method", sort=False):
        s = pooled(g)
        rows.append(
            {
                "method": method,
                "images": len(g),
                "precision": s["precision"],
                "recall": s["recall"],
                "F1": s["F1"],
                "RMSE (px)": s["RMSE"],
                "median time (s)": float(g["seconds"].median()),
            }
        )
    return pd.DataFrame(rows)


def by_kind(df: pd.DataFrame, methods) -> pd.DataFrame:
    out = {}
    for method in methods:
        g = df[df["method"] == method]
        out[method] = {k: pooled(gk)["F1"] for k, gk in g.groupby("kind")}
    frame = pd.DataFrame(out)
    frame.index.name = "kind (F1)"
    frame.insert(0, "images", df[df["method"] == methods[0]].groupby("kind").size())
    return frame.reset_index()


#: (label, low, high) bands of spacing / sigma and of the noise (rms / host height)
DENSITY = (("dense: spacing 3.3-4 widths", 3.3, 4.0), ("spacing 4-6 widths", 4.0, 6.1))
NOISE = (("noise < 0.15", 0.0, 0.15), ("noise 0.15-0.3", 0.15, 0.31))


def by_conditions(df: pd.DataFrame, methods) -> pd.DataFrame:
    """Pooled F1 per band of lattice density, and per noise band for the non-dense images."""
    ratio = df["spacing"] / df["sigma"]
    rows = []
    for label, lo, hi in DENSITY:
        rows.append((label, (ratio >= lo) & (ratio < hi)))
    for label, lo, hi in NOISE:
        rows.append((f"spacing >= 4 widths, {label}", (ratio >= 4) & df["noise"].between(lo, hi)))
    out = []
    for label, keep in rows:
        row = {"images": label, "n": int((keep & (df["method"] == methods[0])).sum())}
        for method in methods:
            row[method] = pooled(df[keep & (df["method"] == method)])["F1"]
        out.append(row)
    return pd.DataFrame(out)


def main():
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help="held-out images (default 40)")
    parser.add_argument("--size", type=int, default=256, help="image side in px (default 256)")
    parser.add_argument(
        "--stm-model",
        default=None,
        help="the STM model (.keras; default: the shipped stm model)",
    )
    args = parser.parse_args()
    args.images = args.images or (8 if args.quick else 40)
    quiet()
    universal = resolve_model(args.model)
    stm = resolve_model(args.stm_model)
    models = {"universal": universal or "universal", "stm": stm or "stm"}
    print("# bench_stm")
    print(f"universal model: {describe_model(args.model, universal)}")
    print(f"stm model: {describe_model(args.stm_model, stm).replace('universal', 'stm')}")
    print(f"start: {loadavg()}")
    print(
        f"{args.images} held-out STM images of {args.size}^2 px, every one with scars, tilt and "
        "a tip change; match radius 2 px",
        flush=True,
    )
    t0 = time.perf_counter()
    df = run(args, models)
    summary = summarize(df)
    header("Atoms found (pooled over the images)")
    print(table(summary))
    model_methods = [m for m in summary["method"] if "trackpy" not in m]
    header("F1 by lattice kind")
    print(table(by_kind(df, model_methods + ["trackpy best"])))
    header("F1 by lattice density and noise")
    print(table(by_conditions(df, model_methods + ["trackpy best", "trackpy best + preprocess"])))
    header("trackpy settings (tuned on each image's truth)")
    settings = df[df["method"].str.startswith("trackpy")][["index", "kind", "method", "settings"]]
    wide = settings.pivot(index=["index", "kind"], columns="method", values="settings")
    print(table(wide.reset_index()))
    header("Target")
    for method in model_methods:
        f1 = float(summary.loc[summary["method"] == method, "F1"].iloc[0])
        verdict = "PASS" if f1 >= TARGET_F1 else "FAIL"
        print(f"- {method}: F1 {f1:.4f} (target >= {TARGET_F1}) {verdict}")
    print(f"\nend: {loadavg()}; total {time.perf_counter() - t0:.0f} s")
    if args.out:
        args.out.write_text(json.dumps(df.to_dict(orient="records"), indent=1, default=str))


if __name__ == "__main__":
    main()
