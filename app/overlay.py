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

import struct
import zlib
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

__all__ = ["Blobs", "Layers", "View", "draw_marks", "hex_rgb", "png", "render_base",
           "render_overlay", "view_of"]  # fmt: skip

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
    blobs: object = None  # the map's blobs and their colours (Blobs); kept by replace

    def __post_init__(self):
        self.x, self.y = np.asarray(self.x, float), np.asarray(self.y, float)
        if self.tree is None and len(self.x):
            self.tree = cKDTree(np.column_stack([self.x, self.y]))
        if self.reach is None:
            self.reach = 3.0 * max(1.0, float(np.median(_spacing(self))))
        colors = np.asarray(self.colors, np.uint8).reshape(-1, 3)
        # one colour for all (nothing labelled): no per-atom colour look-ups while drawing
        self.one_color = colors[0] if len(colors) and (colors == colors[0]).all() else None
        if self.blobs is None and self.contours and self.prob is not None:
            self.blobs = Blobs.of(self)

    @property
    def _tree(self):
        return self.tree


@dataclass(frozen=True)
class Blobs:
    """The blobs of a map at a threshold, each with the colour of its contour.

    Made once per map, threshold and table (about 30 ms at 2048^2), so that a
    zoom or pan step only samples ``labels`` on the view's grid. A blob that
    holds the centre of exactly one atom takes its colour; the others (several
    atoms, which share the edge by distance, or none) are ``shared`` and their
    edge pixels are coloured by the nearest atom, as before.
    """

    labels: np.ndarray  # (H, W) blob number, 0 outside
    rgb: np.ndarray  # (n + 1, 3) uint8 contour colour of each blob
    shared: np.ndarray  # (n + 1,) bool: colour each edge pixel by its nearest atom

    @classmethod
    def of(cls, layers: Layers) -> Blobs:
        labels, n = ndimage.label(layers.prob >= layers.threshold)
        labels = labels.astype(np.int32 if n >= 2**15 else np.int16, copy=False)
        h, w = labels.shape
        rgb = np.full((n + 1, 3), 200, np.uint8)  # grey: no atom of its own
        shared = np.ones(n + 1, bool)
        if len(layers.x):
            rows = np.clip(np.rint(layers.y).astype(int), 0, h - 1)
            cols = np.clip(np.rint(layers.x).astype(int), 0, w - 1)
            own = labels[rows, cols]
            count = np.bincount(own, minlength=n + 1)
            atom = np.zeros(n + 1, int)
            atom[own] = np.arange(len(own))  # one atom of each blob (the only one if single)
            single = count == 1
            single[0] = False
            colors = np.asarray(layers.colors, np.uint8).reshape(-1, 3)
            rgb[single] = layers.one_color if layers.one_color is not None else colors[atom[single]]
            shared = ~single
        return cls(labels, rgb, shared)


def _disc(radius: float, inner: float = -1.0) -> tuple[np.ndarray, np.ndarray]:
    r = int(np.ceil(radius))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    d = np.hypot(dx, dy)
    keep = (d <= radius) & (d > inner)
    return dy[keep], dx[keep]


def _stamp(rgba, rows, cols, offsets, color, alpha=255) -> None:
    """Paint ``offsets`` around every (row, col): one colour, or one per stamp (N, 3)."""
    if not len(rows):
        return
    dy, dx = offsets
    h, w = rgba.shape[:2]
    color = np.asarray(color, np.uint8)
    if color.ndim == 1 and len(rows) * len(dy) > h * w // 4:  # many stamps: shift the seeds
        rgba[_spread((h, w), rows, cols, offsets)] = (*color[:3], alpha)
        return
    r = np.asarray(rows)[:, None] + dy[None, :]
    c = np.asarray(cols)[:, None] + dx[None, :]
    ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
    flat = (r * w + c)[ok]
    pixels = rgba.reshape(-1, 4)
    if color.ndim == 2:  # one colour per stamp
        value = np.empty((len(color), 4), np.uint8)
        value[:, :3], value[:, 3] = color, alpha
        which = np.broadcast_to(np.arange(len(color))[:, None], ok.shape)[ok]
        pixels[flat] = value[which]
    else:
        pixels[flat] = (*color[:3], alpha)


def _spread(shape, rows, cols, offsets) -> np.ndarray:
    """Boolean mask of ``shape``: every (row, col) moved by every offset (a dilation).

    The same pixels as stamping each point, at a cost that does not grow with
    the number of points (one shifted OR per offset).
    """
    h, w = shape
    dy, dx = (np.asarray(o, int) for o in offsets)
    pad = int(max(np.abs(dy).max(), np.abs(dx).max()))
    seeds = np.zeros((h + 2 * pad, w + 2 * pad), bool)
    r, c = np.asarray(rows, int) + pad, np.asarray(cols, int) + pad
    ok = (r >= 0) & (r < h + 2 * pad) & (c >= 0) & (c < w + 2 * pad)
    seeds[r[ok], c[ok]] = True
    out = np.zeros((h, w), bool)
    for oy, ox in zip(dy.tolist(), dx.tolist(), strict=True):
        out |= seeds[pad - oy : pad - oy + h, pad - ox : pad - ox + w]
    return out


def _contours(rgba, view: View, layers: Layers) -> None:
    """One screen px wide blob edges, each in the colour of the blob's atom (or, where a
    blob has several atoms or none, of the closest atom)."""
    blobs = layers.blobs if layers.blobs is not None else Blobs.of(layers)
    h, w = blobs.labels.shape
    xs = view.x0 + (np.arange(view.width) + 0.5) / view.scale
    ys = view.y0 + (np.arange(view.height) + 0.5) * (view.y1 - view.y0) / view.height
    cols, rows = np.clip(np.rint(xs).astype(int), 0, w - 1), np.clip(np.rint(ys), 0, h - 1)
    seen = blobs.labels[rows.astype(int)][:, cols]
    inside = seen > 0
    edge = inside.copy()
    core = inside[1:-1, 1:-1] & inside[:-2, 1:-1] & inside[2:, 1:-1]
    core &= inside[1:-1, :-2] & inside[1:-1, 2:]
    edge[1:-1, 1:-1] &= ~core
    r, c = np.nonzero(edge)
    if not len(r) or layers._tree is None:
        return
    which = seen[r, c]
    color = np.empty((len(r), 4), np.uint8)
    color[:, :3], color[:, 3] = blobs.rgb[which], 230
    near = np.flatnonzero(blobs.shared[which])
    if len(near):
        dist, owner = layers.tree.query(
            np.column_stack([xs[c[near]], ys[r[near]]]), distance_upper_bound=layers.reach
        )
        found = np.isfinite(dist)
        picked = np.full((len(near), 3), 200, np.uint8)
        if layers.one_color is not None:
            picked[found] = layers.one_color
        else:
            picked[found] = layers.colors[owner[found]]
        color[near, :3] = picked
    rgba.reshape(-1, 4)[r * view.width + c] = color


def _spacing(layers: Layers) -> np.ndarray:
    if len(layers.x) < 2 or layers.tree is None:
        return np.array([5.0])
    sample = np.column_stack([layers.x, layers.y])[:: max(1, len(layers.x) // 200)]
    dist, _ = layers.tree.query(sample, k=2)
    return dist[:, 1] / 2


def render_base(view: View, layers: Layers) -> np.ndarray:
    """The part of the layer that a selection leaves as it is: contours and centres.

    A brush only changes the rings: the image view keeps this base for its
    view and draws :func:`draw_marks` on a copy.
    """
    rgba = np.zeros((view.height, view.width, 4), np.uint8)
    if layers.contours and layers.prob is not None:
        _contours(rgba, view, layers)
    if layers.centres:
        near, rows, cols = _near(view, layers)
        crowded = near.sum() > 3000  # level of detail: small dots, no outline, when crowded
        if not crowded:
            _stamp(rgba, rows, cols, _disc(2.6), (0, 0, 0), 200)
        color = layers.one_color if layers.one_color is not None else layers.colors[near]
        _stamp(rgba, rows, cols, _disc(1.0 if crowded else 1.6), color)
    return rgba


def _near(view: View, layers: Layers):
    margin = 10 / view.scale
    near = (layers.x > view.x0 - margin) & (layers.x < view.x1 + margin)
    near &= (layers.y > view.y0 - margin) & (layers.y < view.y1 + margin)
    cols, rows = view.to_screen(layers.x[near], layers.y[near])
    return near, rows, cols


def draw_marks(rgba: np.ndarray, view: View, layers: Layers) -> np.ndarray:
    """Draw the rings of the selected atoms and the defect crosses on ``rgba`` (in place)."""
    chosen = layers.selected & (layers.x > view.x0 - 10 / view.scale)
    if chosen.any():
        near = chosen & (layers.x < view.x1 + 10 / view.scale)
        near &= (layers.y > view.y0 - 10 / view.scale) & (layers.y < view.y1 + 10 / view.scale)
        cols, rows = view.to_screen(layers.x[near], layers.y[near])
        _stamp(rgba, rows, cols, _disc(6.5, 4.6), RING)
    dx, dy = layers.defects
    if len(dx):
        c, r = view.to_screen(dx, dy)
        cross = np.arange(-5, 6)
        offsets = (np.concatenate([cross, cross]), np.concatenate([cross, -cross]))
        _stamp(rgba, r, c, offsets, DEFECT)
    return rgba


def render_overlay(view: View, layers: Layers) -> np.ndarray:
    """The RGBA layer (height, width, 4) of ``view``: contours, centres, rings, defects."""
    return draw_marks(render_base(view, layers), view, layers)


def png(pixels: np.ndarray) -> bytes:
    """PNG bytes of a grey, grey + alpha, RGB or RGBA uint8 array, written for speed.

    No row filters and zlib level 1: about 4 times faster than PIL's encoder
    (which tries a filter per row) on the mostly transparent atom layer, for
    a PNG of about the same size.

    Examples
    --------
    >>> png(np.zeros((2, 3, 4), np.uint8))[:8]
    b'\\x89PNG\\r\\n\\x1a\\n'
    """
    pixels = np.ascontiguousarray(pixels, np.uint8)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    h, w, channels = pixels.shape
    kind = {1: 0, 2: 4, 3: 2, 4: 6}.get(channels)
    if kind is None:
        raise ValueError(f"png needs 1 to 4 channels, got {channels}")
    raw = np.zeros((h, w * channels + 1), np.uint8)  # filter byte 0 (none) before each row
    raw[:, 1:] = pixels.reshape(h, -1)

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    header = struct.pack(">IIBBBBB", w, h, 8, kind, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 1)) + chunk(b"IEND", b""))  # fmt: skip
