"""The page's "Live run and library" section: a results folder of the data folder opened
as a live run and as a library, and folders that are refused."""

import numpy as np
import pytest
from ipywidgets import Output

from app.runs_panel import RunsPanel
from app.state import AppState
from atomstat.batch import analyze_files
from atomstat.simulate import Defects, simulate_lattice


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    files = []
    for seed in (3, 4):
        sim = simulate_lattice(
            "hexagonal", shape=(96, 96), spacing=12, rng=seed,
            defects=Defects(dopants=0.05, dopant_ratio=3.0),
        )  # fmt: skip
        np.save(folder / f"lattice_{seed}.npy", sim.image)
        files.append(folder / f"lattice_{seed}.npy")
    analyze_files(files, folder / "results", material="test", anomalies="ocsvm")
    return folder


def test_a_results_folder_is_followed_live_then_browsed_as_a_library(data_dir):
    state = AppState(data_dir, user="ana")
    panel = RunsPanel(state, Output(), interval=0.05)
    assert panel.follow()
    live = panel.live
    assert panel.view.children == (live.widget,)
    assert live.feed.frames == 2  # both files' frames, read from the dataset
    assert "frame 0" in live.frame.title and len(live.points.x) == len(live.feed.newest)
    assert panel.open_library()
    assert panel.live is None  # following stopped
    assert live._thread is None or not live._thread.is_alive()
    view = panel.library
    assert panel.view.children == (view.widget,)
    view.material.value = "test"
    view.kind.value = "brighter (> 1.5x)"
    hits = view.gallery.hits
    assert len(hits) > 0 and set(hits["material"]) == {"test"}
    assert view.user == "ana"
    assert "(brighter (> 1.5x), test)" in view.status.value
    # opened again (to see what others labelled since): a new view, with the same pick
    assert panel.open_library() and panel.library is not view
    again = panel.library
    assert (again.material.value, again.kind.value) == ("test", "brighter (> 1.5x)")
    assert again.gallery.hits[["name", "atom_id"]].equals(hits[["name", "atom_id"]])


@pytest.mark.parametrize(
    "folder, message",
    [("../x", "'..'"), ("/etc", "relative to the data"), ("lattice_3.npy", "a file")],
)
def test_a_folder_outside_the_data_folder_or_a_file_is_refused(data_dir, folder, message):
    panel = RunsPanel(AppState(data_dir), Output())
    panel.folder.value = folder
    assert not panel.follow() and not panel.open_library()
    assert message in panel.message.value and panel.view.children == ()


def test_a_run_not_started_yet_is_followed_and_shows_its_first_file(data_dir, tmp_path):
    """Open the page, then start the acquisition: the results folder appears later."""
    panel = RunsPanel(AppState(data_dir), Output(), interval=0.05)
    panel.folder.value = "later"
    assert not panel.open_library() and "no folder 'later'" in panel.message.value
    assert panel.follow() and "waiting for 'later'" in panel.message.value
    assert panel.live.feed.frames == 0 and panel.live.frame.title == "waiting"
    analyze_files([data_dir / "lattice_3.npy"], data_dir / "later", anomalies="ocsvm")
    assert panel.live.refresh() and panel.live.feed.frames == 1
    assert "lattice_3.npy, frame 0" in panel.live.frame.title
    panel.stop()


def test_the_page_has_the_section_and_it_follows_the_data_folder(data_dir):
    from app.page import make_page

    page = make_page(AppState(data_dir), example="")
    assert page.runs.widget in page.widget.children
    assert page.runs.follow() and page.runs.live.feed.frames == 2
    page.runs.stop()
