"""atomstat: find, describe and track every atom in atomically resolved images.

The pipeline, one module per stage: :func:`load` (io), :func:`segment`
(fcn), :func:`locate` (locate, refine, describe), then the analysis stages.
Every stage reads and writes the atoms table defined in :mod:`atomstat.table`.
"""

from . import library  # atomstat.library.query(sql): atoms and defects across images
from .defects import find_defects
from .dumbbell_finder import find_dumbbells
from .dumbbells import pair_dumbbells
from .errors import AtomstatError, LoadError
from .export import read_table, write_figure, write_table
from .fcn.predict import segment
from .io import load
from .labels import LabelSet
from .locate import locate
from .molecule_scenes import simulate_molecules
from .molecules import find_molecules, fit_molecules, group_molecules
from .movie import simulate_movie
from .outliers import add_anomalies, anomaly_scores, cluster, find_anomalies
from .pipeline import analyze
from .register import align_frames, estimate_drift
from .session import load_session, save_session
from .simulate import simulate_lattice
from .spacings import spacing_spread
from .sublattices import sublattices
from .table import ATOM_COLUMNS, empty_atoms
from .timeseries import time_series, unwrap_angles
from .track import get_drift, track

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
