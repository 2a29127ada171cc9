"""The shipped networks on LiteRT (TensorFlow Lite with XNNPACK): a fast start, no TensorFlow.

``import tensorflow`` costs 8-12 s on a 2-core machine, and a process that runs
the network holds about 1 GB for it. LiteRT (the ``ai-edge-litert`` package, 30
MB) loads a shipped model in well under a second. Measured here
(``bench/bench_runtimes.py``, quiet, two runs): a cold process 0.74-0.93 s
against 15.9-17.3 s; the forward pass 1.07-1.12x TensorFlow's time at 512^2 and
1.08-1.15x at 1024^2 (every larger image runs as tiles of at most 1024^2 +
margins); the maps equal to 2.1e-6. A process is ahead on LiteRT until it has
analysed about 120 images of 1024^2; ``ATOMSTAT_ENGINE=tensorflow`` suits longer
batches.

Each shipped ``<name>.keras`` has a ``<name>.tflite`` beside it, made from it by
:func:`export` (``python -m atomstat.fcn.lite atomstat/models/<name>.keras``)
with a ``<name>.tflite.json`` that records the SHA-256 of the ``.keras`` file
it was made from and how far its maps are from TensorFlow's. A ``.tflite``
whose ``.keras`` has changed since is not used. Training, users' own
``.keras`` files and ``keras.Model`` objects stay on TensorFlow.

``ATOMSTAT_ENGINE`` (``auto``, the default; ``tensorflow``; ``litert``)
chooses the engine for the shipped models.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = ["ENGINES", "LiteCall", "LiteModel", "available", "check_engine", "export", "plain_graph",
           "usable"]  # fmt: skip

#: What ``ATOMSTAT_ENGINE`` and ``load_model(engine=...)`` take.
ENGINES = ("auto", "tensorflow", "litert")
#: Largest difference allowed between a ``.tflite`` map and TensorFlow's (issue 15).
AGREEMENT = 1e-5
#: Interpreters kept per LiteCall (one per input shape, the most recently used), and the
#: input pixels they may hold together: a 1024^2 image and the two crops that check its
#: blocks (their activations grow with the pixels: measured 0.22 GB at 512^2, 0.89 GB at
#: 1024^2). The current one is always kept.
POOL_SIZE = 4
POOL_PIXELS = 1024 * 1024 + 2 * 256 * 256


def check_engine(engine: str | None) -> str:
    """``engine`` (or ``ATOMSTAT_ENGINE``, or ``"auto"``), checked."""
    engine = engine or os.environ.get("ATOMSTAT_ENGINE") or "auto"
    if engine not in ENGINES:
        raise ValueError(f"the engine must be one of {ENGINES} (ATOMSTAT_ENGINE), got {engine!r}")
    return engine


def available() -> bool:
    """Whether the LiteRT interpreter (``ai-edge-litert``) can be imported."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return False
    return True


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def usable(keras_path: Path) -> Path | None:
    """The ``.tflite`` made from ``keras_path`` if it is there and was made from this very
    file (its record's SHA-256), else None."""
    keras_path = Path(keras_path)
    try:
        stat = keras_path.stat()
    except OSError:
        return None
    return _usable(str(keras_path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=16)
def _usable(path: str, mtime_ns: int, size: int) -> Path | None:
    keras_path = Path(path)
    lite, record = keras_path.with_suffix(".tflite"), keras_path.with_suffix(".tflite.json")
    if not (lite.is_file() and record.is_file()):
        return None
    try:
        made_from = json.loads(record.read_text())["keras_sha256"]
    except (ValueError, KeyError, OSError):
        return None
    return lite if made_from == _sha256(keras_path) else None


@dataclass(frozen=True)
class LiteModel:
    """A shipped model as LiteRT runs it: where its files are."""

    keras_path: Path
    lite_path: Path

    @property
    def name(self) -> str:
        return self.keras_path.stem


class LiteCall:
    """The network as a callable like the traced TensorFlow one: ``(B, H, W, 1)`` float32
    in, ``(B, H, W, 2)`` class probabilities out, for any size.

    One interpreter per input shape, the most recently used kept (at most
    :data:`POOL_SIZE`, and :data:`POOL_PIXELS` input pixels together): resizing one
    interpreter for every new shape costs its allocation and XNNPACK's set-up again
    on every call, and ``segment(resolution="auto")`` alternates three shapes (the
    check of the blocks on a crop at full and block resolution, then the image): 0.39
    against 0.24 s a call at 1024^2. Calls run one at a time, behind a lock (the
    dashboard calls from threads).
    """

    def __init__(self, lite_path: Path, threads: int | None = None):
        threads = threads or int(os.environ.get("TF_NUM_INTRAOP_THREADS") or 0) or os.cpu_count()
        self.path = Path(lite_path)
        self.threads = int(threads)
        self._pool: OrderedDict = OrderedDict()  # shape -> (interpreter, input, output)
        self._lock = threading.Lock()
        self._interpreter((1, 32, 32, 1))  # the model is read (and checked) now

    def _interpreter(self, shape):
        from ai_edge_litert.interpreter import Interpreter

        if shape in self._pool:
            self._pool.move_to_end(shape)
            return self._pool[shape]
        it = Interpreter(model_path=str(self.path), num_threads=self.threads)
        entry = (it, it.get_input_details()[0]["index"], it.get_output_details()[0]["index"])
        it.resize_tensor_input(entry[1], list(shape), strict=False)
        it.allocate_tensors()
        self._pool[shape] = entry
        while len(self._pool) > 1 and (
            len(self._pool) > POOL_SIZE or sum(int(np.prod(k)) for k in self._pool) > POOL_PIXELS
        ):
            self._pool.popitem(last=False)  # the least recently used
        return entry

    def __call__(self, x) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        with self._lock:
            it, inp, out = self._interpreter(x.shape)
            it.set_tensor(inp, x)
            it.invoke()
            return it.get_tensor(out)  # a copy already (LiteRT's get_tensor)


def plain_graph(model):
    """The network of ``model`` as a ``tf.function`` of plain ops with free batch, height
    and width (Keras's own graph loses the channel count after ``UpSampling2D``, which the
    converter refuses); the layers it knows are the FCN's (:func:`atomstat.fcn.build_fcn`)."""
    import tensorflow as tf

    steps = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            if layer.activation.__name__ not in ("linear", "relu"):
                raise ValueError(f"{layer.name}: activation {layer.activation.__name__}")
            w, b = layer.get_weights()
            steps.append(("conv", tf.constant(w), tf.constant(b), layer.activation.__name__))
        elif kind == "Activation" and layer.activation.__name__ == "relu":
            steps.append(("relu",))
        elif kind == "MaxPooling2D":
            steps.append(("pool", layer.pool_size[0]))
        elif kind == "UpSampling2D":
            steps.append(("up", layer.size[0]))
        elif kind == "Softmax":
            steps.append(("softmax",))
        elif kind not in ("InputLayer", "Dropout"):
            raise ValueError(f"cannot rebuild layer {layer.name} ({kind}) as plain ops")

    def net(x):
        channels = 1
        for step in steps:
            if step[0] == "conv":
                x = tf.nn.bias_add(tf.nn.conv2d(x, step[1], 1, "SAME"), step[2])
                channels = step[1].shape[-1]
                x = tf.nn.relu(x) if step[3] == "relu" else x
            elif step[0] == "relu":
                x = tf.nn.relu(x)
            elif step[0] == "pool":
                x = tf.nn.max_pool2d(x, step[1], step[1], "VALID")
            elif step[0] == "up":
                shape = tf.shape(x)
                x = tf.image.resize(x, [step[1] * shape[1], step[1] * shape[2]], "nearest")
                x = tf.ensure_shape(x, [None, None, None, channels])
            else:
                x = tf.nn.softmax(x)
        return x

    spec = tf.TensorSpec([None, None, None, 1], tf.float32)
    return tf.function(net, input_signature=[spec])


def export(keras_path, out=None) -> dict:
    """Write the ``.tflite`` of a ``.keras`` FCN and its record; return the record.

    The record (``<out>.json``) holds the SHA-256 of the ``.keras`` file, the
    command, and the largest difference of the two engines' atom maps on a
    normalised simulated lattice at 256^2 and 560^2 (refused above
    :data:`AGREEMENT`). Needs TensorFlow.
    """
    import tensorflow as tf

    from ..simulate import Stem, simulate_lattice
    from .normalize import normalize
    from .predict import load_model

    keras_path = Path(keras_path).resolve()
    out = Path(out) if out else keras_path.with_suffix(".tflite")
    model, tf_call = load_model(str(keras_path), engine="tensorflow")
    fn = plain_graph(model)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    out.write_bytes(converter.convert())
    call = LiteCall(out)
    worst = 0.0
    for side in (256, 560):
        sim = simulate_lattice("hexagonal", shape=(side, side), spacing=20.0, sigma=2.2,
                               imaging=Stem(dose=100), rng=side)  # fmt: skip
        x = normalize(sim.image)[None, :, :, None].astype(np.float32)
        diff = np.abs(call(x)[..., 1] - np.asarray(tf_call(x))[..., 1]).max()
        worst = max(worst, float(diff))
    if worst > AGREEMENT:
        out.unlink()
        raise ValueError(f"the .tflite maps differ from TensorFlow's by {worst:.2g} > {AGREEMENT}")
    record = {
        "keras": keras_path.name,
        "keras_sha256": _sha256(keras_path),
        "command": f"python -m atomstat.fcn.lite {keras_path.name}",
        "max_abs_difference": worst,
        "tensorflow": tf.__version__,
    }
    out.with_suffix(".tflite.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def main(argv=None) -> int:
    """``python -m atomstat.fcn.lite [MODEL.keras ...]``: export each (default: the shipped
    models) and log its record."""
    import logging
    import sys

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    names = (sys.argv[1:] if argv is None else argv) or [
        str(Path(__file__).resolve().parents[1] / "models" / f"{n}.keras")
        for n in ("universal", "stm")
    ]
    for name in names:
        record = export(name)
        log.info("%s -> %s (maps within %.2g of TensorFlow's)", name,
                 Path(name).with_suffix(".tflite").name, record["max_abs_difference"])  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
