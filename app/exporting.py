"""Exports of what the dashboard shows: figure, labelled table, session. No widgets.

Each export is written on the server (``<data_dir>/exports``) by the
:mod:`atomstat.export` and :mod:`atomstat.session` writers, and
:func:`download_link` makes the same file a browser download.
"""

from __future__ import annotations

import base64
import html
import mimetypes
import re
from pathlib import Path

import atomstat
from app.data import writable_folder
from app.state import AppState

__all__ = ["FIGURE_FORMATS", "TABLE_FORMATS", "download_link", "export"]

FIGURE_FORMATS = ("png", "svg", "pdf")
TABLE_FORMATS = ("csv", "h5")
_MIME = {".h5": "application/x-hdf5", ".svg": "image/svg+xml", ".json": "application/json"}


def _stem(state: AppState) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(state.name).stem or "atomstat")


def _folder(state: AppState) -> Path:
    """``DATA_DIR/exports``; a PathError (a ValueError) that says why if it cannot be written."""
    return writable_folder(state.data_dir, "exports")


def export(state: AppState, what: str, fmt: str | None = None) -> Path:
    """Write ``what`` ("figure", "table" or "session") and return its path.

    Raises
    ------
    ValueError
        If nothing has been found yet, or ``what`` or ``fmt`` is unknown.
    """
    if state.table is None:
        raise ValueError("find the atoms first: there is nothing to export")
    path = _folder(state) / _stem(state)
    if what == "figure":
        if fmt not in FIGURE_FORMATS:
            raise ValueError(f"figure format must be one of {FIGURE_FORMATS}, got {fmt!r}")
        return _figure(state, path.with_name(f"{path.name}_annotated.{fmt}"))
    if what == "table":
        if fmt not in TABLE_FORMATS:
            raise ValueError(f"table format must be one of {TABLE_FORMATS}, got {fmt!r}")
        labelled = state.labels.apply(state.table)
        return atomstat.write_table(labelled, path.with_name(f"{path.name}_atoms.{fmt}"))
    if what == "session":
        params = {"threshold": state.threshold, "model": state.model}
        target = path.with_name(f"{path.name}_session.json")
        return atomstat.save_session(target, state.table, state.labels, params=params)
    raise ValueError(f"what must be 'figure', 'table' or 'session', got {what!r}")


def _movie_figure(state: AppState, path: Path) -> Path:
    """A tracked movie: the frame's dumbbells, every frame's angles, the picked tracks' angles."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from atomstat.plot.movies import movie_figure

    fig = movie_figure(
        state.frames[state.frame], state.table, state.selected_particles(), frame=state.frame,
        pixel_size=state.pixel_size, units=state.units, title=state.name,
    )  # fmt: skip
    try:
        fig.savefig(path, dpi=150, format=path.suffix[1:], bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _figure(state: AppState, path: Path) -> Path:
    table = state.table
    if state.n_frames > 1 and {"particle", "angle", "separation"} <= set(table):
        return _movie_figure(state, path)
    rows = table[table["frame"] == state.frame] if "frame" in table else table
    scatter = ("area", "circularity") if {"area", "circularity"} <= set(rows) else None
    if scatter is None and {"angle", "separation"} <= set(rows):
        scatter = ("angle", "separation")
    image = state.frames[state.frame]
    title = f"{state.name}, frame {state.frame}" if state.n_frames > 1 else state.name
    return atomstat.write_figure(
        path, image, rows, state.labels, dpi=150, scatter=scatter, title=title
    )


def download_link(path: Path) -> str:
    """An HTML anchor that downloads ``path`` from the page (its bytes as a data URI)."""
    path = Path(path)
    mime = (
        _MIME.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    )
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    size = path.stat().st_size / 1024
    name = html.escape(path.name)
    return (
        f"<a class='atomstat-download' download='{name}' href='data:{mime};base64,{data}'>"
        f"&#11015; {name}</a> ({size:.0f} kB, saved on the server in exports/)"
    )
