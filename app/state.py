"""Dashboard state: data, detection, selection, labels and frame. No widget imports.

One :class:`AppState` holds everything the page shows. Views observe its
traits and copy them into marks; user actions call its methods. Every piece
of analysis is one call into :mod:`atomstat`. Selections are rules
(:mod:`app.selection`) applied as commands; the command history undoes and
redoes selections and label changes in the order they were made. Labels
autosave to the session file beside the data on every change, and reopen
with the data.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import traitlets

import atomstat
from app.data import Example, example_catalogue, inside, session_path
from app.selection import IdsRule, Selection
from atomstat.maps import analyze_maps, match_ids, relocate

__all__ = ["AppState", "format_status"]

log = logging.getLogger(__name__)
_EXPECTED = (atomstat.LoadError, ValueError, TypeError, KeyError, FileNotFoundError, OSError)


def format_status(n_atoms: int, seconds: float, pixel_size: float, units: str) -> str:
    """The one-line summary after detection.

    Examples
    --------
    >>> format_status(1234, 0.5, 0.0176, "nm")
    '1234 atoms found in 0.50 s, pixel size 0.0176 nm'
    """
    return f"{n_atoms} atoms found in {seconds:.2f} s, pixel size {pixel_size:.4g} {units}"


class AppState(traitlets.HasTraits):
    """What the dashboard shows and the commands that change it."""

    data_dir = traitlets.Unicode(help="folder the file browser and exports are confined to")
    source = traitlets.Unicode(None, allow_none=True, help="open file, or 'example:<name>'")
    name = traitlets.Unicode("")
    frames = traitlets.Any(None, help="the data as float32 (T, H, W); T = 1 for an image")
    pixel_size = traitlets.Float(1.0)
    units = traitlets.Unicode("px")
    frame = traitlets.Int(0)
    prob = traitlets.Any(None, help="probability map (T, H, W), None until detection")
    table = traitlets.Any(None, help="the working table: atoms, or dumbbells in dumbbell mode")
    atoms = traitlets.Any(None, help="the atoms table of every frame")
    drift = traitlets.Any(None, help="drift (dx, dy by frame) once tracked")
    aligned = traitlets.Bool(False, help="show drift-corrected frames")
    threshold = traitlets.Float(0.5)
    model = traitlets.Unicode("universal", help="'universal' or a .keras path in the data dir")
    dumbbell_mode = traitlets.Bool(False)
    selection = traitlets.Instance(Selection, ())
    selected = traitlets.Any(np.zeros(0, np.int64), help="ids of the selected rows of table")
    selection_mode = traitlets.Unicode("replace")
    labels = traitlets.Instance(atomstat.LabelSet, ())
    labels_version = traitlets.Int(0, help="increases on every label change")
    anomaly_method = traitlets.Unicode("ocsvm")
    anomaly_columns = traitlets.List(["area", "circularity", "intensity"])
    contamination = traitlets.Unicode("auto")
    cluster_method = traitlets.Unicode("gmm")
    n_clusters = traitlets.Unicode("2")
    cluster_columns = traitlets.List(["intensity", "area"])
    status = traitlets.Unicode("")
    busy = traitlets.Bool(False)
    progress = traitlets.Float(0.0)
    session_file = traitlets.Unicode(None, allow_none=True)

    def __init__(self, data_dir: str | Path, **kwargs):
        super().__init__(data_dir=str(Path(data_dir).resolve()), **kwargs)
        self._history: list[tuple] = []
        self._future: list[tuple] = []
        self._aligned_cache: dict = {}
        self._watch_labels(self.labels)

    # ------------------------------------------------------------------ opening
    @property
    def n_frames(self) -> int:
        return 0 if self.frames is None else len(self.frames)

    def open_file(self, relative: str) -> bool:
        """Open a file of the data folder; on failure keep what is open and say why."""
        try:
            path = inside(self.data_dir, relative)
            signal = atomstat.load(path)
        except _EXPECTED as exc:
            self.status = f"Could not open {relative}: {exc}"
            return False
        self._set_data(signal, str(path), path.name)
        return True

    def open_example(self, name: str) -> bool:
        """Open a bundled example (a shipped file or a seeded simulation)."""
        example: Example | None = example_catalogue().get(name)
        if example is None:
            self.status = f"No example named {name!r}"
            return False
        self._set_data(example.load(), f"example:{name}", name)
        return True

    def _set_data(self, data, source: str, name: str) -> None:
        if isinstance(data, tuple):
            frames, pixel_size, units = data
        else:
            cal = atomstat.pipeline.calibration(data)
            frames, pixel_size, units = data.data, cal["pixel_size"], cal["units"]
        frames = np.asarray(frames, np.float32)
        frames = frames[None] if frames.ndim == 2 else frames
        with self.hold_trait_notifications():
            self._forget()
            self.source, self.name = source, name
            self.pixel_size, self.units = float(pixel_size), str(units)
            self.frame = 0
            self.frames = frames
        self.status = self.summary()
        self._reopen_session()

    def _forget(self):
        self.prob = self.table = self.atoms = self.drift = None
        self.aligned = False
        self._aligned_cache = {}
        self._history.clear()
        self._future.clear()
        self.selection = Selection()
        self.selected = np.zeros(0, np.int64)
        self._replace_labels(atomstat.LabelSet())
        self.session_file = None

    def summary(self) -> str:
        """Shape, frames and calibration of what is open."""
        if self.frames is None:
            return "Nothing open"
        t, h, w = self.frames.shape
        frames = f", {t} frames" if t > 1 else ""
        fov = f"{w * self.pixel_size:.4g} x {h * self.pixel_size:.4g} {self.units}"
        size = f"pixel size {self.pixel_size:.4g} {self.units}"
        return f"{self.name}: {w} x {h} px{frames}, {size}, field of view {fov}"

    # ---------------------------------------------------------------- detection
    def _model_arg(self):
        if self.model in ("", "universal"):
            return None
        return str(inside(self.data_dir, self.model))

    def detect(self) -> bool:
        """Run the network on every frame and locate the atoms (progress in ``progress``)."""
        if self.frames is None:
            self.status = "Open an image first"
            return False
        self.busy, self.progress = True, 0.0
        self.status = f"Finding atoms in {self.n_frames} frame(s)..."
        start = time.perf_counter()
        try:
            data = self.frames[0] if self.n_frames == 1 else self.frames
            atoms, prob = analyze_maps(
                data, threshold=self.threshold, model=self._model_arg(), callback=self._progress
            )
        except _EXPECTED as exc:
            self.status = f"Finding atoms failed: {exc}"
            return False
        finally:
            self.busy = False
        atoms.attrs.update({"pixel_size": self.pixel_size, "units": self.units})
        atoms.attrs["source"] = None if self.source.startswith("example:") else self.source
        self.prob = prob if prob.ndim == 3 else prob[None]
        self._set_atoms(atoms)
        seconds = time.perf_counter() - start
        self.status = format_status(len(atoms), seconds, self.pixel_size, self.units)
        self.autosave()
        return True

    def _progress(self, done, total):
        self.progress = done / max(total, 1)

    def set_threshold(self, value: float) -> None:
        """New contour level: re-extract the blobs from the stored map (no network)."""
        self.threshold = float(value)
        if self.prob is None:
            if self.table is not None:
                self.status = "Press 'Find atoms' to re-threshold (no probability map yet)"
            return
        image = self.frames[0] if self.n_frames == 1 else self.frames
        prob = self.prob[0] if self.n_frames == 1 else self.prob
        atoms = relocate(prob, image, threshold=self.threshold, attrs=self.atoms.attrs)
        self._set_atoms(atoms)
        self.status = f"{len(atoms)} atoms at threshold {self.threshold:.2f}"

    def set_dumbbell_mode(self, on: bool) -> None:
        """Work on dumbbells (paired columns) instead of atoms."""
        self.dumbbell_mode = bool(on)
        if self.atoms is not None:
            self._set_atoms(self.atoms)

    def _set_atoms(self, atoms: pd.DataFrame) -> None:
        """Make ``atoms`` (and its dumbbells) the working table; labels follow by position."""
        old = self.table
        table = atomstat.pair_dumbbells(atoms) if self.dumbbell_mode else atoms
        if old is not None and len(old) and self.labels.to_dict() != _EMPTY_LABELS:
            mapping = match_ids(old, table)
            self._replace_labels(self.labels.remapped(mapping))
        with self.hold_trait_notifications():
            self.atoms, self.drift = atoms, None
            self._aligned_cache = {}
            self.table = table
            self.aligned = False
            self._apply_selection()

    # ---------------------------------------------------------------- selection
    def select(self, rule, mode: str | None = None) -> None:
        """Combine ``rule`` with the selection (by ``mode``, default ``selection_mode``)."""
        new = self.selection.combine(rule, mode or self.selection_mode)
        self._command(("selection", self.selection, new))

    def click(self, atom_id: int) -> None:
        """Select one atom (a click on the image), combined by the current mode."""
        self.select(IdsRule((int(atom_id),)))

    def clear_selection(self) -> None:
        self._command(("selection", self.selection, Selection()))

    def _apply_selection(self) -> None:
        table = self.table
        if table is None:
            self.selected = np.zeros(0, np.int64)
            return
        self.selected = table.index.to_numpy()[self.selection.mask(table)]

    def selected_rows(self) -> pd.DataFrame:
        """The selected rows of the working table, labels included."""
        if self.table is None:
            return pd.DataFrame()
        return self.labels.apply(self.table.loc[self.selected])

    # ------------------------------------------------------------------ labels
    def label_selection(self, name: str) -> None:
        """Label every selected row with class ``name`` (by hand)."""
        if not len(self.selected):
            self.status = "Nothing selected to label"
            return
        self._command(("labels", lambda: self.labels.set_manual(self.selected, name)))

    def unlabel_selection(self) -> None:
        """Take the selected rows out of their class by hand (manual refinement)."""
        if not len(self.selected):
            self.status = "Nothing selected to unlabel"
            return
        self._command(("labels", lambda: self.labels.set_manual(self.selected, None)))

    def add_class(self, name: str, color: str | None = None) -> None:
        self._command(("labels", lambda: self.labels.add_class(name, color)))

    def find_anomalies(self) -> None:
        """One-class SVM (or the chosen method) on the chosen descriptors -> 'anomaly'."""
        if self.table is None:
            self.status = "Find the atoms first"
            return
        share = self.contamination
        share = share if share == "auto" else float(share)
        flags = atomstat.find_anomalies(
            self.table, self.anomaly_columns, method=self.anomaly_method, contamination=share
        )
        self._command(("labels", lambda: self.labels.set_auto(flags, name="anomaly")))
        self.status = f"{int(flags.sum())} anomalies ({self.anomaly_method})"

    def cluster(self) -> None:
        """Cluster the selection (or every row) into classes 'cluster 0', 'cluster 1'..."""
        if self.table is None:
            self.status = "Find the atoms first"
            return
        rows = self.table.loc[self.selected] if len(self.selected) else self.table
        n = self.n_clusters if self.n_clusters == "auto" else int(self.n_clusters)
        found = atomstat.cluster(
            rows, self.cluster_columns, method=self.cluster_method, n_clusters=n
        )
        names = found[found >= 0].map(lambda k: f"cluster {k}")
        self._command(("labels", lambda: self.labels.set_auto(names)))
        self.status = f"{names.nunique()} clusters in {len(rows)} rows ({self.cluster_method})"

    def _watch_labels(self, labels):
        labels.observe(self._labels_changed)

    def _replace_labels(self, labels):
        """Swap in a new label set (its history starts empty, so label commands go)."""
        self._history = [c for c in getattr(self, "_history", []) if c[0] != "labels"]
        self._future = [c for c in getattr(self, "_future", []) if c[0] != "labels"]
        self.labels.unobserve(self._labels_changed)
        self.labels = labels
        self._watch_labels(labels)
        self.labels_version += 1

    def _labels_changed(self, _labels):
        self.labels_version += 1
        self.autosave()

    # ----------------------------------------------------------------- history
    def _command(self, command) -> None:
        before = len(self.labels.history)
        self._do(command)
        if command[0] == "labels" and len(self.labels.history) == before:
            return  # the label set did not change: nothing to undo
        self._history.append(command)
        self._future.clear()

    def _do(self, command, undo=False):
        if command[0] == "selection":
            self.selection = command[1] if undo else command[2]
            self._apply_selection()
        elif undo:
            self.labels.undo()
        else:
            command[1]()

    def undo(self) -> None:
        """Take back the last selection or label change."""
        if self._history:
            command = self._history.pop()
            self._do(command, undo=True)
            self._future.append(command)

    def redo(self) -> None:
        if self._future:
            command = self._future.pop()
            self._do(("labels", self.labels.redo) if command[0] == "labels" else command)
            self._history.append(command)

    # ------------------------------------------------------------------ movies
    def display_frame(self, stack: np.ndarray) -> np.ndarray:
        """The shown frame of ``stack`` (the frames or the map), drift-corrected if aligned."""
        if not (self.aligned and self.drift is not None):
            return stack[self.frame]
        key = "prob" if stack is self.prob else "frames"
        if key not in self._aligned_cache:
            fill = 0.0 if key == "prob" else np.nan
            self._aligned_cache[key] = atomstat.align_frames(stack, self.drift, fill=fill)
        return self._aligned_cache[key][self.frame]

    def track(self) -> bool:
        """Link the rows of the working table through the frames (registration first)."""
        if self.table is None or self.n_frames < 2:
            self.status = "Tracking needs a movie with atoms found"
            return False
        self.busy = True
        try:
            tracks = atomstat.track(self.table, images=self.frames)
        except _EXPECTED as exc:
            self.status = f"Tracking failed: {exc}"
            return False
        finally:
            self.busy = False
        self._aligned_cache = {}
        with self.hold_trait_notifications():
            self.drift = atomstat.get_drift(tracks)
            self.table = tracks
        n = tracks["particle"].nunique()
        self.status = f"{n} tracks over {self.n_frames} frames"
        self.autosave()
        return True

    def selected_particles(self) -> list[int]:
        """Tracks with at least one selected row."""
        table = self.table
        if table is None or "particle" not in table or not len(self.selected):
            return []
        return sorted(int(p) for p in table.loc[self.selected, "particle"].unique())

    def particle_colors(self, particles) -> dict[int, str]:
        """Colour of each track: the class of its first labelled row (grey if none)."""
        table = self.table
        rows = table[table["particle"].isin(particles)]
        labels = self.labels.labels(rows.index).astype(object)
        out = {}
        for particle, names in labels.groupby(rows["particle"].to_numpy()):
            named = names.dropna()
            out[int(particle)] = self.labels.classes[named.iloc[0]] if len(named) else "#555555"
        return out

    # ----------------------------------------------------------------- session
    def autosave(self) -> Path | None:
        """Write the session beside the data (``<file>.atomstat.json``)."""
        if self.table is None or self.source is None:
            return None
        path = session_path(self.data_dir, self.source)
        params = {"threshold": self.threshold, "model": self.model, "dumbbells": self.dumbbell_mode}
        params["selection"] = self.selection.to_dict()
        try:
            atomstat.save_session(path, self.table, self.labels, params=params)
        except OSError as exc:
            self.status = f"Autosave failed: {exc}"
            return None
        self.session_file = str(path)
        return path

    def _reopen_session(self) -> None:
        path = session_path(self.data_dir, self.source)
        if not path.is_file():
            return
        try:
            session = atomstat.load_session(path)
        except (ValueError, KeyError, OSError) as exc:
            self.status = f"{self.summary()}; session {path.name} unreadable: {exc}"
            return
        params = session.params
        self.threshold = float(params.get("threshold", self.threshold))
        self.model = str(params.get("model", self.model))
        self.dumbbell_mode = bool(params.get("dumbbells", False))
        with self.hold_trait_notifications():
            self.atoms = session.atoms if not self.dumbbell_mode else None
            self.table = session.atoms
            self._replace_labels(session.labels)
            self.selection = Selection.from_dict(params.get("selection", []))
            self._apply_selection()
        self.session_file = str(path)
        counts = ", ".join(f"{k} {v}" for k, v in session.labels.counts().items()) or "no labels"
        self.status = f"{self.summary()}; reopened session ({len(session.atoms)} rows, {counts})"


_EMPTY_LABELS = atomstat.LabelSet().to_dict()
