"""Errors raised in widget callbacks: shown on the page, never lost; warnings never shown there.

The error box is an ``ipywidgets.Output``. It is entered only to show the
traceback of an exception that a callback raised. While a callback runs, the
box is *not* capturing, so nothing else written meanwhile reaches it: not a
library's deprecation warnings (HyperSpy's), not log lines, not what the
warm-up thread writes. Warnings raised in the callback are logged; those
that :mod:`atomstat` itself raises or logs about the user's data (a flat
image, an unreadable calibration) go to the status line, where the user
reads them.
"""

from __future__ import annotations

import logging
import warnings
from contextlib import contextmanager

__all__ = ["report", "user_warnings"]

log = logging.getLogger(__name__)


def user_warnings(caught) -> list[str]:
    """Messages of the caught warnings that speak to the user: atomstat's, not deprecations.

    Every caught warning is logged (at debug level: nothing is printed).
    """
    out = []
    for w in caught:
        log.debug("warning in a callback: %s (%s:%s)", w.message, w.filename, w.lineno)
        deprecation = issubclass(w.category, DeprecationWarning | PendingDeprecationWarning)
        ours = "atomstat" in str(w.filename).replace("\\", "/").split("/site-packages/")[-1]
        text = str(w.message)
        if ours and not deprecation and text not in out:
            out.append(text)
    return out


class _Records(logging.Handler):
    """The messages of atomstat's warnings logged while a callback runs."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def report(state, errors):
    """Run a callback body; an exception is put in the status line and in ``errors``.

    In a kernel the traceback shows in ``errors`` and the page keeps working;
    outside one (pytest) the exception propagates. Warnings of the body are
    caught: atomstat's own are appended to the status line, the rest logged.
    """
    records = _Records()
    logger = logging.getLogger("atomstat")
    logger.addHandler(records)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                yield
            except Exception as exc:
                state.status = f"Error: {type(exc).__name__}: {exc}"
                with errors:  # the box captures only this traceback
                    raise
    finally:
        logger.removeHandler(records)
    notes = list(dict.fromkeys(user_warnings(caught) + records.messages))
    if notes:
        state.status = f"{state.status} (note: {'; '.join(notes)})"
