"""The dashboard page: widgets and a bqplot figure that observe an :class:`AppState`.

Callbacks only forward user actions to the state; errors they raise are shown
in an Output widget on the page.
"""

from __future__ import annotations

import io

import bqplot as bq
import ipywidgets as widgets
import numpy as np
from PIL import Image as PILImage

from app.state import AppState, bundled_examples

__all__ = ["build_page", "to_png"]

FIGURE_SIZE = "600px"


def to_png(image: np.ndarray) -> bytes:
    """Encode a 2-D image as 8-bit greyscale PNG, stretched between its 0.5 and 99.5 percentiles."""
    low, high = np.nanpercentile(image, [0.5, 99.5])
    scaled = np.clip((image - low) / max(high - low, 1e-12), 0, 1)
    buffer = io.BytesIO()
    PILImage.fromarray((scaled * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _make_figure() -> tuple[bq.Figure, bq.Image, bq.Scatter]:
    """Return an empty figure holding an image mark with a scatter of atom centres on top."""
    sx = bq.LinearScale(min=-0.5, max=0.5)
    sy = bq.LinearScale(min=-0.5, max=0.5, reverse=True)  # row 0 at the top
    picture = bq.Image(
        image=widgets.Image(value=b"", format="png"), scales={"x": sx, "y": sy}, x=[0, 1], y=[0, 1]
    )
    centres = bq.Scatter(
        x=[], y=[], scales={"x": sx, "y": sy}, colors=["#ff3b30"], default_size=12, stroke="white"
    )
    axes = [
        bq.Axis(scale=sx, label="x (px)"),
        bq.Axis(scale=sy, orientation="vertical", label="y (px)"),
    ]
    figure = bq.Figure(
        marks=[picture, centres],
        axes=axes,
        padding_x=0,
        padding_y=0,
        min_aspect_ratio=1,
        max_aspect_ratio=1,
        fig_margin={"top": 20, "bottom": 45, "left": 55, "right": 10},  # square plot area,
        layout=widgets.Layout(width=FIGURE_SIZE, height=FIGURE_SIZE),
    )
    return figure, picture, centres


def _show_image(picture: bq.Image, centres: bq.Scatter, image: np.ndarray | None) -> None:
    """Put ``image`` into the image mark (pixel centres at integer x, y) and clear the atoms."""
    if image is None:
        return
    height, width = image.shape
    sx, sy = picture.scales["x"], picture.scales["y"]
    with picture.hold_sync(), centres.hold_sync():
        sx.min, sx.max = -0.5, width - 0.5
        sy.min, sy.max = -0.5, height - 0.5
        picture.image = widgets.Image(value=to_png(image), format="png")
        picture.x, picture.y = [-0.5, width - 0.5], [height - 0.5, -0.5]
        centres.x, centres.y = [], []


def _show_atoms(centres: bq.Scatter, atoms) -> None:
    """Draw the centres of ``atoms`` (an atoms table, or None to clear)."""
    with centres.hold_sync():
        if atoms is None:
            centres.x, centres.y = [], []
        else:
            centres.x, centres.y = atoms["x"].to_numpy(), atoms["y"].to_numpy()


def build_page(state: AppState | None = None) -> widgets.VBox:
    """Return the dashboard: example chooser, "Find atoms" button, figure and status line."""
    state = state if state is not None else AppState()
    examples = bundled_examples()
    chooser = widgets.Dropdown(options=list(examples.items()), description="Example")
    button = widgets.Button(description="Find atoms", button_style="primary")
    status = widgets.Label(value=state.status)
    status.add_class("atomstat-status")
    errors = widgets.Output()
    errors.add_class("atomstat-errors")
    figure, picture, centres = _make_figure()

    state.observe(lambda change: _show_image(picture, centres, change.new), "image")
    state.observe(lambda change: _show_atoms(centres, change.new), "atoms")
    state.observe(lambda change: setattr(status, "value", change.new), "status")
    state.observe(lambda change: setattr(button, "disabled", change.new), "busy")

    def open_example(path):
        with errors:
            state.open(path)

    def on_click(_button):
        with errors:
            state.find_atoms()

    chooser.observe(lambda change: open_example(change.new), "value")
    button.on_click(on_click)
    if chooser.value is not None:
        open_example(chooser.value)
    title = widgets.HTML("<h1>atomstat</h1>")
    controls = widgets.HBox([chooser, button])
    return widgets.VBox([title, controls, figure, status, errors])
