"""``import atomstat`` is cheap: no heavy library is imported until a name is used.

Each check runs in a fresh interpreter, since this test process has long imported
everything. The import-time budget itself is measured by bench/bench_start.py, not here.
"""

import json
import subprocess
import sys

import pytest

# heavy libraries that ``import atomstat`` must leave alone (TensorFlow alone takes 5-13 s here)
HEAVY = [
    "tensorflow",
    "keras",
    "hyperspy",
    "matplotlib",
    "dask",
    "distributed",
    "sklearn",
    "trackpy",
]


def _fresh(code):
    """Run ``code`` in a fresh interpreter and return what it prints as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_atomstat_leaves_heavy_libraries_unimported():
    code = (
        "import json, sys\n"
        "import atomstat\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    assert _fresh(code) == []


def test_the_predictor_imports_tensorflow_only_when_the_network_runs():
    """atomstat.fcn.predict and its block averaging need no TensorFlow; the shipped model
    runs on LiteRT without it (a whole analysis), and TensorFlow comes with the engine
    that needs it."""
    code = (
        "import json, sys\n"
        "import numpy as np\n"
        "import atomstat\n"
        "from atomstat.fcn import predict\n"
        "from atomstat.simulate import simulate_lattice\n"
        "predict.block_factor(2.2); predict.block_mean(np.ones((32, 32)), 2)\n"
        "before = 'tensorflow' in sys.modules\n"
        "atoms = atomstat.analyze(simulate_lattice('square', shape=(96, 96), spacing=16).image)\n"
        "lite = 'tensorflow' in sys.modules or 'keras' in sys.modules\n"
        "predict.load_model(engine='tensorflow')\n"
        "print(json.dumps([before, lite, len(atoms) > 20, 'tensorflow' in sys.modules]))\n"
    )
    assert _fresh(code) == [False, False, True, True]


def test_the_heavy_library_check_can_fail():
    """The same probe sees a library a public name pulls in (so the test above can fail)."""
    code = (
        "import json, sys\n"
        "import atomstat\n"
        "atomstat.load\n"
        "print(json.dumps(sorted(m for m in ['dask', 'h5py', 'hyperspy'] if m in sys.modules)))\n"
    )
    assert _fresh(code) == ["h5py", "hyperspy"]  # and atomstat.io no longer imports dask


def test_every_public_name_resolves_in_a_fresh_process():
    code = (
        "import json, types\n"
        "import atomstat\n"
        "kinds = {n: type(getattr(atomstat, n)).__name__ for n in atomstat.__all__}\n"
        "print(json.dumps([sorted(set(atomstat.__all__) - set(dir(atomstat))), kinds]))\n"
    )
    missing_from_dir, kinds = _fresh(code)
    assert missing_from_dir == []
    assert kinds["library"] == "module"
    assert kinds["ATOM_COLUMNS"] == "dict"
    assert kinds["LabelSet"] == "type" and kinds["LoadError"] == "type"
    functions = set(kinds) - {"library", "ATOM_COLUMNS", "LabelSet", "AtomstatError", "LoadError"}
    assert {kinds[n] for n in functions} == {"function"}


@pytest.mark.parametrize("name", ["locate", "sublattices", "track"])
def test_a_name_shared_with_its_submodule_stays_the_function(name):
    """``atomstat.locate`` is the function even after ``atomstat.locate`` the module is imported."""
    code = (
        "import json, importlib\n"
        "import atomstat\n"
        f"module = importlib.import_module('atomstat.{name}')\n"
        f"from atomstat import {name} as imported\n"
        f"same = atomstat.{name} is module.{name} is imported\n"
        f"print(json.dumps([same, callable(atomstat.{name}), type(module).__name__]))\n"
    )
    assert _fresh(code) == [True, True, "module"]


def test_star_import_and_missing_names():
    code = (
        "import json\n"
        "import atomstat\n"
        "space = {}\n"
        "exec('from atomstat import *', space)\n"
        "try:\n"
        "    atomstat.no_such_name\n"
        "    missing = 'resolved'\n"
        "except AttributeError as exc:\n"
        "    missing = str(exc)\n"
        "print(json.dumps([sorted(set(atomstat.__all__) - set(space)), missing]))\n"
    )
    left_out, missing = _fresh(code)
    assert left_out == []
    assert missing == "module 'atomstat' has no attribute 'no_such_name'"


def test_assigning_a_shadowed_name_still_wins(monkeypatch):
    """``monkeypatch.setattr(atomstat, "track", fake)`` works as it did with eager imports."""
    import atomstat
    import atomstat.track as track_module

    def fake(*args, **kwargs):
        return "fake"

    monkeypatch.setattr(atomstat, "track", fake)
    assert atomstat.track is fake
    monkeypatch.undo()
    assert atomstat.track is sys.modules["atomstat.track"].track
    assert callable(track_module)  # ``import atomstat.track as m`` gave the function, as before
