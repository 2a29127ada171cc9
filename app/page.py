"""The dashboard page: panels and linked views around one :class:`AppState`.

``dashboard.ipynb`` calls :func:`build_page`. The data folder comes from
``$ATOMSTAT_DATA_DIR`` (``atomstat dashboard DATA_DIR`` sets it) and the
example opened first from ``$ATOMSTAT_EXAMPLE``.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import ipywidgets as widgets

from app.collab_view import CollabPanel
from app.data import data_dir_from_env, example_catalogue
from app.explorer import Explorer
from app.image_view import ImageView
from app.movie_view import MovieView
from app.panels import DataPanel, DetectionPanel, ExportPanel, LabelPanel
from app.report import report
from app.runs_panel import RunsPanel
from app.state import AppState
from app.warmup import background_priority

__all__ = ["DEFAULT_EXAMPLE", "Page", "build_page", "shortcut", "shortcuts_widget"]

DEFAULT_EXAMPLE = "MoS2 V-doped HAADF 9nm"
_CSS = """<style>
.atomstat-status { font-weight: bold; color: #1a4a7a; white-space: normal !important;
  overflow-wrap: anywhere; line-height: 1.3; height: auto !important; }
.atomstat-rows td, .atomstat-rows th { padding: 1px 6px; text-align: right; }
.atomstat-rows tr:nth-child(even) { background: #f2f2f2; }
/* Three columns that never push each other: controls, image, explorer. */
.atomstat-main { display: grid !important; gap: 8px; align-items: start;
  grid-template-columns: 340px minmax(340px, 1fr) minmax(360px, 470px); }
@media (max-width: 1200px) {
  .atomstat-main { grid-template-columns: 340px minmax(340px, 1fr); }
  .atomstat-main > .atomstat-explorer { grid-column: 1 / -1; }
}
.atomstat-main > * { min-width: 0; overflow: hidden; }
.atomstat-left { width: 340px; }
/* The image: square, as wide as its column, never taller than the window. */
.atomstat-image { width: min(calc(100% - 6px), calc(100vh - 200px)) !important;
  height: auto !important;
  aspect-ratio: 1 / 1; min-width: 300px; }
.atomstat-image-view { min-width: 0; }
.atomstat-scatter { width: calc(100% - 4px) !important;
  height: min(340px, calc(100vh - 430px)) !important;
  min-height: 220px; }
.atomstat-histogram { width: calc(100% - 4px) !important; height: 150px !important; }
.atomstat-histograms > * { width: 50%; min-width: 0; }
.atomstat-explorer .widget-html, .atomstat-readout, .atomstat-summary {
  white-space: normal; overflow-wrap: anywhere; max-width: 100%; }
.atomstat-selected-table { overflow: auto; max-width: 100%; max-height: 240px; }
.atomstat-readout { min-height: 34px; font-family: monospace; }
.atomstat-threshold .widget-readout { min-width: 36px; }
.atomstat-contrast .widget-readout { min-width: 96px; }
</style>"""


HELP = """<div style='max-width:620px'><small>
<b>Open</b> an example or a file of the data folder (Data tab), or upload one.
<b>Find atoms</b> runs the network (Detection tab); the threshold slider redraws the
contours at once. <b>Select</b> atoms by a click on the image (the nearest within a few
screen pixels), or by a brush or lasso on the scatter or a histogram; the mode (replace,
add, intersect, remove) combines selections. <b>Label</b> the selection with a class name;
labels save by themselves. <b>Ctrl+Z / Ctrl+Y</b> (Cmd on macOS) undo and redo your label
and selection changes anywhere on the page, except while you type in a text box.
<b>Pan / zoom</b>: drag and wheel; <b>Full view</b> goes back. Hover over the image for the
position, the pixel value and the atom's descriptors.
<b>Movies</b>: Dumbbell mode, Find atoms, Track, then pick dumbbells (click or brush):
a pick is a whole track, and a label covers it in every frame.
</small></div>"""


def help_panel() -> widgets.Widget:
    """A closed "Help" section with the short tour above."""
    panel = widgets.Accordion([widgets.HTML(HELP)], selected_index=None,
                              layout={"width": "640px"})  # fmt: skip
    panel.set_title(0, "Help")
    panel.add_class("atomstat-help")
    return panel


def shortcut(state: AppState, event: dict) -> str | None:
    """Ctrl+Z undo, Ctrl+Y or Ctrl+Shift+Z redo (Cmd on macOS); returns what was done.

    The rule of :data:`_SHORTCUTS`, which applies it in the browser, for key
    events given as dicts (``key``, ``ctrlKey``, ``metaKey``, ``shiftKey``,
    ``altKey``).
    """
    if not (event.get("ctrlKey") or event.get("metaKey")) or event.get("altKey"):
        return None
    key = str(event.get("key", "")).lower()
    action = "redo" if key == "y" or (key == "z" and event.get("shiftKey")) else None
    action = action or ("undo" if key == "z" else None)
    if action:
        getattr(state, action)()
    return action


# Ctrl+Z / Ctrl+Y anywhere on the page: one keydown listener on the document presses the
# label panel's Undo or Redo button, so the kernel does what a click does (a disabled or
# missing button does nothing). Keys typed in a text box, a text area, a drop-down or an
# editable element are left to it (its own text undo). A listener of ipyevents would not
# do: it takes the focus from the text boxes when the mouse passes over its widget. The
# HTML widget sets innerHTML, where <script> does not run: an image that fails to load
# runs its onerror handler (as app.collab_view does). One listener per page, however
# many dashboards it shows: the dashboard last clicked in, else the first, gets the key.
_SHORTCUTS = """<img src="data:," style="display:none" onerror="(function () {
  if (window.atomstatShortcuts) return;
  window.atomstatShortcuts = true;
  var last = null;
  document.addEventListener('pointerdown', function (e) {
    var page = e.target.closest && e.target.closest('.atomstat-page');
    if (page) last = page;
  }, true);
  document.addEventListener('keydown', function (e) {
    if (!(e.ctrlKey || e.metaKey) || e.altKey || e.defaultPrevented) return;
    var key = (e.key || '').toLowerCase();
    var action = key === 'y' || (key === 'z' && e.shiftKey) ? 'redo' : key === 'z' ? 'undo' : '';
    if (!action) return;
    var t = e.target;
    if (t && t.closest && t.closest('input, textarea, select, [contenteditable]')) return;
    var page = last && document.contains(last) ? last : document.querySelector('.atomstat-page');
    var button = page && page.querySelector('button.atomstat-' + action);
    if (!button) return;
    e.preventDefault();
    if (!button.disabled) button.click();
  });
})()">"""


def shortcuts_widget() -> widgets.HTML:
    """The invisible widget that installs the page-wide Ctrl+Z / Ctrl+Y listener."""
    widget = widgets.HTML(_SHORTCUTS, layout={"height": "0px", "margin": "0px"})
    widget.add_class("atomstat-shortcuts")
    return widget


def ensure_tooltips(root: widgets.Widget) -> None:
    """Every control gets a tooltip: its description where none was written."""
    stack = [root]
    while stack:
        w = stack.pop()
        stack.extend(getattr(w, "children", ()))
        if not isinstance(w, widgets.ValueWidget | widgets.Button | widgets.FileUpload):
            continue
        if w.has_trait("tooltip") and not w.tooltip:
            w.tooltip = getattr(w, "description", "") or getattr(w, "placeholder", "") or None


@dataclass
class Page:
    """The page's widget and its parts (tests and benchmarks drive them)."""

    widget: widgets.Widget
    state: AppState
    image: ImageView
    explorer: Explorer
    movie: MovieView
    data: DataPanel
    detection: DetectionPanel
    labels: LabelPanel
    exports: ExportPanel
    errors: widgets.Output
    collab: CollabPanel | None = None
    runs: RunsPanel | None = None


def build_page(
    state: AppState | None = None, *, data_dir=None, example: str | None = None, analyse=True
) -> widgets.Widget:
    """Return the dashboard widget (see :func:`make_page` for its parts).

    With ``analyse``, the example opened first is analysed at once in a
    background thread (unless a cached analysis was shown), so that the first
    view shows the atoms in every plot.
    """
    page = make_page(state, data_dir=data_dir, example=example)
    if analyse:
        analyse_in_background(page)
    return page.widget


def analyse_in_background(page: Page) -> threading.Thread | None:
    """Find the atoms of what is open, in a daemon thread, if nothing is shown yet."""
    state = page.state
    if state.frames is None or state.table is not None or state.busy:
        return None

    def run():
        background_priority()  # the page's own work (the visitor's clicks) goes first
        with report(state, page.errors):
            state.detect()

    thread = threading.Thread(target=run, name="atomstat-first-analysis", daemon=True)
    thread.start()
    return thread


def make_page(state: AppState | None = None, *, data_dir=None, example: str | None = None) -> Page:
    """Build every panel and view on ``state`` and lay them out; open ``example`` first."""
    state = state if state is not None else AppState(data_dir_from_env(data_dir))
    errors = widgets.Output(layout={"max_height": "200px", "overflow": "auto"})
    errors.add_class("atomstat-errors")
    status = widgets.Label(value=state.status)
    status.add_class("atomstat-status")
    state.observe(lambda c: setattr(status, "value", c.new), "status")
    image = ImageView(state)
    explorer = Explorer(state, errors)
    movie = MovieView(state, errors)
    data = DataPanel(state, errors)
    detection = DetectionPanel(state, errors)
    labels = LabelPanel(state, errors)
    collab = CollabPanel(state, errors)
    exports = ExportPanel(state, errors)
    runs = RunsPanel(state, errors)
    tabs = widgets.Tab([data.widget, detection.widget, exports.widget])
    for i, title in enumerate(("Data", "Detection", "Export")):
        tabs.set_title(i, title)
    tabs.selected_index = 1
    left = widgets.VBox(
        [
            tabs,
            widgets.HTML("<h4 style='margin:6px 0 2px'>Labels</h4>"),
            labels.widget,
            collab.widget,
        ],  # fmt: skip
    )
    left.add_class("atomstat-left")
    explorer.widget.add_class("atomstat-explorer")
    head = widgets.HTML(f"{_CSS}<h2 style='margin:4px 0'>atomstat</h2>")
    main = widgets.Box([left, image.widget, explorer.widget])
    main.add_class("atomstat-main")
    widget = widgets.VBox([widgets.HBox([head, help_panel()]), status, main, movie.widget,
                           runs.widget, errors, shortcuts_widget()])  # fmt: skip
    widget.add_class("atomstat-page")
    ensure_tooltips(widget)
    page = Page(widget, state, image, explorer, movie, data, detection, labels, exports, errors)
    page.collab = collab
    page.runs = runs
    chosen = example if example is not None else os.environ.get("ATOMSTAT_EXAMPLE", DEFAULT_EXAMPLE)
    if chosen and chosen in example_catalogue():
        data.examples.value = chosen
    return page
