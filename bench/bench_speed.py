"""Speed per stage and peak memory of atomstat, with trackpy on the same images.

Hexagonal lattice, spacing 24 px (about 2100 atoms in 1024^2), sigma 2.2 px,
dose 100, at 512^2, 1024^2 and 2048^2. Each stage is timed on its own
(median of 5 calls after one warm-up call):

- ``estimate_sigma``: the atom width from the autocorrelation;
- ``segment``: the network's probability map (tiling included), on every pixel
  (``resolution="full"``, the default of ``segment``) and with ``"auto"`` (on block means where
  the atoms are wide enough, see bench_blocks.py);
- ``locate``, split into ``blob_shapes`` (labels and contour moments),
  ``refine_centres`` (sub-pixel centres on the raw image) and
  ``table+neighbours+intensity`` (the atoms table and its descriptors);
- ``analyze``: the whole call, as a user makes it (``resolution="auto"``, the
  default; the issue-15 target applies to this one), and with ``resolution="full"``.

``trackpy.locate`` (diameter 11, minmass 0) runs on the same image for
comparison. Peak memory is measured for ``analyze`` on a 4096^2 image in a
child process: the resident set after imports, model load and the image
(baseline), and the peak during ``analyze`` (the kernel's high-water mark,
reset after the baseline via /proc/self/clear_refs when allowed).

Run: ``.venv/bin/python bench/bench_speed.py [--quick] [--model PATH] [--out results.json]``
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import (
    TrackpyParams,
    base_parser,
    describe_model,
    header,
    heldout_scene,
    heldout_seed,
    loadavg,
    median_time,
    quiet,
    resolve_model,
    table,
    trackpy_locate,
)

SPACING = 24.0
SIGMA = 2.2
DOSE = 100
TARGET_SECONDS = 0.25  # analyze, 1024^2, about 2000 atoms (issue 15; 0.5 before)
TARGET_MEMORY_GB = 3.0  # analyze, 4096^2


def scene(size):
    return heldout_scene(
        "hexagonal",
        shape=(size, size),
        spacing=SPACING,
        sigma=SIGMA,
        dose=DOSE,
        seed=heldout_seed("speed", size),
    )


def stage_times(image, model, repeats):
    """Median seconds of every stage, and the atom count."""
    import atomstat
    from atomstat.describe import add_intensity, add_neighbours
    from atomstat.locate import blob_shapes
    from atomstat.refine import refine_centres
    from atomstat.scale import estimate_sigma
    from atomstat.table import make_atoms

    def tables(shapes, xy, sigma):
        cols = dict(shapes, x=xy[:, 0], y=xy[:, 1], frame=np.zeros(len(xy), int))
        atoms = add_neighbours(make_atoms(cols))
        return add_intensity(atoms, image, half_width=max(1, round(sigma)))

    t = {}
    t["estimate_sigma"], sigma = median_time(estimate_sigma, image, repeats=repeats)
    t["segment (full)"], prob = median_time(
        atomstat.segment, image, model=model, sigma=sigma, resolution="full", repeats=repeats
    )
    t["segment (auto)"], _ = median_time(
        atomstat.segment, image, model=model, sigma=sigma, resolution="auto", repeats=repeats
    )
    t["locate"], atoms = median_time(atomstat.locate, prob, image, sigma=sigma, repeats=repeats)
    t["locate: blob_shapes"], shapes = median_time(blob_shapes, prob, 0.5, repeats=repeats)
    start = np.column_stack([shapes["x"], shapes["y"]])
    t["locate: refine_centres"], xy = median_time(
        refine_centres, image, start, sigma, repeats=repeats
    )
    t["locate: table+neighbours+intensity"], _ = median_time(
        tables, shapes, xy, sigma, repeats=repeats
    )
    t["analyze, resolution='full'"], _ = median_time(
        atomstat.analyze, image, model=model, resolution="full", repeats=repeats
    )
    t["analyze (default, 'auto')"], result = median_time(
        atomstat.analyze, image, model=model, repeats=repeats
    )
    t["trackpy.locate d=11"], feats = median_time(
        trackpy_locate, image, TrackpyParams(11), repeats=repeats
    )
    counts = {
        "atoms (truth)": None,
        "atoms (analyze)": len(result),
        "pixels per block (auto)": result.attrs["resolution"],
        "features (trackpy)": len(feats),
    }
    return t, counts


def memory_child(image_path, model):
    """Runs in the child: baseline and peak resident memory of ``analyze``."""
    quiet()
    import atomstat
    from atomstat.fcn.predict import load_model

    load_model(model)
    image = np.load(image_path)
    atomstat.analyze(image[:256, :256], model=model)  # trace the graph once
    base = _status("VmRSS")
    base_hwm = _status("VmHWM")
    try:
        Path("/proc/self/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    t0 = time.perf_counter()
    atoms = atomstat.analyze(image, model=model)
    seconds = time.perf_counter() - t0
    result = {
        "baseline_rss_kb": base,
        "baseline_hwm_kb": base_hwm,
        "peak_hwm_kb": _status("VmHWM"),
        "hwm_reset": reset,
        "seconds": seconds,
        "atoms": len(atoms),
    }
    print("RESULT " + json.dumps(result))


def _status(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def measure_memory(size, model):
    sc = scene(size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "image.npy"
        np.save(path, sc.image)
        cmd = [sys.executable, __file__, "--memory-child", str(path)]
        if model:
            cmd += ["--model-copy", model]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.exit(f"memory child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    res = json.loads(lines[-1][len("RESULT ") :])
    res["atoms (truth)"] = sc.n_atoms
    return res


def main():
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--memory-child", default=None, help=argparse_hidden())
    parser.add_argument("--model-copy", default=None, help=argparse_hidden())
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-size", type=int, default=4096)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(args.memory_child, args.model_copy)
        return
    quiet()
    model = resolve_model(args.model)
    sizes = (512, 1024) if args.quick else (512, 1024, 2048)
    repeats = 3 if args.quick else args.repeats
    print("# bench_speed")
    print(f"model: {describe_model(args.model, model)}")
    print(f"start: {loadavg()}")
    print(
        f"hexagonal, spacing {SPACING:g} px, sigma {SIGMA} px, dose {DOSE}; "
        f"median of {repeats} after 1 warm-up; threads: TensorFlow default",
        flush=True,
    )
    rows, counts = {}, {}
    for size in sizes:
        sc = scene(size)
        t, c = stage_times(sc.image, model, repeats)
        c["atoms (truth)"] = sc.n_atoms
        rows[f"{size}^2"] = t
        counts[f"{size}^2"] = c
        print(f"  {size}^2 done ({loadavg()})", flush=True)
    times = pd.DataFrame(rows).rename_axis("stage (median s)").reset_index()
    header("Time per frame, s")
    print(table(times))
    header("Counts")
    print(table(pd.DataFrame(counts).rename_axis("").reset_index(), floatfmt=".0f"))
    key = "1024^2"
    got = rows[key]["analyze (default, 'auto')"]
    tp = rows[key]["trackpy.locate d=11"]
    full = rows[key]["analyze, resolution='full'"]
    print(
        f"\nanalyze at 1024^2 ({counts[key]['atoms (truth)']} atoms), default ('auto'): "
        f"{got:.3f} s median (target <= {TARGET_SECONDS} s): "
        f"{'PASS' if got <= TARGET_SECONDS else 'FAIL'}; resolution='full' {full:.3f} s "
        f"({full / got:.2f}x); trackpy {tp:.3f} s, ratio {got / tp:.1f}x"
    )
    mem = None
    if not args.quick:
        mem = measure_memory(args.memory_size, model)
        header(f"Peak memory of analyze at {args.memory_size}^2 (child process)")
        gb = 1024**2
        mem_rows = pd.DataFrame(
            [
                {
                    "atoms (truth)": mem["atoms (truth)"],
                    "atoms found": mem["atoms"],
                    "analyze s": mem["seconds"],
                    "baseline RSS GB": mem["baseline_rss_kb"] / gb,
                    "peak RSS GB": mem["peak_hwm_kb"] / gb,
                    "increment GB": (mem["peak_hwm_kb"] - mem["baseline_rss_kb"]) / gb,
                    "peak reset": mem["hwm_reset"],
                }
            ]
        )
        print(table(mem_rows))
        peak = mem["peak_hwm_kb"] / gb
        print(
            f"\npeak {peak:.2f} GB (target <= {TARGET_MEMORY_GB} GB): "
            f"{'PASS' if peak <= TARGET_MEMORY_GB else 'FAIL'}"
        )
    print(f"\nend: {loadavg()}")
    if args.out:
        payload = {"model": args.model, "times": rows, "counts": counts, "memory": mem}
        args.out.write_text(json.dumps(payload, indent=1, default=str))
        print(f"raw numbers written to {args.out}")


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
