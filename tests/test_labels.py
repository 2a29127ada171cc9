"""Tests for atomstat.labels.LabelSet: two layers, classes, undo/redo, ids that survive sorting."""

import json

import numpy as np
import pandas as pd
import pytest

import atomstat
from atomstat.labels import PALETTE, LabelSet
from atomstat.table import make_atoms


def atoms_table(n=10, start=100):
    return make_atoms({"x": np.arange(n, dtype=float), "y": np.zeros(n)}, start_id=start)


def flags(atoms, ids):
    return pd.Series(atoms.index.isin(ids), index=atoms.index)


def shown(labels, atoms):
    return labels.labels(atoms.index).astype(object).where(lambda s: s.notna(), None).tolist()


def test_manual_labels_win_and_survive_a_rerun_of_the_detector():
    atoms = atoms_table()
    labels = LabelSet()
    labels.set_auto(flags(atoms, [101, 102, 103]), name="anomaly")
    labels.set_manual([102], None)  # a person removes 102 from the anomalies
    labels.set_manual([105], "anomaly")  # and adds 105
    assert labels.ids("anomaly") == [101, 103, 105]
    # the detector runs again with other settings: its own labels change, the manual ones stay
    labels.set_auto(flags(atoms, [102, 104]), name="anomaly")
    assert labels.ids("anomaly") == [104, 105]
    assert labels.sources([101, 102, 104, 105]).tolist() == ["", "manual", "auto", "manual"]
    # forgetting the manual label of 102 lets the automatic one show again
    labels.clear_manual([102])
    assert labels.ids("anomaly") == [102, 104, 105]


def test_rerunning_a_detector_leaves_other_automatic_classes_alone():
    atoms = atoms_table()
    labels = LabelSet()
    labels.set_auto(flags(atoms, [100, 101]), name="anomaly")
    labels.set_auto(pd.Series({105: "cluster 0", 106: "cluster 1", 107: "cluster 2"}))
    labels.set_auto(flags(atoms, [102]), name="anomaly")
    assert labels.ids("anomaly") == [102]
    assert labels.ids("cluster 2") == [107]
    # a clustering rerun with two clusters restates every atom it lists and drops cluster 2
    labels.set_auto(pd.Series({105: "cluster 1", 106: "cluster 0", 107: None}))
    assert labels.ids("cluster 0") == [106] and labels.ids("cluster 1") == [105]
    assert labels.label_of(107) is None


def test_labels_follow_atom_ids_through_sorting_and_filtering():
    atoms = atoms_table()
    labels = LabelSet()
    labels.set_auto(flags(atoms, [103, 107]), name="dopant")
    labels.set_manual([101], "adatom")
    shuffled = atoms.sample(frac=1.0, random_state=0)
    out = labels.apply(shuffled)
    assert out.index.equals(shuffled.index)
    by_id = out["label"].astype(object).where(out["label"].notna(), None).to_dict()
    assert by_id[103] == by_id[107] == "dopant" and by_id[101] == "adatom"
    assert sum(v is not None for v in by_id.values()) == 3
    kept = labels.apply(atoms[atoms.x > 5])  # 106..109: only 107 is labelled
    assert kept["label"].notna().sum() == 1 and kept.loc[107, "label"] == "dopant"
    assert kept.loc[107, "label_source"] == "auto"
    assert isinstance(out["label"].dtype, pd.CategoricalDtype)
    assert list(out["label"].cat.categories) == ["dopant", "adatom"]


def test_every_change_can_be_undone_and_redone():
    atoms = atoms_table()
    labels = LabelSet()
    steps = [
        lambda s: s.add_class("dopant", "red"),
        lambda s: s.set_auto(flags(atoms, [100, 101, 102]), name="dopant"),
        lambda s: s.set_manual([101], None),
        lambda s: s.set_manual([104], "adatom"),
        lambda s: s.set_color("adatom", "#00ff00"),
        lambda s: s.rename_class("dopant", "Mo"),
        lambda s: s.clear_manual([101]),
        lambda s: s.clear_auto("Mo"),
        lambda s: s.remove_class("adatom"),
    ]
    states = [labels.to_dict()]
    for step in steps:
        step(labels)
        states.append(labels.to_dict())
    assert len(labels.history) == len(steps)
    assert len({json.dumps(s) for s in states}) == len(states)  # every step changed something
    for state in reversed(states[:-1]):
        labels.undo()
        assert labels.to_dict() == state
    assert not labels.can_undo
    labels.undo()  # nothing left: a no-op
    for state in states[1:]:
        labels.redo()
        assert labels.to_dict() == state
    assert not labels.can_redo


def test_a_new_change_clears_redo_and_no_op_changes_leave_no_history():
    labels = LabelSet()
    labels.set_manual([1, 2], "adatom")
    labels.set_manual([1], "adatom")  # the same again
    labels.add_class("adatom")  # exists: nothing to do
    assert len(labels.history) == 1
    labels.undo()
    assert labels.can_redo
    labels.set_manual([3], "dopant")
    assert not labels.can_redo
    assert labels.ids("dopant") == [3] and labels.ids("adatom") == []


def test_class_names_and_colours():
    labels = LabelSet({"dopant": "red", "adatom": (0.0, 0.5, 0.0)})
    assert labels.classes == {"dopant": "#ff0000", "adatom": "#008000"}
    labels.set_manual([5], "vacancy")  # a new class gets the next free palette colour
    assert labels.color("vacancy") == PALETTE[0]
    labels.set_color("vacancy", "C1")
    assert labels.color("vacancy") == "#ff7f0e"
    labels.rename_class("vacancy", "hole")
    assert labels.ids("hole") == [5] and "vacancy" not in labels.classes
    labels.remove_class("hole")
    assert labels.label_of(5) is None and labels.counts() == {"dopant": 0, "adatom": 0}


def test_failed_changes_leave_no_trace():
    labels = LabelSet({"a": "red", "b": "blue"})
    labels.set_manual([1], "a")
    with pytest.raises(ValueError, match="exists"):
        labels.rename_class("a", "b")
    with pytest.raises(ValueError, match="colour"):
        labels.set_color("a", "not-a-colour")
    with pytest.raises(TypeError, match="integers"):
        labels.set_manual(["first"], "a")
    assert labels.history == ["manual 'a': 1 atoms"]
    assert labels.ids("a") == [1] and labels.color("a") == "#ff0000"


def test_observers_hear_every_change_undo_and_redo():
    labels = LabelSet()
    heard, other = [], []
    labels.observe(lambda s: heard.append(s.counts()))
    labels.observe(other.append)
    labels.set_manual([1], "a")
    labels.undo()
    labels.redo()
    assert heard == [{"a": 1}, {}, {"a": 1}]
    labels.unobserve(other.append)
    labels.set_manual([1], "a")  # no change: nobody is called
    labels.set_manual([2], "a")
    assert len(heard) == 4 and len(other) == 3


def test_round_trip_through_json_keeps_both_layers():
    atoms = atoms_table()
    labels = LabelSet({"dopant": "#d62728"})
    labels.set_auto(flags(atoms, [100, 101]), name="dopant")
    labels.set_manual([101], None)
    labels.set_manual([np.int64(109)], "adatom")
    back = LabelSet.from_dict(json.loads(json.dumps(labels.to_dict())))
    assert back == labels
    assert shown(back, atoms) == ["dopant"] + [None] * 8 + ["adatom"]
    assert back.sources([100, 101, 102]).tolist() == ["auto", "manual", ""]
    assert not back.can_undo  # history is not part of the saved state


def test_boolean_masks_and_index_objects_are_accepted_as_ids():
    atoms = atoms_table()
    labels = LabelSet()
    labels.set_manual(flags(atoms, [102, 103]), "dopant")
    labels.set_manual(atoms.index[-2:], "adatom")
    labels.set_manual(np.int64(100), "adatom")
    assert labels.ids("dopant") == [102, 103]
    assert labels.ids("adatom") == [100, 108, 109]


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: s.set_auto(pd.Series([True]), name=None), ValueError, "name"),
        (lambda s: s.set_auto([1, 2], name="a"), TypeError, "Series"),
        (lambda s: s.set_manual([1.5], "a"), TypeError, "integers"),
        (lambda s: s.set_manual([True], "a"), TypeError, "integers"),
        (lambda s: s.set_manual([1], ""), ValueError, "class name"),
        (lambda s: s.color("nope"), KeyError, "nope"),
        (lambda s: s.rename_class("nope", "x"), KeyError, "nope"),
        (lambda s: s.add_class("x", "#zz0000"), ValueError, "colour"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call(LabelSet())


def test_from_dict_refuses_something_else():
    with pytest.raises(ValueError, match="label set"):
        LabelSet.from_dict({"classes": {}})


def test_public_name():
    assert atomstat.LabelSet is LabelSet


def test_remapped_moves_labels_to_new_ids_and_drops_the_unmatched():
    labels = LabelSet({"dopant": "#d55e00", "adatom": "#0072b2"})
    labels.set_auto(pd.Series({1: "dopant", 2: "adatom", 4: "dopant"}))
    labels.set_manual([2], None)  # taken out of its class by hand
    labels.set_manual([9], "adatom")
    moved = labels.remapped({1: 11, 2: 12, 9: 19})  # atom 4 has no partner
    assert moved.ids("dopant") == [11]
    assert moved.ids("adatom") == [19]
    assert moved.label_of(12) is None and moved.sources([12]).iloc[0] == "manual"
    assert moved.classes == labels.classes
    assert not moved.can_undo
    assert labels.ids("dopant") == [1, 4]  # the original is unchanged


def test_a_string_is_one_class_name_not_one_class_per_character():
    assert list(LabelSet("dopant").classes) == ["dopant"]
    assert list(LabelSet(["dopant", "adatom"]).classes) == ["dopant", "adatom"]
    assert LabelSet().classes == {} and LabelSet(None).classes == {}


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: LabelSet(3), "classes"),
        (lambda: LabelSet().apply(None), "atoms"),
        (lambda: LabelSet().apply(np.zeros(3)), "atoms"),
        (lambda: LabelSet().labels(None), "index"),
        (lambda: LabelSet().labels(5), "index"),
        (lambda: LabelSet().sources(None), "index"),
        (lambda: LabelSet().remapped(None), "mapping"),
        (lambda: LabelSet().remapped({1: 2.5}), "integers"),
    ],
)
def test_arguments_of_the_wrong_type_are_named(call, name):
    with pytest.raises(TypeError, match=name):
        call()


def test_remapped_takes_a_series_as_the_mapping():
    labels = LabelSet()
    labels.set_manual([1, 2], "adatom")
    assert labels.remapped(pd.Series({1: 10, 2: 20})).ids("adatom") == [10, 20]


def test_replace_state_takes_labels_made_elsewhere_outside_the_undo_history():
    labels = LabelSet({"mine": "#d55e00"})
    seen = []
    labels.observe(lambda ls: seen.append(ls.ids("theirs")))
    labels.set_manual([1], "mine")
    theirs = {"classes": {"theirs": "#0072b2"}, "auto": [[4, "theirs"]], "manual": [[2, None]]}
    labels.replace_state(theirs)
    assert seen == [[], [4]] and labels.to_dict() == theirs
    assert not labels.can_undo  # undoing would bring back a state the others have changed
    labels.replace_state(theirs)  # the same labels: nobody is told
    assert len(seen) == 2
    with pytest.raises(ValueError, match="not a label set"):
        labels.replace_state({"classes": {}})
