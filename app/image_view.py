"""The image view: raw / probability / blend, contours and centres by label, scale bar.

It copies the state into bqplot marks inside ``hold_sync``; a click on an
atom's centre calls :meth:`AppState.click`. Contours are drawn as one line
per class (NaN-separated polygons), so 5000 atoms cost a handful of SVG paths.
"""

from __future__ import annotations

import bqplot as bq
import ipywidgets as widgets
import numpy as np
import pandas as pd

from app.render import UNLABELLED, display_png, label_colors, line_rows
from app.state import AppState
from atomstat.maps import blob_contours
from atomstat.plot.labels import nice_length

__all__ = ["ImageView"]

HIGHLIGHT = "#ffd400"


class ImageView:
    """A bqplot figure of the current frame with the atoms drawn over it."""

    def __init__(self, state: AppState, size: str = "620px"):
        self.state = state
        self.sx = bq.LinearScale(min=-0.5, max=0.5)
        self.sy = bq.LinearScale(min=-0.5, max=0.5, reverse=True)
        scales = {"x": self.sx, "y": self.sy}
        self.picture = bq.Image(
            image=widgets.Image(value=b"", format="png"), scales=scales, x=[0, 1], y=[0, 1]
        )
        self.contours = bq.Lines(x=[], y=[], scales=scales, stroke_width=1.2, colors=[UNLABELLED],
                                 opacities=[0.55])  # fmt: skip
        self.centres = bq.Scatter(
            x=[], y=[], scales=scales, default_size=10, stroke="black", stroke_width=0.5
        )
        self.highlight = bq.Scatter(
            x=[], y=[], scales=scales, default_size=90, fill=False, stroke_width=2.5,
            colors=[HIGHLIGHT], marker="circle",
        )  # fmt: skip
        self.bar = bq.Lines(x=[0, 0], y=[0, 0], scales=scales, colors=["white"], stroke_width=5)
        self.bar_text = bq.Label(
            x=[0], y=[0], text=[""], scales=scales, colors=["white"], font_weight="bold",
            default_size=15, align="middle",
        )  # fmt: skip
        self.panzoom = bq.PanZoom(scales={"x": [self.sx], "y": [self.sy]})
        self.figure = bq.Figure(
            marks=[self.picture, self.contours, self.centres, self.highlight, self.bar,
                   self.bar_text],
            axes=[bq.Axis(tick_format="d", scale=self.sx, label="x (px)"),
                  bq.Axis(tick_format="d", scale=self.sy, orientation="vertical",
                          label="y (px)")],
            padding_x=0, padding_y=0, min_aspect_ratio=1, max_aspect_ratio=1,
            fig_margin={"top": 10, "bottom": 40, "left": 50, "right": 10},
            layout=widgets.Layout(width=size, height=size),
        )  # fmt: skip
        self.figure.add_class("atomstat-image")
        self.mode = widgets.ToggleButtons(
            options=["raw", "probability", "blend"], value="raw", description="Show",
            style={"button_width": "80px"},
        )  # fmt: skip
        self.tool = widgets.ToggleButtons(
            options=["click atoms", "pan / zoom"], value="click atoms", description="Tool",
            style={"button_width": "95px"},
        )  # fmt: skip
        self.reset = widgets.Button(description="Full view", layout=widgets.Layout(width="90px"))
        self._vertices = None  # contour vertices of the shown frame
        self.centres.on_element_click(self._clicked)
        self.mode.observe(lambda _: self.draw_image(), "value")
        self.tool.observe(self._set_tool, "value")
        self.reset.on_click(lambda _: self._full_view())
        for scale in (self.sx, self.sy):
            scale.observe(lambda _: self.draw_scale_bar(), ["min", "max"])
        state.observe(lambda _: self._new_data(), "frames")
        state.observe(lambda _: self.redraw(), ["frame", "aligned"])
        state.observe(lambda _: self.redraw_atoms(), "table")  # the picture stays
        state.observe(lambda _: self.draw_image(), "prob")
        state.observe(lambda _: self.draw_atoms(), "labels_version")
        state.observe(lambda _: self.draw_highlight(), "selected")
        self.widget = widgets.VBox([widgets.HBox([self.mode, self.tool, self.reset]), self.figure])

    # ------------------------------------------------------------------ drawing
    def frame_rows(self) -> pd.DataFrame:
        """Rows of the working table in the shown frame (drift removed when aligned)."""
        table = self.state.table
        if table is None:
            return pd.DataFrame({"x": np.zeros(0), "y": np.zeros(0)})
        rows = table[table["frame"] == self.state.frame] if "frame" in table else table
        return self._shift(rows)

    def _shift(self, rows):
        drift = self.state.drift
        if not (self.state.aligned and drift is not None) or not len(rows):
            return rows
        dx, dy = drift.loc[self.state.frame, ["dx", "dy"]]
        return rows.assign(x=rows["x"] - dx, y=rows["y"] - dy)

    def _image(self, stack):
        if stack is None:
            return None
        return self.state.display_frame(stack)

    def draw_image(self) -> None:
        image = self._image(self.state.frames)
        if image is None:
            return
        png, xs, ys = display_png(image, self._image(self.state.prob), self.mode.value)
        with self.picture.hold_sync():
            self.picture.image = widgets.Image(value=png, format="png")
            self.picture.x, self.picture.y = xs, ys

    def redraw(self) -> None:
        """Everything that depends on the frame."""
        self.draw_image()
        self.redraw_atoms()

    def redraw_atoms(self) -> None:
        """Contours, centres and rings (a new table: the picture is unchanged)."""
        self._vertices = self._contour_vertices()
        self.draw_atoms()
        self.draw_highlight()

    def _contour_vertices(self):
        state = self.state
        if state.prob is None or state.table is None or state.dumbbell_mode:
            return None
        prob = self._image(state.prob)
        atoms = state.atoms
        rows = atoms[atoms["frame"] == state.frame] if "frame" in atoms else atoms
        return blob_contours(prob, state.threshold, self._shift(rows))

    def draw_atoms(self) -> None:
        """Centres and contours, coloured by label."""
        rows = self.frame_rows()
        labels = self.state.labels
        classes = labels.classes
        colors = label_colors(labels.labels(rows.index), classes) if len(rows) else []
        with self.centres.hold_sync():
            self.centres.x, self.centres.y = rows["x"].to_numpy(float), rows["y"].to_numpy(float)
            self.centres.colors = colors or [UNLABELLED]
        self._draw_contours(classes)

    def _draw_contours(self, classes) -> None:
        v = self._vertices
        if v is None or not len(v):
            with self.contours.hold_sync():
                self.contours.x, self.contours.y = [], []
            return
        owner_label = self.state.labels.labels(np.unique(v["atom_id"])).astype(object)
        per_vertex = owner_label.reindex(v["atom_id"]).to_numpy()
        groups = [(None, UNLABELLED)] + list(classes.items())
        xs, ys, colors = [], [], []
        for name, color in groups:
            hit = pd.isna(per_vertex) if name is None else per_vertex == name
            if hit.any():
                xs.append(v["x"].to_numpy()[hit])
                ys.append(v["y"].to_numpy()[hit])
                colors.append(color)
        x, y, kept = line_rows(xs, ys)
        with self.contours.hold_sync():
            self.contours.x, self.contours.y = x, y
            self.contours.colors = [colors[i] for i in kept]
            self.contours.opacities = [0.55 if colors[i] == UNLABELLED else 1.0 for i in kept]

    def draw_highlight(self) -> None:
        """Rings around the selected rows of the shown frame."""
        rows = self.frame_rows()
        chosen = rows[rows.index.isin(self.state.selected)] if len(rows) else rows
        with self.highlight.hold_sync():
            self.highlight.x, self.highlight.y = (
                chosen["x"].to_numpy(float),
                chosen["y"].to_numpy(float),
            )

    def draw_scale_bar(self) -> None:
        """A bar of a round physical length in the lower right of the visible area."""
        x0, x1, y0, y1 = self.sx.min, self.sx.max, self.sy.min, self.sy.max
        if None in (x0, x1, y0, y1) or x1 <= x0:
            return
        size = self.state.pixel_size
        length_px = nice_length(0.2 * (x1 - x0) * size) / size
        right, bottom = x1 - 0.05 * (x1 - x0), y1 - 0.05 * (y1 - y0)
        with self.bar.hold_sync(), self.bar_text.hold_sync():
            self.bar.x, self.bar.y = [right - length_px, right], [bottom, bottom]
            self.bar_text.x, self.bar_text.y = [right - length_px / 2], [bottom - 0.035 * (y1 - y0)]
            self.bar_text.text = [f"{length_px * size:g} {self.state.units}"]

    def _new_data(self) -> None:
        self._full_view()
        self.redraw()

    def _full_view(self) -> None:
        frames = self.state.frames
        if frames is None:
            return
        _, h, w = frames.shape
        with self.sx.hold_sync(), self.sy.hold_sync():
            self.sx.min, self.sx.max = -0.5, w - 0.5
            self.sy.min, self.sy.max = -0.5, h - 0.5
        self.draw_scale_bar()

    # ------------------------------------------------------------------ actions
    def _set_tool(self, change) -> None:
        self.figure.interaction = self.panzoom if change.new == "pan / zoom" else None

    def _clicked(self, _mark, event) -> None:
        index = event.get("data", {}).get("index")
        rows = self.frame_rows()
        if index is not None and 0 <= index < len(rows):
            self.state.click(rows.index[index])
