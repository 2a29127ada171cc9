"""The descriptor explorer: a scatter of any two columns, histograms, the selected table.

Brush and lasso on the scatter and an interval brush on a histogram only turn
the selector's traits into a rule (:mod:`app.selection`) on the state, when
the brushing ends; every view then redraws from the state.
"""

from __future__ import annotations

import html

import bqplot as bq
import ipywidgets as widgets
import numpy as np
import pandas as pd

from app.image_view import HIGHLIGHT
from app.render import label_colors
from app.report import report
from app.selection import MODES, IdsRule, IntervalRule, RangeRule
from app.state import AppState

__all__ = ["Explorer", "numeric_columns"]

UNLABELLED = "#7f7f7f"
_HIDDEN = ("frame", "particle", "atom_a", "atom_b", "edge")
TABLE_ROWS = 12


def numeric_columns(table: pd.DataFrame | None) -> list[str]:
    """Columns that can go on an axis (numeric, not ids or flags)."""
    if table is None:
        return []
    return [
        c
        for c in table.columns
        if c not in _HIDDEN
        and pd.api.types.is_numeric_dtype(table[c])
        and not pd.api.types.is_bool_dtype(table[c])
    ]


class _Histogram:
    """Counts of one column (all rows in grey, selected rows on top) with an interval brush."""

    def __init__(self, explorer: Explorer, column: str):
        self.explorer = explorer
        # no padding: Bars would widen the x range by half of it on each side
        self.sx = bq.LinearScale(allow_padding=False)
        self.sy = bq.LinearScale(min=0, allow_padding=False)
        scales = {"x": self.sx, "y": self.sy}
        self.all = bq.Bars(
            x=[0.0, 1.0], y=[0.0, 0.0], scales=scales, colors=["#9e9e9e"], padding=0.05
        )
        self.chosen = bq.Bars(
            x=[0.0, 1.0], y=[0.0, 0.0], scales=scales, colors=[HIGHLIGHT], padding=0.05
        )
        self.brush = bq.interacts.BrushIntervalSelector(
            scale=self.sx, marks=[self.all], color="red"
        )
        self.column = widgets.Dropdown(options=[column], value=column, layout={"width": "95%"})
        self.figure = bq.Figure(
            marks=[self.all, self.chosen], interaction=self.brush,
            axes=[bq.Axis(tick_format=".3~g", scale=self.sx, num_ticks=4),
                  bq.Axis(tick_format=".3~g", scale=self.sy, orientation="vertical", num_ticks=3)],
            fig_margin={"top": 5, "bottom": 25, "left": 45, "right": 10}, padding_x=0, padding_y=0,
            layout=widgets.Layout(width="255px", height="170px"),
        )  # fmt: skip
        self.figure.add_class("atomstat-histogram")
        self.column.tooltip = "Column counted in this histogram; drag across it to select"
        self.brush.observe(self._brushed, "brushing")
        self.column.observe(lambda _: self.draw(), "value")
        self.widget = widgets.VBox([self.column, self.figure])

    def _brushed(self, change) -> None:
        if change.new or self.brush.selected is None or len(self.brush.selected) != 2:
            return
        low, high = (float(v) for v in self.brush.selected)
        rule = IntervalRule(self.column.value, low, high)
        self.explorer._drawn[self.brush] = rule
        with report(self.explorer.state, self.explorer.errors):
            self.explorer.state.select(rule)

    def draw(self) -> None:
        if self.explorer._quiet:
            return
        rows = self.explorer.rows()
        column = self.column.value
        if column is None or column not in rows:
            return
        values = rows[column].to_numpy(float)
        finite = np.isfinite(values)
        edges = np.histogram_bin_edges(values[finite], bins=30) if finite.any() else np.arange(2.0)
        centres = (edges[:-1] + edges[1:]) / 2
        chosen = rows.index.isin(self.explorer.state.selected) & finite
        counts = np.histogram(values[finite], edges)[0].astype(float)
        with self.sx.hold_sync(), self.sy.hold_sync():  # Bars alone pad the x range widely
            self.sx.min, self.sx.max = float(edges[0]), float(edges[-1])
            self.sy.max = float(max(counts.max(initial=0.0), 1.0) * 1.05)
        with self.all.hold_sync(), self.chosen.hold_sync():
            self.all.x, self.all.y = centres, counts
            self.chosen.x, self.chosen.y = (
                centres,
                np.histogram(values[chosen], edges)[0].astype(float),
            )


class Explorer:
    """Scatter + two histograms + selection mode + the table of selected rows."""

    def __init__(self, state: AppState, errors: widgets.Output):
        self.state, self.errors = state, errors
        self.sx, self.sy = bq.LinearScale(), bq.LinearScale()
        scales = {"x": self.sx, "y": self.sy}
        # The selection is the scatter's own ``selected`` style: restyling the points in the
        # browser is much cheaper than drawing a second mark with one element per selected row.
        self.points = bq.Scatter(
            x=[], y=[], scales=scales, default_size=14, colors=[UNLABELLED],
            selected_style={"stroke": "black", "stroke-width": "2.5", "opacity": "1"},
            unselected_style={"opacity": "0.45"},
        )  # fmt: skip
        self._restyling = False  # our own update of points.selected, not a lasso
        self.brush = bq.interacts.BrushSelector(
            x_scale=self.sx, y_scale=self.sy, marks=[self.points], color="red"
        )
        self.lasso = bq.interacts.LassoSelector(
            x_scale=self.sx, y_scale=self.sy, marks=[self.points], color="red"
        )
        self.x = widgets.Dropdown(description="x", value=None, layout={"width": "200px"})
        self.y = widgets.Dropdown(description="y", value=None, layout={"width": "200px"})
        self.axes = [
            bq.Axis(tick_format=".3~g", scale=self.sx, num_ticks=5),
            bq.Axis(tick_format=".3~g", scale=self.sy, orientation="vertical", num_ticks=5),
        ]
        self.figure = bq.Figure(
            marks=[self.points], axes=self.axes, interaction=self.brush,
            fig_margin={"top": 10, "bottom": 35, "left": 55, "right": 10},
            layout=widgets.Layout(width="510px", height="360px"),
        )  # fmt: skip
        self.figure.add_class("atomstat-scatter")
        self.tool = widgets.ToggleButtons(
            options=["brush", "lasso"], value="brush", style={"button_width": "60px"}
        )
        self.mode = widgets.ToggleButtons(
            options=list(MODES), value=state.selection_mode, style={"button_width": "70px"}
        )
        self.clear = widgets.Button(description="Clear", layout={"width": "70px"},
                                    tooltip="Select nothing")  # fmt: skip
        self.tool.tooltip = "Brush: drag a rectangle; lasso: draw around points"
        self.mode.tooltip = "How a new selection combines with the current one"
        self.x.tooltip, self.y.tooltip = "Column on the x axis", "Column on the y axis"
        self.count = widgets.HTML()
        self.count.add_class("atomstat-selected-count")
        self.table = widgets.HTML()
        self.table.add_class("atomstat-selected-table")
        self._quiet = False
        self._drawn: dict = {}  # selector -> the rule its drawn shape stands for
        self.histograms = [_Histogram(self, "area"), _Histogram(self, "intensity")]
        self._wire()
        tools = widgets.HBox([self.tool, self.mode, self.clear])
        histograms = widgets.HBox([h.widget for h in self.histograms])
        histograms.add_class("atomstat-histograms")
        plots = widgets.VBox([self.figure, histograms])
        self.widget = widgets.VBox(
            [widgets.HBox([self.x, self.y]), plots, tools, self.count, self.table]
        )

    def _wire(self) -> None:
        state = self.state
        self.brush.observe(self._brushed, "brushing")
        self.points.observe(self._lassoed, "selected")
        self.tool.observe(self._set_tool, "value")
        self.mode.observe(lambda c: setattr(state, "selection_mode", c.new), "value")
        state.observe(lambda c: setattr(self.mode, "value", c.new), "selection_mode")
        self.clear.on_click(lambda _: state.clear_selection())
        self.x.observe(lambda _: self.draw(), "value")
        self.y.observe(lambda _: self.draw(), "value")
        state.observe(lambda _: self._new_table(), "table")
        state.observe(lambda _: self.draw(), ["frame", "labels_version"])
        state.observe(lambda _: self.draw_selection(), "selected")
        state.observe(lambda _: self.clear_stale_brushes(), ["selection", "frames"])

    # ---------------------------------------------------------------- selectors
    def _brushed(self, change) -> None:
        """Brushing ended: the rectangle becomes a range rule on the state."""
        if change.new or self.tool.value != "brush":
            return
        sel_x, sel_y = self.brush.selected_x, self.brush.selected_y
        if sel_x is None or sel_y is None or len(sel_x) != 2 or len(sel_y) != 2:
            return
        rule = RangeRule(self.x.value, self.y.value, tuple(map(float, sel_x)),
                         tuple(map(float, sel_y)))  # fmt: skip
        self._drawn[self.brush] = rule
        with report(self.state, self.errors):
            self.state.select(rule)

    def _lassoed(self, change) -> None:
        """The lasso closed: the points inside it become an ids rule on the state."""
        if self.tool.value != "lasso" or change.new is None or self._restyling:
            return
        rows = self.rows()
        index = np.asarray(change.new, int)
        index = index[(index >= 0) & (index < len(rows))]
        rule = IdsRule(tuple(int(i) for i in rows.index[index]))
        self._drawn[self.lasso] = rule
        with report(self.state, self.errors):
            self.state.select(rule)

    def _set_tool(self, change) -> None:
        self.figure.interaction = self.brush if change.new == "brush" else self.lasso

    def selectors(self) -> list:
        """Every selector that draws a shape: scatter brush, lasso, histogram brushes."""
        return [self.brush, self.lasso, *(h.brush for h in self.histograms)]

    def clear_stale_brushes(self) -> None:
        """Erase every drawn brush whose rule is no longer part of the selection.

        A new selection that replaces the old one, a click on the image, Clear,
        undo or a newly opened file: the rectangles of earlier brushes go.
        """
        rules = {rule for _, rule in self.state.selection.steps}
        for selector in self.selectors():
            if self._drawn.get(selector) in rules:
                continue
            self._drawn.pop(selector, None)
            _reset_selector(selector)

    # ------------------------------------------------------------------ drawing
    def rows(self) -> pd.DataFrame:
        """Rows of the working table in the current frame."""
        table = self.state.table
        if table is None:
            return pd.DataFrame({"x": np.zeros(0), "y": np.zeros(0)})
        return table[table["frame"] == self.state.frame] if "frame" in table else table

    def _new_table(self) -> None:
        columns = numeric_columns(self.state.table)
        defaults = [("area", "circularity"), ("angle", "separation")]
        x, y = next(((a, b) for a, b in defaults if a in columns and b in columns), (None, None))
        self._quiet = True
        try:
            for dropdown, default in ((self.x, x), (self.y, y)):
                _set_options(dropdown, columns, default)
            for hist, default in zip(self.histograms, ("intensity", "nn_distance"), strict=True):
                _set_options(hist.column, columns, default)
        finally:
            self._quiet = False
        self.draw()

    def draw(self) -> None:
        if self._quiet:
            return
        rows = self.rows()
        if self.x.value is None or self.y.value is None or self.x.value not in rows:
            return
        colors = label_colors(self.state.labels.labels(rows.index), self.state.labels.classes,
                              UNLABELLED)  # fmt: skip
        if all(c == UNLABELLED for c in colors):
            colors = []  # one colour for all: no list of N strings to send and restyle
        with self.points.hold_sync():
            self.points.x = rows[self.x.value].to_numpy(float)
            self.points.y = rows[self.y.value].to_numpy(float)
            self.points.colors = colors or [UNLABELLED]
        self.axes[0].label, self.axes[1].label = self.x.value, self.y.value
        self.draw_selection()

    def draw_selection(self) -> None:
        """Ring the selected points, recount the histograms, list the selected rows."""
        rows = self.rows()
        if self.x.value in rows:
            picked = np.flatnonzero(rows.index.isin(self.state.selected)) if len(rows) else []
            self._restyling = True
            try:
                self.points.selected = picked if len(picked) else None
            finally:
                self._restyling = False
        for hist in self.histograms:
            hist.draw()
        self._draw_table()

    def _draw_table(self) -> None:
        state = self.state
        n, total = len(state.selected), 0 if state.table is None else len(state.table)
        noun = "dumbbells" if state.dumbbell_mode else "atoms"
        frames = f" in {state.n_frames} frames" if state.n_frames > 1 else ""
        self.count.value = (
            f"<b>{n} selected</b> of {total} {noun}{frames} &mdash; "
            f"{html.escape(state.selection.describe())}"
        )
        shown = state.table.loc[state.selected[:TABLE_ROWS]] if n else None
        rows = state.labels.apply(shown) if n else pd.DataFrame()
        if not len(rows):
            self.table.value = ""
            return
        wanted = ("frame", "particle", "x", "y", self.x.value, self.y.value, "intensity", "label")
        columns = [c for c in wanted if c in rows]
        shown = rows[list(dict.fromkeys(columns))].head(TABLE_ROWS)
        more = f"<i>... and {n - TABLE_ROWS} more</i>" if n > TABLE_ROWS else ""
        self.table.value = _html_table(shown) + more


def _reset_selector(selector) -> None:
    """Take the drawn shape off a bqplot selector, in the browser and in its traits."""
    with selector.hold_sync():
        for name in ("selected", "selected_x", "selected_y"):
            if selector.has_trait(name) and getattr(selector, name) is not None:
                setattr(selector, name, None)
    selector.reset()  # the browser removes the rectangle / interval / lasso path
    for mark in getattr(selector, "marks", []):
        if getattr(mark, "selected", None) is not None:
            mark.selected = None


def _set_options(dropdown: widgets.Dropdown, columns: list[str], default: str | None) -> None:
    """New options; keep the chosen column if it is still there, else ``default``."""
    keep = dropdown.value if dropdown.value in columns else default
    with dropdown.hold_sync():  # options and index in one message: no stale index in the view
        dropdown.options = columns
        dropdown.value = keep if keep in columns else (columns[0] if columns else None)


def _cell(value) -> str:
    """A table cell: numbers to 4 digits, missing values (no label) empty."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def _html_table(rows: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in ["id", *rows.columns])
    body = []
    for atom_id, row in rows.iterrows():
        cells = [atom_id, *row.tolist()]
        text = [_cell(v) for v in cells]
        body.append("<tr>" + "".join(f"<td>{t}</td>" for t in text) + "</tr>")
    style = "font-size:11px;border-collapse:collapse"
    return f"<table style='{style}' class='atomstat-rows'><tr>{head}</tr>{''.join(body)}</table>"
