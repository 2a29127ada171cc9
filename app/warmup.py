"""Load TensorFlow and the shipped model in the background when the page opens.

TensorFlow's C++ start-up writes log lines straight to the process's stderr
(file descriptor 2). The kernel forwards them to the page, where they look
like errors. Here the import and a first tiny prediction run once, in a
background thread, with descriptor 2 pointed at ``/dev/null`` meanwhile; the
first "Find atoms" then does not wait for them either.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

__all__ = ["silenced_stderr", "start_warmup"]

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


def _first_prediction() -> None:
    import numpy as np

    from atomstat.fcn.predict import segment

    segment(np.zeros((32, 32), np.float32), sigma=2.2)


def start_warmup() -> threading.Thread:
    """Import TensorFlow and run the shipped model once, quietly, in a daemon thread."""
    thread = threading.Thread(
        target=silenced_stderr, args=(_first_prediction,), name="atomstat-warmup", daemon=True
    )
    thread.start()
    return thread
