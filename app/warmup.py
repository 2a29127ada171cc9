"""Load TensorFlow and the shipped model in the background when the page opens.

TensorFlow's C++ start-up writes log lines straight to the process's stderr
(file descriptor 2). The kernel forwards them to the page, where they look
like errors. Here the import and a first tiny prediction run once, in a
background thread, with descriptor 2 pointed at ``/dev/null`` meanwhile; the
first "Find atoms" then does not wait for them either. The warm-up image
is faint noise, not a blank image: a blank one makes the network log "the
image is flat", which a user took for an error about their own data.

The kernels of one server take turns for the heavy work (:func:`heavy_turn`):
ten visitors opening the page at once started ten TensorFlow imports, ten
warm-ups and ten analyses of the same example on 2 cores, and the browsers,
starved, never loaded the page's scripts (webpack gives a chunk 120 s). Now
at most :func:`heavy_slots` kernels run the network (or warm up) at a time,
an analysis that another kernel is making of the same file waits for it (and
then reads it from the cache), a visitor's analysis goes before the
warm-ups, and the background threads run at a lower CPU priority than the
kernels' page work, the server and the browsers.

:func:`quiet_logging` sends log lines and library warnings to the server's
terminal (the kernel's original stderr), never to the page.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["background_priority", "heavy_slots", "heavy_turn", "quiet_logging", "same_analysis",
           "silenced_stderr", "start_warmup", "turn_group", "warmup_image"]  # fmt: skip

#: How much lower (``nice``) the background threads run: page work comes first.
BACKGROUND_NICE = 10
#: A turn never waits longer than this (s): a hung kernel does not stop the others.
TURN_WAIT = 900.0
#: Seconds from the page's start to the warm-up.
WARMUP_DELAY = 20.0

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


def heavy_slots() -> int:
    """How many kernels may run the network at once: a quarter of the CPUs, at least 1.

    ``$ATOMSTAT_HEAVY_SLOTS`` sets it (0: no turns).
    """
    text = os.environ.get("ATOMSTAT_HEAVY_SLOTS", "").strip()
    if text.isdigit():
        return int(text)
    return max(1, (os.cpu_count() or 1) // 4)


#: Analyses of different files share a lock when their keys fall in the same bucket
#: (rarely: they then run one after the other), so that the lock files stay few.
KEY_BUCKETS = 256


def turn_group() -> str | None:
    """Who takes turns with whom: the kernels of one Voila server (its process id).

    ``$ATOMSTAT_TURNS`` names another group; outside a Voila kernel (a
    notebook, a script, the tests), and with ``$ATOMSTAT_TURNS`` empty or
    ``off``, there are no turns (None).
    """
    named = os.environ.get("ATOMSTAT_TURNS")
    if named is not None:
        named = "".join(c for c in named if c.isalnum() or c in "-_")
        return None if named in ("", "off") else named
    if "VOILA_BASE_URL" in os.environ:  # set by Voila in the kernels it starts
        return f"voila-{os.getppid()}"
    return None


def _turn_folder() -> Path:
    """The folder of the group's lock files; OSError where there is no group."""
    group = turn_group()
    if group is None:
        raise OSError("no turns outside a Voila kernel")
    root = Path(tempfile.gettempdir()) / f"atomstat-turns-{os.getuid()}"
    folder = root / group
    if not folder.is_dir():
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        _prune(root)
    return folder


def _prune(root: Path) -> None:
    """Remove the lock folders of Voila servers that are gone (a few empty files each)."""
    import shutil

    for old in root.glob("voila-*"):
        pid = old.name.removeprefix("voila-")
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def _locked(path: Path, deadline: float, *, poll: float = 0.2):
    """An open file holding an exclusive ``flock`` on ``path``, or None at the deadline."""
    import fcntl

    handle = open(path, "a+b")  # noqa: SIM115 (closed by the caller)
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                return None
            time.sleep(poll)


@contextlib.contextmanager
def same_analysis(key: str | None, *, wait: float = TURN_WAIT,
                  on_wait: Callable[[], object] | None = None) -> Iterator[bool]:  # fmt: skip
    """Hold the machine-wide lock of the analysis ``key`` (file, model, settings) inside.

    A kernel that is about to make an analysis another kernel is making waits
    for it, and then finds it in the cache. ``on_wait`` is called if it has to
    wait. Yields whether the lock was had (False after ``wait`` seconds, for
    ``key`` None, or where no lock file can be made: the work then runs anyway).
    """
    if not key:
        yield False
        return
    try:
        bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % KEY_BUCKETS
        path = _turn_folder() / f"key-{bucket}.lock"
    except OSError:
        yield False
        return
    held = _locked(path, time.monotonic())
    if held is None:
        if on_wait is not None:
            on_wait()
        held = _locked(path, time.monotonic() + wait)
    try:
        yield held is not None
    finally:
        if held is not None:
            held.close()


@contextlib.contextmanager
def heavy_turn(*, wait: float = TURN_WAIT, on_wait: Callable[[], object] | None = None,
               polite: bool = False) -> Iterator[bool]:  # fmt: skip
    """Hold one of the machine's :func:`heavy_slots` inside (for a network run).

    The kernels of a :func:`turn_group` share the slots (``flock`` on files
    in the temporary folder: a kernel that dies lets go of its own).
    ``on_wait`` is called if the turn has to be waited for. A ``polite`` turn
    (the warm-up) is taken only while no other is waited for, so that a
    visitor's analysis goes before the warm-ups.
    Yields whether a slot was had (False after ``wait`` seconds, with no
    slots, or where no lock file can be made: the work then runs anyway).
    """
    names = [f"slot-{i}.lock" for i in range(heavy_slots())]
    with _holding(names, wait, on_wait, polite=polite) as had:
        yield had


@contextlib.contextmanager
def _holding(names, wait, on_wait, *, polite=False) -> Iterator[bool]:
    """Hold the lock of any one of the files ``names`` inside.

    While it waits, an impolite caller holds a shared lock on ``wanted.lock``;
    a polite one takes a slot only when it could have that file to itself.
    """
    import fcntl

    if not names:
        yield False
        return
    try:
        folder = _turn_folder()
        wanted = open(folder / "wanted.lock", "a+b")  # noqa: SIM115 (closed below)
    except OSError:
        log.debug("no turns", exc_info=True)
        yield False
        return
    deadline, held, told, waiting = time.monotonic() + wait, None, False, False
    try:
        while True:
            if polite:
                try:  # nobody else waits?
                    fcntl.flock(wanted, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(wanted, fcntl.LOCK_UN)
                    free = True
                except BlockingIOError:
                    free = False
            if not polite or free:
                for name in names:
                    held = _locked(folder / name, time.monotonic())
                    if held is not None:
                        break
            if held is not None or time.monotonic() > deadline:
                break
            if not polite and not waiting:
                fcntl.flock(wanted, fcntl.LOCK_SH)  # others see someone waits
                waiting = True
            if on_wait is not None and not told:
                told = True
                on_wait()
            time.sleep(0.3)
    finally:
        wanted.close()  # no longer waiting
    try:
        yield held is not None
    finally:
        if held is not None:
            held.close()  # closing the file lets go of its lock


def background_priority(nice: int = BACKGROUND_NICE) -> None:
    """Lower the CPU priority of the calling thread (Linux; elsewhere nothing).

    Threads it starts later (TensorFlow's pools) inherit it. Never call it
    on the kernel's main thread: it cannot be raised again without privileges.
    """
    if not sys.platform.startswith("linux"):
        return
    if threading.current_thread() is threading.main_thread():
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (OSError, AttributeError):
        log.debug("could not lower the thread's priority", exc_info=True)


def _first_prediction() -> None:
    from atomstat.fcn.predict import segment

    segment(warmup_image(), sigma=2.2)


def _warm_up(delay: float) -> None:
    """Wait ``delay`` s (the page's first analysis goes first) and a turn, then warm up."""
    background_priority()
    time.sleep(delay)
    with heavy_turn(polite=True):
        silenced_stderr(_first_prediction)


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


def start_warmup(delay: float = WARMUP_DELAY) -> threading.Thread:
    """Import TensorFlow and run the shipped model once, quietly, in a daemon thread.

    It starts ``delay`` seconds later, at a lower priority, in its turn
    (:func:`heavy_turn`), so that it slows neither the page's build nor its
    first analysis.
    """
    thread = threading.Thread(target=_warm_up, args=(delay,), name="atomstat-warmup", daemon=True)
    thread.start()
    return thread
