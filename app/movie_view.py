"""Movies: frame slider with play, drift-corrected display, tracking, angle plots.

The section is shown only while a movie (more than one frame) is open: for a
single image its plots would be empty frames. Hidden, it takes no room and
keeps its figures laid out (``visibility: hidden`` in a box of no height,
never ``display: none``, which a bqplot figure waits on before it renders).

Picked dumbbells (any selection: a click on the image, a brush on the
scatter) draw their angle against frame, one line per track in its label
colour; the angle distribution of the current frame and any descriptor over
time for the selected tracks sit beside it.
"""

from __future__ import annotations

import bqplot as bq
import ipywidgets as widgets
import numpy as np

import atomstat
from app.explorer import numeric_columns
from app.render import line_rows
from app.report import report
from app.state import AppState

__all__ = ["MovieView", "frame_ticks"]

_SERIES_COLOR = "#555555"


def frame_ticks(n_frames: int, most: int = 6) -> np.ndarray:
    """Whole frame numbers for a time axis: at most ``most`` ticks, evenly spaced.

    Examples
    --------
    >>> frame_ticks(12).tolist()
    [0, 2, 4, 6, 8, 10]
    >>> frame_ticks(1).tolist()
    [0]
    """
    step = max(1, int(np.ceil(n_frames / most)))
    return np.arange(0, max(n_frames, 1), step)


def _lines_figure(title: str, x_label: str, y_label: str, width: str = "360px"):
    sx, sy = bq.LinearScale(min=0.0, max=1.0), bq.LinearScale()
    lines = bq.Lines(x=[], y=[], scales={"x": sx, "y": sy}, stroke_width=1.6)
    now = bq.Lines(x=[0, 0], y=[0, 1], scales={"x": sx, "y": bq.LinearScale(min=0, max=1)},
                   colors=["red"], line_style="dashed")  # fmt: skip
    figure = bq.Figure(
        marks=[lines, now], title=title, title_style={"font-size": "13px"},
        axes=[bq.Axis(tick_format="d", scale=sx, label=x_label, tick_values=frame_ticks(1)),
              bq.Axis(tick_format=".3~g", scale=sy, orientation="vertical", label=y_label,
                      num_ticks=4)],
        fig_margin={"top": 30, "bottom": 40, "left": 55, "right": 10},
        layout=widgets.Layout(width=width, height="250px"),
    )  # fmt: skip
    return figure, lines, now


class MovieView:
    """Frame controls and the time plots of the selected tracks."""

    def __init__(self, state: AppState, errors: widgets.Output):
        self.state, self.errors = state, errors
        self.slider = widgets.IntSlider(0, min=0, max=0, description="Frame",
                                        continuous_update=False)  # fmt: skip
        self.slider.add_class("atomstat-frame")
        self.slider.tooltip = "The frame shown"
        self.play = widgets.Play(value=0, min=0, max=0, interval=600, description="Play")
        widgets.jslink((self.play, "value"), (self.slider, "value"))
        self.aligned = widgets.Checkbox(False, description="Drift-corrected", indent=False)
        self.track = widgets.Button(description="Track")
        self.column = widgets.Dropdown(description="Over time", layout={"width": "240px"})
        self.angle_fig, self.angle_lines, self.angle_now = _lines_figure(
            "Angle of the picked dumbbells", "frame", "angle (deg)"
        )
        self.angle_fig.add_class("atomstat-angles")
        self.series_fig, self.series_lines, self.series_now = _lines_figure(
            "Selected tracks over time", "frame", ""
        )
        hx, hy = bq.LinearScale(), bq.LinearScale(min=0)
        self.dist = bq.Bars(
            x=[0.0, 1.0], y=[0.0, 0.0], scales={"x": hx, "y": hy}, colors=["#0072b2"]
        )
        self.dist_fig = bq.Figure(
            marks=[self.dist], title="Angles in this frame", title_style={"font-size": "13px"},
            axes=[bq.Axis(tick_format=".3~g", scale=hx, label="angle (deg)", num_ticks=4),
                  bq.Axis(tick_format=".3~g", scale=hy, orientation="vertical", num_ticks=3)],
            fig_margin={"top": 30, "bottom": 40, "left": 45, "right": 10},
            layout=widgets.Layout(width="300px", height="250px"),
        )  # fmt: skip
        self._wire()
        controls = widgets.HBox([self.play, self.slider, self.aligned, self.track, self.column])
        plots = widgets.HBox([self.angle_fig, self.dist_fig, self.series_fig])
        self.widget = widgets.VBox([controls, plots])
        self.widget.add_class("atomstat-movie")
        self._show(False)

    @property
    def shown(self) -> bool:
        """Whether the movie section is on the page (a movie is open)."""
        return self.widget.layout.visibility != "hidden"

    def _show(self, shown: bool) -> None:
        layout = self.widget.layout
        with self.widget.hold_sync():
            layout.visibility = None if shown else "hidden"
            layout.height = None if shown else "0px"
            layout.overflow = None if shown else "hidden"

    def _wire(self) -> None:
        state = self.state
        self.slider.observe(lambda c: setattr(state, "frame", int(c.new)), "value")
        state.observe(lambda c: setattr(self.slider, "value", c.new), "frame")
        self.aligned.observe(self._set_aligned, "value")
        state.observe(lambda c: setattr(self.aligned, "value", c.new), "aligned")
        self.track.on_click(self._track)
        self.column.observe(lambda _: self.draw_series(), "value")
        state.observe(lambda _: self._new_frames(), "frames")
        state.observe(lambda _: self._new_table(), "table")
        state.observe(lambda _: self.draw_frame(), "frame")
        state.observe(lambda _: self.draw_series(), ["selected", "labels_version"])

    def _set_aligned(self, change) -> None:
        with report(self.state, self.errors):
            if change.new and self.state.drift is None:
                self.state.status = "Track the movie first: the drift comes from tracking"
                self.aligned.value = False
                return
            self.state.aligned = bool(change.new)

    def _track(self, _button) -> None:
        with report(self.state, self.errors):
            self.state.track()

    def _new_frames(self) -> None:
        last = max(self.state.n_frames - 1, 0)
        for w in (self.slider, self.play):
            w.max = last
        ticks = frame_ticks(self.state.n_frames)
        for figure in (self.angle_fig, self.series_fig):
            scale = figure.axes[0].scale
            with scale.hold_sync():
                scale.min, scale.max = 0.0, float(max(last, 1))
            figure.axes[0].tick_values = ticks
        # Never display:none a bqplot figure: its view waits for a size before it renders.
        for w in (self.slider, self.play, self.aligned, self.track):
            w.disabled = last == 0
        self._show(last > 0)

    def _new_table(self) -> None:
        columns = [c for c in numeric_columns(self.state.table) if c not in ("x", "y")]
        keep = self.column.value if self.column.value in columns else None
        default = "intensity" if "intensity" in columns else (columns[0] if columns else None)
        with self.column.hold_sync():
            self.column.options = columns
            self.column.value = keep or default
        self.draw_frame()
        self.draw_series()

    # ------------------------------------------------------------------ drawing
    def draw_frame(self) -> None:
        """The current-frame marker and the angle distribution of this frame."""
        frame = self.state.frame
        for now in (self.angle_now, self.series_now):
            now.x = [frame, frame]
        table = self.state.table
        angles = np.zeros(0)
        if table is not None and "angle" in table:
            angles = table.loc[table["frame"] == frame, "angle"].to_numpy(float)
            angles = angles[np.isfinite(angles)]
        if not len(angles):  # nothing to show: no bars left from an earlier movie
            with self.dist.hold_sync():
                self.dist.x, self.dist.y = [0.0, 1.0], [0.0, 0.0]
            return
        wrapped = atomstat.timeseries.wrap_angles(angles)
        counts, edges = np.histogram(wrapped, bins=18)
        with self.dist.hold_sync():
            self.dist.x, self.dist.y = (edges[:-1] + edges[1:]) / 2, counts.astype(float)

    def draw_series(self) -> None:
        """One line per selected track: its angle, and the chosen descriptor, against frame."""
        state = self.state
        particles = state.selected_particles()
        table = state.table
        empty = not particles
        for lines, span in ((self.angle_lines, (0.0, 180.0)), (self.series_lines, (0.0, 1.0))):
            scale = lines.scales["y"]  # empty: a plain range, not ticks of a padded [0, 1]
            with scale.hold_sync():
                scale.min, scale.max = span if empty else (None, None)
            if empty:
                lines.x, lines.y = [], []
        if empty:
            return
        colors = state.particle_colors(particles)
        rows = table[table["particle"].isin(particles)]
        wanted = [c for c in ("angle", self.column.value) if c and c in rows]
        series = atomstat.time_series(rows, wanted)
        if "angle" in rows:
            self._draw_lines(self.angle_lines, series, "angle_unwrapped", colors)
        if self.column.value:
            self._draw_lines(self.series_lines, series, self.column.value, colors)
            self.series_fig.axes[1].label = self.column.value
        self.draw_frame()

    @staticmethod
    def _draw_lines(lines, series, column, colors) -> None:
        xs, ys, cs = [], [], []
        for particle, one in series.groupby("particle"):
            xs.append(one["frame"].to_numpy(float))
            ys.append(one[column].to_numpy(float))
            cs.append(colors.get(int(particle), _SERIES_COLOR))
        x, y, kept = line_rows(xs, ys)
        with lines.hold_sync():
            lines.x, lines.y = x, y
            lines.colors = [cs[i] for i in kept]
