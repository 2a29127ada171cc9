"""Scale invariance: atomstat with default settings on atoms from 1 to 8 px wide.

(sigma, spacing) from (1, 7) to (8, 60) px on square, hexagonal and
honeycomb lattices at dose 100 (defects and imaging as in bench_accuracy),
on images large enough to hold a few hundred atoms. ``atomstat.analyze`` is
called with no settings at all: it estimates the atom width itself and
resamples the image for the network. The table gives F1, RMSE, the
estimated width against the true one, and the time per image.

Run: ``.venv/bin/python bench/bench_scale.py [--quick] [--model PATH] [--out results.json]``
"""

from __future__ import annotations

import json
import time

import pandas as pd
from common import (
    base_parser,
    describe_model,
    evaluate,
    header,
    heldout_scene,
    heldout_seed,
    loadavg,
    pooled,
    quiet,
    resolve_model,
    table,
    timed,
)

import atomstat

SCALES = ((1.0, 7), (1.5, 10), (2.2, 15), (3.0, 21), (4.0, 28), (6.0, 42), (8.0, 60))
KINDS = ("square", "hexagonal", "honeycomb")
DOSE = 100
TARGET_F1 = 0.97


def image_size(spacing: float) -> int:
    """512 px for spacings up to 28 px, else 1024 px (at least about 200 atoms either way)."""
    return 512 if spacing <= 28 else 1024


def analyze(image, model):
    atoms = atomstat.analyze(image, model=model)
    return atoms[["x", "y"]].to_numpy(), float(atoms.attrs.get("sigma", float("nan")))


def run(args, model):
    records = []
    for sigma, spacing in args.scales:
        for kind in args.kinds:
            size = image_size(spacing)
            for index in range(args.images):
                sc = heldout_scene(
                    kind,
                    shape=(size, size),
                    spacing=spacing,
                    sigma=sigma,
                    dose=DOSE,
                    dopant_ratio=1.6 if index % 2 == 0 else 0.6,
                    seed=heldout_seed("scale", kind, sigma, spacing, index),
                )
                seconds, (xy, est) = timed(analyze, sc.image, model)
                res = evaluate(xy, sc, interior=int(3 * sigma) + 2)
                res.pop("err")
                records.append(
                    {
                        "sigma": sigma,
                        "spacing": spacing,
                        "kind": kind,
                        "size": size,
                        "image": index,
                        "n_atoms": sc.n_atoms,
                        "sigma_est": est,
                        "seconds": seconds,
                        **res,
                    }
                )
            print(f"  sigma {sigma:>4} spacing {spacing:>3} {kind:>10s}: done", flush=True)
    return pd.DataFrame(records)


def summarize(records):
    rows = []
    for (sigma, spacing, kind), g in records.groupby(["sigma", "spacing", "kind"], sort=False):
        full, inner = pooled(g), pooled(g, "_int")
        rows.append(
            {
                "sigma": sigma,
                "spacing": spacing,
                "kind": kind,
                "size": int(g["size"].iloc[0]),
                "atoms": int(g.n_atoms.sum()),
                "precision": full["precision"],
                "recall": full["recall"],
                "F1": full["F1"],
                "F1 int": inner["F1"],
                "RMSE": full["RMSE"],
                "sigma est": g.sigma_est.mean(),
                "est/true": g.sigma_est.mean() / sigma,
                "time s": g.seconds.median(),
                f"F1 >= {TARGET_F1}": "PASS" if full["F1"] >= TARGET_F1 else "FAIL",
            }
        )
    return pd.DataFrame(rows)


def main():
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=None, help="images per point (default 2)")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS))
    args = parser.parse_args()
    args.images = args.images or (1 if args.quick else 2)
    args.scales = SCALES[::2] if args.quick else SCALES
    quiet()
    model = resolve_model(args.model)
    print("# bench_scale")
    print(f"model: {describe_model(args.model, model)}")
    print(f"start: {loadavg()}")
    print(
        f"dose {DOSE}, {args.images} image(s) per point; analyze() with default settings; "
        "match radius 2 px; 'F1 int' leaves out atoms within 3 sigma + 2 px of the border",
        flush=True,
    )
    t0 = time.perf_counter()
    atomstat.analyze(
        heldout_scene("square", spacing=16, sigma=2.2, dose=100, seed=heldout_seed("warm")).image,
        model=model,
    )
    records = run(args, model)
    summary = summarize(records)
    header("Scale invariance (default settings)")
    print(table(summary))
    n_pass = int((summary[f"F1 >= {TARGET_F1}"] == "PASS").sum())
    print(f"\nF1 >= {TARGET_F1}: {n_pass}/{len(summary)} PASS")
    print(f"\nend: {loadavg()}; total {time.perf_counter() - t0:.0f} s")
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "model": args.model,
                    "records": records.to_dict(orient="records"),
                    "summary": summary.to_dict(orient="records"),
                },
                indent=1,
                default=str,
            )
        )
        print(f"raw numbers written to {args.out}")


if __name__ == "__main__":
    main()
