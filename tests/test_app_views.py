"""The dashboard's views without a browser: drive the selector traits as the browser
would, then check the state and the marks of a second, linked view."""

import base64
import datetime
import io
import re

import bqplot as bq
import numpy as np
import pytest
from PIL import Image

import app.explorer
import atomstat
from app.explorer import DOT_PX, OVERSAMPLE, VEIL
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


def _layer(view):
    """The image view's atom layer as the browser gets it: RGBA pixels of its PNG."""
    return np.asarray(Image.open(io.BytesIO(view.overlay.image.value)).convert("RGBA"))


def _screen(view, rows):
    cols, r = view.last_view.to_screen(rows.x.to_numpy(), rows.y.to_numpy())
    return r, cols


def _rings(view):
    """Ids of the shown atoms with a yellow ring drawn around them in the layer's pixels."""
    rgba, rows = _layer(view), view.frame_rows()
    r, c = _screen(view, rows)
    h, w = rgba.shape[:2]
    found = set()
    for atom, ri, ci in zip(rows.index, r, c, strict=True):
        ring = [(ri, ci + 5), (ri, ci - 5), (ri + 5, ci), (ri - 5, ci)]
        inside = [(a, b) for a, b in ring if 0 <= a < h and 0 <= b < w]
        if inside and all(tuple(rgba[a, b, :3]) == (255, 212, 0) for a, b in inside):
            found.add(int(atom))
    return found


def _lit(explorer, expected):
    """Ids of the scatter's points that its highlight layer shows selected: a clear hole in
    the veil at the point, in a black ring. Points too near a point of ``expected`` to tell
    (inside its hole) are left out."""
    rows = explorer.rows()
    if not explorer.highlight.visible:
        return set()
    la = Image.open(io.BytesIO(explorer.highlight.image.value))
    assert la.mode == "LA"  # grey and alpha: half the bytes of RGBA
    rgba = np.asarray(la.convert("RGBA"))
    h, w = rgba.shape[:2]
    assert (w, h) == explorer.plot_size()
    (x0, x1), (y0, y1) = explorer.highlight.x, explorer.highlight.y
    assert (x0, x1, y0, y1) == (explorer.sx.min, explorer.sx.max, explorer.sy.min, explorer.sy.max)
    px = (rows[explorer.x.value].to_numpy() - x0) / (x1 - x0) * w
    py = (y1 - rows[explorer.y.value].to_numpy()) / (y1 - y0) * h
    c, r = np.floor(px).astype(int), np.floor(py).astype(int)
    hole = (DOT_PX + 1.3) * OVERSAMPLE + 2  # and the rounding of both points to pixels
    chosen = rows.index.isin(list(expected))
    d = np.hypot(px[:, None] - px[None, chosen], py[:, None] - py[None, chosen])
    near = (d < hole).any(1) & ~chosen
    lit = set()
    for atom, ri, ci, skip in zip(rows.index, r, c, near, strict=True):
        if skip or not (0 <= ri < h and 0 <= ci < w):
            continue
        pixel = tuple(rgba[ri, ci])
        if pixel[3] == 0:  # a hole in the veil: its dot at full colour
            ring = rgba[ri, min(ci + int(round((DOT_PX + 0.6) * OVERSAMPLE)), w - 1)]
            assert tuple(ring) == (0, 0, 0, 255), f"no black ring around point {atom}"
            lit.add(int(atom))
        elif pixel == (0, 0, 0, 255):  # under the ring of a selected neighbour
            lit.add(int(atom))
        else:
            assert pixel == (255, 255, 255, VEIL)  # veiled: shown dimmed
    return lit


def _centre_colour(view, atom):
    rows = view.frame_rows().loc[[atom]]
    r, c = _screen(view, rows)
    rgba = _layer(view)
    return "#{:02x}{:02x}{:02x}".format(*rgba[r[0], c[0], :3])


def test_page_shows_the_atoms(page):
    table, image = page.state.table, page.image
    assert len(image.last_layers.x) == len(table)
    assert {_centre_colour(image, a) for a in table.index[:20]} == {"#ffffff"}  # white centres
    rgba = _layer(image)
    edge = (rgba[..., 3] == 230).sum()  # contour pixels: at least a few per atom
    assert edge > 8 * len(table)
    assert page.explorer.x.value == "area" and page.explorer.y.value == "circularity"
    assert len(page.explorer.points.x) == len(table)
    assert page.image.bar_text.text[0] == "20 px"  # a round length, about 1/5 of 128 px


def test_layer_toggles_contrast_and_colour_map(page):
    image = page.image
    image.show["centres"].value = False
    atom = page.state.table.index[3]
    assert _centre_colour(image, atom) != "#ffffff"
    image.show["contours"].value = False
    assert (_layer(image)[..., 3] == 230).sum() == 0
    grey = image.picture.image.value
    image.cmap.value = "inferno"
    coloured = Image.open(io.BytesIO(image.picture.image.value))
    assert coloured.mode == "RGB" and image.picture.image.value != grey
    low, high = image.contrast.value
    image.contrast.value = (low, (low + high) / 2)
    assert image.picture.image.value != coloured
    image.auto.click()
    assert image.contrast.value == pytest.approx((low, high))


def test_hover_readout_and_click_picks_the_nearest_atom(page):
    state, image = page.state, page.image
    atom = state.table.index[7]
    x, y = state.table.loc[atom, ["x", "y"]]
    text = image.describe(x + 1.0, y)
    assert f"atom {atom}</b>" in text and "circularity" in text
    value = state.frames[0][int(round(y)), int(round(x + 1.0))]
    assert f"value {value:.5g}" in text
    # mouse events as ipyevents sends them: a square figure, the plot area inside MARGIN
    side = image.plot_px + 60
    per = (image.sx.max - image.sx.min) / image.plot_px
    event = {"type": "click", "boundingRectWidth": side, "boundingRectHeight": side,
             "relativeX": 50 + (x + 2 * per - image.sx.min) / per,
             "relativeY": 10 + (y - image.sy.min) / per}  # fmt: skip
    image._mouse(event)  # 2 screen px from the centre: picked
    assert list(state.selected) == [atom]
    assert _rings(image) == {int(atom)}
    far = dict(event, relativeX=event["relativeX"] + 3 * image.plot_px)  # outside the plot
    image._mouse(far)
    assert list(state.selected) == [atom]
    image.pick(-100.0, -100.0)
    assert "No atom within" in state.status and list(state.selected) == [atom]


def test_brush_rectangles_go_when_the_selection_is_replaced_or_a_file_opens(page, tmp_path):
    explorer, state = page.explorer, page.state
    resets = []
    for selector in explorer.selectors():
        selector.reset = lambda s=selector: resets.append(s)  # what the browser is told
    brush = explorer.brush
    brush.brushing = True
    brush.selected_x, brush.selected_y = [0.0, 1e9], [0.0, 1.0]
    brush.brushing = False
    assert len(state.selected) and brush.selected_x is not None and brush not in resets
    page.image.pick(*state.table.loc[state.table.index[0], ["x", "y"]])  # replaces the brush
    assert brush.selected_x is None and brush in resets
    hist = explorer.histograms[0]
    hist.brush.brushing = True
    hist.brush.selected = [0.0, 1e9]
    hist.brush.brushing = False
    explorer.mode.value = "add"
    explorer.brush.brushing = True
    explorer.brush.selected_x, explorer.brush.selected_y = [0.0, 1e9], [0.0, 0.5]
    explorer.brush.brushing = False
    assert hist.brush.selected is not None  # added to it: both shapes stay
    np.save(tmp_path / "other.npy", np.random.default_rng(1).random((64, 64)))
    page.data.browse(".")
    page.data.files.value = "other.npy"
    page.data.open.click()
    assert hist.brush.selected is None and explorer.brush.selected_x is None
    assert hist.brush in resets and len(state.selected) == 0
    # no point, bar or highlight of the last file stays before this one is analysed
    assert len(explorer.points.x) == 0 and not explorer.highlight.visible
    assert all(h.all.y.sum() == 0 and h.chosen.y.sum() == 0 for h in explorer.histograms)


def test_example_list_shows_no_example_while_a_file_is_open(tmp_path):
    np.save(tmp_path / "mine.npy", np.random.default_rng(2).random((32, 32)))
    page = make_page(data_dir=tmp_path, example="Simulated square lattice with dopants")
    assert page.data.examples.value == "Simulated square lattice with dopants"
    page.data.files.value = "mine.npy"
    page.data.open.click()
    assert page.state.name == "mine.npy" and page.data.examples.value is None


def test_every_control_has_a_tooltip(page):
    import ipywidgets as widgets

    stack, missing = [page.widget], []
    while stack:
        w = stack.pop()
        stack.extend(getattr(w, "children", ()))
        if isinstance(w, widgets.ValueWidget | widgets.Button | widgets.FileUpload):
            if not w.tooltip or w.tooltip == "null":
                missing.append(f"{type(w).__name__} {getattr(w, 'description', '')!r}")
    assert missing == []
    assert "uploads" in page.data.upload.tooltip


def test_undo_redo_keys(page):
    from app.page import shortcut

    state = page.state
    state.select(IdsRule((1,)))
    state.select(IdsRule((2,)))
    assert shortcut(state, {"key": "z", "ctrlKey": True}) == "undo"
    assert list(state.selected) == [1]
    assert shortcut(state, {"key": "y", "metaKey": True}) == "redo"  # Cmd on macOS
    assert list(state.selected) == [2]
    assert shortcut(state, {"key": "Z", "ctrlKey": True, "shiftKey": True}) == "redo"
    assert shortcut(state, {"key": "z"}) is None and list(state.selected) == [2]


def test_calibration_entry_is_checked_and_shown(page):
    data, state = page.data, page.state
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        data.pixel_size.value = bad
        data.calibrate.click()
        assert "finite number above 0" in state.status and state.pixel_size == 1.0
        assert data.pixel_size.value == 1.0  # the entry shows the calibration in force
    data.pixel_size.value, data.units.value = 0.02, "nm"
    data.calibrate.click()
    assert (state.pixel_size, state.units) == (0.02, "nm")
    assert state.table.attrs["pixel_size"] == 0.02 and "pixel size 0.02 nm" in state.summary()
    assert page.image.bar_text.text[0].endswith("nm") or page.image.draw_scale_bar() is None
    page.image.draw_scale_bar()
    assert page.image.bar_text.text[0] == "0.5 nm"
    atom = state.table.index[0]
    x, y = state.table.loc[atom, ["x", "y"]]
    assert f"({x * 0.02:.4g}, {y * 0.02:.4g} nm)" in page.image.describe(x, y)


def test_model_choice_split_and_preprocess(page):
    detection, state = page.detection, page.state
    assert [v for _, v in detection.model.options][:3] == ["universal", "stm", "threshold.keras"]
    detection.split.value = "off"
    detection.preprocess.value = "plane"
    assert (state.split, state.preprocess) == ("off", "plane")
    data, split = state._analysis_input()
    assert split is False and data.shape == (128, 128)
    assert abs(float(np.mean(data))) < abs(float(np.mean(state.frames[0])))  # background gone


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
    assert _rings(page.image) == set(expected.index)  # the linked image view
    assert _lit(explorer, expected.index) == set(expected.index)  # the scatter's highlight
    assert explorer.brush.marks == [] and explorer.points.selected is None  # no restyling
    assert f"{len(expected)} selected" in explorer.count.value
    assert len(re.findall("<tr>", explorer.table.value)) == min(len(expected), 12) + 1
    hist = explorer.histograms[0]
    assert hist.chosen.y.sum() == len(expected)


def test_many_points_are_drawn_as_pixels_and_still_brushed_and_lassoed(page, monkeypatch):
    monkeypatch.setattr(app.explorer, "RASTER_POINTS", 10)
    table, explorer, state = page.state.table, page.explorer, page.state
    explorer.draw()
    assert len(explorer.points.x) == 0 and len(explorer.trace.x) == len(table)  # no SVG points
    assert explorer.highlight.visible

    def shown(expected):
        """Ids whose dot shows at full colour; the others must show veiled (or, with nothing
        selected, at full colour too). Points under a selected one's dot or ring are left out."""
        rgba = np.asarray(Image.open(io.BytesIO(explorer.highlight.image.value)).convert("RGBA"))
        h, w = rgba.shape[:2]
        (x0, x1), (y0, y1) = explorer.highlight.x, explorer.highlight.y
        px = (table[explorer.x.value].to_numpy() - x0) / (x1 - x0) * w
        py = (y1 - table[explorer.y.value].to_numpy()) / (y1 - y0) * h
        chosen = table.index.isin(list(expected))
        d = np.hypot(px[:, None] - px[None, chosen], py[:, None] - py[None, chosen])
        near = (d < 2 * (DOT_PX + 1.3) * OVERSAMPLE + 1).any(1) & ~chosen
        veiled = int(127 * (1 - VEIL / 255) + 255 * VEIL / 255)
        out = set()
        for atom, x, y, skip in zip(table.index, px, py, near, strict=True):
            pixel = tuple(rgba[int(y), int(x)])
            if skip:
                continue
            if pixel == (127, 127, 127, 255):  # the unlabelled grey, at full colour
                out.add(int(atom))
            else:
                assert pixel == (veiled, veiled, veiled, 255), pixel
        return out

    assert shown(set()) == set(table.index)  # nothing selected: every dot at full colour
    low = float(table.area.quantile(0.6))
    explorer.brush.brushing = True
    explorer.brush.selected_x, explorer.brush.selected_y = [low, 1e9], [0.0, 1.0]
    explorer.brush.brushing = False
    expected = set(table.index[(table.area >= low) & table.circularity.between(0, 1)])
    assert set(state.selected) == expected and shown(expected) == expected
    explorer.tool.value = "lasso"
    explorer.trace.selected = [0, 1, 2]
    assert set(state.selected) == set(table.index[:3]) and shown(state.selected) == set(
        table.index[:3]
    )


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
    explorer.trace.selected = [0, 1, 2]  # what the lasso sends when it closes
    assert set(page.state.selected) == big - set(table.index[:3])
    explorer.mode.value = "intersect"
    explorer.tool.value = "brush"
    explorer.brush.brushing = True
    explorer.brush.selected_x, explorer.brush.selected_y = [0, 1e9], [0.0, 0.9]
    explorer.brush.brushing = False
    expected = (big - set(table.index[:3])) & set(table.index[table.circularity <= 0.9])
    assert set(page.state.selected) == expected
    assert _rings(page.image) == expected
    assert _lit(explorer, expected) == expected  # not the lasso's points
    page.labels.undo.click()
    assert set(page.state.selected) == big - set(table.index[:3])
    assert _lit(explorer, big - set(table.index[:3])) == big - set(table.index[:3])
    explorer.clear.click()
    assert not explorer.highlight.visible and _lit(explorer, set()) == set()


def test_click_selects_an_atom_and_labels_recolour_every_view(page):
    state, image = page.state, page.image
    atom = state.table.index[5]
    image.pick(*state.table.loc[atom, ["x", "y"]])
    assert list(state.selected) == [atom]
    page.labels.name.value = "dopant"
    page.labels.color.value = "#00ff00"
    page.labels.label.click()
    assert state.labels.ids("dopant") == [atom]
    assert _centre_colour(image, atom) == "#00ff00"
    assert page.explorer.points.colors[5] == "#00ff00"
    rgba = _layer(image)
    assert ((rgba[..., :3] == (0, 255, 0)).all(-1) & (rgba[..., 3] == 230)).sum() > 4  # contour
    assert "dopant: 1" in page.labels.counts.value
    image.show["labels"].value = False  # the labels layer off: every centre white
    assert _centre_colour(image, atom) == "#ffffff"
    image.show["labels"].value = True
    page.labels.unlabel.click()
    assert _centre_colour(image, atom) == "#ffffff"
    page.labels.undo.click()
    assert _centre_colour(image, atom) == "#00ff00"


def test_threshold_slider_relocates_and_redraws(page, lattice):
    state = page.state
    page.detection.threshold.value = 0.9
    expected = atomstat.locate(state.prob[0], lattice.image, threshold=0.9,
                               sigma=state.atoms.attrs["sigma"])  # fmt: skip
    assert len(state.table) == len(expected)
    assert len(page.image.last_layers.x) == len(expected) == len(page.explorer.points.x)
    np.testing.assert_allclose(np.sort(page.explorer.points.x), np.sort(expected.area))


def test_display_modes_and_large_images(page):
    page.image.mode.value = "blend"
    assert page.image.picture.image.value[:8] == b"\x89PNG\r\n\x1a\n"
    big = np.random.default_rng(0).random((2048, 1500)).astype(np.float32)
    png, xs, ys = display_png(big)
    small, k = reduce(big, 1024)
    assert k == 2 and small.shape == (1024, 750)
    assert xs == (-0.5, 1499.5) and ys == (2047.5, -0.5)
    assert reduce(big)[1] == 1  # shown 1:1 up to 2048 px
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


def test_an_export_to_a_folder_that_cannot_be_written_says_why(page, tmp_path):
    (tmp_path / "exports").write_text("a file where the folder should be")
    page.exports.figure.click()
    status = page.state.status
    assert status.startswith("Export failed: cannot write to") and "exports" in status
    assert page.state.table is not None and page.exports.links.value == ""


def test_upload_limit_and_bad_file_in_the_page(page, tmp_path):
    page.data.limit = 1000
    page.data.upload.value = _upload("big.npy", b"x" * 2000)
    assert "Upload refused" in page.state.status and "limited to" in page.state.status
    page.data.limit = 10**6
    page.data.upload.value = _upload("junk.npy", b"junk!")
    assert "Could not open uploads/junk.npy" in page.state.status
    assert len(page.image.last_layers.x) == len(page.state.table)  # the atoms still shown


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
    assert len(page.image.last_layers.x) == len(frame2)
    assert page.movie.dist.y.sum() == frame2.angle.notna().sum()
    page.movie.aligned.value = True
    assert state.aligned
    ticks = page.movie.angle_fig.axes[0].tick_values
    assert list(ticks) == [0, 1, 2, 3] and page.movie.angle_fig.axes[0].tick_format == "d"


def _tracked_movie(tmp_path, threshold_model):
    movie = atomstat.simulate_movie(4, shape=(128, 128), dose=400, drift=3.0, rng=2)
    np.save(tmp_path / "movie.npy", movie.frames)
    threshold_model.save(tmp_path / "m.keras")
    page = make_page(data_dir=tmp_path, example="")
    page.detection.model.value = "m.keras"
    page.data.files.value = "movie.npy"
    page.data.open.click()
    page.detection.dumbbells.value = True
    page.detection.run.click()
    return page


def test_movie_counters_agree_and_tracks_are_picked_whole(tmp_path, threshold_model):
    page = _tracked_movie(tmp_path, threshold_model)
    state = page.state
    n_dumbbells = int(re.match(r"(\d+) dumbbells \((\d+) atoms\) found", state.status).group(1))
    assert f"of {n_dumbbells} dumbbells" in page.explorer.count.value
    assert n_dumbbells == len(state.table) < len(state.atoms)
    page.movie.track.click()
    table = state.table
    here = table[table.frame == 0]
    cut = float(here.angle.median())
    brush = page.explorer.brush  # brush the angles of frame 0
    brush.brushing = True
    brush.selected_x, brush.selected_y = [cut, 181.0], [0.0, 1e3]
    brush.brushing = False
    tracks = set(here.particle[here.angle >= cut])
    assert set(state.selected_particles()) == tracks
    assert set(state.selected) == set(table.index[table.particle.isin(tracks)])  # whole tracks
    page.movie.slider.value = 2  # the same tracks in frame 2, whatever their angles there
    assert set(state.selected_particles()) == tracks
    assert _rings(page.image) == set(table.index[(table.frame == 2) & table.particle.isin(tracks)])
    page.labels.name.value = "turning"
    page.labels.label.click()
    labelled = state.labels.ids("turning")
    assert set(labelled) == set(table.index[table.particle.isin(tracks)])  # every frame
    one = int(table.index[(table.frame == 2)][0])  # a click picks a dumbbell's track
    page.image.pick(*table.loc[one, ["x", "y"]])
    assert set(state.selected) == set(table.index[table.particle == table.loc[one, "particle"]])
    page.exports.figure.click()
    assert (tmp_path / "exports" / "movie_annotated.png").read_bytes()[:4] == b"\x89PNG"


def test_movie_plots_are_cleared_for_the_next_image(tmp_path, threshold_model):
    page = _tracked_movie(tmp_path, threshold_model)
    assert page.movie.dist.y.sum() > 0  # this frame's angle histogram
    page.data.examples.value = "Simulated square lattice with dopants"
    assert page.movie.dist.y.sum() == 0 and len(page.movie.angle_lines.x) == 0
    assert page.data.examples.value == "Simulated square lattice with dopants"


def test_movie_figure_has_units_on_every_axis(threshold_model, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from atomstat.plot.movies import movie_figure

    movie = atomstat.simulate_movie(4, shape=(96, 96), dose=400, drift=2.0, rng=3)
    pairs = atomstat.pair_dumbbells(movie.atoms)  # the true atoms, paired
    tracks = atomstat.track(pairs, images=movie.frames)
    picked = sorted(tracks.particle.unique())[:3]
    fig = movie_figure(movie.frames[1], tracks, picked, frame=1, pixel_size=0.05, units="nm")
    labels = [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes]
    assert labels == [("x (nm)", "y (nm)"), ("frame", "angle (deg)"), ("frame", "angle (deg)")]
    series = fig.axes[2]
    assert len(series.lines) == len(picked)  # one angle time series per picked dumbbell
    with pytest.raises(ValueError, match="pixel_size"):
        movie_figure(movie.frames[1], tracks, picked, pixel_size=0.0)


def test_lasso_path_holds_only_numbers():
    """A missing value (a dumbbell's angle, say) goes far off the plot: the invisible path the
    lasso selects from keeps one point per row, and bqplot gets no NaN to place a label at."""
    scale = bq.LinearScale(min=0.0, max=2.0)
    out = app.explorer._outside(np.array([1.0, np.nan, 2.0, np.inf]), scale)
    assert np.isfinite(out).all() and out[0] == 1.0 and out[2] == 2.0
    assert out[1] < -100 and out[3] < -100  # outside the domain: never inside a lasso
    assert len(app.explorer._outside(np.zeros(0), scale)) == 1  # never an empty line
