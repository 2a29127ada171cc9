"""The movie section of the dashboard is on the page only while a movie is open."""

import numpy as np

import atomstat
from app.page import make_page


def test_movie_section_is_shown_only_for_a_movie(tmp_path):
    movie = atomstat.simulate_movie(3, shape=(96, 96), dose=400, drift=1.0, rng=4)
    np.save(tmp_path / "movie.npy", movie.frames)
    np.save(tmp_path / "single.npy", movie.frames[0])
    page = make_page(data_dir=tmp_path, example="")
    section = page.movie.widget.layout
    assert not page.movie.shown and section.visibility == "hidden"  # nothing open yet
    page.data.files.value = "single.npy"
    page.data.open.click()
    assert page.state.n_frames == 1, page.state.status
    assert not page.movie.shown and section.height == "0px"  # no empty plots for one image
    page.data.files.value = "movie.npy"
    page.data.open.click()
    assert page.state.n_frames == 3 and page.movie.shown
    assert section.visibility is None and section.height is None
    page.data.files.value = "single.npy"  # a single image after the movie: hidden again
    page.data.open.click()
    assert page.state.n_frames == 1 and not page.movie.shown and section.visibility == "hidden"
