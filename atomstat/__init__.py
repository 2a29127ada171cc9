"""atomstat: find, describe and track every atom in atomically resolved images.

The pipeline, one module per stage: :func:`load` (io), :func:`segment`
(fcn), :func:`locate` (locate, refine, describe), then the analysis stages.
Every stage reads and writes the atoms table defined in :mod:`atomstat.table`.
"""

from .errors import AtomstatError, LoadError
from .fcn.predict import segment
from .io import load
from .locate import locate
from .outliers import add_anomalies, anomaly_scores, cluster, find_anomalies
from .pipeline import analyze
from .simulate import simulate_lattice
from .table import ATOM_COLUMNS, empty_atoms

__all__ = [
    "ATOM_COLUMNS",
    "AtomstatError",
    "LoadError",
    "analyze",
    "empty_atoms",
    "load",
    "locate",
    "add_anomalies",
    "anomaly_scores",
    "cluster",
    "find_anomalies",
    "segment",
    "simulate_lattice",
]

__version__ = "0.1.0"
