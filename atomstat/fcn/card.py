"""Held-out evaluation of a trained model and its model card (Markdown + JSON)."""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path

import numpy as np

from ..metrics import detection_scores
from ..simulate import random_scene
from .train import HELDOUT_SEED

__all__ = ["evaluate", "write_card"]

log = logging.getLogger(__name__)


def evaluate(
    model, *, n_images: int = 120, size: int = 256, seed: int = HELDOUT_SEED, progress: bool = False
) -> dict:
    """Atom-level scores of ``model`` on held-out random scenes (seeds training never draws).

    Scores are pooled over images (matched pairs within 2 px, 3 px border left
    out); STEM and STM scenes are reported apart.

    Raises
    ------
    ValueError
        If ``n_images`` is not a positive integer (scores over no image are no scores).
    """
    if not isinstance(n_images, int | np.integer) or isinstance(n_images, bool) or n_images < 1:
        raise ValueError(f"n_images must be an integer >= 1, got {n_images!r}")
    from tqdm.auto import tqdm

    from ..pipeline import analyze

    rows = []
    for i in tqdm(range(n_images), disable=not progress, desc="held-out"):
        mode = "stm" if i % 4 == 3 else "stem"
        sim = random_scene(seed + i, (size, size), mode=mode)
        atoms = analyze(sim.image, model=model)
        s = detection_scores(
            sim.atoms[["x", "y"]], atoms[["x", "y"]], shape=sim.image.shape, margin=3
        )
        rows.append({**s, "mode": mode, "pixel_accuracy": _pixel_accuracy(sim, model)})
    return _pool(rows)


def _pixel_accuracy(sim, model):
    from .predict import segment

    return float(((segment(sim.image, model=model) >= 0.5) == (sim.mask > 0)).mean())


def _pool(rows):
    def pooled(sel):
        tp = sum(r["recall"] * r["n_true"] for r in sel)
        n_t = sum(r["n_true"] for r in sel)
        n_f = sum(r["n_found"] for r in sel)
        recall, precision = tp / max(n_t, 1), tp / max(n_f, 1)
        rmse = np.sqrt(
            np.nansum([r["rmse"] ** 2 * r["recall"] * r["n_true"] for r in sel]) / max(tp, 1)
        )
        return {
            "images": len(sel),
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "f1": round(2 * precision * recall / max(precision + recall, 1e-12), 4),
            "rmse_px": round(float(rmse), 4),
            "pixel_accuracy": round(float(np.mean([r["pixel_accuracy"] for r in sel])), 4),
        }

    out = pooled(rows)
    for mode in ("stem", "stm"):
        out[mode] = pooled([r for r in rows if r["mode"] == mode])
    return out


def write_card(out: str | Path, heldout: dict, *, evaluate_command: str) -> Path:
    """Write ``<out>.md`` and ``<out>.json`` from the training record and held-out scores."""
    out = Path(out)
    train = json.loads(out.with_suffix(".train.json").read_text())
    meta = {
        **train,
        "heldout": heldout,
        "evaluate_command": evaluate_command,
        "platform": platform.platform(),
    }
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1, default=str))
    out.with_suffix(".md").write_text(_markdown(out.stem, meta))
    return out.with_suffix(".md")


def _params(width):
    from .model import build_fcn

    return f"{build_fcn(width=int(width)).count_params():,}"


def _bn_note(batchnorm):
    if batchnorm:
        return (
            "Batch normalisation was used during training and folded into the\n"
            "convolutions on saving, so the shipped graph is exactly the paper's network."
        )
    return "It was trained as the plain paper network (no batch normalisation)."


def _normalize_note():
    from .normalize import METHOD

    return METHOD


def _markdown(name, meta):
    c, h, e = meta["config"], meta["history"], meta["heldout"]
    curve = "\n".join(
        f"| {s} | {lo:.4f} | {a:.4f} | {t:.0f} |"
        for s, lo, a, t in zip(h["step"], h["loss"], h["accuracy"], h["seconds"], strict=True)
    )
    scores = "\n".join(
        f"| {k} | {v['images']} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | "
        f"{v['rmse_px']:.3f} | {v['pixel_accuracy']:.4f} |"
        for k, v in (("all", e), ("STEM", e["stem"]), ("STM", e["stm"]))
    )
    stm_spacing = tuple(c.get("stm_spacing", (3.3, 5.9)))
    return f"""# Model card: `{name}.keras`

The paper's encoder-decoder FCN ({_params(c.get("width", 20))} parameters), trained only on
simulated images by atomstat's own code. {_bn_note(c.get("batchnorm", True))}

## How it was made
- Command: `{c["command"]}`
- Seed: {c["seed"]}; steps: {c["steps"]}; batch size: {c["batch_size"]}; patch: {c["patch"]} px;
  Adam, cosine-decayed learning rate from {c["learning_rate"]}; categorical cross-entropy.
- Simulator settings: `atomstat.simulate.random_scene` with atom width sigma in {c["sigma"]} px,
  STM-like scenes with probability {c["stm_fraction"]}; every batch freshly simulated (all
  lattice kinds, interfaces, holes, edges, amorphous patches, vacancies, dopants, adatoms, strain;
  STEM doses {c.get("dose", (8, 400))} counts with blur, scan jitter and drift; STM noise, scars,
  tilt, tip changes; STM spacings {stm_spacing} atom widths); a fraction
  {c.get("upsampled", 0)} of the scenes hold atoms 0.7-1.3 px wide, upsampled as `segment` does;
  a fraction {c.get("real", 0)} look like real frames (`atomstat.simulate.real_scene`:
  contamination and clusters many times brighter than the lattice, probe tails, tilt smear,
  scan wobble, line noise, JPEG, scale bars, weak sublattices 0.1-0.5, graphene at 1-5 counts).
- Normalisation: `atomstat.fcn.normalize.normalize` ({_normalize_note()}).{
        _provenance(meta.get("init_record"))
    }
- Trained in {meta["train_seconds"] / 60:.0f} min on {meta.get("platform", "CPU")},
  Keras {meta["keras"]}.

## Training curve (mean over each block of steps)
| step | loss | pixel accuracy | seconds |
|---|---|---|---|
{curve}

## Held-out scores
`{meta["evaluate_command"]}`: random scenes from seeds {HELDOUT_SEED}+ (never used in training),
256 x 256 px, one in four STM-like; atoms matched within 2 px, 3 px border left out.

| set | images | precision | recall | F1 | RMSE (px) | pixel accuracy |
|---|---|---|---|---|---|---|
{scores}
"""


def _provenance(record):
    """The training that made the checkpoint this run started from, if any."""
    if not record:
        return ""
    c = record.get("config", {})
    if not c:
        return f"\n- Started from the checkpoint {record.get('checkpoint')}."
    h = record.get("history", {})
    loss = h.get("loss", [float("nan")])[-1]
    return (
        f"\n- Started from the checkpoint of an earlier run: `{c.get('command')}` (seed "
        f"{c.get('seed')}, {c.get('steps')} steps, doses {c.get('dose', (8, 400))}, final "
        f"training loss {loss:.4f}, {record.get('train_seconds', 0) / 60:.0f} min)."
        + _provenance(record.get("init_record"))
    )
