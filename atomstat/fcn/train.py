"""Train the FCN on simulated scenes and write a model card beside it.

The training stream is endless: every batch is freshly simulated by
:func:`atomstat.simulate.random_scene`, so the network never sees the same
image twice. The held-out set uses seeds that training never draws.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from .._checks import number, span
from ..simulate import random_scene
from .model import build_fcn, fold_batchnorm
from .normalize import normalize

__all__ = ["TrainConfig", "train", "training_batch"]

log = logging.getLogger(__name__)

#: Held-out scenes are drawn from seeds at and above this; training never uses them.
HELDOUT_SEED = 10_000_000


@dataclass
class TrainConfig:
    """Everything that defines a training run (it is written into the card)."""

    batchnorm: bool = True
    width: int = 20
    steps: int = 6000
    batch_size: int = 16
    patch: int = 128
    learning_rate: float = 2e-3
    seed: int = 0
    sigma: tuple = (1.3, 3.4)
    dose: tuple = (8.0, 400.0)
    upsampled: float = 0.0
    stm_fraction: float = 0.25
    stm_spacing: tuple = (3.3, 5.9)
    real: float = 0.0
    checkpoint_every: int = 250
    init: str | None = None
    command: str = ""
    notes: list = field(default_factory=list)

    def __post_init__(self):
        """Refuse a configuration that would fail (or train nonsense) only once training runs.

        Raises
        ------
        ValueError
            Naming the field and what it must be.
        """
        for name in ("width", "steps", "batch_size", "checkpoint_every"):
            number(name, getattr(self, name), low=1, integer=True)
        number("seed", self.seed, low=0, integer=True)
        number("patch", self.patch, low=MIN_PATCH, integer=True)
        if self.patch % 4:  # two 2x poolings: the output must come back to the input size
            raise ValueError(f"patch must be a multiple of 4 px, got {self.patch}")
        number("learning_rate", self.learning_rate, low=0, low_open=True)
        for name in ("upsampled", "stm_fraction", "real"):
            number(name, getattr(self, name), low=0, high=1, note=" (a fraction)")
        for name in ("sigma", "dose", "stm_spacing"):
            span(name, getattr(self, name))
        if self.init and not Path(self.init).is_file():
            raise ValueError(f"init checkpoint {self.init} does not exist")


#: The smallest training patch (px). The network itself needs only a multiple of 4, but a
#: smaller patch is mostly border and holds less than one cell of the widest lattices.
MIN_PATCH = 32


def training_batch(
    rng,
    n,
    patch,
    *,
    sigma=(1.3, 3.4),
    dose=(8.0, 400.0),
    stm_fraction=0.25,
    upsampled=0.0,
    stm_spacing=(3.3, 5.9),
    real=0.0,
):
    """A batch: normalised images (n, p, p, 1) and one-hot masks (n, p, p, 2).

    A fraction ``upsampled`` of the scenes have small atoms (0.7-1.3 px) and
    are upsampled as :func:`atomstat.segment` does, so the network also knows
    the smooth noise that interpolation makes. A fraction ``real`` look like
    real frames (:func:`atomstat.simulate.real_scene`: contamination, clusters,
    probe tails, line noise, JPEG, scale bars, weak sublattices, graphene at a
    few counts per atom).
    """
    x = np.empty((n, patch, patch, 1), np.float32)
    y = np.empty((n, patch, patch, 2), np.float32)
    for i in range(n):
        mode = "stm" if rng.random() < stm_fraction else "stem"
        if rng.random() < upsampled:
            image, mask = _upsampled_scene(rng, patch, mode, dose)
        else:
            sim = random_scene(
                rng,
                (patch, patch),
                mode=mode,
                sigma=sigma,
                dose=dose,
                stm_spacing=stm_spacing,
                real=real,
            )
            image, mask = sim.image, sim.mask
        x[i, ..., 0] = normalize(image)
        y[i, ..., 1] = mask
        y[i, ..., 0] = 1 - mask
    return x, y


def _upsampled_scene(rng, patch, mode, dose):
    from skimage.transform import resize

    from .predict import CANONICAL_SIGMA

    small = rng.uniform(0.7, 1.3)
    factor = CANONICAL_SIGMA / (small * rng.uniform(0.85, 1.0))  # the estimate reads low
    side = max(16, int(np.ceil(patch / factor)))
    sim = random_scene(rng, (side, side), mode=mode, sigma=(small, small), dose=dose)
    image = resize(sim.image, (patch, patch), order=1, anti_aliasing=False)
    mask = resize(sim.mask, (patch, patch), order=0, anti_aliasing=False, preserve_range=True)
    return image, mask


def train(config: TrainConfig, out: str | Path, *, progress: bool = True):
    """Train a model and save ``<out>.keras`` and ``<out>.md`` (the model card).

    Parameters
    ----------
    config : TrainConfig
    out : str or Path
        Output path without suffix, e.g. ``atomstat/models/universal``.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    history : dict
        Per-checkpoint training loss and pixel accuracy.
    """
    import keras
    from tqdm.auto import tqdm

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = build_fcn(width=config.width, batchnorm=config.batchnorm)
    if config.init:  # continue from a training checkpoint (same architecture)
        model.set_weights(keras.models.load_model(config.init, compile=False).get_weights())
    schedule = keras.optimizers.schedules.CosineDecay(
        config.learning_rate, config.steps, alpha=0.02
    )
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss="categorical_crossentropy",
        metrics=["categorical_accuracy"],
    )
    history = {"step": [], "loss": [], "accuracy": [], "seconds": []}
    losses, accs = [], []
    start = time.time()
    bar = tqdm(range(1, config.steps + 1), disable=not progress, desc=f"train {out.name}")
    pool = ThreadPoolExecutor(1)
    draw = partial(
        training_batch,
        rng,
        config.batch_size,
        config.patch,
        sigma=config.sigma,
        dose=config.dose,
        upsampled=config.upsampled,
        stm_fraction=config.stm_fraction,
        stm_spacing=tuple(config.stm_spacing),
        real=config.real,
    )
    pending = pool.submit(draw)
    for step in bar:
        x, y = pending.result()
        pending = pool.submit(draw)  # simulate the next batch while this one trains
        loss, acc = model.train_on_batch(x, y)
        losses.append(loss)
        accs.append(acc)
        if step % config.checkpoint_every == 0 or step == config.steps:
            history["step"].append(step)
            history["loss"].append(float(np.mean(losses)))
            history["accuracy"].append(float(np.mean(accs)))
            history["seconds"].append(round(time.time() - start, 1))
            losses, accs = [], []
            bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", acc=f"{history['accuracy'][-1]:.4f}")
            _save(model, out, config.batchnorm)
            out.with_suffix(".history.json").write_text(json.dumps(history))
    pool.shutdown()
    meta = {
        "init_record": _init_record(config.init),
        "config": asdict(config),
        "history": history,
        "python": platform.python_version(),
        "keras": keras.__version__,
        "train_seconds": round(time.time() - start, 1),
    }
    out.with_suffix(".train.json").write_text(json.dumps(meta, indent=1, default=str))
    from .card import evaluate, write_card

    heldout = evaluate(str(out.with_suffix(".keras")), progress=progress)
    write_card(out, heldout, evaluate_command="(run by atomstat train at the end of training)")
    return history


def _save(model, out, batchnorm):
    """Save the deployable model (batch normalisation folded) and, when
    training with it, the full training checkpoint beside it."""
    if batchnorm:
        model.save(out.with_suffix(".ckpt.keras"))
        model = fold_batchnorm(model)
    model.save(out.with_suffix(".keras"))


def _init_record(init):
    """The training record of the checkpoint a run started from (None for a fresh start)."""
    if not init:
        return None
    init = str(init)
    if init.endswith(".ckpt.keras"):  # a training checkpoint: its run's record
        record = Path(init[: -len(".ckpt.keras")] + ".train.json")
    else:  # a deployable model, e.g. a shipped one: its card's record
        record = Path(init[: -len(".keras")] + ".json" if init.endswith(".keras") else init)
    try:
        return json.loads(record.read_text())
    except (OSError, ValueError):  # no record, or not one (not JSON)
        return {"checkpoint": init}
