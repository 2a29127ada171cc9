"""The atoms drawn as pixels: contours, centres, rings and defects in one RGBA layer.

The image view shows thousands of atoms. Drawn as SVG marks, every zoom or
pan step moved each of them in the browser (2-5 s for 2,000-8,000 atoms).
Here they are rasterised in the kernel into one transparent PNG that covers
the visible part of the image at about the figure's size in screen pixels: a
level of detail that fits the zoom (dots and rings keep their screen size,
contours are one screen pixel wide). The browser then moves two images per
step; the kernel redraws the layer for the new view once the step arrived.
No widgets here.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image as PILImage
from scipy.spatial import cKDTree

__all__ = ["Layers", "View", "hex_rgb", "render_overlay", "view_of"]

RING = np.array([255, 212, 0], np.uint8)  # the highlight yellow
DEFECT = np.array([255, 0, 200], np.uint8)


@dataclass(frozen=True)
class View:
    """The visible rectangle in image px (outer edges) and the layer's size in screen px."""

    x0: float
    x1: float
    y0: float
    y1: float
    width: int
    height: int

    @property
    def scale(self) -> float:
        """Screen px per image px."""
        return self.width / (self.x1 - self.x0)

    def to_screen(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Column and row (screen px, rounded) of image coordinates ``x``, ``y``."""
        cols = (np.asarray(x, float) - self.x0) * self.width / (self.x1 - self.x0)
        rows = (np.asarray(y, float) - self.y0) * self.height / (self.y1 - self.y0)
        return np.floor(cols).astype(int), np.floor(rows).astype(int)


def view_of(x_range, y_range, shape, *, pixels: int = 640) -> View:
    """The part of an image of ``shape`` (H, W) inside the axes' ranges, ``pixels`` wide.

    The ranges are clipped to the image; the layer's size follows the
    rectangle's aspect so that its pixels are square.

    Examples
    --------
    >>> v = view_of((-0.5, 99.5), (-0.5, 49.5), (50, 100), pixels=200)
    >>> (v.width, v.height, v.scale)
    (200, 100, 2.0)
    """
    h, w = shape
    x0, x1 = max(min(x_range), -0.5), min(max(x_range), w - 0.5)
    y0, y1 = max(min(y_range), -0.5), min(max(y_range), h - 0.5)
    if x1 <= x0 or y1 <= y0:
        x0, x1, y0, y1 = -0.5, w - 0.5, -0.5, h - 0.5
    full = max(abs(x_range[1] - x_range[0]), abs(y_range[1] - y_range[0]))
    scale = pixels / full
    width = max(1, int(round((x1 - x0) * scale)))
    height = max(1, int(round((y1 - y0) * scale)))
    return View(float(x0), float(x1), float(y0), float(y1), width, height)


def hex_rgb(colors) -> np.ndarray:
    """``#rrggbb`` strings as an (N, 3) uint8 array.

    Examples
    --------
    >>> hex_rgb(["#ff0080", "#ffffff"]).tolist()
    [[255, 0, 128], [255, 255, 255]]
    """
    names, which = np.unique(
        np.asarray(list(colors), dtype=object).astype(str), return_inverse=True
    )
    table = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in names], np.uint8)
    return table.reshape(-1, 3)[which.ravel()] if len(names) else np.zeros((0, 3), np.uint8)


@dataclass
class Layers:
    """What the layer shows. Positions in image px; one colour per atom."""

    x: np.ndarray
    y: np.ndarray
    colors: np.ndarray  # (N, 3) uint8
    selected: np.ndarray  # (N,) bool
    prob: np.ndarray | None = None  # the shown frame's map, for contours
    threshold: float = 0.5
    contours: bool = True
    centres: bool = True
    defects: tuple = (np.zeros(0), np.zeros(0))
    tree: object = None  # KD-tree of the centres; kept by dataclasses.replace
    reach: float | None = None  # how far from a centre a contour pixel may be its own

    def __post_init__(self):
        self.x, self.y = np.asarray(self.x, float), np.asarray(self.y, float)
        if self.tree is None and len(self.x):
            self.tree = cKDTree(np.column_stack([self.x, self.y]))
        if self.reach is None:
            self.reach = 3.0 * max(1.0, float(np.median(_spacing(self))))

    @property
    def _tree(self):
        return self.tree


def _disc(radius: float, inner: float = -1.0) -> tuple[np.ndarray, np.ndarray]:
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    d = np.hypot(dx, dy)
    keep = (d <= radius) & (d > inner)
    return dy[keep], dx[keep]


def _stamp(rgba, rows, cols, offsets, color, alpha=255) -> None:
    if not len(rows):
        return
    dy, dx = offsets
    r = (rows[:, None] + dy[None, :]).ravel()
    c = (cols[:, None] + dx[None, :]).ravel()
    h, w = rgba.shape[:2]
    ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    color = np.asarray(color, np.uint8)
    if color.ndim == 2:  # one colour per stamp
        color = np.repeat(color, len(dy), axis=0)[ok]
    rgba[r[ok], c[ok], :3] = color
    rgba[r[ok], c[ok], 3] = alpha


def _contours(rgba, view: View, layers: Layers) -> None:
    """One screen px wide blob edges, each in the colour of the closest atom."""
    prob = layers.prob
    h, w = prob.shape
    xs = view.x0 + (np.arange(view.width) + 0.5) / view.scale
    ys = view.y0 + (np.arange(view.height) + 0.5) * (view.y1 - view.y0) / view.height
    cols, rows = np.clip(np.rint(xs).astype(int), 0, w - 1), np.clip(np.rint(ys), 0, h - 1)
    inside = prob[rows.astype(int)][:, cols] >= layers.threshold
    edge = inside.copy()
    core = inside[1:-1, 1:-1] & inside[:-2, 1:-1] & inside[2:, 1:-1]
    core &= inside[1:-1, :-2] & inside[1:-1, 2:]
    edge[1:-1, 1:-1] &= ~core
    r, c = np.nonzero(edge)
    if not len(r) or layers._tree is None:
        return
    dist, owner = layers.tree.query(
        np.column_stack([xs[c], ys[r]]), distance_upper_bound=layers.reach
    )
    found = np.isfinite(dist)
    color = np.full((len(r), 3), 200, np.uint8)
    color[found] = layers.colors[owner[found]]
    rgba[r, c, :3] = color
    rgba[r, c, 3] = 230


def _spacing(layers: Layers) -> np.ndarray:
    if len(layers.x) < 2 or layers.tree is None:
        return np.array([5.0])
    sample = np.column_stack([layers.x, layers.y])[:: max(1, len(layers.x) // 200)]
    dist, _ = layers.tree.query(sample, k=2)
    return dist[:, 1] / 2


def render_overlay(view: View, layers: Layers) -> np.ndarray:
    """The RGBA layer (height, width, 4) of ``view``: contours, centres, rings, defects."""
    rgba = np.zeros((view.height, view.width, 4), np.uint8)
    if layers.contours and layers.prob is not None:
        _contours(rgba, view, layers)
    margin = 10 / view.scale
    near = (layers.x > view.x0 - margin) & (layers.x < view.x1 + margin)
    near &= (layers.y > view.y0 - margin) & (layers.y < view.y1 + margin)
    cols, rows = view.to_screen(layers.x[near], layers.y[near])
    if layers.centres:
        crowded = near.sum() > 3000  # level of detail: small dots, no outline, when crowded
        if not crowded:
            _stamp(rgba, rows, cols, _disc(2.6), (0, 0, 0), 200)
        _stamp(rgba, rows, cols, _disc(1.0 if crowded else 1.6), layers.colors[near])
    chosen = layers.selected[near]
    _stamp(rgba, rows[chosen], cols[chosen], _disc(6.5, 4.6), RING)
    dx, dy = layers.defects
    if len(dx):
        c, r = view.to_screen(dx, dy)
        cross = np.arange(-5, 6)
        offsets = (np.concatenate([cross, cross]), np.concatenate([cross, -cross]))
        _stamp(rgba, r, c, offsets, DEFECT)
    return rgba


def png(rgba: np.ndarray) -> bytes:
    """PNG bytes of an RGBA or grey/RGB uint8 array (fast compression)."""
    buffer = io.BytesIO()
    PILImage.fromarray(rgba).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
