"""The label store: one SQLite file that many processes read and write at once.

Every labelled file of a data folder keeps its labels in one store,
``<data_dir>/.atomstat/labels.sqlite`` by default, opened in WAL mode so that
readers never wait for a writer. The store is a log: every change is one
transaction (an *action*: who, when, what) holding one row per changed entry,
with the value it replaced. The current labels are the latest value of every
entry, so a conflicting edit of the same atom ends as the latest one and the
one it overwrote stays in the history.

Entries live in three *layers* that mirror :class:`atomstat.LabelSet`:
``classes`` (class name -> colour), ``auto`` and ``manual`` (atom id ->
label; a manual label of None means "no label, by hand"). Files are keyed by
a content key (the SHA-256 of the file, so a renamed copy keeps its labels and
a changed file does not inherit labels that no longer fit it).

Undo and redo act on one person's own actions: undoing restores, entry by
entry, what the action replaced, except where someone else has changed the
entry since (their later change stays).

A damaged store is never written over: it is moved aside as
``labels.sqlite.corrupt-<time>`` and a new one is started
(:attr:`LabelStore.recovered` says so). A store that cannot be written
(read-only folder, full disk) raises :class:`StoreUnavailable` with a message
that says where and why.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from ._store_sql import (
    _SCHEMA,
    _changes_of,
    _current,
    _is_corrupt,
    _new_action,
    _origin,
    _put,
    _text,
    _transaction,
)
from .errors import AtomstatError

__all__ = ["ABSENT", "LAYERS", "LabelStore", "StoreUnavailable", "label_changes", "store_path"]

log = logging.getLogger(__name__)

LAYERS = ("classes", "auto", "manual")
SCHEMA_VERSION = 1
#: The value of an entry that is not there (a class removed, a label cleared).
ABSENT = type("Absent", (), {"__repr__": lambda self: "ABSENT"})()
_UNDOABLE = ("edit", "redo", "import")


class StoreUnavailable(AtomstatError, OSError):
    """The label store cannot be opened or written (read-only folder, full disk, locked)."""


def store_path(data_dir) -> Path:
    """Where the labels of a data folder live: ``<data_dir>/.atomstat/labels.sqlite``."""
    return Path(data_dir) / ".atomstat" / "labels.sqlite"


def label_changes(before: Mapping, after: Mapping) -> dict:
    """The entries that differ between two :meth:`LabelSet.to_dict` states.

    Returns
    -------
    dict
        ``(layer, key) -> value`` (:data:`ABSENT` where an entry went away);
        keys are class names and atom ids as text.

    Examples
    --------
    >>> before = {"classes": {"a": "#d55e00"}, "auto": [], "manual": [[3, "a"]]}
    >>> after = {"classes": {"a": "#d55e00"}, "auto": [[4, "a"]], "manual": [[3, None]]}
    >>> label_changes(before, after)
    {('auto', '4'): 'a', ('manual', '3'): None}
    """
    out = {}
    old, new = _entries(before), _entries(after)
    for entry in sorted(old.keys() | new.keys()):
        value = new.get(entry, ABSENT)
        if entry not in old or old[entry] != value:
            out[entry] = value
    return out


def _entries(state: Mapping) -> dict:
    out = {("classes", str(k)): v for k, v in state.get("classes", {}).items()}
    for layer in ("auto", "manual"):
        out.update({(layer, str(int(k))): v for k, v in state.get(layer, [])})
    return out


class LabelStore:
    """Labels of every file in a data folder, shared by many processes.

    Parameters
    ----------
    path : str or Path
        The SQLite file (made, with its folder, if missing).
    timeout : float
        Seconds a writer waits for another writer before giving up.

    Raises
    ------
    StoreUnavailable
        If the file cannot be made or opened (a read-only folder, for example).

    Examples
    --------
    >>> import tempfile, os
    >>> store = LabelStore(os.path.join(tempfile.mkdtemp(), "labels.sqlite"))
    >>> _ = store.record("f1", {("manual", "3"): "dopant"}, user="ana", text="label 3")
    >>> _ = store.record("f1", {("manual", "3"): "vacancy"}, user="ben", text="relabel 3")
    >>> _ = store.undo("f1", "ana")  # ben's later label stays
    >>> store.state("f1")["manual"]
    [[3, 'vacancy']]
    >>> [(r.user, r.value) for r in store.history("f1").itertuples()]
    [('ben', 'vacancy'), ('ana', 'dopant')]
    """

    def __init__(self, path, *, timeout: float = 30.0):
        self.path = Path(path)
        self.timeout = float(timeout)
        self.recovered: Path | None = None
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"cannot make {self.path.parent}: {exc.strerror}") from None
        self._open_checked()

    # ---------------------------------------------------------------- opening
    def _connect(self) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        except sqlite3.DatabaseError as exc:
            if _is_corrupt(exc):
                raise
            raise self._unavailable("open", exc) from None
        return db

    def _open_checked(self) -> None:
        """Open the store; move a damaged one aside and start afresh."""
        try:
            db = self._connect()
            problem = self._check(db)
        except sqlite3.DatabaseError as exc:
            db, problem = None, str(exc)
        if problem is not None:
            if db is not None:
                db.close()
            self._move_aside(problem)
            db = self._connect()
        try:
            db.executescript(
                f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )
        except sqlite3.DatabaseError as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise self._unavailable("set up", exc) from None
        self._local.db = db

    @staticmethod
    def _check(db) -> str | None:
        """Why ``db`` is not a usable store (None when it is)."""
        result = db.execute("PRAGMA quick_check").fetchone()[0]
        if result != "ok":
            return f"integrity check: {result}"
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            return f"schema version {version}, this atomstat writes {SCHEMA_VERSION}"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if version == SCHEMA_VERSION and not {"actions", "changes", "current"} <= tables:
            return f"tables missing (found {sorted(tables)})"
        return None

    def _move_aside(self, problem: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            part = Path(str(self.path) + suffix)
            if part.exists():
                part.rename(Path(str(aside) + suffix))
        self.recovered = aside
        log.warning("label store %s is damaged (%s); kept it as %s", self.path, problem, aside)

    def _unavailable(self, what: str, exc: Exception) -> StoreUnavailable:
        reason = str(exc)
        if "readonly" in reason or "unable to open" in reason:
            reason += f" (is {self.path.parent} read-only?)"
        return StoreUnavailable(f"cannot {what} the label store {self.path}: {reason}")

    @property
    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = self._connect()
        return db

    def close(self) -> None:
        """Close this thread's connection."""
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    @contextmanager
    def _write(self, what: str):
        db = self._db
        try:
            with _transaction(db):
                yield db
        except sqlite3.DatabaseError as exc:
            raise self._unavailable(what, exc) from None

    # ---------------------------------------------------------------- writing
    def record(
        self, file_key: str, changes: Mapping, *, user: str, text: str, kind: str = "edit"
    ) -> int | None:
        """Write ``changes`` (``(layer, key) -> value``) as one action of ``user``.

        Entries already at their value are left out; None is returned when
        nothing is left. Returns the new action's id.
        """
        user, text = _text(user, "user"), str(text)
        with self._write("write to") as db:
            action = None
            for (layer, key), value in changes.items():
                if layer not in LAYERS:
                    raise ValueError(f"layer must be one of {LAYERS}, got {layer!r}")
                encoded = None if value is ABSENT else json.dumps(value)
                row = _current(db, file_key, layer, key)
                if row is not None and row[0] == encoded or row is None and encoded is None:
                    continue
                if action is None:
                    action = _new_action(db, file_key, user, kind, text)
                _put(db, action, file_key, layer, str(key), encoded, row)
            return action

    def undo(self, file_key: str, user: str) -> int | None:
        """Take back ``user``'s last action on the file that is not yet undone.

        Entries changed by someone else since are left as they are. Returns
        the undo action's id (None when there was nothing to undo).
        """
        with self._write("undo in") as db:
            row = db.execute(
                "SELECT action_id, text FROM actions WHERE file_key=? AND user=? AND undone=0"
                f" AND kind IN {_UNDOABLE} ORDER BY action_id DESC LIMIT 1",
                (file_key, user),
            ).fetchone()
            if row is None:
                return None
            target, text = row
            undo = _new_action(db, file_key, user, "undo", f"undo {text}", target)
            for _, layer, key, _value, previous, prev_change, origin in _changes_of(db, target):
                current = _current(db, file_key, layer, key)
                if current is not None and current[3] == origin:  # still the value it set
                    _put(
                        db, undo, file_key, layer, key, previous, current, _origin(db, prev_change)
                    )
            db.execute("UPDATE actions SET undone=1 WHERE action_id=?", (target,))
            return undo

    def redo(self, file_key: str, user: str) -> int | None:
        """Make ``user``'s last undone action again (None when there is none to redo)."""
        with self._write("redo in") as db:
            last_edit = db.execute(
                "SELECT max(action_id) FROM actions WHERE file_key=? AND user=?"
                " AND kind IN ('edit', 'import')",
                (file_key, user),
            ).fetchone()[0]
            row = db.execute(
                "SELECT action_id, target FROM actions WHERE file_key=? AND user=? AND kind='undo'"
                " AND undone=0 AND action_id>? ORDER BY action_id DESC LIMIT 1",
                (file_key, user, last_edit or 0),
            ).fetchone()
            if row is None:
                return None
            undo, target = row
            text = db.execute("SELECT text FROM actions WHERE action_id=?", (target,)).fetchone()
            redo = _new_action(db, file_key, user, "redo", text[0], target)
            for _, layer, key, value, _previous, _prev_change, origin in _changes_of(db, target):
                current = _current(db, file_key, layer, key)
                if current is not None and current[1] == self._change_id(db, undo, layer, key):
                    _put(db, redo, file_key, layer, key, value, current, origin)
            db.execute("UPDATE actions SET undone=1 WHERE action_id=?", (undo,))
            return redo

    @staticmethod
    def _change_id(db, action, layer, key):
        row = db.execute(
            "SELECT change_id FROM changes WHERE action_id=? AND layer=? AND key=?",
            (action, layer, key),
        ).fetchone()
        return None if row is None else row[0]

    def set_file(self, file_key: str, *, path: str | None, params: Mapping, user: str) -> float:
        """Remember a file's path and analysis settings (the last writer's); returns when."""
        at = time.time()
        with self._write("write to") as db:
            db.execute(
                "INSERT INTO files (file_key, path, params, user, at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (file_key) DO UPDATE SET path=excluded.path,"
                " params=excluded.params, user=excluded.user, at=excluded.at",
                (file_key, path, json.dumps(dict(params)), user, at),
            )
        return at

    # ---------------------------------------------------------------- reading
    def file(self, file_key: str) -> dict | None:
        """``path``, ``params``, ``user`` and ``at`` of a file (None if unknown)."""
        row = self._db.execute(
            "SELECT path, params, user, at FROM files WHERE file_key=?", (file_key,)
        ).fetchone()
        if row is None:
            return None
        return {"path": row[0], "params": json.loads(row[1]), "user": row[2], "at": row[3]}

    def has_action(self, file_key: str, text: str) -> bool:
        """Whether an action of this text was ever recorded for the file (a migration, say)."""
        row = self._db.execute(
            "SELECT 1 FROM actions WHERE file_key=? AND text=? LIMIT 1", (file_key, text)
        ).fetchone()
        return row is not None

    def version(self, file_key: str | None = None) -> int:
        """The id of the latest change (of one file, or of any): it grows on every change."""
        if file_key is None:
            row = self._db.execute("SELECT max(change_id) FROM changes").fetchone()
        else:
            row = self._db.execute(
                "SELECT max(change_id) FROM changes WHERE file_key=?", (file_key,)
            ).fetchone()
        return row[0] or 0

    def state(self, file_key: str) -> dict:
        """The current labels of a file, in :meth:`LabelSet.to_dict` form."""
        rows = self._db.execute(
            "SELECT layer, key, value FROM current WHERE file_key=? AND value IS NOT NULL"
            " ORDER BY created",
            (file_key,),
        ).fetchall()
        out = {"classes": {}, "auto": [], "manual": []}
        for layer, key, value in rows:
            if layer == "classes":
                out["classes"][key] = json.loads(value)
            else:
                out[layer].append([int(key), json.loads(value)])
        for layer in ("auto", "manual"):
            out[layer].sort()
        return out

    def history(self, file_key: str, *, since: int = 0, limit: int | None = None) -> pd.DataFrame:
        """Every change of a file, newest first, with who made it and what it replaced.

        Columns: ``change_id``, ``action_id``, ``at`` (UTC time), ``user``, ``kind``, ``text``,
        ``layer``, ``key``, ``value``, ``previous`` (:data:`ABSENT` shown as
        None) and ``previous_user`` (who set the replaced value, None if nobody).
        """
        query = """
            SELECT c.change_id, c.action_id, a.at, a.user, a.kind, a.text, c.layer, c.key, c.value,
                   c.previous, p.user
            FROM changes c JOIN actions a ON a.action_id = c.action_id
            LEFT JOIN changes pc ON pc.change_id = c.previous_change
            LEFT JOIN actions p ON p.action_id = pc.action_id
            WHERE c.file_key = ? AND c.change_id > ? ORDER BY c.change_id DESC"""
        query += f" LIMIT {int(limit)}" if limit is not None else ""
        rows = self._db.execute(query, (file_key, int(since))).fetchall()
        columns = ["change_id", "action_id", "at", "user", "kind", "text", "layer", "key", "value"]
        columns += ["previous", "previous_user"]
        data = {name: [row[i] for row in rows] for i, name in enumerate(columns)}
        for name in ("value", "previous"):
            data[name] = [None if v is None else json.loads(v) for v in data[name]]
        table = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in data.items()})
        table[["change_id", "action_id"]] = table[["change_id", "action_id"]].astype("int64")
        table["at"] = pd.to_datetime(table["at"].astype(float), unit="s", utc=True)
        return table

    def actions(self, file_key: str, *, limit: int = 20) -> pd.DataFrame:
        """A file's latest actions, newest first: ``action_id``, ``at`` (UTC), ``user``,
        ``kind``, ``text`` and ``changes`` (how many entries each changed)."""
        rows = self._db.execute(
            "SELECT a.action_id, a.at, a.user, a.kind, a.text, count(c.change_id)"
            " FROM actions a LEFT JOIN changes c ON c.action_id = a.action_id"
            " WHERE a.file_key = ? GROUP BY a.action_id ORDER BY a.action_id DESC LIMIT ?",
            (file_key, int(limit)),
        ).fetchall()
        columns = ["action_id", "at", "user", "kind", "text", "changes"]
        table = pd.DataFrame(rows, columns=columns)
        table["at"] = pd.to_datetime(table["at"].astype(float), unit="s", utc=True)
        return table

    def overwritten(self, file_key: str, user: str, *, since: int = 0) -> pd.DataFrame:
        """Changes by others (after change ``since``) that replaced a value ``user`` had set."""
        table = self.history(file_key, since=since)
        mine = (table["previous_user"] == user) & (table["user"] != user)
        return table[mine].reset_index(drop=True)

    def __repr__(self) -> str:
        return f"LabelStore({str(self.path)!r})"
