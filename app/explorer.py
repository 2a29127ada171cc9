"""The descriptor explorer: a scatter of any two columns, histograms, the selected table.

Brush and lasso on the scatter and an interval brush on a histogram only turn
the selector's traits into a rule (:mod:`app.selection`) on the state, when
the brushing ends; every view then redraws from the state.

The selection is not a style of the scatter's points: restyling thousands of
SVG points in the browser took over a second per brush (bqplot filters the
points with a linear search per point, and every point with its own opacity
is its own compositing layer). It is drawn in the kernel as one transparent
image over the points instead (:func:`highlight_pixels`): a white veil that
dims the points left out, with a hole and a black ring at each selected
point. The scatter brush has no marks, so the browser restyles nothing while
the rectangle is dragged.
"""

from __future__ import annotations

import html

import bqplot as bq
import ipywidgets as widgets
import numpy as np
import pandas as pd

from app.image_view import HIGHLIGHT
from app.overlay import _disc, _spread, _stamp, hex_rgb, png
from app.render import label_colors
from app.report import report
from app.selection import MODES, IdsRule, IntervalRule, RangeRule
from app.state import AppState

__all__ = ["Explorer", "highlight_pixels", "numeric_columns", "scatter_pixels"]

UNLABELLED = "#7f7f7f"
_HIDDEN = ("frame", "particle", "atom_a", "atom_b", "edge")
TABLE_ROWS = 12
SCATTER_MARGIN = {"top": 10, "bottom": 35, "left": 68, "right": 10}
SCATTER_SIZE = (510, 360)  # figure px
PAD = 0.04  # of the data range, on each side of the scatter's axes
VEIL = 140  # alpha of the white veil over the points left out (they show at 0.45 opacity)
OVERSAMPLE = 1  # highlight pixels per screen px
DOT_PX = float(np.sqrt(14 / np.pi))  # the radius of a default_size=14 point
RASTER_POINTS = 2000  # more points than this are drawn as pixels (the example has 1,635)
_EMPTY = png(np.zeros((1, 1, 2), np.uint8))


def highlight_pixels(x, y, chosen, x_range, y_range, size) -> np.ndarray:
    """The scatter's selection layer: grey + alpha (height, width, 2) over the plot area.

    ``x``, ``y`` are the points' values, ``chosen`` which of them are
    selected, ``x_range`` and ``y_range`` the axes' domains and ``size`` the
    layer's (width, height) in px, ``OVERSAMPLE`` per screen px. Everywhere a
    white veil of alpha ``VEIL``; around each selected point a transparent
    disc (its dot at full colour) in a black ring, as bqplot's
    ``selected_style`` of stroke 2.5 drew it.

    Examples
    --------
    >>> la = highlight_pixels([0.0, 1.0], [0.0, 1.0], [True, False], (-1, 2), (-1, 2), (30, 30))
    >>> int(la[20, 10, 1]), int(la[10, 20, 1])  # the selected point, the other one
    (0, 140)
    """
    width, height = size
    x, y, chosen = np.asarray(x, float), np.asarray(y, float), np.asarray(chosen, bool)
    keep = chosen & np.isfinite(x) & np.isfinite(y)
    (x0, x1), (y0, y1) = x_range, y_range
    cols = np.floor((x[keep] - x0) / (x1 - x0) * width).astype(int)
    rows = np.floor((y1 - y[keep]) / (y1 - y0) * height).astype(int)  # row 0 at the top
    outer = (DOT_PX + 1.3) * OVERSAMPLE
    hole = _spread((height, width), rows, cols, _disc(outer))
    ring = _spread((height, width), rows, cols, _disc(outer, DOT_PX * OVERSAMPLE))
    la = np.empty((height, width, 2), np.uint8)
    la[..., 0], la[..., 1] = 255, VEIL
    la[hole] = 0  # transparent
    la[ring] = (0, 255)  # black: the rings come last
    return la


def scatter_pixels(x, y, rgb, chosen, x_range, y_range, size) -> np.ndarray:
    """The scatter as pixels, RGBA (height, width, 4): for more than ``RASTER_POINTS`` points.

    Thousands of SVG points made every frame of the page slow to composite
    (each point is its own paint chunk), whatever changed. Each point is a
    dot of its colour ``rgb`` (N, 3) as bqplot draws it; with a selection,
    the veil of :func:`highlight_pixels` dims the others and the selected
    dots are drawn again on top, each in a black ring.
    """
    width, height = size
    x, y = np.asarray(x, float), np.asarray(y, float)
    chosen, rgb = np.asarray(chosen, bool), np.asarray(rgb, np.uint8).reshape(-1, 3)
    keep = np.isfinite(x) & np.isfinite(y)
    (x0, x1), (y0, y1) = x_range, y_range
    cols = np.floor((x - x0) / (x1 - x0) * width).astype(int)
    rows = np.floor((y1 - y) / (y1 - y0) * height).astype(int)
    dot, outer = _disc(DOT_PX * OVERSAMPLE), (DOT_PX + 1.3) * OVERSAMPLE
    rgba = np.zeros((height, width, 4), np.uint8)
    one = rgb[0] if len(rgb) and (rgb == rgb[0]).all() else None
    _stamp(rgba, rows[keep], cols[keep], dot, one if one is not None else rgb[keep])
    picked = keep & chosen
    if picked.any():
        veil = rgba[..., 3] > 0  # over the dots; the white background needs none
        rgba[veil, :3] = (rgba[veil, :3] * (1 - VEIL / 255) + 255 * VEIL / 255).astype(np.uint8)
        r, c = rows[picked], cols[picked]
        _stamp(rgba, r, c, _disc(outer, DOT_PX * OVERSAMPLE), (0, 0, 0))
        _stamp(rgba, r, c, dot, one if one is not None else rgb[picked])
    return rgba


def _outside(values: np.ndarray, scale) -> np.ndarray:
    """``values`` with every missing one moved far below the ``scale``'s domain."""
    low, high = scale.min, scale.max
    far = low - 100.0 * (high - low)
    if not len(values):  # one point far off the plot: a line is never empty
        return np.array([far])
    return np.where(np.isfinite(values), values, far)


def _domain(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not finite.size:
        return 0.0, 1.0
    low, high = float(finite.min()), float(finite.max())
    pad = PAD * (high - low) if high > low else 0.5 * max(abs(low), 1.0)
    return low - pad, high + pad


def numeric_columns(table: pd.DataFrame | None) -> list[str]:
    """Columns that can go on an axis (numeric, not ids or flags)."""
    if table is None:
        return []
    return [  # from the dtypes: taking each column copies the table's attrs
        c
        for c, dtype in table.dtypes.items()
        if c not in _HIDDEN
        and pd.api.types.is_numeric_dtype(dtype)
        and not pd.api.types.is_bool_dtype(dtype)
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
        self._bins = None  # (rows' table, column, frame, edges, finite values) of the last draw

    def _brushed(self, change) -> None:
        if change.new or self.brush.selected is None or len(self.brush.selected) != 2:
            return
        low, high = (float(v) for v in self.brush.selected)
        rule = IntervalRule(self.column.value, low, high)
        self.explorer._drawn[self.brush] = rule
        with report(self.explorer.state, self.explorer.errors):
            self.explorer.state.select(rule)

    def clear(self) -> None:
        """No bars: the table has no such column (a file with no atoms yet)."""
        self._bins = None
        with self.all.hold_sync(), self.chosen.hold_sync():
            self.all.x, self.all.y = [0.0, 1.0], [0.0, 0.0]
            self.chosen.x, self.chosen.y = [0.0, 1.0], [0.0, 0.0]

    def draw(self) -> None:
        if self.explorer._quiet:
            return
        explorer = self.explorer
        rows = explorer.rows()
        column = self.column.value
        if column is None or column not in rows:
            self.clear()
            return
        key = (id(explorer.state.table), column, explorer.state.frame)
        if self._bins is not None and self._bins[0] == key:  # only the selection changed
            edges, values, finite = self._bins[2:]
            chosen = rows.index.isin(explorer.state.selected) & finite
            self.chosen.y = np.histogram(values[chosen], edges)[0].astype(float)
            return
        values = rows[column].to_numpy(float)
        finite = np.isfinite(values)
        edges = np.histogram_bin_edges(values[finite], bins=30) if finite.any() else np.arange(2.0)
        centres = (edges[:-1] + edges[1:]) / 2
        chosen = rows.index.isin(explorer.state.selected) & finite
        counts = np.histogram(values[finite], edges)[0].astype(float)
        self._bins = (key, explorer.state.table, edges, values, finite)  # the table held: its id
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
        # domains set from the data, no padding: the highlight layer knows where each point is
        self.sx = bq.LinearScale(min=0.0, max=1.0, allow_padding=False)
        self.sy = bq.LinearScale(min=0.0, max=1.0, allow_padding=False)
        scales = {"x": self.sx, "y": self.sy}
        # The selection is drawn by the highlight layer over the points, not as their style.
        # Above RASTER_POINTS points the layer draws the points too, and the Scatter is empty.
        self.points = bq.Scatter(
            x=[], y=[], scales=scales, default_size=14, colors=[UNLABELLED],
            selected_style={}, unselected_style={},
        )  # fmt: skip
        self.highlight = bq.Image(image=widgets.Image(value=_EMPTY, format="png"), scales=scales,
                                  x=[0.0, 1.0], y=[0.0, 1.0], visible=False)  # fmt: skip
        # the same points as one invisible path: what the lasso selects from (one SVG element)
        # (never empty: bqplot puts a label at a line's last point, NaN for an empty line)
        self.trace = bq.Lines(x=[-100.0], y=[-100.0], scales=scales, colors=["black"],
                              opacities=[0.0], stroke_width=0.5)  # fmt: skip
        self._shown = None  # what the highlight layer shows now
        self._rgb = np.zeros((0, 3), np.uint8)  # the points' colours, for the raster
        # no marks: the browser computes and restyles nothing while the rectangle moves
        self.brush = bq.interacts.BrushSelector(
            x_scale=self.sx, y_scale=self.sy, marks=[], color="red"
        )
        self.lasso = bq.interacts.LassoSelector(
            x_scale=self.sx, y_scale=self.sy, marks=[self.trace], color="red"
        )
        self.x = widgets.Dropdown(description="x", value=None, layout={"width": "200px"})
        self.y = widgets.Dropdown(description="y", value=None, layout={"width": "200px"})
        self.axes = [
            bq.Axis(tick_format=".3~g", scale=self.sx, num_ticks=5),
            # the label clear of tick labels such as "0.879" (it overlapped them at 35 px)
            bq.Axis(
                tick_format=".3~g",
                scale=self.sy,
                orientation="vertical",
                num_ticks=5,
                label_offset="52px",
            ),
        ]
        width, height = SCATTER_SIZE
        self.figure = bq.Figure(
            marks=[self.points, self.trace, self.highlight], axes=self.axes,
            interaction=self.brush,
            fig_margin=SCATTER_MARGIN, padding_x=0, padding_y=0,
            layout=widgets.Layout(width=f"{width}px", height=f"{height}px"),
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
        self.trace.observe(self._lassoed, "selected")
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
        if self.tool.value != "lasso" or change.new is None:
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
            self._clear()  # a new file with no atoms yet: nothing of the last one stays
            return
        labels = self.state.labels
        colors = []  # nothing labelled: no look-up of every row's label
        if any(labels.counts().values()):
            colors = label_colors(labels.labels(rows.index), labels.classes, UNLABELLED)
        if all(c == UNLABELLED for c in colors):
            colors = []  # one colour for all: no list of N strings to send and restyle
        x, y = rows[self.x.value].to_numpy(float), rows[self.y.value].to_numpy(float)
        self._rgb = hex_rgb(colors or [UNLABELLED] * len(rows)).reshape(-1, 3)
        with self.sx.hold_sync(), self.sy.hold_sync():
            (self.sx.min, self.sx.max), (self.sy.min, self.sy.max) = _domain(x), _domain(y)
        svg = len(rows) <= RASTER_POINTS  # else the highlight layer draws the points
        shown = np.isfinite(x) & np.isfinite(y)  # a NaN point is a NaN transform in the browser
        if colors and not shown.all():
            colors = [c for c, ok in zip(colors, shown, strict=True) if ok]
        with self.points.hold_sync():
            self.points.x, self.points.y = (x[shown], y[shown]) if svg else (np.zeros(0),) * 2
            self.points.colors = (colors or [UNLABELLED]) if svg else [UNLABELLED]
        with self.trace.hold_sync():  # points with no value far outside: the lasso never
            # reaches them, and the line's last point stays a number (bqplot puts a label there)
            self.trace.x, self.trace.y = _outside(x, self.sx), _outside(y, self.sy)
        self.axes[0].label, self.axes[1].label = self.x.value, self.y.value
        self.draw_selection()

    def _clear(self) -> None:
        """Empty the scatter, its selection layer, the histograms and the table."""
        with self.points.hold_sync():
            self.points.x, self.points.y = np.zeros(0), np.zeros(0)
        with self.trace.hold_sync():  # one point far off the plot: a line is never empty
            self.trace.x, self.trace.y = (
                _outside(np.zeros(0), self.sx),
                _outside(np.zeros(0), self.sy),
            )
        self.highlight.visible = False
        self._shown = None
        for hist in self.histograms:
            hist.clear()
        self._draw_table()

    def draw_selection(self) -> None:
        """Highlight the selected points, recount the histograms, list the selected rows."""
        self._draw_highlight()
        for hist in self.histograms:
            hist.draw()
        self._draw_table()

    def plot_size(self) -> tuple[int, int]:
        """The highlight layer's size in px: the scatter's plot area, ``OVERSAMPLE`` times."""
        width, height = SCATTER_SIZE
        m = SCATTER_MARGIN
        return (OVERSAMPLE * (width - m["left"] - m["right"]),
                OVERSAMPLE * (height - m["top"] - m["bottom"]))  # fmt: skip

    def _draw_highlight(self) -> None:
        rows = self.rows()
        if self.x.value not in rows or self.y.value not in rows:
            return
        chosen = rows.index.isin(self.state.selected) if len(rows) else np.zeros(0, bool)
        ranges = ((self.sx.min, self.sx.max), (self.sy.min, self.sy.max))
        raster = len(rows) > RASTER_POINTS
        key = (id(self.state.table), self.state.frame, self.x.value, self.y.value, ranges,
               np.flatnonzero(chosen).tobytes(), raster and self._rgb.tobytes())  # fmt: skip
        if self._shown is not None and self._shown[0] == key:
            return
        self._shown = (key, self.state.table)  # the table held, so that its id stays its own
        if not chosen.any() and not raster:
            self.highlight.visible = False
            return
        x, y = rows[self.x.value].to_numpy(float), rows[self.y.value].to_numpy(float)
        if raster:
            pixels = scatter_pixels(x, y, self._rgb, chosen, *ranges, self.plot_size())
        else:
            pixels = highlight_pixels(x, y, chosen, *ranges, self.plot_size())
        old = self.highlight.image
        with self.highlight.hold_sync():
            self.highlight.image = widgets.Image(value=png(pixels), format="png")
            self.highlight.x, self.highlight.y = list(ranges[0]), list(ranges[1])
            self.highlight.visible = True
        old.close()  # the browser has the new one: no widget left behind per brush

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
