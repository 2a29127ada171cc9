"""The dashboard's shared workbench: labels in the data folder's store, analyses in its cache.

No widgets here. One :class:`Workbench` per :class:`app.state.AppState`
(one per kernel, one per visitor). When a file opens, it

- keys the file by its content (SHA-256 of the file; of the pixels for an
  example), so a renamed copy keeps its labels and a changed file does not
  inherit labels that no longer fit;
- restores the last analysis anyone made of the file from the cache (no
  network), and follows its labels in the shared store
  (:class:`atomstat.sharing.SharedLabels`);
- migrates an old ``<file>.atomstat.json`` autosave into the store once (the
  file itself is left as it is);
- polls the store about once a second on a thread and applies what others
  wrote on the kernel's IO loop, so every visitor sees the others' labels.

Problems (a damaged store or autosave kept aside, a store that cannot be
written, someone overwriting your label) go to ``state.store_message``.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import sqlite3
import time
from pathlib import Path

import atomstat
from app.data import inside, session_path
from atomstat.cache import AnalysisCache, cache_dir, model_key
from atomstat.session import SourceMismatch, file_sha256, verify_source
from atomstat.sharing import Poller, SharedLabels
from atomstat.store import LabelStore, StoreUnavailable, store_path

__all__ = ["Workbench", "guest_name"]

log = logging.getLogger(__name__)
POLL_SECONDS = 1.0


def guest_name() -> str:
    """A name for a visitor who has not typed one: ``guest-<4 hex digits>``."""
    return f"guest-{secrets.token_hex(2)}"


def _kernel_schedule():
    """``add_callback`` of the running kernel's IO loop (thread-safe), or None outside one."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    kernel = getattr(get_ipython(), "kernel", None)
    loop = getattr(kernel, "io_loop", None)
    return None if loop is None else loop.add_callback


class Workbench:
    """The open file's shared labels and cached analysis, for one :class:`AppState`."""

    def __init__(self, state, *, schedule=None, interval: float = POLL_SECONDS):
        self.state = state
        self.store_file = store_path(state.data_dir)
        self.cache = AnalysisCache(cache_dir(state.data_dir))
        self.shared: SharedLabels | None = None
        self.content_key: str | None = None
        self.seconds_to_restore: float | None = None
        self._schedule = schedule if schedule is not None else _kernel_schedule()
        self._interval = interval
        self._poller: Poller | None = None
        self._store_obj: LabelStore | None = None
        self._file_at: float | None = None  # when the file's current analysis was recorded

    # ------------------------------------------------------------------ keys
    @property
    def file_key(self) -> str | None:
        """The store's key for the open table: the content key, per atoms or dumbbells."""
        if self.content_key is None:
            return None
        return self.content_key + (":dumbbells" if self.state.dumbbell_mode else "")

    def _content_key(self) -> str:
        state = self.state
        if state.source.startswith("example:"):
            digest = hashlib.sha256(str(state.frames.shape).encode())
            digest.update(state.frames.tobytes())
            return digest.hexdigest()
        return file_sha256(state.source)

    def _relative(self) -> str:
        source = self.state.source
        if source.startswith("example:"):
            return source
        try:
            return str(Path(source).resolve().relative_to(self.state.data_dir))
        except ValueError:
            return source

    # ---------------------------------------------------------------- opening
    def open(self) -> None:
        """A file was opened: restore its analysis, migrate its autosave, follow its labels."""
        self.detach()
        start = time.perf_counter()
        self.content_key = self._content_key()
        migrated = self._migrate()
        restored = migrated is not None or self._restore()
        self.attach(carried=migrated or "labels carried over")
        self.seconds_to_restore = time.perf_counter() - start if restored else None
        self._start_polling()

    def attach(self, *, carried: str = "labels carried over") -> None:
        """Follow the open table's labels in the store.

        The store's labels replace the state's; if it has none for the file,
        the state's are written to it as one action called ``carried``.
        """
        self.detach()
        state = self.state
        if self.file_key is None:
            return
        self.shared = SharedLabels(
            state.labels, self._store() or self.store_file, self.file_key, user=state.user,
            path=self._relative(), carried=carried,
        )  # fmt: skip
        self._report()

    def detach(self) -> None:
        """Stop following the labels (unsaved changes are tried once more)."""
        if self.shared is not None:
            self.shared.detach()
            self.shared = None

    def rebind(self, labels, text: str) -> None:
        """The state swapped in a remapped label set: write how it differs, then follow it."""
        if self.shared is not None:
            self.shared.rebind(labels, text)
            self._report()

    def close(self) -> None:
        """Stop polling and following (the page is going away)."""
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
        self.detach()

    # --------------------------------------------------------------- analysis
    def map_settings(self) -> dict:
        """What the probability map depends on besides the file and the model."""
        return {"preprocess": getattr(self.state, "preprocess", "none")}

    def settings(self) -> dict:
        """What the atoms table depends on besides the file and the model."""
        split = getattr(self.state, "split", "auto")
        return {**self.map_settings(), "threshold": round(float(self.state.threshold), 4),
                "split": split}  # fmt: skip

    def _model(self) -> str:
        state = self.state
        if state.model in ("", "universal", "stm"):  # the shipped models, by name
            return model_key(state.model or None)
        return model_key(inside(state.data_dir, state.model))

    def cached(self):
        """``(atoms, prob)`` cached for the open file at the current settings, or None.

        ``prob`` may be None (an analysis imported from a session), and
        ``atoms`` None when only the map is cached (the threshold moved).
        """
        if self.content_key is None:
            return None
        model = self._model()
        atoms = self.cache.load_atoms(self.content_key, model, self.settings())
        prob = self.cache.load_map(self.content_key, model, self.map_settings())
        return None if atoms is None and prob is None else (atoms, prob)

    def analysed(self, atoms, prob) -> None:
        """Keep a new analysis in the cache and tell the store which one is current."""
        if self.content_key is None:
            return
        self.cache.save(self.content_key, self._model(), self.settings(), atoms=atoms, prob=prob,
                        map_settings=self.map_settings())  # fmt: skip
        self._remember()

    def _remember(self) -> None:
        state = self.state
        params = {"threshold": state.threshold, "model": state.model}
        for name in ("preprocess", "split", "pixel_size", "units"):
            if hasattr(state, name):
                params[name] = getattr(state, name)
        store = self._store()
        try:
            if store is not None:
                self._file_at = store.set_file(self.content_key, path=self._relative(),
                                               params=params, user=state.user)  # fmt: skip
        except StoreUnavailable as exc:
            log.warning("analysis settings not recorded: %s", exc)

    def _restore(self) -> bool:
        """Show the file's last analysis (anyone's) from the cache; True if there was one."""
        store = self._store()
        record = None if store is None else store.file(self.content_key)
        if record is None:
            return False
        self._file_at = record["at"]
        params = record["params"]
        state = self.state
        _take(state, params)
        start = time.perf_counter()
        try:
            found = self.cached()
        except (OSError, ValueError) as exc:  # a model file gone or moved
            log.warning("cached analysis not restored: %s", exc)
            return False
        if found is None:
            return False
        seconds = time.perf_counter() - start
        return state.show_analysis(*found, text=f"restored the last analysis in {seconds:.2f} s")

    # -------------------------------------------------------------- migration
    def _migrate(self) -> str | None:
        """Show an old autosave's table and labels, once; the action's text if shown.

        The labels go into the store when :meth:`attach` follows them; the
        autosave file is left as it is.
        """
        state = self.state
        path = session_path(state.data_dir, state.source)
        if not path.is_file():
            return None
        store = self._store()
        marker = f"migrated from {path.name}"
        if store is None or store.has_action(self.content_key, marker):
            return None
        session = self._read_session(path)
        if session is None:
            return None
        if store.version(self.content_key) > 0:
            self._say(f"Older autosave {path.name} not imported: the store has labels already")
            return None
        return marker if self.apply_session(session, text=marker) else None

    def _read_session(self, path: Path):
        try:
            session = atomstat.load_session(path)
        except (ValueError, OSError) as exc:
            aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            path.rename(aside)
            self._say(f"Session {path.name} is damaged ({exc}); kept it as {aside.name}")
            return None
        return session

    def apply_session(self, session, *, text: str) -> bool:
        """Show a session's table and labels on the open file, refusing another file's."""
        state = self.state
        try:
            if state.source.startswith("example:"):
                _fits(session.atoms, state.frames.shape)
            else:
                verify_source(session, state.source, name=text.split()[-1])
        except SourceMismatch as exc:
            self._say(f"Session not applied: {exc}")
            return False
        params = session.params
        _take(state, params)
        state.dumbbell_mode = bool(params.get("dumbbells", False))
        self.cache.save(self.content_key, self._model(), self.settings(), atoms=session.atoms)
        self._remember()
        state.show_analysis(session.atoms, None, text=text)
        state.replace_labels(session.labels, text)
        return True

    def _store(self) -> LabelStore | None:
        """The store (opened once; None, with the reason shown, while it cannot be)."""
        if self._store_obj is None:
            try:
                self._store_obj = LabelStore(self.store_file)
            except StoreUnavailable as exc:
                self._say(f"Labels are kept in memory only: {exc}")
        return self._store_obj

    # ---------------------------------------------------------------- history
    def undo(self) -> bool:
        """Take back this visitor's last label action (others' stay)."""
        done = self.shared is not None and self.shared.undo()
        self._report()
        return done

    def redo(self) -> bool:
        done = self.shared is not None and self.shared.redo()
        self._report()
        return done

    def history(self, limit: int = 8):
        """The open file's latest label actions, newest first (see LabelStore.actions)."""
        return None if self.shared is None else self.shared.actions(limit)

    # ---------------------------------------------------------------- polling
    def _start_polling(self) -> None:
        if self._poller is None and self._schedule is not None:
            self._poller = Poller(self._due, self._schedule, self.sync, interval=self._interval)

    def _due(self) -> bool:
        shared = self.shared
        return shared is not None and (
            shared.changed_elsewhere() or self._file_record() is not None
        )

    def _file_record(self) -> dict | None:
        """The file's record if someone recorded another analysis since ours (thread-safe)."""
        store, key = self._store_obj, self.content_key
        if store is None or key is None:
            return None
        try:
            record = store.file(key)
        except (StoreUnavailable, sqlite3.Error):
            return None
        return record if record is not None and record["at"] != self._file_at else None

    def sync(self) -> bool:
        """Take the others' changes (and retry a failed save); True if anything changed.

        When another visitor re-analysed the file (another threshold, model or
        preprocessing), their table is shown first, from the cache, so that
        the labels, which they moved to its atoms, land on the same atoms.
        """
        shared = self.shared
        if shared is None:
            return False
        followed = self._follow()
        changed = shared.poll()
        self._report()
        return followed or changed

    def _follow(self) -> bool:
        record = self._file_record()
        if record is None:
            return False
        self._file_at = record["at"]
        state = self.state
        if record["user"] == state.user:
            return False
        before = {"model": state.model, **self.settings()}
        _take(state, record["params"])
        if {"model": state.model, **self.settings()} == before and state.table is not None:
            return False
        found = self.cached()
        if found is None or found[0] is None:
            _take(state, before)  # their analysis is not cached here: keep ours
            return False
        text = f"{record['user']} changed the analysis (threshold {state.threshold:.2f})"
        return state.show_analysis(*found, text=text)

    def set_user(self, name: str) -> None:
        if self.shared is not None and name.strip():
            self.shared.user = name.strip()[:80]

    def _report(self) -> None:
        shared, parts = self.shared, []
        if shared is not None and shared.store is not None and shared.store.recovered:
            parts.append(
                f"The label store was damaged; it was kept as {shared.store.recovered.name} "
                "and a new one started"
            )
        if shared is not None and shared.problem:
            parts.append(shared.problem)
        if shared is not None and shared.notices:
            parts.append("Overwritten: " + "; ".join(shared.notices[-3:]))
        if parts or not self.state.store_message.startswith(("Session", "Older")):
            self.state.store_message = ". ".join(parts)

    def _say(self, text: str) -> None:
        log.warning(text)
        self.state.store_message = text


def _take(state, params: dict) -> None:
    """Set the analysis settings (and calibration) recorded with a file on the state."""
    kinds = {"threshold": float, "model": str, "preprocess": str, "split": str,
             "pixel_size": float, "units": str}  # fmt: skip
    for name, kind in kinds.items():
        if name in params and hasattr(state, name):
            try:
                setattr(state, name, kind(params[name]))
            except (TypeError, ValueError) as exc:  # a value a newer version wrote
                log.warning("setting %s=%r not restored: %s", name, params[name], exc)


def _fits(atoms, shape) -> None:
    """Refuse a session whose atoms do not lie in an image of ``shape`` (T, H, W)."""
    _, height, width = shape
    outside = int(((atoms["x"] < -0.5) | (atoms["x"] > width - 0.5) | (atoms["y"] < -0.5)
                   | (atoms["y"] > height - 0.5)).sum())  # fmt: skip
    if outside:
        raise SourceMismatch(
            f"{outside} of the session's {len(atoms)} atoms lie outside this "
            f"{width} x {height} px image: it was saved for another image"
        )
