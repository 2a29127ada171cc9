"""Atoms tables at every threshold step, computed ahead in a background thread.

Re-extracting 8,000 atoms from a stored 2048^2 probability map takes about
0.6 s (:func:`atomstat.maps.relocate`), more than a threshold step may take
in all. Once the map is known, this cache computes the tables of the other
slider levels in a daemon thread, nearest levels first, so that a step is a
look-up. A level not computed yet is computed on the spot, as before. No
widgets here.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from atomstat.maps import relocate

__all__ = ["LEVELS", "LevelCache"]

log = logging.getLogger(__name__)
LEVELS = tuple(round(v, 2) for v in np.arange(0.05, 0.951, 0.05))


class LevelCache:
    """Tables of one probability map at the slider's levels."""

    def __init__(self, prob, image, attrs: dict, *, levels=LEVELS, start: float = 0.5, key=None):
        self.prob, self.image, self.attrs = prob, image, dict(attrs)
        self.key = key  # what the tables belong to (the state's whole stored map)
        self._tables: dict[float, object] = {}
        self._lock = threading.Condition()
        self._working: float | None = None  # the level the thread computes now
        self._stop = threading.Event()
        order = sorted(levels, key=lambda v: (abs(v - start), v))
        self._thread = threading.Thread(
            target=self._fill, args=(order,), name="atomstat-levels", daemon=True
        )

    def start(self) -> LevelCache:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop filling (a new map or a new file replaced this one)."""
        self._stop.set()

    def _compute(self, level: float):
        return relocate(self.prob, self.image, threshold=level, attrs=self.attrs)

    def _fill(self, order) -> None:
        for level in order:
            if self._stop.is_set():
                return
            with self._lock:
                if level in self._tables:
                    continue
                self._working = level
            table = None
            try:
                table = self._compute(level)
            except Exception:  # the level is computed again, in the foreground, when asked
                log.debug("level %s failed in the background", level, exc_info=True)
            with self._lock:
                if table is not None:
                    self._tables.setdefault(level, table)
                self._working = None
                self._lock.notify_all()

    def get(self, level: float):
        """The atoms table at ``level`` (a copy of the cached one, or computed now)."""
        key = round(float(level), 2)
        with self._lock:
            if self._working == key:  # being computed in the thread: wait, not twice the work
                self._lock.wait_for(lambda: self._working != key, timeout=60)
            table = self._tables.get(key) if abs(key - level) < 1e-9 else None
        if table is None:
            table = self._compute(level)
            if abs(key - level) < 1e-9:
                with self._lock:
                    self._tables[key] = table
        out = table.copy()
        out.attrs = dict(table.attrs)
        return out

    def ready(self) -> list[float]:
        """Levels whose table is cached."""
        with self._lock:
            return sorted(self._tables)
