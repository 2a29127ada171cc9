"""Control panels: data, detection, labels, export. Callbacks only call the state.

Errors raised inside a callback are printed in the page's error Output (and
the state's status line says what failed); the page keeps working.
"""

from __future__ import annotations

import ipywidgets as widgets

from app.data import DEFAULT_UPLOAD_LIMIT, PathError, example_catalogue, list_folder, save_upload
from app.exporting import FIGURE_FORMATS, TABLE_FORMATS, download_link, export
from app.report import report
from app.state import AppState
from atomstat.outliers import ANOMALY_METHODS, CLUSTER_METHODS

__all__ = ["DataPanel", "DetectionPanel", "ExportPanel", "LabelPanel"]

_WIDE = widgets.Layout(width="295px")  # the left column is 340 px: the readouts stay in it
_HALF = widgets.Layout(width="160px")


class DataPanel:
    """Examples, a file browser confined to the data folder, and an upload."""

    def __init__(self, state: AppState, errors: widgets.Output, limit: int = DEFAULT_UPLOAD_LIMIT):
        self.state, self.errors, self.limit = state, errors, limit
        self.folder = "."
        self.examples = widgets.Dropdown(
            options=list(example_catalogue()), value=None, description="Example", layout=_WIDE
        )
        self.files = widgets.Select(options=[], rows=6, layout=_WIDE)
        self.files.add_class("atomstat-files")
        self.open = widgets.Button(description="Open", layout=_HALF)
        self.up = widgets.Button(description="Up a folder", layout=_HALF)
        self.upload = widgets.FileUpload(description=f"Upload (max {limit / 2**20:.0f} MB)",
                                         multiple=False, layout=_WIDE)  # fmt: skip
        self.upload.tooltip = "Send an image from your computer to the data folder's uploads/"
        self.examples.tooltip = "Bundled images and simulations (opened already analysed)"
        self.files.tooltip = "Files and folders of the data folder; Open opens the chosen one"
        self.open.tooltip = "Open the chosen file (or enter the chosen folder)"
        self.up.tooltip = "Back to the top of the data folder"
        self.pixel_size = widgets.FloatText(
            value=state.pixel_size, description="Pixel size", layout=_HALF,
            tooltip="Length of one pixel (a number above 0)",
        )  # fmt: skip
        self.units = widgets.Text(value=state.units, layout={"width": "60px"},
                                  tooltip="Unit of the pixel size: nm, pm, Å...")  # fmt: skip
        self.calibrate = widgets.Button(description="Set", layout={"width": "60px"},
                                        tooltip="Use this pixel size and unit")  # fmt: skip
        self.calibrate.on_click(self._calibrate)
        state.observe(self._calibration_changed, ["pixel_size", "units"])
        self.summary = widgets.HTML()
        self.summary.add_class("atomstat-summary")
        self.examples.observe(self._example, "value")
        self.open.on_click(self._open)
        self.up.on_click(lambda _: self.browse("."))
        self.upload.observe(self._uploaded, "value")
        state.observe(lambda _: self._summarise(), ["frames", "table"])
        state.observe(self._source_changed, "source")
        self.widget = widgets.VBox(
            [self.examples, widgets.HTML("<b>Data folder</b>"), self.files,
             widgets.HBox([self.open, self.up]), self.upload,
             widgets.HBox([self.pixel_size, self.units, self.calibrate]), self.summary]
        )  # fmt: skip
        self.browse(".")

    def browse(self, folder: str) -> None:
        with report(self.state, self.errors):
            self.files.options = list_folder(self.state.data_dir, folder)
            self.folder = folder

    def _example(self, change) -> None:
        if change.new is not None:
            with report(self.state, self.errors):
                self.state.open_example(change.new)

    def _calibrate(self, _button) -> None:
        with report(self.state, self.errors):
            if not self.state.set_calibration(self.pixel_size.value, self.units.value):
                self._calibration_changed()  # show the calibration in force again

    def _calibration_changed(self, _change=None) -> None:
        self.pixel_size.value, self.units.value = self.state.pixel_size, self.state.units

    def _source_changed(self, change) -> None:
        """The Example list shows an example only while that example is open."""
        source = change.new or ""
        name = source.removeprefix("example:") if source.startswith("example:") else None
        if self.examples.value != name:
            self.examples.value = name  # None: _example ignores it

    def _open(self, _button) -> None:
        choice = self.files.value
        if not choice:
            return
        relative = choice if self.folder == "." else f"{self.folder}/{choice}"
        with report(self.state, self.errors):
            if choice.endswith("/"):
                self.browse(relative.rstrip("/"))
            else:
                self.state.open_file(relative)

    def _uploaded(self, change) -> None:
        if not change.new:
            return
        item = change.new[0]
        with report(self.state, self.errors):
            try:
                path = save_upload(self.state.data_dir, item["name"], item["content"],
                                   limit=self.limit)  # fmt: skip
            except PathError as exc:  # too large, read-only or full data folder
                self.state.status = f"Upload refused: {exc}"
                return
            finally:
                self.upload.value = ()  # the widget held the file's bytes for the kernel's life
            self.browse(".")
            self.state.open_file(str(path.relative_to(self.state.data_dir)))

    def _summarise(self) -> None:
        text = self.state.summary()
        if self.state.table is not None:
            text += f"<br>{len(self.state.table)} rows in the table"
        self.summary.value = f"<small>{text}</small>"


class DetectionPanel:
    """Model, threshold (re-extracts the contours live), dumbbell mode, run with progress."""

    def __init__(self, state: AppState, errors: widgets.Output):
        self.state, self.errors = state, errors
        self.model = widgets.Dropdown(description="Model", layout=_WIDE)
        self.threshold = widgets.FloatSlider(
            value=state.threshold, min=0.05, max=0.95, step=0.05, description="Threshold",
            continuous_update=False, layout=_WIDE,
        )  # fmt: skip
        self.threshold.add_class("atomstat-threshold")
        self.threshold.tooltip = "Probability level of the blob contours (no network re-run)"
        self.dumbbells = widgets.Checkbox(False, description="Dumbbell mode", indent=False,
                                          tooltip="Pair atom columns into dumbbells")  # fmt: skip
        self.split = widgets.Dropdown(
            options=[("auto (on for STM)", "auto"), ("on", "on"), ("off", "off")],
            value=state.split, description="Split blobs", layout=_WIDE,
            tooltip="Split blobs that hold several atoms (close, blurred STM atoms)",
        )  # fmt: skip
        self.preprocess = widgets.Dropdown(
            options=[("none", "none"), ("STM: plane, lines, scars", "stm"),
                     ("plane background only", "plane"),
                     ("invert: dark atoms (ABF)", "invert")],
            value=state.preprocess, description="Preprocess", layout=_WIDE,
            tooltip="Clean each frame before the network sees it",
        )  # fmt: skip
        self.run = widgets.Button(
            description="Find atoms",
            button_style="primary",
            layout=_HALF,
            tooltip="Run the network on every frame and find the atoms",
        )
        self.bar = widgets.FloatProgress(value=0, min=0, max=1, layout=_HALF)
        self.model.tooltip = "Shipped models, or a .keras file of the data folder"
        self.bar.tooltip = "Progress of Find atoms over the frames"
        self.found = widgets.HTML()
        self.found.add_class("atomstat-found")
        state.observe(lambda _: self._count(), "table")
        self.model.observe(lambda c: setattr(state, "model", c.new or "universal"), "value")
        self.threshold.observe(self._threshold, "value")
        self.dumbbells.observe(self._dumbbells, "value")
        self.split.observe(lambda c: setattr(state, "split", c.new), "value")
        self.preprocess.observe(lambda c: setattr(state, "preprocess", c.new), "value")
        self.run.on_click(self._run)
        state.observe(lambda c: setattr(self.bar, "value", c.new), "progress")
        state.observe(lambda c: setattr(self.run, "disabled", c.new), "busy")
        state.observe(lambda c: setattr(self.threshold, "value", c.new), "threshold")
        state.observe(lambda c: setattr(self.dumbbells, "value", c.new), "dumbbell_mode")
        state.observe(lambda _: self.find_models(), "frames")
        self.find_models()
        self.widget = widgets.VBox(
            [
                self.model,
                self.split,
                self.preprocess,
                self.threshold,
                self.dumbbells,
                widgets.HBox([self.run, self.bar]),
                self.found,
            ]
        )

    def _count(self) -> None:
        """What the working table holds, at which threshold (the counter's own words)."""
        state, table = self.state, self.state.table
        if table is None:
            self.found.value = ""
            return
        noun = "dumbbells" if state.dumbbell_mode else "atoms"
        frames = f" in {state.n_frames} frames" if state.n_frames > 1 else ""
        self.found.value = (
            f"<small>{len(table)} {noun}{frames} at threshold {state.threshold:.2f}</small>"
        )

    def find_models(self) -> None:
        """The shipped model and every ``.keras`` file in the data folder."""
        from pathlib import Path

        root = Path(self.state.data_dir)
        found = sorted(str(p.relative_to(root)) for p in root.rglob("*.keras"))[:50]
        shipped = [("shipped: universal (STEM)", "universal"), ("shipped: stm", "stm")]
        self.model.options = shipped + [(f, f) for f in found]
        known = ["universal", "stm", *found]
        self.model.value = self.state.model if self.state.model in known else "universal"

    def _threshold(self, change) -> None:
        if abs(change.new - self.state.threshold) > 1e-9:
            with report(self.state, self.errors):
                self.state.set_threshold(change.new)

    def _dumbbells(self, change) -> None:
        if change.new != self.state.dumbbell_mode:
            with report(self.state, self.errors):
                self.state.set_dumbbell_mode(change.new)

    def _run(self, _button) -> None:
        with report(self.state, self.errors):
            self.state.detect()


class LabelPanel:
    """Classes with colours, label/unlabel the selection, anomalies, clusters, undo/redo."""

    def __init__(self, state: AppState, errors: widgets.Output):
        self.state, self.errors = state, errors
        self.name = widgets.Combobox(placeholder="class name", value="dopant", layout=_HALF)
        self.color = widgets.ColorPicker(value="#d55e00", concise=True, layout={"width": "40px"},
                                         tooltip="Colour of the class")  # fmt: skip
        self.label = widgets.Button(description="Label selection", button_style="success")
        self.unlabel = widgets.Button(description="Unlabel selection")
        self.undo = widgets.Button(description="Undo", layout={"width": "80px"})
        self.redo = widgets.Button(description="Redo", layout={"width": "80px"})
        self.undo.add_class("atomstat-undo")  # Ctrl+Z and Ctrl+Y press them (app.page)
        self.redo.add_class("atomstat-redo")
        self.counts = widgets.HTML()
        self.counts.add_class("atomstat-label-counts")
        self.method = widgets.Dropdown(options=ANOMALY_METHODS, value=state.anomaly_method,
                                       description="Anomalies", layout=_WIDE)  # fmt: skip
        self.contamination = widgets.Combobox(
            value="auto", options=["auto", "0.01", "0.02", "0.05", "0.1"],
            description="Share", layout=_HALF,
        )  # fmt: skip
        self.columns = widgets.SelectMultiple(rows=4, description="Columns", layout=_WIDE)
        self.find = widgets.Button(description="Find anomalies", layout=_HALF)
        self.cmethod = widgets.Dropdown(options=CLUSTER_METHODS, value=state.cluster_method,
                                        description="Clusters", layout=_WIDE)  # fmt: skip
        self.n_clusters = widgets.Dropdown(options=["auto", "2", "3", "4", "5", "6"], value="2",
                                           description="How many", layout=_HALF)  # fmt: skip
        self.cluster = widgets.Button(description="Cluster selection", layout=_HALF)
        self._wire()
        self.widget = widgets.VBox(
            [widgets.HBox([self.name, self.color, self.label]),
             widgets.HBox([self.unlabel, self.undo, self.redo]), self.counts,
             widgets.HTML("<b>Automatic labels</b>"), self.method, self.columns,
             widgets.HBox([self.contamination, self.find]), self.cmethod,
             widgets.HBox([self.n_clusters, self.cluster])]
        )  # fmt: skip

    def _wire(self) -> None:
        state = self.state
        self.label.on_click(lambda _: self._call(self._label))
        self.unlabel.on_click(lambda _: self._call(state.unlabel_selection))
        self.undo.on_click(lambda _: self._call(state.undo))
        self.redo.on_click(lambda _: self._call(state.redo))
        self.find.on_click(lambda _: self._call(self._anomalies))
        self.cluster.on_click(lambda _: self._call(self._cluster))
        self.name.observe(self._pick_color, "value")
        state.observe(lambda _: self._refresh(), ["labels_version", "table"])

    def _call(self, action) -> None:
        with report(self.state, self.errors):
            action()

    def _label(self) -> None:
        name = self.name.value.strip()
        if (
            name not in self.state.labels.classes
            or self.state.labels.color(name) != self.color.value
        ):
            self.state.add_class(name, self.color.value)
        self.state.label_selection(name)

    def _pick_color(self, change) -> None:
        classes = self.state.labels.classes
        if change.new in classes:
            self.color.value = classes[change.new]
        elif self.color.value in classes.values():  # a new class: not another class's colour
            self.color.value = self.state.labels.suggest_color()

    def _anomalies(self) -> None:
        self.state.anomaly_method = self.method.value
        self.state.contamination = self.contamination.value.strip() or "auto"
        self.state.anomaly_columns = list(self.columns.value) or ["area", "circularity"]
        self.state.find_anomalies()

    def _cluster(self) -> None:
        self.state.cluster_method = self.cmethod.value
        self.state.n_clusters = self.n_clusters.value
        chosen = list(self.columns.value)
        self.state.cluster_columns = chosen or [
            c for c in ("intensity", "area") if c in self.state.table
        ]
        self.state.cluster()

    def _refresh(self) -> None:
        labels = self.state.labels
        self.name.options = tuple(labels.classes)
        table = self.state.table
        ids = table.index if table is not None else []
        counts = labels.labels(ids).value_counts() if len(ids) else {}
        items = [
            f"<span style='color:{c};font-size:16px'>&#9679;</span> {n}: {int(counts.get(n, 0))}"
            for n, c in labels.classes.items()
        ]
        self.counts.value = "<small>" + " &nbsp; ".join(items) + "</small>"
        if table is not None:
            from app.explorer import numeric_columns

            options = [c for c in numeric_columns(table) if c not in ("x", "y")]
            keep = [c for c in self.columns.value if c in options]
            with self.columns.hold_sync():
                self.columns.options = options
                self.columns.value = tuple(
                    keep or [c for c in self.state.anomaly_columns if c in options]
                )


class ExportPanel:
    """Figure, table and session: saved on the server and offered as downloads."""

    def __init__(self, state: AppState, errors: widgets.Output):
        self.state, self.errors = state, errors
        self.figure_format = widgets.Dropdown(options=FIGURE_FORMATS, value="png", layout=_HALF)
        self.table_format = widgets.Dropdown(options=TABLE_FORMATS, value="csv", layout=_HALF)
        self.figure = widgets.Button(description="Export figure", layout=_HALF)
        self.table = widgets.Button(description="Export table", layout=_HALF)
        self.session = widgets.Button(description="Export session", layout=_HALF)
        self.figure_format.tooltip = "File type of the exported figure"
        self.table_format.tooltip = "File type of the exported atoms table"
        self.figure.tooltip = "Save the figure of this frame (movies: with the angle plots)"
        self.table.tooltip = "Save the atoms table with the labels"
        self.session.tooltip = "Save the table, labels and settings as a session file"
        self.links = widgets.HTML()
        self.links.add_class("atomstat-downloads")
        self.figure.on_click(lambda _: self._export("figure", self.figure_format.value))
        self.table.on_click(lambda _: self._export("table", self.table_format.value))
        self.session.on_click(lambda _: self._export("session"))
        self.widget = widgets.VBox(
            [widgets.HBox([self.figure_format, self.figure]),
             widgets.HBox([self.table_format, self.table]), self.session, self.links]
        )  # fmt: skip

    def _export(self, what: str, fmt: str | None = None) -> None:
        with report(self.state, self.errors):
            try:
                path = export(self.state, what, fmt)
            except (ValueError, OSError) as exc:  # bad format, read-only or full folder
                self.state.status = f"Export failed: {exc}"
                return
            self.links.value = download_link(path)
            self.state.status = f"Saved {path.name} in {path.parent}"
