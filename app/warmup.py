"""Load TensorFlow and the shipped model in the background when the page opens.

TensorFlow's C++ start-up writes log lines straight to the process's stderr
(file descriptor 2). The kernel forwards them to the page, where they look
like errors. Here the import and a first tiny prediction run once, in a
background thread, with descriptor 2 pointed at ``/dev/null`` meanwhile; the
first "Find atoms" then does not wait for them either. The warm-up image
is faint noise, not a blank image: a blank one makes the network log "the
image is flat", which a user took for an error about their own data.

:func:`quiet_logging` sends log lines and library warnings to the server's
terminal (the kernel's original stderr), never to the page.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable

__all__ = ["quiet_logging", "silenced_stderr", "start_warmup", "warmup_image"]

log = logging.getLogger(__name__)


def silenced_stderr(fn: Callable[[], object]) -> None:
    """Run ``fn()`` with file descriptor 2 sent to ``/dev/null``; errors are logged, not raised."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(2)
    try:
        os.dup2(devnull, 2)
        fn()
    except Exception:  # the first real "Find atoms" reports the problem on the page
        log.debug("warm-up failed", exc_info=True)
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def warmup_image(size: int = 32):
    """A small image with some contrast (seeded noise), so the network has something to see."""
    import numpy as np

    return np.random.default_rng(0).normal(1.0, 0.1, (size, size)).astype(np.float32)


def _first_prediction() -> None:
    from atomstat.fcn.predict import segment

    segment(warmup_image(), sigma=2.2)


def quiet_logging(level: int = logging.WARNING) -> logging.Handler:
    """Send log records (and ``warnings``) to the kernel's own stderr, not to the page.

    In a kernel, ``sys.stderr`` is forwarded to the browser; ipykernel keeps
    the process's original descriptor as ``_original_stdstream_copy``. The
    server's terminal shows what is written there. Outside a kernel the
    handler writes to ``sys.stderr``.
    """
    fd = getattr(sys.stderr, "_original_stdstream_copy", None)
    stream = os.fdopen(os.dup(fd), "w", buffering=1) if isinstance(fd, int) else sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter("[atomstat kernel] %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_atomstat", False)]:
        root.removeHandler(old)
    handler._atomstat = True
    root.addHandler(handler)
    logging.captureWarnings(True)
    return handler


def start_warmup() -> threading.Thread:
    """Import TensorFlow and run the shipped model once, quietly, in a daemon thread."""
    thread = threading.Thread(
        target=silenced_stderr, args=(_first_prediction,), name="atomstat-warmup", daemon=True
    )
    thread.start()
    return thread
