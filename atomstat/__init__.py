"""atomstat: find, describe and track every atom in atomically resolved images.

The pipeline, one module per stage: :func:`load` (io), :func:`segment`
(fcn), :func:`locate` (locate, refine, describe), then the analysis stages.
Every stage reads and writes the atoms table defined in :mod:`atomstat.table`.

The public names are resolved lazily (PEP 562), so ``import atomstat`` costs
a few milliseconds; a name's module (and its SciPy, pandas, TensorFlow ...)
is imported the first time the name is used.
"""

import importlib
import importlib.util
import sys
import types

# public name -> module it lives in (relative to this package)
_LAZY = {
    "ATOM_COLUMNS": ".table",
    "AtomstatError": ".errors",
    "LoadError": ".errors",
    "analyze": ".pipeline",
    "empty_atoms": ".table",
    "load": ".io",
    "locate": ".locate",
    "add_anomalies": ".outliers",
    "anomaly_scores": ".outliers",
    "cluster": ".outliers",
    "find_anomalies": ".outliers",
    "find_defects": ".defects",
    "sublattices": ".sublattices",
    "LabelSet": ".labels",
    "load_session": ".session",
    "save_session": ".session",
    "read_table": ".export",
    "write_figure": ".export",
    "write_table": ".export",
    "segment": ".fcn.predict",
    "simulate_lattice": ".simulate",
    "find_dumbbells": ".dumbbell_finder",
    "pair_dumbbells": ".dumbbells",
    "spacing_spread": ".spacings",
    "simulate_movie": ".movie",
    "simulate_molecules": ".molecule_scenes",
    "find_molecules": ".molecules",
    "fit_molecules": ".molecules",
    "group_molecules": ".molecules",
    "time_series": ".timeseries",
    "unwrap_angles": ".timeseries",
    "align_frames": ".register",
    "estimate_drift": ".register",
    "get_drift": ".track",
    "track": ".track",
}
__all__ = [
    "ATOM_COLUMNS",
    "AtomstatError",
    "LoadError",
    "library",
    "analyze",
    "empty_atoms",
    "load",
    "locate",
    "add_anomalies",
    "anomaly_scores",
    "cluster",
    "find_anomalies",
    "find_defects",
    "sublattices",
    "LabelSet",
    "load_session",
    "save_session",
    "read_table",
    "write_figure",
    "write_table",
    "segment",
    "simulate_lattice",
    "find_dumbbells",
    "pair_dumbbells",
    "spacing_spread",
    "simulate_movie",
    "simulate_molecules",
    "find_molecules",
    "fit_molecules",
    "group_molecules",
    "time_series",
    "unwrap_angles",
    "align_frames",
    "estimate_drift",
    "get_drift",
    "track",
]

__version__ = "0.1.0"


def _resolve(name):
    """Import the module holding public ``name`` and return the object."""
    return getattr(importlib.import_module(_LAZY[name], __name__), name)


def __getattr__(name):
    if name in _LAZY:
        value = _resolve(name)
        globals()[name] = value  # later look-ups skip this hook
        return value
    # a submodule, e.g. the public atomstat.library (query(sql): atoms and defects
    # across images), or atomstat.pipeline once used as an attribute; the eager
    # imports this replaces made every submodule they reached an attribute
    if not name.startswith("__") and importlib.util.find_spec(f"{__name__}.{name}"):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


_OVERRIDES = {}  # values assigned by users (monkeypatch) to a shadowed name


def _function_over_module(name):
    """A property that keeps ``atomstat.<name>`` the function, not the module.

    ``locate``, ``sublattices`` and ``track`` are both a submodule and the
    function it defines. Importing the submodule makes Python set the package
    attribute to the module; this property ignores that, as the eager
    ``from .locate import locate`` used to. Other assignments still win.
    """

    def get(module):
        if name in _OVERRIDES:
            return _OVERRIDES[name]
        return _resolve(name)

    def set_(module, value):
        if isinstance(value, types.ModuleType) and value.__name__ == f"{__name__}.{name}":
            return
        _OVERRIDES[name] = value

    def del_(module):
        _OVERRIDES.pop(name, None)

    return property(get, set_, del_)


_SHADOWED = tuple(n for n, mod in _LAZY.items() if mod == "." + n)


class _Package(types.ModuleType):
    pass


for _name in _SHADOWED:
    setattr(_Package, _name, _function_over_module(_name))
del _name

sys.modules[__name__].__class__ = _Package
