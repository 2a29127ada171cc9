"""Tests for the scanning-probe readers (atomstat.io_stm) through atomstat.load.

The Nanonis .sxm and WSxM files are written here, byte by byte, in the
documented formats (Nanonis: text header ending in ':SCANIT_END:', then
big-endian float32 channels, forward then backward, each in the order
scanned; WSxM: 'WSxM file copyright' text header ending in '[Header end]',
then the little-endian image stored rotated by 180 degrees).
"""

import numpy as np
import pytest

from atomstat.errors import LoadError
from atomstat.io import load
from atomstat.io_stm import imaging_mode

RNG = np.random.default_rng(3)


def write_sxm(path, channels, *, range_m=(20e-9, 15e-9), scan_dir="down", both=True):
    """Write a Nanonis .sxm file.

    ``channels`` maps a name to ``(unit, forward, backward)``: images as seen
    on screen (row 0 at the top of the frame). They are stored as Nanonis
    records them: a down scan starts at the top row, an up scan at the
    bottom one; a backward line runs right to left.
    """
    first = next(iter(channels.values()))[1]
    ny, nx = first.shape
    lines = [
        ":NANONIS_VERSION:",
        "2",
        ":SCANIT_TYPE:",
        "              FLOAT            MSBFIRST",
        ":REC_DATE:",
        " 24.11.2025",
        ":SCAN_PIXELS:",
        f"       {nx}       {ny}",
        ":SCAN_RANGE:",
        f"           {range_m[0]:.6E}           {range_m[1]:.6E}",
        ":SCAN_OFFSET:",
        "           0.000000E+0           0.000000E+0",
        ":SCAN_ANGLE:",
        "            0.000E+0",
        ":SCAN_DIR:",
        scan_dir,
        ":BIAS:",
        "            -5.000E-1",
        ":DATA_INFO:",
        "\tChannel\tName\tUnit\tDirection\tCalibration\tOffset",
    ]
    for i, (name, (unit, _, _)) in enumerate(channels.items()):
        lines.append(f"\t{14 + i}\t{name}\t{unit}\t{'both' if both else 'forward'}\t1.0E+0\t0.0E+0")
    lines += ["", ":SCANIT_END:", "", "", ""]  # the end tag line, 2 empty lines, then \x1a\x04
    blocks = []
    for _, forward, backward in channels.values():
        for image, is_backward in ((forward, False), (backward, True))[: 2 if both else 1]:
            stored = image[::-1] if scan_dir == "up" else image  # row order as scanned
            stored = stored[:, ::-1] if is_backward else stored  # backward lines: right to left
            blocks.append(np.asarray(stored, ">f4").tobytes())
    path.write_bytes("\n".join(lines).encode() + b"\x1a\x04" + b"".join(blocks))
    return path


def write_wsxm(path, image, *, amplitude=("12.5", "nm"), z="0.8 nm", dtype="double", **general):
    """Write a WSxM image file (``image`` as seen on screen, in units of ``z``)."""
    rows, cols = image.shape
    info = {
        "Acquisition channel": "Topography",
        "Image Data Type": dtype,
        "Number of columns": cols,
        "Number of rows": rows,
        "Z Amplitude": z,
        **general,
    }
    body = (
        "\r\n[Control]\r\n\r\n"
        f"    X Amplitude: {amplitude[0]} {amplitude[1]}\r\n"
        f"    Y Amplitude: {amplitude[0]} {amplitude[1]}\r\n"
        "\r\n[General Info]\r\n\r\n"
        + "".join(f"    {k}: {v}\r\n" for k, v in info.items())
        + "\r\n[Miscellaneous]\r\n\r\n    Version: 1.0 (December 2003)\r\n\r\n[Header end]\r\n"
    )
    top = "WSxM file copyright UAM\r\nSxM Image file\r\nImage header size: {:05d}\r\n"
    size = len(top.format(0)) + len(body)
    raw = (top.format(size) + body).encode("latin-1")
    code = {"double": "<f8", "float": "<f4", "short": "<i2"}[dtype]
    path.write_bytes(raw + np.ascontiguousarray(image[::-1, ::-1], code).tobytes())
    return path


def _images(shape=(24, 32)):
    z = RNG.normal(0, 1e-10, shape)  # heights in m
    current = RNG.normal(0, 1e-10, shape)
    return z, current


@pytest.mark.parametrize("scan_dir", ["down", "up"])
def test_sxm_forward_z_is_calibrated_in_nm(tmp_path, scan_dir):
    z, current = _images()
    path = write_sxm(
        tmp_path / "scan.sxm",
        {"Z": ("m", z, z + 1e-11), "Current": ("A", current, current)},
        scan_dir=scan_dir,
    )
    signal = load(path)
    assert signal.data.dtype == np.float32
    np.testing.assert_allclose(signal.data, z * 1e9, rtol=1e-5, atol=1e-6)  # m -> nm, on screen
    x, y = signal.axes_manager.signal_axes
    assert (x.units, y.units) == ("nm", "nm")
    assert x.scale == pytest.approx(20 / 32) and y.scale == pytest.approx(15 / 24)
    assert imaging_mode(signal) == "stm"
    assert signal.metadata.Signal.quantity == "Z (nm)"
    assert signal.metadata.General.original_filename == str(path)


@pytest.mark.parametrize("scan_dir", ["down", "up"])
def test_sxm_backward_scan_is_flipped_onto_the_forward_frame(tmp_path, scan_dir):
    z, _ = _images()
    backward = z + 2e-11
    path = write_sxm(tmp_path / "scan.sxm", {"Z": ("m", z, backward)}, scan_dir=scan_dir)
    signal = load(path, direction="backward")
    np.testing.assert_allclose(signal.data, backward * 1e9, rtol=1e-5, atol=1e-6)
    assert "backward" in signal.metadata.General.title


def test_sxm_channel_is_picked_by_name(tmp_path):
    z, current = _images()
    path = write_sxm(
        tmp_path / "scan.sxm",
        {"Z": ("m", z, z), "Current": ("A", current, current)},
    )
    signal = load(path, channel="current")
    np.testing.assert_allclose(signal.data, current, rtol=1e-5, atol=1e-15)
    assert signal.metadata.Signal.quantity == "Current (A)"


def test_sxm_wrong_channel_lists_the_channels(tmp_path):
    z, current = _images()
    path = write_sxm(tmp_path / "scan.sxm", {"Z": ("m", z, z), "Current": ("A", current, current)})
    with pytest.raises(LoadError, match=r"no such channel 'Phase'.*'Z' \(forward, backward\)"):
        load(path, channel="Phase")


def test_sxm_forward_only_refuses_backward(tmp_path):
    z, _ = _images()
    path = write_sxm(tmp_path / "scan.sxm", {"Z": ("m", z, z)}, both=False)
    np.testing.assert_allclose(load(path).data, z * 1e9, rtol=1e-5, atol=1e-6)
    with pytest.raises(LoadError, match="only scanned forward"):
        load(path, direction="backward")
    with pytest.raises(LoadError, match="direction must be"):
        load(path, direction="sideways")


def test_truncated_sxm_is_refused(tmp_path):
    z, _ = _images()
    path = write_sxm(tmp_path / "scan.sxm", {"Z": ("m", z, z)})
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 1000])
    with pytest.raises(LoadError, match=r"data values where its header announces 1536.*truncated"):
        load(path)
    path.write_bytes(raw[:200])
    with pytest.raises(LoadError, match="SCANIT_END"):
        load(path)


def test_corrupt_sxm_is_refused(tmp_path):
    path = tmp_path / "noise.sxm"
    path.write_bytes(RNG.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(LoadError, match="not a Nanonis scan file"):
        load(path)


def test_direction_on_a_stem_file_is_refused(tmp_path):
    path = tmp_path / "image.npy"
    np.save(path, np.zeros((32, 32)))
    with pytest.raises(LoadError, match="scanning-probe files"):
        load(path, direction="backward")


@pytest.mark.parametrize("dtype", ["double", "float", "short"])
def test_wsxm_loads_calibrated_and_upright(tmp_path, dtype):
    image = RNG.normal(0, 1, (20, 30))
    image[2, 3] = 10  # a marker: top left
    if dtype == "short":
        image = np.round(image * 1000)
    path = write_wsxm(tmp_path / "scan.top", image, dtype=dtype, amplitude=("125", "Å"), z="0.8 nm")
    signal = load(path)
    assert np.unravel_index(np.argmax(signal.data), signal.data.shape) == (2, 3)
    expected = image * 0.8 / np.ptp(image)  # the data range is the Z amplitude
    np.testing.assert_allclose(signal.data, expected, rtol=1e-5, atol=1e-6)
    x, y = signal.axes_manager.signal_axes
    assert (x.units, x.scale, y.scale) == ("nm", pytest.approx(12.5 / 30), pytest.approx(12.5 / 20))
    assert imaging_mode(signal) == "stm"
    assert signal.metadata.Signal.quantity == "Topography (nm)"


def test_wsxm_channel_and_direction(tmp_path):
    image = RNG.normal(0, 1, (20, 20))
    path = write_wsxm(tmp_path / "scan.stp", image, **{"X scanning direction": "backward"})
    assert load(path, channel="topo", direction="backward").data.shape == (20, 20)
    with pytest.raises(LoadError, match=r"no such channel 'Current'.*'Topography' \(backward"):
        load(path, channel="Current")
    with pytest.raises(LoadError, match="holds the backward scan only"):
        load(path, direction="forward")


def test_truncated_or_foreign_wsxm_is_refused(tmp_path):
    path = write_wsxm(tmp_path / "scan.top", RNG.normal(0, 1, (20, 20)))
    raw = path.read_bytes()
    path.write_bytes(raw[:-100])
    with pytest.raises(LoadError, match=r"bytes of image data.*20x20 'double'.*truncated"):
        load(path)
    path.write_bytes(raw[:150])
    with pytest.raises(LoadError, match=r"\[Header end\]"):
        load(path)
    path.write_bytes(b"not a WSxM file at all" * 20)
    with pytest.raises(LoadError, match="not a WSxM image file"):
        load(path)
