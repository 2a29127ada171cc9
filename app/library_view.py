"""The "Library" view: defects across images, as a gallery of crops to brush and label.

:class:`Gallery` holds no widgets: pick a material and a kind (a defect kind
from the defect finder, the anomaly flags, or atoms brighter or dimmer than
their frame), and it holds the hits across every image of the library
(:class:`atomstat.library.Library`), a crop around each, the selection (a
range of one or two descriptors, as a brush gives), and labels them. Labels
go into the label store (:class:`atomstat.store.LabelStore`), keyed by each
file's SHA-256 and the atom's ``atom_id``: the same entries that the
per-file dashboard reads and writes.

:class:`LibraryView` draws it: two dropdowns, a scatter of two descriptors
with a brush, the gallery of the selected hits and a label box.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["KINDS", "Gallery", "LibraryView"]

#: Kinds that need no defect finder: the anomaly flags, and the intensity relative to the frame.
KINDS = {
    "anomaly flag": {"anomaly": True},
    "brighter (> 1.5x)": {"brighter": 1.5},
    "dimmer (< 0.7x)": {"dimmer": 0.7},
}


class Gallery:
    """Hits across images, their crops, the brushed selection and labelling.

    Parameters
    ----------
    library : atomstat.library.Library
    store : atomstat.store.LabelStore, optional
        Where labels go (None: :meth:`label` refuses).
    size : int
        Crop side in px.
    limit : int
        Most hits shown (the first ones by file and frame).
    """

    def __init__(self, library, store=None, *, size: int = 32, limit: int = 200):
        self.library, self.store, self.size, self.limit = library, store, int(size), int(limit)
        self.hits = pd.DataFrame()
        self.crops = np.zeros((0, self.size, self.size), np.float32)
        self.selected = np.zeros(0, bool)

    def kinds(self) -> list[str]:
        """The kinds to pick from: those of :data:`KINDS`, then the defect finder's."""
        found = self.library.query("select distinct kind from defects order by kind")["kind"]
        return [*KINDS, *[str(k) for k in found if k is not None]]

    def show(self, material=None, kind: str = "anomaly flag") -> pd.DataFrame:
        """Find the hits of ``kind`` in the images of ``material`` (None: every material) and
        crop them; every hit starts selected."""
        conditions = dict(KINDS[kind]) if kind in KINDS else {"kind": kind}
        columns = ("area", "circularity", "intensity", "nn_distance", "nnn_distance")
        hits = self.library.find(material=material, columns=columns, **conditions)
        self.hits = hits.head(self.limit).reset_index(drop=True)
        self.crops = self.library.crops(self.hits, size=self.size)
        self.selected = np.ones(len(self.hits), bool)
        return self.hits

    def brush(self, x: str, x_range, y: str | None = None, y_range=None) -> int:
        """Select the hits whose ``x`` lies in ``x_range`` (and ``y`` in ``y_range``);
        return how many are selected."""
        keep = self.hits[x].between(*sorted(x_range)).to_numpy(copy=True)
        if y is not None and y_range is not None:
            keep = keep & self.hits[y].between(*sorted(y_range)).to_numpy()
        self.selected = keep
        return int(keep.sum())

    def label(self, name: str, *, user: str) -> int:
        """Label the selected hits ``name`` (by hand) in the store; return how many.

        Raises
        ------
        ValueError
            Without a store, or with an empty label name.
        """
        if self.store is None:
            raise ValueError("this library view has no label store to write to")
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a label needs a name, got {name!r}")
        chosen = self.hits[self.selected]
        for key, rows in chosen.groupby("sha256"):
            changes = {("manual", str(int(a))): name for a in rows["atom_id"]}
            changes[("classes", name)] = self.store.state(key)["classes"].get(name, "#d55e00")
            self.store.record(key, changes, user=user, text=f"library: {len(rows)} x {name}")
        return len(chosen)

    def labels(self) -> pd.Series:
        """The current manual label of each hit (None where it has none)."""
        out = pd.Series([None] * len(self.hits), dtype=object)
        if self.store is None:
            return out
        for key, rows in self.hits.groupby("sha256"):
            manual = dict(self.store.state(key)["manual"])
            out[rows.index] = [manual.get(int(a)) for a in rows["atom_id"]]
        return out


def crop_png(crop: np.ndarray) -> bytes:
    """A crop as an 8-bit grey PNG (stretched between its 1 and 99 % levels; NaN black)."""
    from PIL import Image

    finite = np.isfinite(crop)
    low, high = np.percentile(crop[finite], [1, 99]) if finite.any() else (0.0, 1.0)
    scaled = np.clip((np.nan_to_num(crop, nan=low) - low) / max(high - low, 1e-9), 0, 1)
    buffer = io.BytesIO()
    Image.fromarray((scaled * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


class LibraryView:
    """Dropdowns, a brushable scatter of two descriptors, the gallery and a label box."""

    def __init__(self, gallery: Gallery, *, user: str = "guest"):
        import bqplot as bq
        import ipywidgets as widgets

        self.gallery, self.user = gallery, user
        materials = [("every material", None), *((m, m) for m in gallery.library.materials())]
        self.material = widgets.Dropdown(options=materials, description="material")
        self.kind = widgets.Dropdown(options=gallery.kinds(), description="kind")
        self.axes = ("area", "intensity")
        sx, sy = bq.LinearScale(), bq.LinearScale()
        self.points = bq.Scatter(x=[], y=[], scales={"x": sx, "y": sy}, colors=["#0072b2"])
        self.brush = bq.interacts.BrushSelector(x_scale=sx, y_scale=sy, marks=[self.points])
        self.scatter = bq.Figure(
            marks=[self.points], interaction=self.brush,
            axes=[bq.Axis(scale=sx, label=self.axes[0], num_ticks=5, tick_format=".3~s"),
                  bq.Axis(scale=sy, label=self.axes[1], orientation="vertical", num_ticks=5,
                          tick_format=".3~s", label_offset="45px")],
            fig_margin={"top": 15, "bottom": 45, "left": 65, "right": 15},
            padding_x=0.05, padding_y=0.05,  # no point on an axis, where a brush can't start
            layout=widgets.Layout(width="380px", height="340px", flex="0 0 auto"),
        )  # fmt: skip
        # One HTML block for the gallery: a widget per crop took the page seconds to draw.
        self.shown = 0  # crops in the gallery
        self.tiles = widgets.HTML(layout=widgets.Layout(width="640px", max_height="460px",
                                                        overflow="auto"))  # fmt: skip
        self.tiles.add_class("atomstat-gallery")
        self.scatter.add_class("atomstat-library-scatter")
        self.name = widgets.Text(placeholder="label, e.g. Si dopant")
        self.apply = widgets.Button(description="label selected")
        self.status = widgets.HTML()
        self.status.add_class("atomstat-library-status")
        self.material.observe(lambda _: self.refresh(), "value")
        self.kind.observe(lambda _: self.refresh(), "value")
        self.brush.observe(self._brushed, "brushing")
        self.apply.on_click(lambda _: self._label())
        controls = widgets.HBox([self.material, self.kind])
        box = widgets.HBox([self.name, self.apply, self.status])
        self.widget = widgets.VBox([controls, box, widgets.HBox([self.scatter, self.tiles])])
        self.refresh()

    def pick(self, material, kind: str) -> None:
        """Show ``material`` and ``kind`` where this library has them (else keep the view's)."""
        with self.material.hold_trait_notifications(), self.kind.hold_trait_notifications():
            if material in [value for _, value in self.material.options]:
                self.material.value = material
            if kind in self.kind.options:
                self.kind.value = kind
        self.refresh()

    def refresh(self) -> None:
        """Find the hits for the chosen material and kind; draw the scatter and the gallery."""
        hits = self.gallery.show(self.material.value, self.kind.value)
        with self.points.hold_sync():
            self.points.x = hits[self.axes[0]].to_numpy(float) if len(hits) else []
            self.points.y = hits[self.axes[1]].to_numpy(float) if len(hits) else []
        self._draw_tiles()

    def _brushed(self, change) -> None:
        if change.new or self.brush.selected_x is None or self.brush.selected_y is None:
            return
        self.gallery.brush(self.axes[0], self.brush.selected_x, self.axes[1], self.brush.selected_y)
        self._draw_tiles()

    def _draw_tiles(self) -> None:
        import base64
        import html

        g = self.gallery
        labels = g.labels()
        tiles = []
        for i in np.flatnonzero(g.selected):
            png = base64.b64encode(crop_png(g.crops[i])).decode()
            name, frame = str(g.hits.name[i]), int(g.hits.frame[i])
            label = f"<br><b>{html.escape(str(labels[i]))}</b>" if labels[i] else ""
            title = html.escape(f"{name}, frame {frame}", quote=True)
            tiles.append(
                f"<figure title='{title}' style='margin:0;width:64px'>"
                f"<img src='data:image/png;base64,{png}' width=64 height=64 "
                "style='image-rendering:pixelated;display:block'>"
                "<figcaption style='font-size:10px;line-height:1.2;overflow:hidden;"
                "text-overflow:ellipsis;white-space:nowrap'>"
                f"f{frame} {html.escape(Path(name).stem)}{label}</figcaption></figure>"
            )
        self.tiles.value = (
            "<div style='display:grid;grid-template-columns:repeat(auto-fill,64px);gap:6px'>"
            + "".join(tiles)
            + "</div>"
        )
        self.shown = len(tiles)
        where = self.material.value or "every material"
        self.status.value = f"{len(tiles)} of {len(g.hits)} selected ({self.kind.value}, {where})"

    def _label(self) -> None:
        try:
            n = self.gallery.label(self.name.value, user=self.user)
        except (ValueError, OSError) as exc:
            self.status.value = f"<span style='color:#d55e00'>{exc}</span>"
            return
        self._draw_tiles()
        self.status.value = f"labelled {n} as {self.name.value!r}"
