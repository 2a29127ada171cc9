"""TensorFlow against TensorFlow Lite (LiteRT, XNNPACK) for the FCN: cold start, forward
pass, agreement (issue 15.1), in one run.

The ``.tflite`` file is made here, by our own code, from the committed
``atomstat/models/universal.keras`` (or ``--model``): the network is rebuilt from
its weights as plain ``tf.nn`` ops with a free batch, height and width (Keras's
own graph loses the channel count after ``UpSampling2D``, which the converter
refuses) and converted with ``tf.lite.TFLiteConverter``. Nothing is downloaded.

- cold start: the wall clock of a fresh process that imports the runtime, loads
  the model and runs one 560 x 560 pass (a 512^2 image with its 24 px margins),
  the two runtimes alternating, median of ``--cold`` processes each;
- forward pass: one process holding both, the calls interleaved (so that the
  load of a shared machine falls on both alike), 512^2, 1024^2, 2048^2, median
  of ``--repeats`` after one warm-up call each; ``lite / tf`` is the time ratio;
- agreement: the largest absolute difference of the atom probability between
  the two on a normalised simulated lattice at each size.

The rule (issue 15): LiteRT becomes the default inference path only if it is
faster at start and within 10 % of TensorFlow on the forward pass (or faster
on both). LiteRT's interpreter comes from the ``ai-edge-litert`` package (not in
requirements.lock; ``--litert-path`` points at a folder it was installed into
with ``pip install --target``); without it, TensorFlow's own ``tf.lite``
interpreter is used for the forward pass and the cold start is not measured.

Run: ``.venv/bin/python bench/bench_runtimes.py [--litert-path DIR] [--cold 3] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SIZES = (512, 1024, 2048)
COLD_SIDE = 560

_COLD_TF = """
import os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
from atomstat.fcn.predict import load_model
_, call = load_model(sys.argv[1])
call(np.zeros((1, {side}, {side}, 1), np.float32))
"""

_COLD_LITE = """
import sys
sys.path.insert(0, sys.argv[2]) if len(sys.argv) > 2 else None
import numpy as np
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1], num_threads=2)
index = it.get_input_details()[0]["index"]
it.resize_tensor_input(index, [1, {side}, {side}, 1], strict=False)
it.allocate_tensors()
it.set_tensor(index, np.zeros((1, {side}, {side}, 1), np.float32))
it.invoke()
it.get_tensor(it.get_output_details()[0]["index"])
"""


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def export_tflite(model, path: Path) -> float:
    """Write ``model`` as a ``.tflite`` file at ``path``; returns the seconds it took."""
    import tensorflow as tf

    start = time.perf_counter()
    from atomstat.fcn.lite import plain_graph  # the converter the shipped .tflite came from

    fn = plain_graph(model)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn)
    path.write_bytes(converter.convert())
    return time.perf_counter() - start


def interpreter(path: Path, litert_path: str | None):
    """(interpreter, which) from ai-edge-litert when importable, else tf.lite."""
    if litert_path:
        sys.path.insert(0, litert_path)
    try:
        from ai_edge_litert.interpreter import Interpreter

        which = "ai-edge-litert"
    except ImportError:
        import tensorflow as tf

        Interpreter, which = tf.lite.Interpreter, "tf.lite (in TensorFlow)"
    return Interpreter(model_path=str(path), num_threads=2), which


def lite_call(it):
    index = it.get_input_details()[0]["index"]
    out = it.get_output_details()[0]["index"]

    def call(x):
        if tuple(it.get_input_details()[0]["shape"]) != x.shape:
            it.resize_tensor_input(index, list(x.shape), strict=False)
            it.allocate_tensors()
        it.set_tensor(index, x)
        it.invoke()
        return it.get_tensor(out)

    return call


def test_image(size):
    from atomstat.fcn.normalize import normalize
    from atomstat.simulate import Stem, simulate_lattice

    sim = simulate_lattice(
        "hexagonal", shape=(size, size), spacing=24.0, sigma=2.2, imaging=Stem(dose=100), rng=size
    )
    return normalize(sim.image)[None, :, :, None].astype(np.float32)


def cold(script, args, env):
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script, *args], env=env, capture_output=True)
    if done.returncode:
        raise RuntimeError(done.stderr.decode()[-2000:])
    return time.perf_counter() - t


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a .keras file (default: universal)")
    parser.add_argument("--litert-path", default=None, help="folder holding ai_edge_litert")
    parser.add_argument("--cold", type=int, default=3, help="fresh processes per runtime")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    args = parser.parse_args()
    from atomstat.fcn.predict import load_model, model_path

    source = Path(args.model) if args.model else model_path("universal")
    print("# bench_runtimes")
    print(f"model: {source}")
    print(f"start: {loadavg()}", flush=True)
    model, tf_call = load_model(str(source))
    with tempfile.TemporaryDirectory(prefix="bench_runtimes_") as tmp:
        lite_path = Path(tmp) / "model.tflite"
        print(f"export to .tflite: {export_tflite(model, lite_path):.2f} s, "
              f"{lite_path.stat().st_size / 1e3:.0f} kB")  # fmt: skip
        it, which = interpreter(lite_path, args.litert_path)
        call = lite_call(it)
        print(f"LiteRT interpreter: {which}, 2 threads (XNNPACK)", flush=True)
        rows = []
        for size in args.sizes:
            x = test_image(size)
            diff = float(np.abs(call(x)[..., 1] - np.asarray(tf_call(x))[..., 1]).max())
            t_lite, t_tf = [], []
            for _ in range(args.repeats):
                t = time.perf_counter()
                call(x)
                t_lite.append(time.perf_counter() - t)
                t = time.perf_counter()
                tf_call(x)
                t_tf.append(time.perf_counter() - t)
            lite, tf_s = statistics.median(t_lite), statistics.median(t_tf)
            rows.append((f"forward {size}^2", tf_s, lite, diff))
            print(f"  {size}^2 done ({loadavg()})", flush=True)
        cold_rows = []
        if which == "ai-edge-litert":
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
            lite_args = [str(lite_path)] + ([args.litert_path] if args.litert_path else [])
            t_tf, t_lite = [], []
            for _ in range(args.cold):  # alternating, so both see the same load
                t_tf.append(cold(_COLD_TF.format(side=COLD_SIDE), [str(source)], env))
                t_lite.append(cold(_COLD_LITE.format(side=COLD_SIDE), lite_args, env))
            what = "cold start (import, load, one 560^2 pass)"
            cold_rows.append((what, statistics.median(t_tf), statistics.median(t_lite), np.nan))
    print(f"\n## TensorFlow against LiteRT ({which}), median seconds\n")
    print("| what | TensorFlow s | LiteRT s | LiteRT / TF time | max abs diff |")
    print("|---|---|---|---|---|")
    for what, tf_s, lite, diff in cold_rows + rows:
        d = "" if np.isnan(diff) else f"{diff:.1e}"
        print(f"| {what} | {tf_s:.3f} | {lite:.3f} | {lite / tf_s:.2f} | {d} |")
    forward = [lite / tf_s for _, tf_s, lite, _ in rows]
    wins_start = bool(cold_rows) and cold_rows[0][2] < cold_rows[0][1]
    within = max(forward) <= 1.10
    agree = max(d for *_, d in rows) <= 1e-5
    verdict = "ADOPT" if wins_start and within and agree else "KEEP TensorFlow"
    print(
        f"\nforward pass: LiteRT takes {min(forward):.2f}-{max(forward):.2f}x TensorFlow's time "
        f"(rule: <= 1.10); start: {'faster' if wins_start else 'not faster or not measured'}; "
        f"agreement {'<=' if agree else '>'} 1e-5: {verdict}"
    )
    print(f"end: {loadavg()}")
    print("RESULT " + json.dumps({"rows": cold_rows + rows, "verdict": verdict}))


if __name__ == "__main__":
    main()
