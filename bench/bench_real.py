"""Real images: atoms, sublattices, dumbbells and defects, beside trackpy and a LoG baseline.

The images are the shared real data (``../shared/data/real``; see its README
for sources and licences): MoS2 (HAADF), graphene with one Si (HAADF),
SrTiO3 (ADF and ABF), Si[110] dumbbells, DyScO3, graphite with hydrogenated
vacancies (STM) and the WSe2 STM dev set with human-drawn defect boxes. No
setting below was tuned on any one of these images; atomstat runs with its
defaults (``analyze``, then ``sublattices`` and ``find_defects``).

Per image it prints:

- atoms found by atomstat, by trackpy (one diameter per image, set from the
  lattice's own nearest-neighbour distance: the odd number nearest 0.6 of it)
  and by a LoG blob detector (skimage ``blob_log``, sigma 0.15-0.4 of that
  distance), against the lattice's expected number of columns (image area
  over the cell area from the lattice constant and the pixel size, times the
  columns per cell that the technique shows);
- the sublattices found (atoms per site, each site's median intensity
  relative to the brightest);
- for Si[110]: the spread (standard deviation, pm) of the column spacings
  (``atomstat.spacings.spacing_spread``: separation along / across the
  dumbbell axis, same-type neighbours along the two lattice vectors), from
  ``find_dumbbells`` and from ``analyze`` + ``pair_dumbbells``;
- defects: for the WSe2 boxes, recall (boxes holding a defect) and
  precision (defects inside some box, over all defects: a lower bound, the
  boxes are incomplete); for graphite, recall and precision against the
  vacancy features marked by eye (``GRAPHITE_MARKS``); for graphene, whether
  the Si is flagged and what else is; for DyScO3 (a clean lattice), the
  atoms flagged with and without the per-sublattice comparison.

The LoG defect baseline is skimage ``blob_log`` on the robustly z-scored
image (both polarities), over the same widths as ``find_defects``, at the
threshold that is best on the WSe2 dev set itself (an upper bound for it).

Run: ``.venv/bin/python bench/bench_real.py [DATA] [--out DIR]`` (DATA defaults
to ../shared/data/real beside the repository; overlays go to DIR).
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from common import header, loadavg, quiet, table

import atomstat

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_real")

#: Centres (x, y px) of the hydrogenated-vacancy features of the graphite image, marked by eye
#: on a band-passed view (Gaussian 3 px less Gaussian 60 px) before any detector ran on it:
#: ``clear`` ones count for recall; a detection near an ``unsure`` one is neither a hit
#: nor a false positive. A detection within ``GRAPHITE_RADIUS`` px of a mark finds it.
GRAPHITE_MARKS = {
    "clear": [
        (95, 590), (625, 535), (355, 915), (775, 690), (1100, 840), (1395, 690),
        (660, 1150), (460, 1370), (60, 1375), (1050, 950), (900, 1110), (960, 1200),
        (1300, 1240), (1060, 1375), (745, 1030),
    ],
    "unsure": [(465, 880), (50, 1170), (1395, 925)],
}  # fmt: skip
GRAPHITE_RADIUS = 60.0
LOG_BASELINE_Z = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # of the scale-normalised LoG of the z image


@dataclass
class Item:
    """One real image and what the physics says about it."""

    name: str
    file: str
    kind: str  # "stem" or "stm"
    nn_nm: float  # nearest-neighbour distance of the columns shown (nm)
    cell_nm2: float | None = None  # unit-cell area (nm^2); None: not resolved
    columns: int = 1  # columns per cell that the technique shows
    nm_per_px: float | None = None  # None: from the file's calibration
    boxes: pd.DataFrame | None = None
    extra: dict = field(default_factory=dict)


def hexagonal(a):
    return a * a * np.sqrt(3) / 2


def items(data: Path) -> list[Item]:
    out = [
        Item(
            "MoS2 HAADF",
            "MoS2_V-doped_HAADF_9nm.npy",
            "stem",
            0.316 / np.sqrt(3),
            hexagonal(0.316),
            2,
            9 / 512,
        ),
        Item(
            "graphene+Si HAADF",
            "graphene_Si_HAADF_2nm.h5",
            "stem",
            0.142,
            hexagonal(0.246),
            2,
            2 / 256,
        ),
        # [110]: a cell of a x a / sqrt(2) holding a Sr, a TiO and (seen in ABF) an O column
        Item(
            "SrTiO3 ADF",
            "SrTiO3_ADF.hspy",
            "stem",
            0.3905 / 2,
            0.3905**2 / np.sqrt(2),
            2,
            0.00932627,
        ),
        Item(
            "SrTiO3 ABF",
            "SrTiO3_ABF.hspy",
            "stem",
            0.3905 / 2,
            0.3905**2 / np.sqrt(2),
            3,
            0.00932627,
        ),
        Item(
            "Si[110] HAADF",
            "Si110_dumbbells_HAADF_5nm.png",
            "stem",
            0.136,
            0.5431 * 0.5431 / np.sqrt(2),
            4,
            0.5431 / 61.37,
        ),
        Item(
            "DyScO3 HAADF",
            "DyScO3_HAADF_8nm.png",
            "stem",
            0.395 / np.sqrt(2),
            0.395**2,
            2,
            8 / 1024,
        ),
        Item("graphite STM", "graphite_H-vacancies_STM.tif", "stm", 0.246, hexagonal(0.246), 1),
    ]
    boxes = pd.read_csv(data / "WSe2_STM_dev" / "annotations.csv")
    for f, b in boxes.groupby("filename"):
        scan = float(re.search(r"_(\d+)x\d+_", f).group(1))
        nm = scan / int(b["resX"].iloc[0])
        resolved = nm < 0.08  # at least 4 px per 0.33 nm lattice spacing
        out.append(
            Item(
                f"WSe2 {scan:g} nm {f[-7:-4]}",
                f"WSe2_STM_dev/images/{f}",
                "stm",
                0.328,
                hexagonal(0.328) if resolved else None,
                1,
                nm,
                boxes=b,
            )
        )
    return out  # fmt: skip


# --------------------------------------------------------------------------- loading


def load_image(data: Path, item: Item) -> np.ndarray:
    path = data / item.file
    if path.suffix == ".h5":
        import h5py

        with h5py.File(path) as f:
            return np.asarray(f["image_data"], np.float32)
    signal = atomstat.load(path)
    if item.nm_per_px is None:
        axis = signal.axes_manager.signal_axes[0]
        item.nm_per_px = float(axis.scale) if axis.units == "nm" else None
    return np.asarray(signal.data, np.float32)


# --------------------------------------------------------------------------- peers


def trackpy_count(image, nn_px):
    import trackpy

    trackpy.quiet()
    d = int(2 * round(0.3 * nn_px) + 1)
    d = max(3, d)
    return len(trackpy.locate(image, d, characterize=False)), d


def log_atoms(image, nn_px):
    from skimage.feature import blob_log

    scaled = (image - np.percentile(image, 1)) / np.ptp(np.percentile(image, [1, 99.9]))
    blobs = blob_log(np.clip(scaled, 0, 1), min_sigma=max(0.7, 0.15 * nn_px),
                     max_sigma=max(1.0, 0.4 * nn_px), num_sigma=5, threshold=0.05)  # fmt: skip
    return len(blobs)


def log_defects(image, scales, zs=LOG_BASELINE_Z):
    """The baseline: skimage blob_log on the robustly z-scored image, both polarities;
    one table per threshold in ``zs`` (one scale space, each blob's own response
    compared with every threshold, as blob_log compares it)."""
    from scipy import ndimage
    from skimage.feature import blob_log

    med = np.median(image)
    z = (image - med) / (1.4826 * np.median(np.abs(image - med)) + 1e-12)
    rows = []
    for sign in (1, -1):
        img = np.clip(sign * z, 0, None)
        blobs = blob_log(img, min_sigma=scales[0], max_sigma=scales[1], num_sigma=8,
                         threshold=min(zs))  # fmt: skip
        for s in np.unique(blobs[:, 2]) if len(blobs) else []:
            response = -(s**2) * ndimage.gaussian_laplace(img, s)
            mine = blobs[blobs[:, 2] == s].astype(int)
            for (y, x, _), value in zip(mine, response[mine[:, 0], mine[:, 1]], strict=True):
                rows.append((float(x), float(y), float(value)))
    found = pd.DataFrame(rows, columns=["x", "y", "response"])
    return {t: found[found["response"] >= t] for t in zs}


# --------------------------------------------------------------------------- measures


def box_scores(defects, boxes):
    """(boxes holding a defect, defects inside some box)."""
    if not len(defects):
        return 0, 0
    x, y = defects["x"].to_numpy()[:, None], defects["y"].to_numpy()[:, None]
    bx, by = boxes["x"].to_numpy(), boxes["y"].to_numpy()
    inside = (x >= bx) & (x <= bx + boxes["width"].to_numpy())
    inside &= (y >= by) & (y <= by + boxes["height"].to_numpy())
    return int(inside.any(axis=0).sum()), int(inside.any(axis=1).sum())


def mark_scores(defects, marks=GRAPHITE_MARKS, radius=GRAPHITE_RADIUS):
    """(clear marks found, defects near a clear mark, defects counted)."""
    from scipy.spatial import cKDTree

    if not len(defects):
        return 0, 0, 0
    xy = defects[["x", "y"]].to_numpy()
    clear, unsure = np.array(marks["clear"], float), np.array(marks["unsure"], float)
    d_clear, _ = cKDTree(clear).query(xy)
    d_unsure, _ = cKDTree(unsure).query(xy)
    hit = cKDTree(xy).query(clear)[0] <= radius
    near = d_clear <= radius
    counted = near | (d_unsure > radius)
    return int(hit.sum()), int(near.sum()), int(counted.sum())


def dumbbell_spread(dumbbells, nm_per_px):
    """Spread (sd, pm) of the column spacings (:func:`atomstat.spacings.spacing_spread`):
    separation along / across the dumbbell axis, then same-type neighbours along v1 / v2."""
    from atomstat.spacings import spacing_spread

    try:
        spread = spacing_spread(dumbbells, pixel_size=nm_per_px * 1000)
    except ValueError as exc:
        log.warning("no spacing spread: %s", exc)
        return (np.nan,) * 4
    return tuple(float(v) for v in spread["std_units"])


def f1(recall, precision):
    return 2 * recall * precision / (recall + precision) if recall + precision > 0 else 0.0


# --------------------------------------------------------------------------- one image


def run_item(data, item, out_dir):
    t0 = time.perf_counter()
    image = load_image(data, item)
    model = "stm" if item.kind == "stm" else None
    atoms = atomstat.analyze(image, model=model)
    if item.nm_per_px:
        atoms.attrs.update({"pixel_size": item.nm_per_px, "units": "nm"})
    atoms.attrs["imaging"] = item.kind
    sub = atomstat.sublattices(atoms)
    defects = atomstat.find_defects(sub, image)
    seconds = time.perf_counter() - t0
    row = {"image": item.name, "px": f"{image.shape[1]}x{image.shape[0]}", "atomstat": len(atoms)}
    row.update(expected_counts(image, item, sub))
    row["sublattices"] = describe_sites(sub)
    row["defects"] = ", ".join(f"{k} {v}" for k, v in defects["kind"].value_counts().items())
    row["s"] = round(seconds, 1)
    extra = {}
    if item.boxes is not None:
        extra.update(box_row(item, image, defects))
    if item.name.startswith("graphite"):
        hit, near, counted = mark_scores(defects)
        n = len(GRAPHITE_MARKS["clear"])
        extra.update({"graphite recall": hit / n, "graphite precision": near / max(counted, 1)})
        extra["graphite counts"] = f"{hit}/{n} marks, {near}/{counted} defects"
    if item.name.startswith("graphene"):
        extra.update(si_row(sub))
    if item.name.startswith("DyScO3"):
        extra["flagged, pooled"] = int(atomstat.find_anomalies(atoms, by=None).sum())
        extra["flagged, by sublattice"] = int(atomstat.find_anomalies(sub).sum())
    if item.name.startswith("Si[110]"):
        extra.update(dumbbell_row(image, atoms, item.nm_per_px))
    if out_dir is not None:
        overlay(out_dir, item, image, sub, defects)
    return row, extra


def expected_counts(image, item, sub):
    nn_px = item.nn_nm / item.nm_per_px if item.nm_per_px else np.nan
    info = sub.attrs["sublattices"][0]
    if not np.isfinite(nn_px) and info.get("basis") is not None:  # no calibration: the lattice's
        nn_px = float(np.min(np.linalg.norm(info["basis"], axis=1)))
    out = {"expected": "-", "trackpy": "-", "LoG": "-"}
    if item.cell_nm2 is not None:
        if item.nm_per_px:
            cell_px = item.cell_nm2 / item.nm_per_px**2
        elif info.get("basis") is not None:
            cell_px = abs(np.linalg.det(info["basis"]))
        else:  # no calibration and no lattice among the atoms: the image's Fourier peaks
            from atomstat.scale import lattice_period

            found = lattice_period(image)
            cell_px = found.cell_area if found is not None else np.nan
            nn_px = found.period * 2 / np.sqrt(3) if found is not None else nn_px
        if np.isfinite(cell_px):
            out["expected"] = int(round(image.size / cell_px * item.columns))
    if np.isfinite(nn_px):
        n, d = trackpy_count(image, nn_px)
        out["trackpy"] = f"{n} (d={d})"
        out["LoG"] = log_atoms(image, nn_px)
    return out


def describe_sites(sub):
    info = sub.attrs["sublattices"][0]
    if info.get("basis") is None:
        return "no lattice"
    sites = info["sites"]
    top = max(s["intensity"] for s in sites) if sites else np.nan
    parts = [f"{s['atoms']}@{s['intensity'] / top:.2f}" for s in sites]
    return f"{len(sites)}: " + " ".join(parts) + f"; off {info['off_site']}"


def box_row(item, image, defects):
    boxes = item.boxes
    found, inside = box_scores(defects, boxes)
    scales = (max(1.0, 0.3 / item.nm_per_px), 1.5 / item.nm_per_px)
    base = log_defects(image, scales)
    out = {"boxes": len(boxes), "found": found, "inside": inside, "n_defects": len(defects)}
    for t, d in base.items():
        b_found, b_inside = box_scores(d, boxes)
        out[f"log{t:g}"] = (b_found, b_inside, len(d))
    return out


def si_row(sub):
    flags = atomstat.find_anomalies(sub)
    si = sub["intensity"].idxmax()  # the one Si: the brightest column by far
    return {"Si flagged": bool(flags[si]), "others flagged": int(flags.sum() - flags[si])}


def dumbbell_row(image, atoms, nm_per_px):
    out = {}
    found = atomstat.find_dumbbells(image)
    out["find_dumbbells spread pm"] = dumbbell_spread(found, nm_per_px)
    paired = atomstat.pair_dumbbells(atoms)
    out["analyze spread pm"] = dumbbell_spread(paired, nm_per_px)
    out["dumbbells"] = f"{len(found)} / {len(paired)}"
    return out


# --------------------------------------------------------------------------- overlay


def overlay(out_dir, item, image, sub, defects):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, Rectangle

    fig, ax = plt.subplots(figsize=(10, 10), dpi=90)
    lo, hi = np.percentile(image, [0.5, 99.5])
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi)
    colours = np.array(["#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628"])
    lab = sub["sublattice"].to_numpy()
    c = np.where(lab < 0, "#ffff33", colours[np.clip(lab, 0, None) % len(colours)])
    ax.scatter(sub["x"], sub["y"], s=4, c=c, linewidths=0)
    marker = {"vacancy": "#00ffff", "adatom": "#ffff33", "anomaly": "#ff00ff",
              "bright": "#ff8800", "dark": "#00ccff"}  # fmt: skip
    for _, d in defects.iterrows():
        r = 1.5 * d["size"] if np.isfinite(d["size"]) else 6
        ax.add_patch(Circle((d["x"], d["y"]), r, fill=False, ec=marker[d["kind"]], lw=1.2))
    if item.boxes is not None:
        for _, b in item.boxes.iterrows():
            ax.add_patch(Rectangle((b.x, b.y), b.width, b.height, fill=False, ec="lime", lw=0.8))
    if item.name.startswith("graphite"):
        for kind, col in (("clear", "lime"), ("unsure", "white")):
            for x, y in GRAPHITE_MARKS[kind]:
                ax.add_patch(Circle((x, y), GRAPHITE_RADIUS, fill=False, ec=col, lw=0.8, ls="--"))
    counts = defects["kind"].value_counts().to_dict()
    ax.set_title(f"{item.name}: {len(sub)} atoms, defects {counts}", fontsize=9)
    ax.set_axis_off()
    name = re.sub(r"[^A-Za-z0-9]+", "_", item.name).strip("_")
    fig.savefig(out_dir / f"{name}.png", bbox_inches="tight")
    plt.close(fig)


# --------------------------------------------------------------------------- main


def wse2_summary(extras, names):
    rows = []
    pooled = {"found": 0, "boxes": 0, "inside": 0, "n": 0}
    base = {t: [0, 0, 0] for t in LOG_BASELINE_Z}
    for name, e in zip(names, extras, strict=True):
        if "boxes" not in e:
            continue
        r, p = e["found"] / e["boxes"], e["inside"] / max(e["n_defects"], 1)
        rows.append({"image": name, "boxes": e["boxes"], "defects": e["n_defects"],
                     "recall": r, "precision": p, "F1": f1(r, p)})  # fmt: skip
        for k, v in (("found", e["found"]), ("boxes", e["boxes"]), ("inside", e["inside"])):
            pooled[k] += v
        pooled["n"] += e["n_defects"]
        for t in LOG_BASELINE_Z:
            for i in range(3):
                base[t][i] += e[f"log{t:g}"][i]
    if not rows:
        return None, None
    r, p = pooled["found"] / pooled["boxes"], pooled["inside"] / max(pooled["n"], 1)
    rows.append({"image": "pooled", "boxes": pooled["boxes"], "defects": pooled["n"],
                 "recall": r, "precision": p, "F1": f1(r, p)})  # fmt: skip
    baseline = []
    for t, (found, inside, n) in base.items():
        br, bp = found / pooled["boxes"], inside / max(n, 1)
        baseline.append({"LoG z": t, "defects": n, "recall": br, "precision": bp, "F1": f1(br, bp)})
    return pd.DataFrame(rows), pd.DataFrame(baseline)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=ROOT.parent / "shared/data/real")
    parser.add_argument("--out", type=Path, default=None, help="folder for the overlays")
    parser.add_argument(
        "--only",
        default=None,
        help="run only the images whose name holds one of these comma-separated texts",
    )
    args = parser.parse_args()
    quiet()
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    wanted = None if args.only is None else args.only.split(",")
    todo = [i for i in items(args.data) if wanted is None or any(w in i.name for w in wanted)]
    print(f"{len(todo)} real images from {args.data}; {loadavg()}")
    rows, extras = [], []
    for item in todo:
        row, extra = run_item(args.data, item, args.out)
        rows.append(row)
        extras.append(extra)
        print(
            f"  {item.name}: {row['atomstat']} atoms, {row['defects']} ({row['s']} s)", flush=True
        )
    header("Atoms, sublattices and defects per image (atomstat defaults)")
    print(table(pd.DataFrame(rows), floatfmt=".2f"))
    header("Per-image measures")
    for item, e in zip(todo, extras, strict=True):
        shown = {k: v for k, v in e.items() if not k.startswith("log")}
        if shown:
            print(f"- {item.name}: " + "; ".join(f"{k} {_fmt(v)}" for k, v in shown.items()))
    wse2, baseline = wse2_summary(extras, [i.name for i in todo])
    if wse2 is not None:
        header("WSe2 STM dev set: defect boxes (target F1 >= 0.6; precision is a lower bound)")
        print(table(wse2))
        header("LoG baseline (skimage blob_log on the z-scored image) at each threshold")
        print(table(baseline))


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.2f}"
    if isinstance(v, tuple):
        return "/".join(f"{x:.2f}" if isinstance(x, float) else str(x) for x in v)
    return str(v)


if __name__ == "__main__":
    main()
