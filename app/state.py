"""Dashboard state: data, detection, selection, labels and frame. No widget imports.

One :class:`AppState` holds everything the page shows. Views observe its
traits and copy them into marks; user actions call its methods. Every piece
of analysis is one call into :mod:`atomstat`. Selections are rules
(:mod:`app.selection`) applied as commands; the command history undoes and
redoes selections and label changes in the order they were made. Labels
live in the data folder's shared label store and the analysis in its cache
(:mod:`app.collab`): every visitor of a file sees the others' labels, and a
reload shows the last analysis without running the network.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import traitlets

import atomstat
from app.collab import Workbench, guest_name
from app.data import Example, example_catalogue, inside
from app.levels import LevelCache
from app.selection import IdsRule, Selection
from app.warmup import heavy_turn, same_analysis
from atomstat.maps import analyze_maps, match_ids

__all__ = ["AppState", "format_status", "whole_tracks"]

log = logging.getLogger(__name__)
_EXPECTED = (atomstat.LoadError, ValueError, TypeError, KeyError, FileNotFoundError, OSError)


def format_status(
    n_atoms: int,
    seconds: float,
    pixel_size: float,
    units: str,
    *,
    n_dumbbells: int | None = None,
    warnings=(),
) -> str:
    """The one-line summary after detection (counting what the selection counter counts),
    with the analysis's ``attrs["warnings"]`` after it.

    Examples
    --------
    >>> format_status(1234, 0.5, 0.0176, "nm")
    '1234 atoms found in 0.50 s, pixel size 0.0176 nm'
    >>> format_status(1391, 2.0, 1.0, "px", n_dumbbells=657)
    '657 dumbbells (1391 atoms) found in 2.00 s, pixel size 1 px'
    >>> format_status(224, 1.0, 1.0, "px", warnings=["it was analysed inverted"])
    '224 atoms found in 1.00 s, pixel size 1 px. Note: it was analysed inverted'
    """
    found = f"{n_atoms} atoms"
    if n_dumbbells is not None:
        found = f"{n_dumbbells} dumbbells ({found})"
    line = f"{found} found in {seconds:.2f} s, pixel size {pixel_size:.4g} {units}"
    return ". ".join([line, *(f"Note: {w}" for w in warnings)])


def whole_tracks(table: pd.DataFrame, mask: np.ndarray, frame: int) -> np.ndarray:
    """Every row of the tracks that ``mask`` picks in ``frame``.

    A tracked movie is selected track by track: a brush or a click decides by
    the values in the shown frame, and the selection is then the same tracks
    in every frame (it is not re-applied when the frame changes).

    Examples
    --------
    >>> t = pd.DataFrame({"frame": [0, 0, 1, 1], "particle": [7, 8, 7, 8]})
    >>> whole_tracks(t, np.array([True, False, False, True]), 0).tolist()
    [True, False, True, False]
    """
    here = np.asarray(mask, bool) & (table["frame"].to_numpy() == frame)
    particle = table["particle"].to_numpy()
    return np.isin(particle, particle[here]) & ~pd.isna(particle)


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
    model = traitlets.Unicode(
        "universal", help="'universal', 'stm' (shipped) or a .keras path in the data dir"
    )
    split = traitlets.Unicode("auto", help="split blobs of several atoms: 'auto', 'on', 'off'")
    preprocess = traitlets.Unicode(
        "none", help="'none', 'stm', 'plane' or 'invert' (atomstat.analyze)"
    )
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
    user = traitlets.Unicode(help="who makes the label changes (typed once, kept in the browser)")
    store_message = traitlets.Unicode("", help="label store problems and overwritten labels")

    def __init__(self, data_dir: str | Path, **kwargs):
        super().__init__(data_dir=str(Path(data_dir).resolve()), **kwargs)
        self._history: list[tuple] = []
        self._future: list[tuple] = []
        self._aligned_cache: dict = {}
        self._watch_labels(self.labels)
        self.collab = Workbench(self)
        self.observe(lambda c: self.collab.set_user(c.new), "user")

    @traitlets.default("user")
    def _default_user(self):
        return guest_name()

    # ------------------------------------------------------------------ opening
    @property
    def n_frames(self) -> int:
        return 0 if self.frames is None else len(self.frames)

    def open_file(self, relative: str) -> bool:
        """Open a file of the data folder; on failure keep what is open and say why."""
        if str(relative).endswith(".json"):
            return self.open_session(relative)
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
        self.collab.open()

    def _forget(self):
        self.prob = self.table = self.atoms = self.drift = None
        self.aligned = False
        self._aligned_cache = {}
        self._history.clear()
        self._future.clear()
        self.selection = Selection()
        self.selected = np.zeros(0, np.int64)
        self.collab.detach()  # the next file's labels are not this one's
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
        if self.model == "stm":
            return "stm"  # the shipped STM model
        return str(inside(self.data_dir, self.model))

    def _analysis_input(self):
        """The frames the network sees (cleaned by ``preprocess``) and the ``split`` flag."""
        data = self.frames[0] if self.n_frames == 1 else self.frames
        if self.preprocess not in ("", "none"):
            from atomstat.preprocess import get_preprocessor

            clean = get_preprocessor(self.preprocess)
            stack = data[None] if data.ndim == 2 else data
            data = np.stack([clean(f) for f in stack]).astype(np.float32)
            data = data[0] if self.n_frames == 1 else data
        split = {"auto": None, "on": True, "off": False}[self.split]
        return data, split

    def set_calibration(self, pixel_size, units: str) -> bool:
        """Set the pixel size and unit by hand (a file without calibration, or a wrong one).

        Refused with a status message unless ``pixel_size`` is a finite number
        above 0 and ``units`` is a short non-empty name.
        """
        try:
            size = float(pixel_size)
        except (TypeError, ValueError):
            size = float("nan")
        units = str(units).strip()
        if not np.isfinite(size) or size <= 0:
            self.status = f"Pixel size must be a finite number above 0, got {pixel_size!r}"
            return False
        if not units or len(units) > 12 or any(c in units for c in "<>&\"'"):
            self.status = f"Unit must be a short name such as nm or pm, got {units!r}"
            return False
        with self.hold_trait_notifications():
            self.pixel_size, self.units = size, units
            for table in (self.atoms, self.table):
                if table is not None:
                    table.attrs.update({"pixel_size": size, "units": units})
        self.status = f"Calibration set: pixel size {size:.4g} {units}; {self.summary()}"
        self.autosave()
        return True

    def detect(self) -> bool:
        """Run the network on every frame and locate the atoms (progress in ``progress``).

        The kernels of a server take turns (:mod:`app.warmup`): an analysis
        another kernel is making of the same file waits for it and is then
        read from the cache, and only a few kernels run the network at once.
        """
        if self.frames is None:
            self.status = "Open an image first"
            return False
        with same_analysis(self._analysis_key(), on_wait=self._waiting):
            return self._detect()

    def _analysis_key(self) -> str | None:
        collab = self.collab
        if collab.content_key is None:
            return None
        try:
            return str(collab.cache.atoms_path(collab.content_key, collab._model(),
                                               collab.settings()))  # fmt: skip
        except Exception:  # noqa: BLE001 (a model file not there...: the analysis says so)
            return None

    def _waiting(self) -> None:
        self.status = "Waiting for another visitor's analysis to finish..."

    def _detect(self) -> bool:
        self.busy, self.progress = True, 0.0
        self.status = f"Finding atoms in {self.n_frames} frame(s)..."
        start, frames = time.perf_counter(), self.frames
        try:
            data, split = self._analysis_input()
            cached = self.collab.cached()
            if cached is not None and all(c is not None for c in cached):  # no network
                atoms, prob = cached
                self.progress = 1.0
            else:
                with heavy_turn(on_wait=self._waiting):
                    self.status = f"Finding atoms in {self.n_frames} frame(s)..."
                    atoms, prob = analyze_maps(
                        data, threshold=self.threshold, model=self._model_arg(), split=split,
                        callback=self._progress,
                    )  # fmt: skip
        except _EXPECTED as exc:
            self.status = f"Finding atoms failed: {exc}"
            return False
        finally:
            self.busy = False
        if self.frames is not frames:  # another file was opened meanwhile (a background run)
            log.info("analysis of a file no longer open dropped")
            return False
        atoms.attrs.update({"pixel_size": self.pixel_size, "units": self.units})
        atoms.attrs["source"] = None if self.source.startswith("example:") else self.source
        self.prob = prob if prob.ndim == 3 else prob[None]
        self._set_atoms(atoms)
        self._levels()  # the other threshold levels, ahead, in a thread
        seconds = time.perf_counter() - start
        pairs = len(self.table) if self.dumbbell_mode else None
        self.status = format_status(
            len(atoms), seconds, self.pixel_size, self.units, n_dumbbells=pairs,
            warnings=atoms.attrs.get("warnings") or (),
        )  # fmt: skip
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
        atoms = self._levels().get(self.threshold)  # precomputed in the background
        self._set_atoms(atoms)
        found = f"{len(atoms)} atoms"
        if self.dumbbell_mode:  # count what the selection counter counts
            found = f"{len(self.table)} dumbbells ({found})"
        self.status = f"{found} at threshold {self.threshold:.2f}"
        self.autosave()

    def _levels(self) -> LevelCache:
        """The atoms tables of the stored map at every slider level (filled in a thread)."""
        cache = getattr(self, "_level_cache", None)
        if cache is not None and cache.key is self.prob:
            return cache
        if cache is not None:
            cache.stop()
        image = self.frames[0] if self.n_frames == 1 else self.frames
        prob = self.prob[0] if self.n_frames == 1 else self.prob
        self._level_cache = LevelCache(
            prob, image, self.atoms.attrs, start=self.threshold, key=self.prob
        )
        return self._level_cache.start()

    def set_dumbbell_mode(self, on: bool) -> None:
        """Work on dumbbells (paired columns) instead of atoms."""
        self.collab.detach()  # dumbbells keep their labels apart from atoms
        self.dumbbell_mode = bool(on)
        if self.atoms is not None:
            self._set_atoms(self.atoms)
        self.collab.attach(carried=f"labels carried over to {'dumbbells' if on else 'atoms'}")

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
        mask = self.selection.mask(table)
        if "particle" in table and "frame" in table and self.n_frames > 1:
            mask = whole_tracks(table, mask, self.frame)
        self.selected = table.index.to_numpy()[mask]

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

    def _replace_labels(self, labels, text: str = "labels moved to the new table"):
        """Swap in a new label set (its history starts empty, so label commands go).

        The shared store records how it differs as one action called ``text``.
        """
        self._history = [c for c in getattr(self, "_history", []) if c[0] != "labels"]
        self._future = [c for c in getattr(self, "_future", []) if c[0] != "labels"]
        self.labels.unobserve(self._labels_changed)
        self.labels = labels
        self._watch_labels(labels)
        if hasattr(self, "collab"):
            self.collab.rebind(labels, text)
        self.labels_version += 1

    def replace_labels(self, labels, text: str) -> None:
        """Show ``labels`` (a session's, say), recorded in the store as one action ``text``."""
        self._replace_labels(labels, text)

    def _labels_changed(self, _labels):
        self.labels_version += 1  # the shared store writes the change itself

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
            self._label_step("undo")
        else:
            command[1]()

    def _label_step(self, which: str) -> None:
        """Undo or redo a label change: in the shared store (one's own changes only)."""
        if self.collab.shared is not None:
            getattr(self.collab, which)()
        else:
            getattr(self.labels, which)()

    def undo(self) -> None:
        """Take back the last selection or label change."""
        if self._history:
            command = self._history.pop()
            self._do(command, undo=True)
            self._future.append(command)

    def redo(self) -> None:
        if self._future:
            command = self._future.pop()
            redo = ("labels", lambda: self._label_step("redo"))
            self._do(redo if command[0] == "labels" else command)
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
    def autosave(self) -> None:
        """Keep the analysis in the cache beside the data, as the file's current one.

        Labels need no saving here: each change goes to the shared store as it is made.
        """
        if self.atoms is not None and self.source is not None:
            self.collab.analysed(self.atoms, self.prob)

    def show_analysis(self, atoms, prob, *, text: str, table=None) -> bool:
        """Show an analysis made before (cached, or a session's) without running the network.

        ``table`` is the working table when it is not ``atoms`` itself (a
        session's dumbbells or tracks); the labels are left as they are.
        """
        if atoms is None and table is None:
            return False
        if prob is not None:
            prob = prob if prob.ndim == 3 else prob[None]
            prob = prob if prob.shape == self.frames.shape else None
        if table is None:
            table = atomstat.pair_dumbbells(atoms) if self.dumbbell_mode else atoms
        with self.hold_trait_notifications():
            self.prob, self.atoms, self.drift = prob, atoms, None
            self._aligned_cache = {}
            self.table = table
            self.aligned = False
            self._apply_selection()
        self.status = f"{self.summary()}; {len(table)} rows: {text} (no network run)"
        return True

    def open_session(self, relative: str) -> bool:
        """Open an exported session: its file (if it is in the data folder), table and labels.

        The session is refused, with the reason in the status line, when the
        file's SHA-256 is not the one it was saved for.
        """
        try:
            path = inside(self.data_dir, relative)
            session = atomstat.load_session(path, check_source=False)
        except _EXPECTED as exc:
            self.status = f"Could not open {relative}: {exc}"
            return False
        source = Path(str((session.source or {}).get("path") or ""))
        root = Path(self.data_dir)
        if source.is_file() and root in source.resolve().parents:
            if str(source.resolve()) != self.source:
                self.open_file(str(source.resolve().relative_to(root)))
        if self.frames is None:
            self.status = f"Open the image of {path.name} first, then the session"
            return False
        if not self.collab.apply_session(session, text=f"session {path.name}"):
            self.status = self.store_message
            return False
        self.session_file = str(path)
        counts = ", ".join(f"{k} {v}" for k, v in session.labels.counts().items()) or "no labels"
        self.status = f"{self.summary()}; opened {path.name} ({len(session.atoms)} rows, {counts})"
        return True


_EMPTY_LABELS = atomstat.LabelSet().to_dict()
