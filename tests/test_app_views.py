"""The dashboard's views without a browser: drive the selector traits as the browser
would, then check the state and the marks of a second, linked view."""

import base64
import datetime
import re

import numpy as np
import pytest

import atomstat
from app.page import make_page
from app.render import display_png, reduce
from app.selection import IdsRule
from atomstat.simulate import simulate_lattice


@pytest.fixture(scope="module")
def lattice():
    return simulate_lattice("hexagonal", shape=(128, 128), spacing=14, sigma=2.0, rotation=0, rng=7)


@pytest.fixture
def page(tmp_path, lattice, threshold_model):
    np.save(tmp_path / "lattice.npy", lattice.image)
    threshold_model.save(tmp_path / "threshold.keras")
    page = make_page(data_dir=tmp_path, example="")
    page.detection.model.value = "threshold.keras"
    page.data.files.value = "lattice.npy"
    page.data.open.click()
    page.detection.run.click()
    assert page.state.table is not None, page.state.status
    return page


def _upload(name, content):
    """One file as the FileUpload widget's value holds it after a browser upload."""
    stamp = datetime.datetime.now(datetime.UTC)
    item = {"name": name, "type": "", "size": len(content), "content": memoryview(content)}
    return ({**item, "last_modified": stamp},)


def _rings(view):
    return set(zip(np.round(view.highlight.x, 6), np.round(view.highlight.y, 6), strict=True))


def _xy(rows):
    return set(zip(np.round(rows.x, 6), np.round(rows.y, 6), strict=True))


def test_page_shows_the_atoms(page):
    table = page.state.table
    assert len(page.image.centres.x) == len(table)
    assert page.explorer.x.value == "area" and page.explorer.y.value == "circularity"
    assert len(page.explorer.points.x) == len(table)
    assert np.isnan(page.image.contours.x).sum() >= len(table)  # one break per contour
    assert page.image.bar_text.text[0] == "20 px"  # a round length, about 1/5 of 128 px


def test_brush_on_scatter_lights_up_the_image_and_the_table(page):
    table, explorer = page.state.table, page.explorer
    low = float(table.area.quantile(0.5))
    brush = explorer.brush
    brush.brushing = True
    brush.selected_x = [low, float(table.area.max()) + 1]
    brush.selected_y = [0.0, 1.0]
    assert len(page.state.selected) == 0  # nothing happens while brushing
    brush.brushing = False
    expected = table[(table.area >= low) & table.circularity.between(0, 1)]
    assert set(page.state.selected) == set(expected.index)
    assert _rings(page.image) == _xy(expected)  # the linked image view
    assert f"{len(expected)} selected" in explorer.count.value
    assert len(re.findall("<tr>", explorer.table.value)) == min(len(expected), 12) + 1
    hist = explorer.histograms[0]
    assert hist.chosen.y.sum() == len(expected)


def test_modes_lasso_and_interval_brush(page):
    table, explorer = page.state.table, page.explorer
    hist = explorer.histograms[0]
    column = hist.column.value
    cut = float(table[column].median())
    hist.brush.brushing = True
    hist.brush.selected = [cut, float(table[column].max())]
    hist.brush.brushing = False
    big = set(table.index[table[column] >= cut])
    assert set(page.state.selected) == big
    explorer.mode.value = "remove"
    explorer.tool.value = "lasso"
    explorer.points.selected = [0, 1, 2]  # what the lasso sends when it closes
    assert set(page.state.selected) == big - set(table.index[:3])
    explorer.mode.value = "intersect"
    explorer.tool.value = "brush"
    explorer.brush.brushing = True
    explorer.brush.selected_x, explorer.brush.selected_y = [0, 1e9], [0.0, 0.9]
    explorer.brush.brushing = False
    expected = (big - set(table.index[:3])) & set(table.index[table.circularity <= 0.9])
    assert set(page.state.selected) == expected
    assert _rings(page.image) == _xy(table.loc[sorted(expected)])
    page.labels.undo.click()
    assert set(page.state.selected) == big - set(table.index[:3])


def test_click_selects_an_atom_and_labels_recolour_every_view(page):
    state, image = page.state, page.image
    image.centres._handle_custom_msgs(None, {"event": "element_click", "data": {"index": 5}})
    atom = state.table.index[5]
    assert list(state.selected) == [atom]
    page.labels.name.value = "dopant"
    page.labels.color.value = "#00ff00"
    page.labels.label.click()
    assert state.labels.ids("dopant") == [atom]
    assert image.centres.colors[5] == "#00ff00"
    assert page.explorer.points.colors[5] == "#00ff00"
    assert "#00ff00" in image.contours.colors  # the atom's contour is drawn in its colour
    assert "dopant: 1" in page.labels.counts.value
    page.labels.unlabel.click()
    assert image.centres.colors[5] == "#ffffff"
    page.labels.undo.click()
    assert image.centres.colors[5] == "#00ff00"


def test_threshold_slider_relocates_and_redraws(page, lattice):
    state = page.state
    page.detection.threshold.value = 0.9
    expected = atomstat.locate(state.prob[0], lattice.image, threshold=0.9,
                               sigma=state.atoms.attrs["sigma"])  # fmt: skip
    assert len(state.table) == len(expected)
    assert len(page.image.centres.x) == len(expected) == len(page.explorer.points.x)
    np.testing.assert_allclose(np.sort(page.explorer.points.x), np.sort(expected.area))


def test_display_modes_and_large_images(page):
    page.image.mode.value = "blend"
    assert page.image.picture.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    big = np.random.default_rng(0).random((2048, 1500)).astype(np.float32)
    png, xs, ys = display_png(big)
    small, k = reduce(big)
    assert k == 2 and small.shape == (1024, 750)
    assert xs == (-0.5, 1499.5) and ys == (2047.5, -0.5)
    assert len(png) < big.nbytes / 3


def test_export_figure_table_session(page, tmp_path):
    page.state.select(IdsRule((1, 2)))
    page.state.label_selection("odd")
    page.exports.figure_format.value = "png"
    page.exports.figure.click()
    link = page.exports.links.value
    saved = tmp_path / "exports" / "lattice_annotated.png"
    assert saved.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = re.search(r"base64,([A-Za-z0-9+/=]+)'", link).group(1)
    assert base64.b64decode(data) == saved.read_bytes()
    page.exports.table_format.value = "h5"
    page.exports.table.click()
    table = atomstat.read_table(tmp_path / "exports" / "lattice_atoms.h5")
    assert table.loc[[1, 2], "label"].tolist() == ["odd", "odd"]
    page.exports.session.click()
    assert atomstat.load_session(tmp_path / "exports" / "lattice_session.json").labels.ids("odd")


def test_upload_limit_and_bad_file_in_the_page(page, tmp_path):
    page.data.limit = 1000
    page.data.upload.value = _upload("big.npy", b"x" * 2000)
    assert "Upload refused" in page.state.status and "limited to" in page.state.status
    page.data.limit = 10**6
    page.data.upload.value = _upload("junk.npy", b"junk!")
    assert "Could not open uploads/junk.npy" in page.state.status
    assert len(page.image.centres.x) == len(page.state.table)  # the page still shows the atoms


def test_movie_frame_step_updates_the_angle_plots(tmp_path, threshold_model):
    movie = atomstat.simulate_movie(4, shape=(128, 128), dose=400, drift=5.0, rng=2)
    np.save(tmp_path / "movie.npy", movie.frames)
    threshold_model.save(tmp_path / "m.keras")
    page = make_page(data_dir=tmp_path, example="")
    state = page.state
    page.detection.model.value = "m.keras"
    page.data.files.value = "movie.npy"
    page.data.open.click()
    assert page.movie.slider.max == 3
    page.detection.dumbbells.value = True
    page.detection.run.click()
    page.movie.track.click()
    assert page.explorer.x.value == "angle"
    brush = page.explorer.brush  # pick dumbbells by brushing their angle
    brush.brushing = True
    brush.selected_x, brush.selected_y = [0, 180], [0, 100]
    brush.brushing = False
    particles = state.selected_particles()
    assert len(page.movie.angle_lines.x) == len(particles) > 3
    page.movie.slider.value = 2
    assert state.frame == 2 and list(page.movie.angle_now.x) == [2, 2]
    frame2 = state.table[state.table.frame == 2]
    assert len(page.image.centres.x) == len(frame2)
    assert page.movie.dist.y.sum() == frame2.angle.notna().sum()
    page.movie.aligned.value = True
    assert state.aligned
