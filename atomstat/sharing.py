"""One person's labels of one file, kept in step with the shared label store.

:class:`SharedLabels` binds a :class:`~atomstat.labels.LabelSet` (what one
dashboard kernel shows) to a :class:`~atomstat.store.LabelStore` (what every
kernel shares). Each change of the set is written as one action of the
user; :meth:`SharedLabels.poll` reads what others wrote; undo and redo act on
the user's own actions in the store.

When the store cannot be written (read-only folder, full disk), the changes
wait in memory, :attr:`SharedLabels.problem` says why, and every later change
or poll tries again. Nothing is dropped: the labels shown stay the user's.
:class:`Poller` runs :meth:`SharedLabels.poll` about once a second on a
thread and hands its result to a callback scheduled where the UI lives.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from .labels import LabelSet
from .store import ABSENT, LabelStore, StoreUnavailable, label_changes

__all__ = ["Poller", "SharedLabels"]

log = logging.getLogger(__name__)


class SharedLabels:
    """The labels of one file (``file_key``) as ``user`` sees and changes them.

    Parameters
    ----------
    labels : LabelSet
        The set to keep in step; its labels are replaced by the store's
        (unless the store holds none for the file, when they are written to it).
    store : str, Path or LabelStore
        The store, or its path (opened now, and again on later tries if it
        cannot be opened yet).
    file_key : str
        The file's content key (its SHA-256).
    user : str
        Who makes the changes.
    path : str, optional
        The file's path, recorded beside its key.
    carried : str
        What to call the action that hands the set's labels to a store that
        has none for the file.

    Examples
    --------
    >>> import tempfile, os
    >>> where = os.path.join(tempfile.mkdtemp(), "labels.sqlite")
    >>> ana = SharedLabels(LabelSet(), where, "f1", user="ana")
    >>> ben = SharedLabels(LabelSet(), where, "f1", user="ben")
    >>> ana.labels.set_manual([1, 2], "dopant")
    >>> ben.labels.set_manual([3], "vacancy")
    >>> ana.poll(), ana.labels.ids("dopant"), ana.labels.ids("vacancy")
    (True, [1, 2], [3])
    """

    def __init__(
        self, labels: LabelSet, store, file_key: str, *, user: str, path=None,
        carried: str = "labels carried over",
    ):  # fmt: skip
        self.labels, self.file_key, self.path = labels, str(file_key), path
        self.user = _user(user)
        self._where = None if isinstance(store, LabelStore) else Path(store)
        self.store: LabelStore | None = store if isinstance(store, LabelStore) else None
        self.problem: str | None = None
        self.notices: list[str] = []
        self._pending: list[tuple[dict, str]] = []
        self._seen = -1
        self._applying = False
        self._lock = threading.RLock()
        self._synced = labels.to_dict()
        labels.observe(self._changed, first=True)
        self._start(carried)

    # ------------------------------------------------------------------ set up
    def _open(self) -> LabelStore | None:
        if self.store is None:
            try:
                self.store = LabelStore(self._where)
            except StoreUnavailable as exc:
                self._fail(exc)
        return self.store

    def _start(self, carried: str) -> None:
        """Show the store's labels, or hand the set's own to the store if it has none."""
        store = self._open()
        if store is None:
            self._queue(label_changes(_EMPTY, self._synced), carried)
            return
        if store.version(self.file_key) == 0 and self._synced != _EMPTY:
            self._queue(label_changes(_EMPTY, self._synced), carried)
            self.flush()
        self.poll()

    def detach(self) -> None:
        """Stop following the set (it keeps its labels); unsaved changes are tried once more."""
        self.flush()
        self.labels.unobserve(self._changed)

    def rebind(self, labels: LabelSet, text: str = "labels moved to the new table") -> None:
        """Follow another set (a remapped table's), writing how it differs as one action."""
        with self._lock:
            self.labels.unobserve(self._changed)
            self.labels = labels
            labels.observe(self._changed, first=True)
            self._queue(label_changes(self._synced, labels.to_dict()), text)
            self._synced = labels.to_dict()
        self.flush()

    # ---------------------------------------------------------------- writing
    def _changed(self, labels: LabelSet) -> None:
        if self._applying:
            return
        with self._lock:
            now = labels.to_dict()
            text = labels.history[-1] if labels.history else "change labels"
            self._queue(label_changes(self._synced, now), text)
            self._synced = now
        self.flush()

    def _queue(self, changes: dict, text: str) -> None:
        if changes:
            self._pending.append((changes, text))

    def flush(self) -> bool:
        """Write the waiting changes; False (and :attr:`problem` set) if the store refused."""
        with self._lock:
            if not self._pending:
                return True
            store = self._open()
            if store is None:
                return False
            waiting = self.unsaved
            try:
                while self._pending:
                    changes, text = self._pending[0]
                    store.record(self.file_key, changes, user=self.user, text=text)
                    self._pending.pop(0)
            except StoreUnavailable as exc:
                self._fail(exc)
                return False
            if self.problem is not None:
                log.info("label store writable again: %d label change(s) saved", waiting)
            self.problem = None
            return True

    def _fail(self, exc: Exception) -> None:
        n = sum(len(c) for c, _ in self._pending)
        self.problem = (
            f"Labels not saved: {exc}. {n} change(s) are kept in memory and saved as soon as "
            "the store can be written."
        )
        log.warning(self.problem)

    @property
    def unsaved(self) -> int:
        """How many changed entries wait to be written."""
        return sum(len(c) for c, _ in self._pending)

    # ---------------------------------------------------------------- reading
    def changed_elsewhere(self) -> bool:
        """A cheap, thread-safe check: has the store moved on, or do changes wait?"""
        if self._pending:
            return True
        store = self.store
        try:
            return store is not None and store.version(self.file_key) != self._seen
        except StoreUnavailable:
            return True

    def poll(self) -> bool:
        """Write what waits, then take what others wrote; True if the labels changed."""
        with self._lock:
            self.flush()
            store = self.store
            if store is None:
                return False
            try:
                version = store.version(self.file_key)
                if version == self._seen:
                    return False
                state = store.state(self.file_key)
                clashes = store.overwritten(self.file_key, self.user, since=max(self._seen, 0))
            except StoreUnavailable as exc:
                self._fail(exc)
                return False
            self._note(clashes)
            self._seen = version
            return self._show(state)

    def _show(self, state: dict) -> bool:
        """Show the store's ``state`` with this user's unsaved changes on top."""
        for changes, _ in self._pending:
            state = _applied(state, changes)
        before = self.labels.to_dict()
        self._applying = True
        try:
            self.labels.replace_state(state)
        finally:
            self._applying = False
        self._synced = self.labels.to_dict()
        return self._synced != before

    def _note(self, clashes: pd.DataFrame) -> None:
        for row in clashes.itertuples():
            what = "class" if row.layer == "classes" else "atom"
            self.notices.append(
                f"{row.user} changed {what} {row.key} from {_shown(row.previous)} "
                f"(yours) to {_shown(row.value)} at {row.at:%H:%M:%S}"
            )
        del self.notices[:-50]

    # ---------------------------------------------------------------- history
    def undo(self) -> bool:
        """Take back this user's last action on the file; True if one was taken back."""
        return self._step("undo")

    def redo(self) -> bool:
        """Make this user's last undone action again; True if one was made."""
        return self._step("redo")

    def _step(self, which: str) -> bool:
        with self._lock:
            if not self.flush():
                return False
            try:
                done = getattr(self.store, which)(self.file_key, self.user)
            except StoreUnavailable as exc:
                self._fail(exc)
                return False
            self.poll()
            return done is not None

    def actions(self, limit: int = 20) -> pd.DataFrame:
        """The file's latest actions (see :meth:`LabelStore.actions`); empty if no store."""
        if self.store is None:
            return pd.DataFrame()
        return self.store.actions(self.file_key, limit=limit)

    def history(self, limit: int = 200) -> pd.DataFrame:
        """The file's latest changes (see :meth:`LabelStore.history`); empty if no store."""
        if self.store is None:
            return pd.DataFrame()
        return self.store.history(self.file_key, limit=limit)


class Poller:
    """Call ``poll()`` every ``interval`` seconds on a thread; ``schedule`` runs the result.

    Parameters
    ----------
    poll : callable
        Cheap check, run on the poller's thread (it must be thread-safe).
    schedule : callable
        ``schedule(fn)`` runs ``fn`` where the UI lives (a kernel's IO loop
        ``add_callback``); called only when ``poll()`` returned something true.
    then : callable
        What to run there.
    """

    def __init__(self, poll: Callable, schedule: Callable, then: Callable, *, interval=1.0):
        self._poll, self._schedule, self._then = poll, schedule, then
        self.interval = float(interval)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="atomstat-label-poll", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                if self._poll():
                    self._schedule(self._then)
            except Exception:  # a poller that dies silently would stop every update
                log.exception("label poll failed")

    def stop(self) -> None:
        self._stop.set()


_EMPTY = LabelSet().to_dict()


def _applied(state: dict, changes: dict) -> dict:
    """``state`` with ``changes`` (``(layer, key) -> value``) written over it."""
    classes = dict(state["classes"])
    layers = {layer: {int(k): v for k, v in state[layer]} for layer in ("auto", "manual")}
    for (layer, key), value in changes.items():
        target = classes if layer == "classes" else layers[layer]
        key = key if layer == "classes" else int(key)
        if value is ABSENT:
            target.pop(key, None)
        else:
            target[key] = value
    return {"classes": classes, **{k: sorted(map(list, v.items())) for k, v in layers.items()}}


def _shown(value) -> str:
    return "no label" if value is None else repr(value)


def _user(user) -> str:
    if not isinstance(user, str) or not user.strip():
        raise ValueError(f"user must be a non-empty name, got {user!r}")
    return user.strip()[:80]
