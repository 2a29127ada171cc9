"""Errors raised in widget callbacks: shown on the page, never lost."""

from __future__ import annotations

from contextlib import contextmanager

__all__ = ["report"]


@contextmanager
def report(state, errors):
    """Run a callback body; an exception is put in the status line and in ``errors``.

    ``errors`` is an ``ipywidgets.Output``: in a kernel it shows the traceback
    and the page keeps working; outside one (pytest) the exception propagates.
    """
    with errors:
        try:
            yield
        except Exception as exc:
            state.status = f"Error: {type(exc).__name__}: {exc}"
            raise
