"""The dashboard page: panels and linked views around one :class:`AppState`.

``dashboard.ipynb`` calls :func:`build_page`. The data folder comes from
``$ATOMSTAT_DATA_DIR`` (``atomstat dashboard DATA_DIR`` sets it) and the
example opened first from ``$ATOMSTAT_EXAMPLE``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import ipywidgets as widgets

from app.data import data_dir_from_env, example_catalogue
from app.explorer import Explorer
from app.image_view import ImageView
from app.movie_view import MovieView
from app.panels import DataPanel, DetectionPanel, ExportPanel, LabelPanel
from app.state import AppState

__all__ = ["DEFAULT_EXAMPLE", "Page", "build_page"]

DEFAULT_EXAMPLE = "MoS2 V-doped HAADF 9nm"
_CSS = """<style>
.atomstat-status { font-weight: bold; color: #1a4a7a; }
.atomstat-rows td, .atomstat-rows th { padding: 1px 6px; text-align: right; }
.atomstat-rows tr:nth-child(even) { background: #f2f2f2; }
</style>"""


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


def build_page(
    state: AppState | None = None, *, data_dir=None, example: str | None = None
) -> widgets.Widget:
    """Return the dashboard widget (see :func:`make_page` for its parts)."""
    return make_page(state, data_dir=data_dir, example=example).widget


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
    exports = ExportPanel(state, errors)
    tabs = widgets.Tab([data.widget, detection.widget, exports.widget])
    for i, title in enumerate(("Data", "Detection", "Export")):
        tabs.set_title(i, title)
    tabs.selected_index = 1
    left = widgets.VBox(
        [tabs, widgets.HTML("<h4 style='margin:6px 0 2px'>Labels</h4>"), labels.widget],
        layout={"width": "370px"},
    )
    head = widgets.HTML(f"{_CSS}<h2 style='margin:4px 0'>atomstat</h2>")
    main = widgets.HBox([left, image.widget, explorer.widget])
    widget = widgets.VBox([head, status, main, movie.widget, errors])
    page = Page(widget, state, image, explorer, movie, data, detection, labels, exports, errors)
    chosen = example if example is not None else os.environ.get("ATOMSTAT_EXAMPLE", DEFAULT_EXAMPLE)
    if chosen and chosen in example_catalogue():
        data.examples.value = chosen
    return page
