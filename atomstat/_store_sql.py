"""SQL of the label store: its schema and the statements one change is made of.

Private to :mod:`atomstat.store`; every function takes an open connection
inside a transaction (see :func:`_transaction`).
"""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager

_CORRUPT = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    file_key TEXT PRIMARY KEY, path TEXT, params TEXT NOT NULL DEFAULT '{}',
    user TEXT, at REAL);
CREATE TABLE IF NOT EXISTS actions (
    action_id INTEGER PRIMARY KEY AUTOINCREMENT, file_key TEXT NOT NULL, user TEXT NOT NULL,
    at REAL NOT NULL, kind TEXT NOT NULL, text TEXT NOT NULL, target INTEGER,
    undone INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS actions_by_user ON actions (file_key, user, action_id);
CREATE TABLE IF NOT EXISTS changes (
    change_id INTEGER PRIMARY KEY AUTOINCREMENT,
    action_id INTEGER NOT NULL REFERENCES actions (action_id),
    file_key TEXT NOT NULL, layer TEXT NOT NULL, key TEXT NOT NULL,
    value TEXT, previous TEXT, previous_change INTEGER, origin INTEGER);
CREATE INDEX IF NOT EXISTS changes_by_action ON changes (action_id);
CREATE INDEX IF NOT EXISTS changes_by_file ON changes (file_key, change_id);
CREATE TABLE IF NOT EXISTS current (
    file_key TEXT NOT NULL, layer TEXT NOT NULL, key TEXT NOT NULL, value TEXT,
    change_id INTEGER NOT NULL, created INTEGER NOT NULL, origin INTEGER,
    PRIMARY KEY (file_key, layer, key)) WITHOUT ROWID;
"""


@contextmanager
def _transaction(db: sqlite3.Connection):
    """BEGIN IMMEDIATE (writers queue up) ... COMMIT, or ROLLBACK on any error."""
    if db.in_transaction:
        yield db
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:  # SQLite rolls back by itself on some errors (a full disk)
            db.execute("ROLLBACK")
        raise


def _is_corrupt(exc: sqlite3.DatabaseError) -> bool:
    name = getattr(exc, "sqlite_errorname", "")
    return name in _CORRUPT or (not name and not isinstance(exc, sqlite3.OperationalError))


def _text(value, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value.strip()


def _new_action(db, file_key, user, kind, text, target=None) -> int:
    cursor = db.execute(
        "INSERT INTO actions (file_key, user, at, kind, text, target) VALUES (?, ?, ?, ?, ?, ?)",
        (file_key, user, time.time(), kind, text, target),
    )
    return cursor.lastrowid


def _current(db, file_key, layer, key):
    """``(value, change_id, created, origin)`` of an entry, or None if it was never set."""
    return db.execute(
        "SELECT value, change_id, created, origin FROM current"
        " WHERE file_key=? AND layer=? AND key=?",
        (file_key, layer, str(key)),
    ).fetchone()


def _put(db, action, file_key, layer, key, encoded, row, origin=-1) -> None:
    """Log one change (with the value it replaces) and make it current.

    ``origin`` is the edit the value first came from (an undo brings back an
    older edit's value): undo takes back only values that are still its own.
    By default it is this change.
    """
    previous, previous_change = (None, None) if row is None else row[:2]
    cursor = db.execute(
        "INSERT INTO changes (action_id, file_key, layer, key, value, previous, previous_change)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (action, file_key, layer, key, encoded, previous, previous_change),
    )
    change = cursor.lastrowid
    origin = change if origin == -1 else origin
    db.execute("UPDATE changes SET origin=? WHERE change_id=?", (origin, change))
    created = row[2] if row is not None and row[0] is not None else change
    db.execute(
        "INSERT OR REPLACE INTO current (file_key, layer, key, value, change_id, created, origin)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (file_key, layer, key, encoded, change, created, origin),
    )


def _origin(db, change):
    if change is None:
        return None
    return db.execute("SELECT origin FROM changes WHERE change_id=?", (change,)).fetchone()[0]


def _changes_of(db, action) -> list[tuple]:
    return db.execute(
        "SELECT change_id, layer, key, value, previous, previous_change, origin FROM changes"
        " WHERE action_id=? ORDER BY change_id",
        (action,),
    ).fetchall()
