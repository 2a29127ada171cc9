"""The atom layer of the image view, pixel by pixel (app.overlay): no widgets, no network."""

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from app.overlay import (
    RING,
    Layers,
    _disc,
    _stamp,
    draw_marks,
    hex_rgb,
    png,
    render_base,
    render_overlay,
    view_of,
)


@pytest.fixture
def layers():
    rng = np.random.default_rng(4)
    x, y = rng.uniform(5, 250, 300), rng.uniform(5, 250, 300)
    yy, xx = np.mgrid[0:256, 0:256]
    prob = np.zeros((256, 256), np.float32)
    for cx, cy in zip(x[::3], y[::3], strict=True):
        prob = np.maximum(prob, np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 8.0))
    return Layers(x, y, hex_rgb(["#ffffff"] * 300), rng.random(300) < 0.3, prob=prob)


@pytest.mark.parametrize("shape", [(7, 5), (7, 5, 2), (7, 5, 3), (7, 5, 4)])
def test_png_decodes_to_the_same_pixels(shape):
    pixels = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(png(pixels))))
    np.testing.assert_array_equal(decoded, pixels)


def test_png_refuses_five_channels():
    with pytest.raises(ValueError, match="1 to 4 channels"):
        png(np.zeros((2, 2, 5), np.uint8))


def test_rings_are_exactly_the_selected_atoms(layers):
    view = view_of((-0.5, 255.5), (-0.5, 255.5), (256, 256), pixels=512)
    rgba = render_overlay(view, layers)
    ring = (rgba[..., :3] == RING).all(-1)
    cols, rows = view.to_screen(layers.x, layers.y)
    dy, dx = _disc(6.5, 4.6)
    expected = np.zeros_like(ring)
    for r, c in zip(rows[layers.selected], cols[layers.selected], strict=True):
        expected[r + dy, c + dx] = True
    # the rings are drawn last: every pixel of a selected atom's ring is ring yellow
    assert not (ring & ~expected).any()
    assert ring.sum() == expected.sum()
    none = render_overlay(view, replace(layers, selected=np.zeros(300, bool)))
    assert not (none[..., :3] == RING).all(-1).any()


def test_base_and_marks_make_the_whole_layer(layers):
    view = view_of((20, 180), (30, 190), (256, 256), pixels=300)
    base = render_base(view, layers)
    assert not (base[..., :3] == RING).all(-1).any()  # no rings in the base
    np.testing.assert_array_equal(draw_marks(base.copy(), view, layers),
                                  render_overlay(view, layers))  # fmt: skip


def test_one_colour_shortcut_draws_what_per_atom_colours_draw(layers):
    view = view_of((-0.5, 255.5), (-0.5, 255.5), (256, 256), pixels=400)
    fast = render_overlay(view, layers)
    assert layers.one_color is not None
    layers.one_color = None  # the per-atom path
    np.testing.assert_array_equal(render_overlay(view, layers), fast)
    contour = (fast[..., 3] == 230).sum()
    assert contour > 100  # contours are drawn


def test_many_stamps_paint_the_pixels_of_few_stamps():
    rng = np.random.default_rng(5)
    rows, cols = rng.integers(-8, 48, 400), rng.integers(-8, 68, 400)
    offsets = _disc(6.5, 4.6)
    many = np.zeros((40, 60, 4), np.uint8)
    _stamp(many, rows, cols, offsets, RING)  # 400 x 68 offsets: by shifting the seeds
    few = np.zeros((40, 60, 4), np.uint8)
    for part in np.array_split(np.arange(400), 100):  # 4 x 68 offsets each: one by one
        _stamp(few, rows[part], cols[part], offsets, RING)
    np.testing.assert_array_equal(many, few)
    assert (many[..., 3] == 255).sum() > 1000


def test_contours_take_the_colour_of_their_blobs_atom_or_of_the_nearest():
    """Three blobs: one atom (its colour all round), two atoms in one blob (each edge pixel
    the nearer atom's colour) and none (grey); at full view and zoomed in, where the view's
    grid samples the precomputed blobs."""
    yy, xx = np.mgrid[0:64, 0:96].astype(np.float32)
    prob = np.zeros((64, 96), np.float32)
    prob[(xx - 15) ** 2 + (yy - 30) ** 2 <= 36] = 1  # blob A: one atom
    prob[(np.abs(xx - 50) <= 10) & (np.abs(yy - 30) <= 4)] = 1  # blob B: two atoms
    prob[(xx - 85) ** 2 + (yy - 55) ** 2 <= 9] = 1  # blob C: far from every atom
    x, y = np.array([15.0, 44.0, 56.0]), np.array([30.0, 30.0, 30.0])
    colors = hex_rgb(["#ff0000", "#00ff00", "#0000ff"])
    layers = Layers(x, y, colors, np.zeros(3, bool), prob=prob, centres=False, reach=12.0)
    for x_range in ((-0.5, 95.5), (30.0, 70.0)):
        view = view_of(x_range, (10.0, 50.0) if x_range[0] > 0 else (-0.5, 63.5), (64, 96),
                       pixels=384)  # fmt: skip
        rgba = render_base(view, layers)
        r, c = np.nonzero(rgba[..., 3] == 230)
        px = view.x0 + (c + 0.5) / view.scale
        got = rgba[r, c, :3]
        in_b = np.abs(px - 50) <= 11
        nearest = np.where(np.abs(px - 44) <= np.abs(px - 56), 1, 2)
        np.testing.assert_array_equal(got[in_b], colors[nearest[in_b]])
        in_a, in_c = px < 25, px > 75
        np.testing.assert_array_equal(got[in_a], np.broadcast_to(colors[0], got[in_a].shape))
        assert (got[in_c] == 200).all()
        assert in_b.sum() > 20 and (in_a.sum() > 20 or x_range[0] > 0)
