"""Tests for atomstat.io.load: formats, calibration, data handling and refusals.

Every file is written here, in ``tmp_path``, with HyperSpy's own writers,
NumPy, Pillow or h5py, so the tests run on a fresh clone.
"""

import json
import logging

import h5py
import hyperspy.api as hs
import numpy as np
import pytest
from PIL import Image

from atomstat.errors import LoadError
from atomstat.io import MIN_SIDE, load

RNG = np.random.default_rng(0)


def _image(shape=(32, 40), dtype=np.float32):
    """A random image (or stack) with values in [0, 200)."""
    return (RNG.random(shape) * 200).astype(dtype)


def _signal(data, scale=1.0, units=None, time=None):
    """A Signal2D with calibrated image axes and, for a stack, an optional time axis."""
    signal = hs.signals.Signal2D(data)
    for axis in signal.axes_manager.signal_axes:
        axis.scale = scale
        if units is not None:
            axis.units = units
    if time is not None:
        axis = signal.axes_manager.navigation_axes[0]
        axis.name, axis.scale, axis.units = "time", time[0], time[1]
    return signal


def _saved(tmp_path, name, signal):
    """Save ``signal`` as ``tmp_path / name`` with HyperSpy; return the path."""
    path = tmp_path / name
    signal.save(path, overwrite=True)
    return path


def _write_mrc(path, data, angstrom_per_px):
    """Write a minimal MRC2014 file (float32, pixel size in the header in Angstrom)."""
    ny, nx = data.shape
    header = np.zeros(256, dtype="<i4")
    header[[0, 1, 2, 3, 7, 8, 9]] = [nx, ny, 1, 2, nx, ny, 1]  # NX NY NZ MODE MX MY MZ
    cell = np.array([nx * angstrom_per_px, ny * angstrom_per_px, 1.0], dtype="<f4")
    header[10:13] = cell.view("<i4")  # Xlen Ylen Zlen, the cell size in Angstrom
    path.write_bytes(header.tobytes() + data.astype("<f4").tobytes())
    return path


def _assert_refused(path, *words, **kwargs):
    """Assert that loading ``path`` raises a LoadError naming the file and all ``words``."""
    with pytest.raises(LoadError) as info:
        load(path, **kwargs)
    message = str(info.value)
    assert path.name in message
    for word in words:
        assert word.lower() in message.lower(), message
    return message


# ---------------------------------------------------------------- formats and calibration


@pytest.mark.parametrize(
    ("name", "scale", "units", "nm_per_px"),
    [
        ("pm.hspy", 12.5, "pm", 0.0125),
        ("angstrom.hspy", 2.5, "Å", 0.25),
        ("nm.hspy", 0.3, "nm", 0.3),
        ("um.tif", 0.25, "um", 250.0),
        ("micro.tif", 0.1687, "µm", 168.7),
        ("pm.tif", 8.0, "pm", 0.008),
        ("angstrom.tif", 1.5, "Å", 0.15),
        ("nm.emd", 0.2, "nm", 0.2),
        ("pm.rpl", 50.0, "pm", 0.05),
        ("mm.tif", 2e-6, "mm", 2.0),
        ("m.hspy", 1e-10, "m", 0.1),
    ],
)
def test_round_trip_converts_calibration_to_nm(tmp_path, name, scale, units, nm_per_px):
    data = _image()
    path = _saved(tmp_path, name, _signal(data, scale, units))
    signal = load(path)
    assert isinstance(signal, hs.signals.Signal2D)
    assert signal.data.shape == (32, 40)
    assert signal.data.dtype == np.float32
    np.testing.assert_allclose(signal.data, data, rtol=1e-6)
    for axis in signal.axes_manager.signal_axes:
        assert axis.units == "nm"
        assert axis.scale == pytest.approx(nm_per_px, rel=1e-6)


def test_zspy_round_trip(tmp_path):
    pytest.importorskip("zarr")
    path = _saved(tmp_path, "x.zspy", _signal(_image(), 0.5, "Å"))
    assert load(path).axes_manager.signal_axes[0].scale == pytest.approx(0.05)


def test_mrc_pixel_size_in_angstrom_becomes_nm(tmp_path):
    data = _image((24, 20))
    signal = load(_write_mrc(tmp_path / "scan.mrc", data, angstrom_per_px=2.0))
    np.testing.assert_allclose(signal.data, data)
    assert [(a.scale, a.units) for a in signal.axes_manager.signal_axes] == [(0.2, "nm")] * 2


def test_nexus_file_with_several_signals_gives_the_image(tmp_path):
    path = _saved(tmp_path, "x.nxs", _signal(_image((3, 32, 40)), time=(0.5, "s")))
    signal = load(path)
    assert signal.data.shape == (3, 32, 40)


def test_npy_uncalibrated_is_pixels_and_records_source(tmp_path):
    path = tmp_path / "frame.npy"
    np.save(path, _image(dtype=np.uint16))
    signal = load(path)
    assert signal.data.dtype == np.float32
    assert [(a.name, a.scale, a.units) for a in signal.axes_manager.signal_axes] == [
        ("x", 1.0, "px"),
        ("y", 1.0, "px"),
    ]
    assert signal.metadata.General.original_filename == str(path)
    assert "frame.npy" in signal.metadata.General.title


def test_scale_without_unit_is_kept_as_unknown(tmp_path, caplog):
    path = _saved(tmp_path, "nounit.hspy", _signal(_image(), scale=0.00933))
    with caplog.at_level(logging.WARNING, logger="atomstat.io"):
        signal = load(path)
    axis = signal.axes_manager.signal_axes[0]
    assert (axis.scale, axis.units) == (pytest.approx(0.00933), "unknown")
    assert "nounit.hspy" in caplog.text


@pytest.mark.parametrize(
    ("sidecar", "nm_per_px"),
    [
        (
            {
                "experimental_details": {
                    "spatial_info": {
                        "field_of_view_x": 9.0,
                        "field_of_view_y": 9.0,
                        "field_of_view_units": "nm",
                    }
                }
            },
            (9.0 / 64, 9.0 / 32),
        ),
        ({"field_of_view_nm": [6.4, 3.2]}, (0.1, 0.1)),
        ({"fov": "32 Å"}, (0.05, 0.1)),
        ({"scan size": "2"}, (2 / 64, 2 / 32)),
        ({"pixel_size": 50, "pixel_size_units": "pm"}, (0.05, 0.05)),
        ({"pixel_size": 50, "units": "pm"}, (0.05, 0.05)),  # read as nm before: 1000x off
        ({"pixel_size": 0.05, "units": "counts"}, (0.05, 0.05)),  # not a length: nm assumed
    ],
)
def test_json_sidecar_gives_calibration(tmp_path, sidecar, nm_per_px):
    path = tmp_path / "haadf.npy"
    np.save(path, _image((32, 64)))
    (tmp_path / "haadf.json").write_text(json.dumps(sidecar))
    axes = load(path).axes_manager.signal_axes
    assert [a.units for a in axes] == ["nm", "nm"]
    np.testing.assert_allclose([a.scale for a in axes], nm_per_px)


def test_sidecar_without_calibration_leaves_pixels(tmp_path):
    path = tmp_path / "stm.npy"
    np.save(path, _image())
    (tmp_path / "stm.json").write_text(json.dumps({"experimental_details": {"bias": "0.1 V"}}))
    assert load(path).axes_manager.signal_axes[0].units == "px"


def test_plain_hdf5_image_with_json_metadata(tmp_path):
    path = tmp_path / "graphene.h5"
    data = _image((64, 64), np.float64)
    with h5py.File(path, "w") as file:
        file["image_data"] = data
        file["metadata"] = json.dumps({"type of data": "HAADF", "scan size": "2"})
    signal = load(path)
    np.testing.assert_allclose(signal.data, data.astype(np.float32))
    assert [(a.scale, a.units) for a in signal.axes_manager.signal_axes] == [(2 / 64, "nm")] * 2


def test_plain_hdf5_with_several_images_is_refused(tmp_path):
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as file:
        file["a"], file["b"] = _image(), _image()
    _assert_refused(path, "'a' (32, 40)", "'b' (32, 40)")


# ---------------------------------------------------------------- data handling


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_grey_png_keeps_its_bit_depth(tmp_path, dtype):
    data = (_image() * (1 if dtype == np.uint8 else 300)).astype(dtype)
    path = tmp_path / "grey.png"
    Image.fromarray(data).save(path)
    signal = load(path)
    assert signal.data.dtype == np.float32
    np.testing.assert_array_equal(signal.data, data.astype(np.float32))
    assert signal.data.max() > 255 if dtype == np.uint16 else True


def test_rgb_png_becomes_luminance(tmp_path):
    rgb = _image((32, 40, 3)).astype(np.uint8)
    path = tmp_path / "colour.png"
    Image.fromarray(rgb).save(path)
    expected = rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    signal = load(path)
    assert signal.data.shape == (32, 40)
    np.testing.assert_allclose(signal.data, expected, rtol=1e-5)


def test_rgb_tif_read_by_hyperspy_becomes_luminance(tmp_path):
    import tifffile

    rgb = np.zeros((32, 40, 3), dtype=np.uint8)
    rgb[..., 1] = 100
    path = tmp_path / "colour.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    np.testing.assert_allclose(load(path).data, 58.7, rtol=1e-5)


def test_jpeg_loads_as_grey_float(tmp_path):
    data = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (32, 1))
    path = tmp_path / "grey.jpg"
    Image.fromarray(data).save(path, quality=95)
    signal = load(path)
    assert signal.data.shape == (32, 40)
    assert signal.data.dtype == np.float32
    np.testing.assert_allclose(signal.data, data, atol=6)


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int32, np.bool_])
def test_every_dtype_becomes_float32(tmp_path, dtype):
    path = tmp_path / "image.npy"
    np.save(path, _image(dtype=dtype))
    assert load(path).data.dtype == np.float32


def test_nan_and_inf_pixels_become_the_frame_median(tmp_path, caplog):
    data = np.arange(32 * 40, dtype=np.float32).reshape(32, 40)
    finite_median = np.median(data[2:])
    data[0, :5], data[1, 0] = np.nan, np.inf
    path = tmp_path / "holes.npy"
    np.save(path, data)
    with caplog.at_level(logging.WARNING, logger="atomstat.io"):
        signal = load(path)
    assert np.isfinite(signal.data).all()
    expected = np.median(np.concatenate([data[0, 5:], data[1, 1:], data[2:].ravel()]))
    assert signal.data[0, 0] == signal.data[1, 0] == pytest.approx(expected)
    assert finite_median != expected
    assert "6 NaN/inf" in caplog.text


def test_lazy_nan_pixels_are_filled_when_computed(tmp_path):
    data = _image((3, 32, 40))
    data[1, 5, 5] = np.nan
    path = tmp_path / "holes.npy"
    np.save(path, data)
    filled = load(path, lazy=True).data.compute()
    assert filled[1, 5, 5] == pytest.approx(np.nanmedian(data[1]))


def test_stack_keeps_its_time_axis(tmp_path):
    path = _saved(tmp_path, "movie.hspy", _signal(_image((4, 32, 40)), 10.0, "pm", (0.8, "s")))
    signal = load(path)
    assert signal.data.shape == (4, 32, 40)
    frame = signal.axes_manager.navigation_axes[0]
    assert (frame.name, frame.scale, frame.units) == ("time", 0.8, "s")
    assert signal.axes_manager.signal_axes[0].scale == pytest.approx(0.01)


def test_unnamed_stack_axis_is_called_frame(tmp_path):
    path = tmp_path / "movie.npy"
    np.save(path, _image((3, 32, 40)))
    signal = load(path)
    assert signal.axes_manager.navigation_shape == (3,)
    assert signal.axes_manager.navigation_axes[0].name == "frame"


@pytest.mark.parametrize("name", ["movie.hspy", "movie.npy", "movie.tif"])
def test_lazy_stack_is_lazy_with_the_right_shape(tmp_path, name):
    data = _image((5, 32, 40))
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, data)
    else:
        _signal(data, 1.0, "nm").save(path)
    signal = load(path, lazy=True)
    assert signal._lazy
    assert isinstance(signal, hs.signals.Signal2D)
    assert signal.data.shape == (5, 32, 40)
    assert signal.data.dtype == np.float32
    np.testing.assert_allclose(signal.data.compute(), data)


# ---------------------------------------------------------------- files with several signals


@pytest.fixture
def multi_signal_file(tmp_path, monkeypatch):
    """A file whose reader returns an EDS spectrum, then a HAADF and a BF image."""
    signals = [hs.signals.Signal1D(np.zeros(64)), _signal(_image()), _signal(_image() + 1)]
    for signal, title in zip(signals, ["EDS", "HAADF", "BF"], strict=True):
        signal.metadata.General.title = title
    path = tmp_path / "multi.emd"
    path.write_bytes(b"stand-in")
    monkeypatch.setattr("atomstat.io.hs.load", lambda *args, **kwargs: signals)
    return path


def test_first_image_is_picked_by_default(multi_signal_file):
    assert load(multi_signal_file).metadata.General.title == "multi.emd: HAADF"


def test_channel_picks_by_title(multi_signal_file):
    assert load(multi_signal_file, channel="bf").metadata.General.title == "multi.emd: BF"


def test_unknown_channel_lists_the_titles(multi_signal_file):
    _assert_refused(multi_signal_file, "'EDS'", "'HAADF'", "'BF'", channel="ABF?")


# ---------------------------------------------------------------- refusals


def test_missing_file(tmp_path):
    _assert_refused(tmp_path / "absent.dm4", "no such file")


def test_directory(tmp_path):
    folder = tmp_path / "images.tif"
    folder.mkdir()
    _assert_refused(folder, "directory")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.dm3"
    path.touch()
    _assert_refused(path, "empty file")


def test_unknown_extension(tmp_path):
    path = tmp_path / "image.xyz"
    path.write_bytes(b"\x00" * 64)
    _assert_refused(path, "unknown extension '.xyz'")


@pytest.mark.parametrize("name", ["cut.hspy", "cut.tif", "cut.npy", "cut.png"])
def test_truncated_file(tmp_path, name):
    path = tmp_path / name
    data = _image((64, 64), np.uint8)
    if name.endswith(".npy"):
        np.save(path, data)
    elif name.endswith(".png"):
        Image.fromarray(data).save(path)
    else:
        _signal(data).save(path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    _assert_refused(path, "not a readable image")


@pytest.mark.parametrize("name", ["junk.dm3", "junk.dm4", "junk.hspy", "junk.emd", "junk.png"])
def test_garbage_bytes_with_a_valid_extension(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(RNG.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _assert_refused(path, "not a readable image")


@pytest.mark.parametrize(
    ("shape", "what"),
    [((1024,), "a 1-D spectrum of 1024 channels"), ((4, 5, 64), "20 1-D spectra of 64 channels")],
)
def test_spectrum(tmp_path, shape, what):
    path = _saved(tmp_path, "spectrum.hspy", hs.signals.Signal1D(np.zeros(shape, np.float32)))
    _assert_refused(path, what, "needs one 2-D image")


def test_four_d_dataset(tmp_path):
    path = _saved(tmp_path, "4dstem.hspy", _signal(_image((3, 4, 32, 32))))
    _assert_refused(path, "4-D dataset of shape (3, 4, 32, 32)")


@pytest.mark.parametrize("name", ["phase.npy", "phase.hspy"])
def test_complex_data(tmp_path, name):
    data = _image() * (1 + 1j)
    path = tmp_path / name
    if name.endswith(".npy"):
        np.save(path, data)
    else:
        hs.signals.ComplexSignal2D(data).save(path)
    _assert_refused(path, "complex data")


@pytest.mark.parametrize(("shape", "what"), [((2, 2), "2x2 pixels"), ((3, 40, 8), "8x40 pixels")])
def test_image_too_small(tmp_path, shape, what):
    path = tmp_path / "tiny.npy"
    np.save(path, _image(shape))
    _assert_refused(path, what, f"needs at least {MIN_SIDE}x{MIN_SIDE}")


def test_stack_with_zero_frames(tmp_path):
    path = tmp_path / "nothing.npy"
    np.save(path, np.zeros((0, 32, 32), dtype=np.float32))
    _assert_refused(path, "zero frames")


def test_all_nan_image(tmp_path):
    path = tmp_path / "blank.npy"
    np.save(path, np.full((32, 32), np.nan, dtype=np.float32))
    _assert_refused(path, "no finite pixel")


def test_file_holding_only_spectra(tmp_path, monkeypatch):
    spectra = [hs.signals.Signal1D(np.zeros(64)), hs.signals.Signal1D(np.zeros(32))]
    spectra[0].metadata.Signal.signal_type = "EDS_TEM"
    path = tmp_path / "eds.emd"
    path.write_bytes(b"stand-in")
    monkeypatch.setattr("atomstat.io.hs.load", lambda *args, **kwargs: spectra)
    _assert_refused(path, "no image", "1-D spectrum of 64 channels (EDS_TEM)")


def test_sidecar_wins_over_metadata_inside_the_file(tmp_path):
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as file:
        file["image"] = _image((32, 32))
        file.attrs["metadata"] = json.dumps({"fov": 3.2})
    assert load(path).axes_manager.signal_axes[0].scale == pytest.approx(0.1)
    (tmp_path / "scan.json").write_text(json.dumps({"fov": [6.4], "fov_units": "nm"}))
    assert load(path).axes_manager.signal_axes[0].scale == pytest.approx(0.2)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (np.array([["ab", "cd"]] * 32 * 16).reshape(32, 32), ("text values (<U2)",)),
        (np.zeros((32, 32), dtype="datetime64[D]"), ("date/time values", "datetime64[D]")),
    ],
)
def test_npy_of_text_or_dates_is_refused(tmp_path, data, words):
    path = tmp_path / "labels.npy"
    np.save(path, data)
    _assert_refused(path, *words, "not numbers")


def test_npy_of_records_other_than_rgb_is_refused(tmp_path):
    path = tmp_path / "records.npy"
    np.save(path, np.zeros((32, 32), dtype=[("a", "f4"), ("b", "i4")]))
    _assert_refused(path, "records with the fields 'a', 'b'", "not numbers")


def test_npy_of_rgb_records_becomes_luminance(tmp_path):
    data = np.zeros((32, 40), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1"), ("A", "u1")])
    data["G"] = 100
    path = tmp_path / "colour.npy"
    np.save(path, data)
    np.testing.assert_allclose(load(path).data, 58.7, rtol=1e-5)


@pytest.mark.parametrize("name", ["4d.npy", "4d.h5"])
def test_lazy_four_d_dataset_is_refused_like_the_eager_one(tmp_path, name):
    path = tmp_path / name
    data = _image((2, 2, 32, 32))
    if name.endswith(".npy"):
        np.save(path, data)
    else:
        with h5py.File(path, "w") as file:
            file["data"] = data
    what = "4-D dataset of shape (2, 2, 32, 32)"
    assert _assert_refused(path, what) == _assert_refused(path, what, lazy=True)


def test_single_number_is_not_called_a_spectrum(tmp_path):
    path = tmp_path / "scalar.npy"
    np.save(path, np.float32(3.5))
    message = _assert_refused(path, "a single number (0-D)", "needs one 2-D image")
    assert "spectrum" not in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", ("not readable JSON",)),
        ("[1, 2]", ("holds [1, 2]", "not a JSON object")),
        ('{"pixel_size": "big"}', ('pixel_size="big"', "not a number")),
        ('{"pixel_size": NaN}', ("pixel_size=NaN", "not a number")),
        ('{"pixel_size": true}', ("pixel_size=true", "not a number")),
        ('{"fov": ["a", "b"]}', ('fov=["a", "b"]', "not a number")),
        ('{"pixel_size": 1e999}', ("pixel_size=Infinity", "not a number")),
    ],
)
def test_unusable_sidecar_is_ignored_with_a_warning(tmp_path, caplog, text, words):
    path = tmp_path / "haadf.npy"
    np.save(path, _image())
    (tmp_path / "haadf.json").write_text(text)
    with caplog.at_level(logging.WARNING, logger="atomstat.calibration"):
        signal = load(path)
    assert [a.units for a in signal.axes_manager.signal_axes] == ["px", "px"]
    assert "haadf.json" in caplog.text
    for word in words:
        assert word in caplog.text, caplog.text


def test_bad_sidecar_value_falls_back_to_the_calibration_inside_the_file(tmp_path, caplog):
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as file:
        file["image"] = _image((32, 32))
        file.attrs["metadata"] = json.dumps({"fov": 3.2})
    (tmp_path / "scan.json").write_text(json.dumps({"pixel_size": "big"}))
    with caplog.at_level(logging.WARNING, logger="atomstat.calibration"):
        axis = load(path).axes_manager.signal_axes[0]
    assert (axis.scale, axis.units) == (pytest.approx(0.1), "nm")
    assert "scan.json" in caplog.text and "pixel_size" in caplog.text


@pytest.mark.parametrize("name", ["one.npy", "one.png", "one.h5"])
def test_channel_of_a_file_without_channels_is_refused(tmp_path, name):
    path = tmp_path / name
    data = _image((32, 40), np.uint8)
    if name.endswith(".npy"):
        np.save(path, data)
    elif name.endswith(".png"):
        Image.fromarray(data).save(path)
    else:
        with h5py.File(path, "w") as file:
            file["image"] = data
    _assert_refused(path, "no channel 'HAADF'", "an image of 40x32 pixels", channel="HAADF")


@pytest.mark.parametrize(("title", "words"), [("", ["untitled"]), ("BF", ["'BF'"])])
def test_channel_that_a_single_signal_file_lacks_is_refused(tmp_path, title, words):
    signal = _signal(_image())
    signal.metadata.General.title = title
    path = _saved(tmp_path, "one.hspy", signal)
    _assert_refused(path, "'nonexistent'", *words, "image of 40x32 pixels", channel="nonexistent")


def test_channel_matching_the_title_of_a_single_signal_file(tmp_path):
    signal = _signal(_image())
    signal.metadata.General.title = "HAADF detector"
    path = _saved(tmp_path, "one.hspy", signal)
    assert load(path, channel="haadf").metadata.General.title == "one.hspy: HAADF detector"


@pytest.mark.parametrize("value", [None, np.zeros((64, 64)), 3])
def test_load_takes_a_path_not_an_array(value):
    with pytest.raises(TypeError, match=r"load\(\) takes a file path.*pass arrays to analyze\(\)"):
        load(value)
