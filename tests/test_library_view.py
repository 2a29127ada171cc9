"""The Library view: a gallery of hits across images, brushed and labelled into the store."""

import numpy as np
import pytest

from atomstat.batch import analyze_files
from atomstat.dataset import read_atoms
from atomstat.library import Library
from atomstat.simulate import Defects, simulate_lattice
from atomstat.store import LabelStore

pytest.importorskip("bqplot")

from app.library_view import Gallery, LibraryView, crop_png  # noqa: E402


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    folder = tmp_path_factory.mktemp("library")
    files = []
    for seed in (7, 8):
        sim = simulate_lattice(
            "honeycomb", shape=(112, 112), spacing=12, sigma=1.8, rng=seed,
            defects=Defects(vacancies=0.0, dopants=0.05, dopant_ratio=3.0, jitter=0.1),
        )  # fmt: skip
        np.save(folder / f"graphene_{seed}.npy", sim.image)
        files.append(folder / f"graphene_{seed}.npy")
    analyze_files(files, folder / "ds", material="graphene", anomalies="ocsvm")
    return Library(folder / "ds"), folder


def test_gallery_brush_and_labels_reach_the_store(library, tmp_path):
    lib, folder = library
    store = LabelStore(tmp_path / "labels.sqlite")
    gallery = Gallery(lib, store, size=16)
    assert gallery.kinds()[:3] == ["anomaly flag", "brighter (> 1.5x)", "dimmer (< 0.7x)"]
    hits = gallery.show("graphene", "brighter (> 1.5x)")
    expected = lib.find(material="graphene", brighter=1.5)
    assert hits[["source_id", "frame", "atom"]].equals(expected[["source_id", "frame", "atom"]])
    assert gallery.crops.shape == (len(hits), 16, 16) and gallery.selected.all()
    low, high = np.percentile(hits["area"], [0, 50])
    n = gallery.brush("area", (high, low))  # either order, as a brush gives it
    assert n == int(hits["area"].between(low, high).sum()) and 0 < n < len(hits)
    assert gallery.label("Si dopant", user="ana") == n
    labels = gallery.labels()
    assert (labels[gallery.selected] == "Si dopant").all() and labels[
        ~gallery.selected
    ].isna().all()
    for key, rows in hits[gallery.selected].groupby("sha256"):  # the per-file entries
        manual = dict(store.state(key)["manual"])
        assert set(manual) == set(rows["atom_id"]) and store.state(key)["classes"]["Si dopant"]
        atoms = read_atoms(lib.root, rows["source_id"].iloc[0])
        assert np.allclose(atoms.loc[list(manual), "x"].sort_values(), rows["x"].sort_values())
    with pytest.raises(ValueError, match="needs a name"):
        gallery.label("  ", user="ana")
    with pytest.raises(ValueError, match="no label store"):
        Gallery(lib).label("x", user="ana")


def test_the_view_draws_the_brushed_hits(library, tmp_path):
    lib, _ = library
    gallery = Gallery(lib, LabelStore(tmp_path / "labels.sqlite"), size=16)
    view = LibraryView(gallery, user="ben")
    view.material.value = "graphene"
    view.kind.value = "brighter (> 1.5x)"
    hits = gallery.hits
    assert len(view.points.x) == len(hits) == view.shown == view.tiles.value.count("<figure")
    x0, x1 = np.percentile(hits["area"], [0, 60])
    y0, y1 = hits["intensity"].min() - 1, hits["intensity"].max() + 1
    view.brush.brushing = True
    view.brush.selected_x, view.brush.selected_y = [x0, x1], [y0, y1]
    view.brush.brushing = False
    chosen = int(hits["area"].between(x0, x1).sum())
    assert view.shown == view.tiles.value.count("<figure") == chosen < len(hits)
    view.name.value = "Si"
    view.apply.click()
    assert "labelled" in view.status.value and (gallery.labels() == "Si").sum() == chosen
    view.name.value = ""
    view.apply.click()
    assert "needs a name" in view.status.value
    assert crop_png(np.full((4, 4), np.nan, np.float32)).startswith(b"\x89PNG")
