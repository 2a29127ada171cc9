"""Labels on atoms: automatic and manual layers, named coloured classes, undo and redo.

A :class:`LabelSet` keys every label on the atom id (the index of the atoms
table), so labels survive sorting and filtering the table. It keeps two
layers apart:

- *automatic* labels, set by a detector (:func:`atomstat.find_anomalies`,
  :func:`atomstat.cluster`...). Re-running a detector replaces its own
  automatic labels and nothing else;
- *manual* labels, set by a person. A manual label always wins over an
  automatic one, and no detector ever changes it. A manual label of ``None``
  means "no label, by hand": the paper's refinement that moves one atom out
  of the anomaly cluster.

Every change (labels, class names, colours) can be undone and redone. The
class is pure Python with no widgets; the dashboard observes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

__all__ = ["PALETTE", "LabelSet"]

#: Colours given to new classes in turn (colour-blind-friendly, Okabe-Ito order).
PALETTE = (
    "#d55e00",
    "#009e73",
    "#0072b2",
    "#e69f00",
    "#cc79a7",
    "#56b4e9",
    "#f0e442",
    "#000000",
)

_MAX_HISTORY = 500


class LabelSet:
    """Labels of atoms, keyed by atom id, with an automatic and a manual layer.

    Parameters
    ----------
    classes : mapping of name to colour, iterable of names, or str, optional
        Classes to start with; colours default to :data:`PALETTE` in turn.
        A single string is one class name (``LabelSet("dopant")``), not
        one class per character.

    Raises
    ------
    TypeError
        If ``classes`` is none of these (a number, for example).
    ValueError
        If a class name is empty or not a string, or a colour is not a colour.

    Examples
    --------
    >>> labels = LabelSet({"dopant": "red"})
    >>> labels.set_auto(pd.Series([False, True, True], index=[10, 11, 12]), name="dopant")
    >>> labels.set_manual([12], None)  # the person removes atom 12 from the class
    >>> labels.labels([10, 11, 12]).tolist()
    [nan, 'dopant', nan]
    >>> labels.undo()
    >>> labels.labels([12]).tolist(), labels.color("dopant")
    (['dopant'], '#ff0000')
    """

    def __init__(self, classes: Mapping[str, str] | Iterable[str] | None = None):
        self._state = {"classes": {}, "auto": {}, "manual": {}}
        self._undo: list[tuple[str, dict]] = []
        self._redo: list[tuple[str, dict]] = []
        self._observers: list[Callable] = []
        for name, color in _class_items(classes):
            self._state["classes"][_name(name)] = _hex(color or self._next_color())

    # ------------------------------------------------------------------ classes
    @property
    def classes(self) -> dict[str, str]:
        """Class name -> colour (hex), in the order the classes were made."""
        return dict(self._state["classes"])

    def color(self, name: str) -> str:
        """Colour of a class (hex)."""
        if name not in self._state["classes"]:
            raise KeyError(f"no class named {name!r}; classes: {list(self._state['classes'])}")
        return self._state["classes"][name]

    def suggest_color(self) -> str:
        """The colour a new class gets: the first colour of :data:`PALETTE` not in use.

        Examples
        --------
        >>> LabelSet({"dopant": PALETTE[0]}).suggest_color() == PALETTE[1]
        True
        """
        return self._next_color()

    def add_class(self, name: str, color: str | None = None) -> None:
        """Make a new class (a no-op when it exists and no colour is given)."""
        name = _name(name)
        if name in self._state["classes"] and color is None:
            return
        with self._change(f"add class {name!r}"):
            self._state["classes"][name] = _hex(color or self._next_color())

    def set_color(self, name: str, color: str) -> None:
        """Change the colour of a class."""
        self.color(name)
        with self._change(f"colour {name!r} {color}"):
            self._state["classes"][name] = _hex(color)

    def rename_class(self, old: str, new: str) -> None:
        """Rename a class; its atoms keep their labels under the new name."""
        self.color(old)
        new = _name(new)
        if new in self._state["classes"]:
            raise ValueError(f"a class named {new!r} exists already")
        with self._change(f"rename {old!r} to {new!r}"):
            s = self._state
            s["classes"] = {(new if k == old else k): v for k, v in s["classes"].items()}
            for layer in (s["auto"], s["manual"]):
                for key in [k for k, v in layer.items() if v == old]:
                    layer[key] = new

    def remove_class(self, name: str) -> None:
        """Delete a class and every label (automatic and manual) of that class."""
        self.color(name)
        with self._change(f"remove class {name!r}"):
            s = self._state
            del s["classes"][name]
            for layer in ("auto", "manual"):
                s[layer] = {k: v for k, v in s[layer].items() if v != name}

    # ------------------------------------------------------------------- labels
    def set_auto(self, labels, *, name: str | None = None) -> None:
        """Set the labels a detector found, replacing its earlier automatic labels.

        Parameters
        ----------
        labels : pandas.Series or mapping of atom id to label
            Boolean (True = the class ``name``), or class names per atom
            (None/NaN = no label).
        name : str, optional
            The class of a boolean ``labels``.

        Notes
        -----
        The automatic labels of every class named in ``name`` or ``labels``
        are replaced wherever they are. With class names, every atom listed
        gets exactly its new automatic label (or none). Manual labels are
        never touched.
        """
        assigned, boolean = _as_assignments(labels, name)
        replaced = set(assigned.values()) | ({_name(name)} if name is not None else set())
        replaced.discard(None)
        given = set() if boolean else set(assigned)  # atoms whose automatic label is restated
        with self._change(f"automatic {sorted(replaced)}: {len(assigned)} atoms"):
            s = self._state
            s["auto"] = {k: v for k, v in s["auto"].items() if v not in replaced and k not in given}
            for cls in sorted(replaced, key=str):
                self._ensure_class(cls)
            s["auto"].update({k: v for k, v in assigned.items() if v is not None})

    def clear_auto(self, name: str | None = None) -> None:
        """Drop the automatic labels (of one class, or all)."""
        with self._change(f"clear automatic {name or 'all'}"):
            auto = self._state["auto"]
            self._state["auto"] = (
                {} if name is None else {k: v for k, v in auto.items() if v != name}
            )

    def set_manual(self, ids, name: str | None) -> None:
        """Label atoms by hand; ``name=None`` marks them as having no label, by hand."""
        keys = _ids(ids)
        label = None if name is None else _name(name)
        with self._change(f"manual {label!r}: {len(keys)} atoms"):
            if label is not None:
                self._ensure_class(label)
            self._state["manual"].update(dict.fromkeys(keys, label))

    def clear_manual(self, ids=None) -> None:
        """Forget manual labels (of ``ids``, or all), so the automatic ones show again."""
        with self._change("clear manual"):
            if ids is None:
                self._state["manual"] = {}
            else:
                for key in _ids(ids):
                    self._state["manual"].pop(key, None)

    # ------------------------------------------------------------------ reading
    def label_of(self, atom_id) -> str | None:
        """The label shown for one atom: manual if set, else automatic, else None."""
        (key,) = _ids([atom_id])
        s = self._state
        return s["manual"][key] if key in s["manual"] else s["auto"].get(key)

    def labels(self, index) -> pd.Series:
        """Label of every atom in ``index`` (categorical, NaN where none), named ``label``.

        ``index`` is a collection of atom ids, e.g. ``atoms.index``; for one
        atom use :meth:`label_of`.
        """
        index = _as_index(index)
        s = self._state
        merged = {**s["auto"], **s["manual"]}
        values = [merged.get(k) for k in _ids(index)]
        cats = pd.Categorical(values, categories=list(s["classes"]))
        return pd.Series(cats, index=index, name="label")

    def sources(self, index) -> pd.Series:
        """Where each label comes from: "manual", "auto" or "" (none), named ``label_source``."""
        index = _as_index(index)
        s = self._state
        out = [
            "manual" if k in s["manual"] else "auto" if k in s["auto"] else "" for k in _ids(index)
        ]
        return pd.Series(out, index=index, name="label_source", dtype=object)

    def ids(self, name: str) -> list[int]:
        """Atom ids whose shown label is ``name``, sorted."""
        merged = {**self._state["auto"], **self._state["manual"]}
        return sorted(k for k, v in merged.items() if v == name)

    def counts(self) -> dict[str, int]:
        """Number of atoms shown with each class."""
        return {c: len(self.ids(c)) for c in self._state["classes"]}

    def apply(self, atoms: pd.DataFrame) -> pd.DataFrame:
        """A copy of ``atoms`` with the ``label`` and ``label_source`` columns.

        Raises
        ------
        TypeError
            If ``atoms`` is not the atoms table (a DataFrame), or its index
            does not hold integer atom ids.
        """
        if not isinstance(atoms, pd.DataFrame):
            raise TypeError(
                f"atoms must be the atoms table (a DataFrame), got {type(atoms).__name__}"
            )
        out = atoms.copy()
        out["label"] = self.labels(atoms.index).array  # categorical: the classes in order
        out["label_source"] = self.sources(atoms.index).to_numpy()
        return out

    # ------------------------------------------------------------------ history
    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def history(self) -> list[str]:
        """Descriptions of the changes that can be undone, oldest first."""
        return [text for text, _ in self._undo]

    def undo(self) -> None:
        """Take back the last change (no-op when there is none)."""
        self._swap(self._undo, self._redo)

    def redo(self) -> None:
        """Make the last undone change again (no-op when there is none)."""
        self._swap(self._redo, self._undo)

    def observe(self, callback: Callable[[LabelSet], None], *, first: bool = False) -> None:
        """Call ``callback(self)`` after every change, undo and redo.

        With ``first``, it is called before the observers already there (a
        store that saves the change before the views show it).
        """
        if first:
            self._observers.insert(0, callback)
        else:
            self._observers.append(callback)

    def unobserve(self, callback: Callable[[LabelSet], None]) -> None:
        self._observers.remove(callback)

    # -------------------------------------------------------------- persistence
    def to_dict(self) -> dict:
        """JSON-ready state (classes, automatic and manual labels); no history.

        Examples
        --------
        >>> labels = LabelSet()
        >>> labels.set_manual([3], "adatom")
        >>> LabelSet.from_dict(labels.to_dict()).labels([3]).tolist()
        ['adatom']
        """
        s = self._state
        return {
            "classes": dict(s["classes"]),
            "auto": [[k, v] for k, v in sorted(s["auto"].items())],
            "manual": [[k, v] for k, v in sorted(s["manual"].items())],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> LabelSet:
        """Rebuild a label set written by :meth:`to_dict` (with an empty history)."""
        try:
            out = cls(data["classes"])
            out._state["auto"] = {int(k): _name(v) for k, v in data["auto"]}
            out._state["manual"] = {
                int(k): None if v is None else _name(v) for k, v in data["manual"]
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a label set: {exc}") from None
        for name in {*out._state["auto"].values(), *out._state["manual"].values()} - {None}:
            out._ensure_class(name)
        return out

    def replace_state(self, data: Mapping) -> None:
        """Take every label from ``data`` (as :meth:`to_dict` writes it), made elsewhere.

        For labels that changed outside this set (another person's, read from
        a shared store): the observers are told, but the change is not one of
        this set's own, so it is not in the undo history, and the history is
        cleared (its snapshots would undo the other person's changes too).

        Examples
        --------
        >>> labels = LabelSet()
        >>> labels.set_manual([1], "mine")
        >>> theirs = {"classes": {"theirs": "blue"}, "auto": [], "manual": [[2, "theirs"]]}
        >>> labels.replace_state(theirs)
        >>> labels.ids("theirs"), labels.can_undo
        ([2], False)
        """
        state = LabelSet.from_dict(data)._state
        if state == self._state:
            return
        self._state = state
        self._undo.clear()
        self._redo.clear()
        self._notify()

    def remapped(self, mapping: Mapping[int, int]) -> LabelSet:
        """A new label set with every atom id moved through ``mapping`` (old id -> new id).

        For a table that was rebuilt (for example re-thresholded) and matched to the
        old one: ids without a partner lose their label; classes and colours stay.
        The new set starts with an empty history.

        Raises
        ------
        TypeError
            If ``mapping`` is not a mapping (a dict or a pandas Series) of
            integer atom ids.

        Examples
        --------
        >>> labels = LabelSet({"dopant": "#d55e00"})
        >>> labels.set_manual([3, 7], "dopant")
        >>> labels.remapped({3: 30, 5: 50}).ids("dopant")
        [30]
        """
        if isinstance(mapping, pd.Series):
            mapping = mapping.to_dict()
        if not isinstance(mapping, Mapping):
            raise TypeError(
                "mapping must map old atom ids to new ones (a dict or a Series), "
                f"got {type(mapping).__name__}"
            )
        mapping = dict(zip(_ids(list(mapping)), _ids(list(mapping.values())), strict=True))
        data = self.to_dict()
        for layer in ("auto", "manual"):
            data[layer] = [[mapping[k], v] for k, v in data[layer] if k in mapping]
        return LabelSet.from_dict(data)

    def __eq__(self, other) -> bool:
        return isinstance(other, LabelSet) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in self.counts().items())
        n_manual = len(self._state["manual"])
        return f"LabelSet({counts or 'no classes'}; {n_manual} manual)"

    # ------------------------------------------------------------------ private
    def _next_color(self) -> str:
        used = set(self._state["classes"].values())
        free = [c for c in PALETTE if c not in used]
        return free[0] if free else PALETTE[len(used) % len(PALETTE)]

    def _ensure_class(self, name):
        if name not in self._state["classes"]:
            self._state["classes"][name] = self._next_color()

    def _change(self, text):
        return _Change(self, text)

    def _swap(self, source, target):
        if not source:
            return
        text, state = source.pop()
        target.append((text, _copy(self._state)))
        self._state = state
        self._notify()

    def _notify(self):
        for callback in list(self._observers):
            callback(self)


class _Change:
    """Context manager: snapshot the state, apply a change, record it for undo."""

    def __init__(self, owner: LabelSet, text: str):
        self.owner, self.text = owner, text

    def __enter__(self):
        self.before = _copy(self.owner._state)

    def __exit__(self, exc_type, exc, tb):
        owner = self.owner
        if exc_type is not None:
            owner._state = self.before  # a failed change leaves no trace
            return False
        if owner._state == self.before:
            return False
        owner._undo.append((self.text, self.before))
        del owner._undo[:-_MAX_HISTORY]
        owner._redo.clear()
        owner._notify()
        return False


def _copy(state):
    return {k: dict(v) for k, v in state.items()}


def _class_items(classes):
    """``(name, colour or None)`` pairs of the ``classes`` argument of :class:`LabelSet`."""
    if classes is None:
        return []
    if isinstance(classes, str):  # one class name, not one class per character
        return [(classes, None)]
    if isinstance(classes, Mapping):
        return list(classes.items())
    if isinstance(classes, Iterable):
        return [(c, None) for c in classes]
    raise TypeError(
        "classes must be a mapping of name to colour, class names or one name, "
        f"got {classes!r} ({type(classes).__name__})"
    )


def _as_index(index) -> pd.Index:
    """Atom ids as an Index; refuse None, strings and single ids, naming the argument."""
    if isinstance(index, pd.Index):
        return index
    if index is None or isinstance(index, str | bytes | Mapping) or np.ndim(index) == 0:
        raise TypeError(
            "index must be a collection of atom ids (e.g. atoms.index), "
            f"got {type(index).__name__}; for one atom use label_of()"
        )
    return pd.Index(index)


def _name(name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a class name must be a non-empty string, got {name!r}")
    return name


def _hex(color) -> str:
    from matplotlib.colors import to_hex

    try:
        return to_hex(color)
    except (ValueError, TypeError):
        raise ValueError(f"not a colour: {color!r}") from None


def _ids(ids) -> list[int]:
    """Atom ids as Python ints (a scalar id, a list, an Index or a boolean Series)."""
    if isinstance(ids, pd.Series) and pd.api.types.is_bool_dtype(ids):
        ids = ids.index[ids.to_numpy()]
    values = np.atleast_1d(np.asarray(ids, dtype=object))
    out = []
    for v in values:
        if isinstance(v, bool | np.bool_) or not isinstance(v, int | np.integer):
            raise TypeError(f"atom ids must be integers (the atoms table index), got {v!r}")
        out.append(int(v))
    return out


def _as_assignments(labels, name) -> tuple[dict[int, str | None], bool]:
    if isinstance(labels, Mapping):
        labels = pd.Series(dict(labels), dtype=object)
    if not isinstance(labels, pd.Series):
        raise TypeError(f"labels must be a pandas Series or a mapping, got {type(labels).__name__}")
    keys = _ids(labels.index)
    if pd.api.types.is_bool_dtype(labels):
        if name is None:
            raise ValueError("name is required when labels is boolean")
        cls = _name(name)
        flags = labels.to_numpy()
        return {k: (cls if v else None) for k, v in zip(keys, flags, strict=True)}, True
    values = [None if pd.isna(v) else _name(v) for v in labels.astype(object).to_numpy()]
    return dict(zip(keys, values, strict=True)), False
