"""Start-up cost of atomstat (issue 15.1), with trackpy in the same run.

Every figure is the wall clock of a fresh Python process, as a new user pays it:

- ``import atomstat``: median of ``--repeats`` processes (default 5); the import
  alone (timed inside the process) and the whole process (interpreter start
  included);
- the CLI, ``atomstat analyze one_512.npy --out DIR``, on a 512^2 hexagonal
  lattice (spacing 24 px, sigma 2.2 px, dose 100, as in bench_speed.py);
- the same CLI with ``ATOMSTAT_ENGINE=tensorflow`` (the shipped model on
  TensorFlow instead of LiteRT, see ``atomstat.fcn.lite``);
- the stages of that first result in one fresh process: ``import
  atomstat.pipeline``, ``load``, the model's load (once per process; with
  TensorFlow this holds its import), the first pass on a 32^2 image
  (``atomstat.fcn.predict.warm``: TensorFlow's trace), the first and a second
  ``analyze``, and an ``analyze`` of a new size (TensorFlow's traced network
  takes any size: the number of traces is printed);
- trackpy: ``import trackpy`` and ``trackpy.locate`` (diameter 11, minmass 0)
  on the same image, in a fresh process.

Targets: ``import atomstat`` <= 1 s, the CLI <= 5 s. The machine's load average
is printed before and after: timings on a busy machine are inflated, so compare
the ratios to trackpy, measured in the same run.

Run: ``.venv/bin/python bench/bench_start.py [--repeats 5] [--cli-repeats 1]``
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

IMPORT_TARGET_S = 1.0
CLI_TARGET_S = 5.0

_IMPORT = """
import json, sys, time
t = time.perf_counter()
import atomstat
t = time.perf_counter() - t
print(json.dumps({"import_s": t, "modules": len(sys.modules)}))
"""

_STAGES = """
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
path = sys.argv[1]
times = {}
t = time.perf_counter()
import atomstat.pipeline
times["import atomstat.pipeline"] = time.perf_counter() - t
t = time.perf_counter()
signal = atomstat.load(path)
times["load"] = time.perf_counter() - t
from atomstat.fcn.predict import load_model, warm
t = time.perf_counter()
model, call = load_model()
times["load the model (once per process)"] = time.perf_counter() - t
times["engine"] = type(call).__name__
t = time.perf_counter()
warm()
times["first pass on 32^2 (warm)"] = time.perf_counter() - t
t = time.perf_counter()
atoms = atomstat.analyze(signal)
times["first analyze (after warm)"] = time.perf_counter() - t
t = time.perf_counter()
atomstat.analyze(signal)
times["second analyze"] = time.perf_counter() - t
t = time.perf_counter()
atomstat.analyze(signal.data[:384, :448])
times["analyze of a new size, 384 x 448"] = time.perf_counter() - t
tracing = getattr(call, "experimental_get_tracing_count", None)
times["traces"] = tracing() if tracing else 0
times["tensorflow imported"] = "tensorflow" in sys.modules
times["atoms"] = len(atoms)
times["resolution"] = atoms.attrs["resolution"]
print(json.dumps(times))
"""

_TRACKPY = """
import json, sys, time
t = time.perf_counter()
import numpy as np
import trackpy
imported = time.perf_counter() - t
trackpy.quiet()
t = time.perf_counter()
features = trackpy.locate(np.load(sys.argv[1]), 11, minmass=0, characterize=False)
print(json.dumps({"import_s": imported, "locate_s": time.perf_counter() - t,
                  "features": len(features)}))
"""


def loadavg() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def fresh(args, *, env=None):
    """Run ``args`` in a fresh process; return (wall seconds, parsed last stdout line or None)."""
    t = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{args[:3]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    lines = done.stdout.strip().splitlines()
    try:
        return wall, json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return wall, None


def make_image(path: Path) -> None:
    """The 512^2 benchmark image (hexagonal, spacing 24 px, sigma 2.2 px, dose 100)."""
    from atomstat.simulate import Stem, simulate_lattice

    scene = simulate_lattice(
        "hexagonal", shape=(512, 512), spacing=24.0, sigma=2.2, imaging=Stem(dose=100), rng=0
    )
    np.save(path, scene.image.astype(np.float32))


def cli_command() -> list[str]:
    """The ``atomstat`` script beside this interpreter, else ``python -m atomstat.cli``."""
    script = Path(sys.executable).with_name("atomstat")
    return [str(script)] if script.exists() else [sys.executable, "-m", "atomstat.cli"]


def row(what, seconds, target=None, peer=None):
    verdict = "" if target is None else ("ok" if seconds <= target else "OVER")
    ratio = "" if peer is None else f"{seconds / peer:.3g}x"
    limit = "" if target is None else f"<= {target:g} s"
    return f"| {what} | {seconds:.3f} | {limit} {verdict} | {ratio} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per import")
    parser.add_argument("--cli-repeats", type=int, default=1, help="fresh CLI runs (median)")
    args = parser.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    print(f"# bench_start: before, {loadavg()}")
    with tempfile.TemporaryDirectory(prefix="bench_start_") as tmp:
        image = Path(tmp) / "one_512.npy"
        make_image(image)
        imports = [fresh([sys.executable, "-c", _IMPORT], env=env) for _ in range(args.repeats)]
        import_s = statistics.median(r["import_s"] for _, r in imports)
        import_wall = statistics.median(w for w, _ in imports)
        cli = [
            fresh([*cli_command(), "analyze", str(image), "--out", f"{tmp}/out{i}"], env=env)[0]
            for i in range(args.cli_repeats)
        ]
        cli_s = statistics.median(cli)
        tf_env = {**env, "ATOMSTAT_ENGINE": "tensorflow"}
        cli_tf = [
            fresh([*cli_command(), "analyze", str(image), "--out", f"{tmp}/tf{i}"], env=tf_env)[0]
            for i in range(args.cli_repeats)
        ]
        cli_tf_s = statistics.median(cli_tf)
        tp_wall, tp = fresh([sys.executable, "-c", _TRACKPY, str(image)], env=env)
        _, stages = fresh([sys.executable, "-c", _STAGES, str(image)], env=env)
    print(
        f"\n## Fresh processes ({args.repeats} imports, {args.cli_repeats} CLI run(s)), "
        "ratio = this / trackpy in the same run\n"
    )
    print("| what | seconds | target | ratio to trackpy |")
    print("|---|---|---|---|")
    print(row("import atomstat (in the process)", import_s, IMPORT_TARGET_S, tp["import_s"]))
    print(row("python -c 'import atomstat' (whole process)", import_wall))
    print(
        row("atomstat analyze one_512.npy --out DIR (whole process)", cli_s, CLI_TARGET_S, tp_wall)
    )
    print(row("the same CLI on TensorFlow (ATOMSTAT_ENGINE=tensorflow)", cli_tf_s, None, tp_wall))
    print(row("trackpy: import trackpy (in the process)", tp["import_s"]))
    print(row(f"trackpy: locate d=11 ({tp['features']} features)", tp["locate_s"]))
    print(row("trackpy: import + locate (whole process)", tp_wall))
    print(
        f"\n## The first result, stage by stage (one fresh process, {stages['atoms']} atoms, "
        f"{stages['resolution']} px per block, engine {stages['engine']}, "
        f"{stages['traces']} trace(s), TensorFlow imported: {stages['tensorflow imported']})\n"
    )
    print("| stage | seconds |")
    print("|---|---|")
    for stage, seconds in stages.items():
        if isinstance(seconds, float):
            print(f"| {stage} | {seconds:.3f} |")
    print(f"\nmodules after import atomstat: {imports[0][1]['modules']}")
    print(f"# bench_start: after, {loadavg()}")


if __name__ == "__main__":
    main()
