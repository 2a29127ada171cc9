"""The image view: the frame, the atoms as one rasterised layer, hover readout, picking.

Two bqplot ``Image`` marks: the frame (raw / probability / blend, with
contrast limits and a colour map) and a transparent layer with the contours,
centres, rings and defects of the atoms in view (:mod:`app.overlay`), redrawn
at a level of detail that fits the zoom whenever the axes move. A zoom or pan
step therefore moves two images in the browser, whatever the number of atoms.

Mouse events come from ``ipyevents``: moving over the image shows the
position (px and physical units), the pixel value and the nearest atom's
descriptors; a click with the "click atoms" tool picks the nearest atom
within :data:`PICK_PX` screen pixels.
"""

from __future__ import annotations

import asyncio
import html
from dataclasses import replace

import bqplot as bq
import ipywidgets as widgets
import numpy as np
import pandas as pd
from ipyevents import Event

import atomstat
from app.overlay import Layers, draw_marks, hex_rgb, png, render_base, view_of
from app.render import COLORMAPS, UNLABELLED, auto_limits, display_png, label_colors
from app.state import AppState
from atomstat.plot.labels import nice_length

__all__ = ["HIGHLIGHT", "MARGIN", "PICK_PX", "ImageView"]

HIGHLIGHT = "#ffd400"
PICK_PX = 8  # a click picks the nearest atom within this many screen px
BURST_WAIT = 0.005  # s: the changes of one step (table and selection, a pan) come together
AXIS_WAIT = 0.06  # s, at most: a zoom step's second axis, when its first came alone
# Equal sums left + right and top + bottom keep the plot area square in a square figure.
MARGIN = {"top": 10, "bottom": 50, "left": 50, "right": 10}
_SHOWN = ("area", "circularity", "intensity", "nn_distance", "angle", "separation", "particle")


def _tip(widget, text: str):
    widget.tooltip = text
    return widget


class ImageView:
    """A bqplot figure of the current frame with the atoms drawn over it."""

    def __init__(self, state: AppState, size: str = "560px"):
        self.state = state
        self.plot_px = int(size.removesuffix("px")) - 60  # updated from the browser's events
        self.sx = bq.LinearScale(min=-0.5, max=0.5, allow_padding=False)
        self.sy = bq.LinearScale(min=-0.5, max=0.5, reverse=True, allow_padding=False)
        scales = {"x": self.sx, "y": self.sy}
        blank = widgets.Image(value=b"", format="png")
        self.picture = bq.Image(image=blank, scales=scales, x=[0, 1], y=[0, 1])
        self.overlay = bq.Image(image=widgets.Image(value=b"", format="png"), scales=scales,
                                x=[0, 1], y=[0, 1])  # fmt: skip
        self.bar = bq.Lines(x=[0, 0], y=[0, 0], scales=scales, colors=["white"], stroke_width=5)
        self.bar_text = bq.Label(
            x=[0], y=[0], text=[""], scales=scales, colors=["white"], font_weight="bold",
            default_size=15, align="middle",
        )  # fmt: skip
        self.panzoom = bq.PanZoom(scales={"x": [self.sx], "y": [self.sy]})
        self.figure = bq.Figure(
            marks=[self.picture, self.overlay, self.bar, self.bar_text],
            axes=[bq.Axis(tick_format="d", scale=self.sx, label="x (px)"),
                  bq.Axis(tick_format="d", scale=self.sy, orientation="vertical",
                          label="y (px)")],
            padding_x=0, padding_y=0, min_aspect_ratio=1, max_aspect_ratio=1, fig_margin=MARGIN,
            layout=widgets.Layout(width=size, height=size),
        )  # fmt: skip
        self.figure.add_class("atomstat-image")
        self._controls()
        self.readout = widgets.HTML("<small>Move the mouse over the image</small>")
        self.readout.add_class("atomstat-readout")
        self.events = Event(source=self.figure, watched_events=["mousemove", "click"],
                            throttle_or_debounce="throttle", wait=40)  # fmt: skip
        self.events.on_dom_event(self._mouse)
        self._limits: tuple | None = None  # contrast limits; None until an image is open
        self._wire()
        self.widget = widgets.VBox(
            [widgets.HBox([self.mode, self.tool], layout={"flex_flow": "row wrap"}),
             self.layers_row, self.figure, self.readout]
        )  # fmt: skip
        self.widget.add_class("atomstat-image-view")

    def _controls(self) -> None:
        self.mode = _tip(widgets.ToggleButtons(
            options=["raw", "probability", "blend"], value="raw", style={"button_width": "auto"},
            tooltips=["the recorded image", "the network's atom probability (0 to 1)",
                      "the image with the probability in cyan"],
        ), "What the image shows")  # fmt: skip
        self.tool = widgets.ToggleButtons(
            options=["click atoms", "pan / zoom"], value="click atoms",
            style={"button_width": "auto"},
            tooltips=[f"a click picks the nearest atom (within {PICK_PX} screen px)",
                      "drag to pan, wheel to zoom"],
        )  # fmt: skip
        self.tool.tooltip = "Click atoms to pick them, or pan and zoom the image"
        self.reset = _tip(widgets.Button(description="Full view", layout={"width": "80px"}),
                          "Show the whole image")  # fmt: skip
        self.show = {
            name: _tip(widgets.Checkbox(True, description=name, indent=False,
                                        layout={"width": "auto"}), tip)
            for name, tip in (("contours", "blob contours at the threshold"),
                              ("centres", "atom centres"),
                              ("labels", "colour atoms by their label class"))
        }  # fmt: skip
        self.defects = _tip(
            widgets.Checkbox(False, description="defects", indent=False, layout={"width": "auto"}),
            "mark defects (atomstat.find_defects) with a magenta cross",
        )
        self.cmap = _tip(
            widgets.Dropdown(options=COLORMAPS, value="gray", layout={"width": "90px"}),
            "Colour map of the raw image",
        )
        self.contrast = _tip(widgets.FloatRangeSlider(
            value=(0.0, 1.0), min=0.0, max=1.0, step=0.001, continuous_update=False,
            readout_format=".3g", description="Contrast", layout={"width": "300px"},
            style={"description_width": "58px"},
        ), "Pixel values shown as darkest and brightest")  # fmt: skip
        self.contrast.add_class("atomstat-contrast")
        self.auto = _tip(widgets.Button(description="Auto", layout={"width": "52px"}),
                         "Contrast from the 0.5 and 99.5 percentiles")  # fmt: skip
        toggles = [*self.show.values(), self.defects]
        self.layers_row = widgets.HBox(
            [*toggles, self.cmap, self.contrast, self.auto, self.reset],
            layout={"flex_flow": "row wrap", "align_items": "center"},
        )  # fmt: skip

    def _wire(self) -> None:
        state = self.state
        self.mode.observe(lambda _: self.draw_image(), "value")
        self.cmap.observe(lambda _: self.draw_image(), "value")
        self.contrast.observe(self._contrast, "value")
        self.auto.on_click(lambda _: self._auto_contrast())
        self.tool.observe(self._set_tool, "value")
        self.reset.on_click(lambda _: self._full_view())
        for box in [*self.show.values(), self.defects]:
            box.observe(lambda _: self.draw_atoms(), "value")
        for scale in (self.sx, self.sy):
            scale.observe(lambda _: self._view_moved(), ["min", "max"])
        state.observe(lambda _: self._new_data(), "frames")
        state.observe(lambda _: self.redraw(), ["frame", "aligned"])
        state.observe(lambda _: self._schedule(), ["table", "labels_version", "selected"])
        state.observe(lambda _: self.draw_image(), "prob")

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
        png_bytes, xs, ys = display_png(image, self._image(self.state.prob), self.mode.value,
                                        limits=self._limits, cmap=self.cmap.value)  # fmt: skip
        old = self.picture.image
        with self.picture.hold_sync():
            self.picture.image = widgets.Image(value=png_bytes, format="png")
            self.picture.x, self.picture.y = xs, ys
        old.close()  # else every redraw's PNG stays in the kernel
        self.draw_atoms()

    def redraw(self) -> None:
        """Everything that depends on the frame."""
        self.draw_image()

    def layers(self) -> Layers:
        """What the atom layer shows now: positions, colours, selection, map, toggles.

        Everything but the selection is kept between calls while the table,
        frame, labels and toggles stay: a brush or a zoom reuses it.
        """
        state = self.state
        key = (id(state.table), state.frame, state.aligned, state.labels_version,
               id(state.prob), state.threshold, state.dumbbell_mode,
               *(box.value for box in (*self.show.values(), self.defects)))  # fmt: skip
        cached = getattr(self, "_base", None)
        if cached is None or cached[0] != key:
            rows = self.frame_rows()
            # the table and map themselves are held, so that their ids stay theirs
            cached = self._base = (key, rows, self._base_layers(rows), state.table, state.prob)
        _, rows, base, *_ = cached
        return replace(base, selected=rows.index.isin(state.selected))

    def _base_layers(self, rows) -> Layers:
        state = self.state
        labels = state.labels
        colors = [UNLABELLED] * len(rows)
        if self.show["labels"].value and len(rows) and any(labels.counts().values()):
            colors = label_colors(labels.labels(rows.index), labels.classes)
        prob = None
        if state.prob is not None and not state.dumbbell_mode:
            prob = self._image(state.prob)
        return Layers(
            rows["x"].to_numpy(float), rows["y"].to_numpy(float), hex_rgb(colors),
            np.zeros(len(rows), bool), prob=prob, threshold=state.threshold,
            contours=self.show["contours"].value, centres=self.show["centres"].value,
            defects=self._defects(),
        )  # fmt: skip

    def _defects(self) -> tuple:
        find = getattr(atomstat, "find_defects", None)
        atoms, frames = self.state.atoms, self.state.frames
        if not self.defects.value or find is None or atoms is None or frames is None:
            return np.zeros(0), np.zeros(0)
        image = frames[0] if self.state.n_frames == 1 else frames
        found = find(atoms, image)
        found = found[found["frame"] == self.state.frame] if "frame" in found else found
        found = self._shift(found)
        return found["x"].to_numpy(float), found["y"].to_numpy(float)

    def draw_atoms(self) -> None:
        """The atom layer for the visible part of the image.

        Contours and centres (the base) are kept for the view and the atoms
        they were drawn for: a brush or a click only redraws the rings on a
        copy of them.
        """
        frames = self.state.frames
        if frames is None:
            return
        layers = self.layers()
        view = view_of((self.sx.min, self.sx.max), (self.sy.min, self.sy.max), frames.shape[1:],
                       pixels=max(self.plot_px, 64))  # fmt: skip
        self.last_layers, self.last_view = layers, view
        key = (id(self._base[2]), view)
        kept = getattr(self, "_base_rgba", None)
        if kept is None or kept[0] != key:
            # the base Layers itself is held in the key's tuple, so that its id stays its own
            kept = self._base_rgba = (key, render_base(view, layers), self._base[2])
        rgba = draw_marks(kept[1].copy(), view, layers)
        old = self.overlay.image
        with self.overlay.hold_sync():
            self.overlay.image = widgets.Image(value=png(rgba), format="png")
            self.overlay.x, self.overlay.y = [view.x0, view.x1], [view.y1, view.y0]
        old.close()  # the browser has the new one: no widget left behind per redraw

    def _view_moved(self) -> None:
        """The axes moved (pan, zoom, full view): new scale bar, new layer, once per step
        (a step changes four scale limits; each bar redraw costs the browser a re-render).

        A zoom step changes both axes, in two messages that may come apart: while the
        axes' ranges are out of their drawn proportion, the other axis is still on its
        way, and the redraw waits for it (at most :data:`AXIS_WAIT` s) instead of
        drawing twice."""
        self._bar_due = True
        drawn, now = getattr(self, "_drawn_ratio", None), self._ratio()
        half_way = drawn is not None and now is not None and abs(now / drawn - 1) > 1e-6
        self._schedule(AXIS_WAIT if half_way else BURST_WAIT)

    def _ratio(self) -> float | None:
        x0, x1, y0, y1 = self.sx.min, self.sx.max, self.sy.min, self.sy.max
        if None in (x0, x1, y0, y1) or y1 == y0:
            return None
        return (x1 - x0) / (y1 - y0)

    def _schedule(self, wait: float | None = None) -> None:
        """Redraw the atom layer once per burst of changes (both axes of a zoom step,
        the table and the selection of a threshold step); at once outside a kernel.
        A burst that is complete (``wait`` shorter than the one pending) draws sooner."""
        wait = BURST_WAIT if wait is None else wait
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (tests): draw now
            self._draw_due()
            return
        pending = getattr(self, "_pending", None)
        if pending is not None:
            if pending[1] <= loop.time() + wait:
                return
            pending[0].cancel()

        def later():
            self._pending = None
            self._draw_due()

        self._pending = (loop.call_later(wait, later), loop.time() + wait)

    def _draw_due(self) -> None:
        if getattr(self, "_bar_due", False):
            self._bar_due = False
            self.draw_scale_bar()
        self._drawn_ratio = self._ratio()
        self.draw_atoms()

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
        frames = self.state.frames
        if frames is not None:
            first = frames[0]
            finite = first[np.isfinite(first)]
            low, high = (float(finite.min()), float(finite.max())) if finite.size else (0, 1)
            self._limits = None
            self.contrast.min, self.contrast.max = -1e300, 1e300  # never min > max in between
            self.contrast.max, self.contrast.min = max(high, low + 1e-9), low
            self.contrast.step = (self.contrast.max - low) / 1000
            self.contrast.value = auto_limits(first)
            self._limits = tuple(self.contrast.value)
        self._full_view()
        self.redraw()

    def _contrast(self, change) -> None:
        if self._limits is not None and tuple(change.new) != self._limits:
            self._limits = tuple(change.new)
            self.draw_image()

    def _auto_contrast(self) -> None:
        image = self._image(self.state.frames)
        if image is not None:
            self.contrast.value = auto_limits(image)

    def _full_view(self) -> None:
        frames = self.state.frames
        if frames is None:
            return
        _, h, w = frames.shape
        side = max(h, w)  # square axes: a non-square image keeps square pixels
        with self.sx.hold_sync(), self.sy.hold_sync():
            self.sx.min, self.sx.max = -0.5, side - 0.5
            self.sy.min, self.sy.max = -0.5, side - 0.5
        self._view_moved()

    # ------------------------------------------------------------------ actions
    def _set_tool(self, change) -> None:
        self.figure.interaction = self.panzoom if change.new == "pan / zoom" else None

    def to_image(self, event: dict) -> tuple[float, float] | None:
        """Image coordinates (px) under the mouse of an ipyevents ``event``, or None outside."""
        width, height = event.get("boundingRectWidth"), event.get("boundingRectHeight")
        if not width or not height or None in (self.sx.min, self.sy.min):
            return None
        side = min(width, height)  # bqplot shrinks the figure to the aspect ratio, top left
        plot = side - MARGIN["left"] - MARGIN["right"]
        if plot <= 0:
            return None
        self.plot_px = int(plot)
        u = (event["relativeX"] - MARGIN["left"]) / plot
        v = (event["relativeY"] - MARGIN["top"]) / plot
        if not (0 <= u <= 1 and 0 <= v <= 1):
            return None
        x = self.sx.min + u * (self.sx.max - self.sx.min)
        y = self.sy.min + v * (self.sy.max - self.sy.min)
        return float(x), float(y)

    def nearest(self, x: float, y: float, within_px: float = PICK_PX):
        """The id of the shown atom closest to (x, y), if within ``within_px`` screen px."""
        rows = self.frame_rows()
        if not len(rows):
            return None
        d = np.hypot(rows["x"].to_numpy(float) - x, rows["y"].to_numpy(float) - y)
        i = int(np.argmin(d))
        per_px = (self.sx.max - self.sx.min) / max(self.plot_px, 1)
        return rows.index[i] if d[i] <= within_px * per_px else None

    def _mouse(self, event: dict) -> None:
        xy = self.to_image(event)
        if xy is None:
            return
        if event.get("type") == "click":
            if self.tool.value == "click atoms":
                self.pick(*xy)
            return
        self.readout.value = self.describe(*xy)

    def pick(self, x: float, y: float) -> None:
        """A click at (x, y): select the nearest atom, or say that none is near."""
        atom = self.nearest(x, y)
        if atom is None:
            self.state.status = f"No atom within {PICK_PX} screen px of ({x:.1f}, {y:.1f})"
            return
        self.state.click(atom)

    def describe(self, x: float, y: float) -> str:
        """The hover readout: position, pixel value, and the atom under the mouse."""
        state = self.state
        image = self._image(state.frames)
        if image is None:
            return ""
        row, col = int(round(y)), int(round(x))
        h, w = image.shape
        value = f"{image[row, col]:.5g}" if 0 <= row < h and 0 <= col < w else "outside"
        s, u = state.pixel_size, html.escape(state.units)
        text = f"x {x:.1f}, y {y:.1f} px ({x * s:.4g}, {y * s:.4g} {u}); value {value}"
        atom = self.nearest(x, y)
        if atom is not None:
            rows = state.table.loc[[atom]]
            label = state.labels.label_of(atom)
            parts = [f"{c} {rows[c].iloc[0]:.4g}" for c in _SHOWN if c in rows]
            name = f" [{html.escape(label)}]" if label else ""
            text += f"<br><b>atom {atom}</b>{name}: " + ", ".join(parts)
        return f"<small>{text}</small>"
