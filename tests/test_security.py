"""Issue 16: what a visitor's file or request must not do to the loader and the server.

Loader: HDF5 external storage, virtual datasets and external links (reading
other files), declared sizes past memory (zip bombs), FIFOs and truncated
``.npy`` headers. Uploads: non-ASCII names, overwrites, read-only folders.
Server (``atomstat.serve_app`` on a one-widget notebook, so kernels start
fast): legacy websockets, foreign Host headers, tokens, the frame limit.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import h5py
import hyperspy.api as hs
import numpy as np
import pytest
from _process import stop

from app import data as app_data
from app.data import PathError, save_upload
from atomstat import io_safety
from atomstat.errors import LoadError
from atomstat.io import load

ROOT = Path(__file__).resolve().parents[1]
IMAGE = (np.random.default_rng(0).random((32, 32)) * 100).astype(np.float32)


# ------------------------------------------------------------------ loader
@pytest.fixture
def secret(tmp_path):
    """A file outside the data folder whose bytes must never appear as an image."""
    path = tmp_path / "outside" / "passwd"
    path.parent.mkdir()
    path.write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 32)  # 1024 bytes = 32 x 32 uint8
    return path


def test_hdf5_external_storage_is_refused(tmp_path, secret):
    path = tmp_path / "data" / "image.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as file:
        file.create_dataset("image", shape=(32, 32), dtype="u1", external=[(str(secret), 0, 1024)])
    with h5py.File(path) as file:  # what the loader read before: the secret's bytes
        assert file["image"][0, :4].tobytes() == b"root"
    with pytest.raises(LoadError, match=r"dataset 'image' keeps its data in the external file"):
        load(path)


def test_hdf5_virtual_dataset_is_refused(tmp_path):
    other = tmp_path / "elsewhere.h5"
    with h5py.File(other, "w") as file:
        file["secret"] = IMAGE
    layout = h5py.VirtualLayout(shape=IMAGE.shape, dtype=IMAGE.dtype)
    layout[:] = h5py.VirtualSource(str(other), "secret", shape=IMAGE.shape)
    path = tmp_path / "virtual.h5"
    with h5py.File(path, "w") as file:
        file.create_virtual_dataset("image", layout)
    with pytest.raises(LoadError, match=r"'image' is a virtual dataset reading .*elsewhere\.h5"):
        load(path)


def test_hdf5_external_link_in_a_hyperspy_file_is_refused(tmp_path):
    other = tmp_path / "elsewhere.h5"
    with h5py.File(other, "w") as file:
        file["secret"] = IMAGE
    path = tmp_path / "image.hspy"
    hs.signals.Signal2D(IMAGE).save(path)
    with h5py.File(path, "a") as file:
        file["Experiments/extra"] = h5py.ExternalLink(str(other), "/secret")
    with pytest.raises(LoadError, match=r"'Experiments/extra' is an external link to .*elsewhere"):
        load(path)


def test_plain_files_still_load(tmp_path):
    path = tmp_path / "image.hspy"
    hs.signals.Signal2D(IMAGE).save(path)
    assert load(path).data.shape == (32, 32)


BOMB = (8, 4096, 4096)  # 1 GiB of float64, declared in a few kB


def _bomb(path: Path) -> None:
    """A valid HyperSpy file whose data declare ``BOMB`` float64 with no chunk written."""
    hs.signals.Signal2D(np.zeros((8, 32, 32))).save(path)
    if path.suffix == ".hspy":
        with h5py.File(path, "a") as file:
            group = file["Experiments/__unnamed__"]
            del group["data"]
            group.create_dataset("data", shape=BOMB, dtype="f8", chunks=(1, 256, 256),
                                 compression="gzip")  # fmt: skip
            for axis, size in enumerate(BOMB):
                group[f"axis-{axis}"].attrs["size"] = size
        return
    import zarr

    data = path / "Experiments" / "__unnamed__"
    meta = json.loads((data / "data" / ".zarray").read_text())
    meta.update(shape=list(BOMB), chunks=[1, 256, 256])
    (data / "data" / ".zarray").write_text(json.dumps(meta))
    for chunk in (data / "data").iterdir():  # missing chunks read as the fill value
        if not chunk.name.startswith("."):
            chunk.unlink() if chunk.is_file() else shutil.rmtree(chunk)
    for axis, size in enumerate(BOMB):
        attrs = json.loads((data / f"axis-{axis}" / ".zattrs").read_text())
        (data / f"axis-{axis}" / ".zattrs").write_text(json.dumps({**attrs, "size": size}))
    zarr.consolidate_metadata(zarr.storage.NestedDirectoryStore(str(path)))


@pytest.mark.parametrize("suffix", [".hspy", ".zspy"])
def test_declared_size_past_memory_is_refused(tmp_path, monkeypatch, suffix):
    monkeypatch.setattr(io_safety, "available_memory", lambda: 256 * 2**20)
    path = tmp_path / f"bomb{suffix}"
    _bomb(path)
    on_disk = (
        sum(p.stat().st_size for p in path.rglob("*")) if path.is_dir() else path.stat().st_size
    )
    assert on_disk < 100_000
    refused = r"it declares .* needs about 2\.0 GiB to read, more than the 0\.2 GiB of memory"
    with pytest.raises(LoadError, match=refused):
        load(path)
    # One frame at a time fits: the lazy signal is returned, and reads frames when asked.
    assert load(path, lazy=True).data.shape == BOMB


def test_a_zspy_folder_with_a_link_out_is_refused(tmp_path, secret):
    path = tmp_path / "image.zspy"
    hs.signals.Signal2D(IMAGE).save(path)
    chunk = next(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
    chunk.unlink()
    chunk.symlink_to(secret)
    with pytest.raises(LoadError, match="is a symbolic link; a .zspy folder holds regular files"):
        load(path)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    path = tmp_path / "image.npy"
    os.mkfifo(path)
    result = {}
    worker = threading.Thread(target=lambda: result.update(error=_error(path)), daemon=True)
    worker.start()
    worker.join(timeout=10)
    if worker.is_alive():  # the old loader blocked here, waiting for a writer
        with open(path, "wb"):  # let it go
            pass
        pytest.fail("load() blocked on a FIFO")
    assert "it is a FIFO (named pipe), not a regular file" in result["error"]


def _error(path) -> str:
    try:
        load(path)
    except LoadError as exc:
        return str(exc)
    return "loaded"


def test_a_truncated_npy_header_is_refused(tmp_path):
    path = tmp_path / "image.npy"
    with path.open("wb") as file:  # 128 bytes that declare 37 GB
        header = {"descr": "<f4", "fortran_order": False, "shape": (99999, 99999)}
        np.lib.format.write_array_header_1_0(file, header)
        file.write(IMAGE.tobytes())
    with pytest.raises(LoadError, match=r"header declares 99999x99999 float32 .* but the file"):
        load(path)


# ------------------------------------------------------------- calibration
@pytest.mark.parametrize("value", [0.0, -0.1, float("inf"), float("nan")])
def test_bad_pixel_sizes_are_refused(value):
    from atomstat.calibration import check_pixel_size

    with pytest.raises(ValueError, match=r"pixel size must be a positive, finite number"):
        check_pixel_size(value, "nm")


def test_pixel_sizes_are_checked_with_their_unit():
    from atomstat.calibration import check_pixel_size

    assert check_pixel_size("0.5", "Å") == (0.05, "nm")
    assert check_pixel_size(2, "px") == (2.0, "px")
    with pytest.raises(ValueError, match="unit 'parsec' is not a length unit; use one of"):
        check_pixel_size(1.0, "parsec")
    with pytest.raises(ValueError, match="pixel size must be a positive, finite number, got 'a'"):
        check_pixel_size("a", "nm")


@pytest.mark.parametrize("scale", [0.0, -0.02, float("inf")])
def test_a_file_with_a_bad_pixel_size_is_read_uncalibrated(tmp_path, caplog, scale):
    signal = hs.signals.Signal2D(IMAGE)
    for axis in signal.axes_manager.signal_axes:
        axis.scale, axis.units = scale, "nm"
    path = tmp_path / "image.hspy"
    signal.save(path)
    axis = load(path).axes_manager.signal_axes[0]
    assert (axis.scale, axis.units) == (1.0, "px")
    assert f"the file's pixel size {scale:g} nm is not a positive, finite length" in caplog.text


# ------------------------------------------------------------------ uploads
def test_uploads_with_non_ascii_names_do_not_collide(tmp_path):
    first = save_upload(tmp_path, "試料.npy", b"first", limit=100)
    second = save_upload(tmp_path, "画像.npy", b"second", limit=100)
    assert (first.name, second.name) == ("試料.npy", "画像.npy")
    assert (first.read_bytes(), second.read_bytes()) == (b"first", b"second")


def test_uploads_never_overwrite(tmp_path):
    names = ["$$.npy", "@@.npy", "a b.npy", "a_b.npy", "a b.npy"]
    paths = [save_upload(tmp_path, name, name.encode(), limit=100) for name in names]
    assert [p.read_bytes() for p in paths] == [n.encode() for n in names]
    assert paths[0] != paths[1] and paths[0].name.startswith("upload-")
    assert [p.name for p in paths[2:]] == [
        "a_b.npy",
        "a_b-2.npy",
        "a_b.npy",
    ]  # same bytes: same file
    assert all(p.parent == tmp_path / "uploads" for p in paths)


def _read_only(monkeypatch):
    """Writes fail as on a read-only mount (chmod does not stop root, which runs the tests)."""
    real_open = open

    def fake_open(path, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wxa"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", fake_open)


def test_a_read_only_data_folder_gives_a_clear_message(tmp_path, monkeypatch):
    (tmp_path / "uploads").mkdir()
    _read_only(monkeypatch)
    message = r"cannot write to .*uploads: it is read-only\. Files in the data folder can still be"
    with pytest.raises(PathError, match=message):
        save_upload(tmp_path, "image.npy", b"x", limit=100)
    assert list((tmp_path / "uploads").iterdir()) == []


def test_dashboard_warns_about_a_read_only_data_folder(tmp_path, monkeypatch, caplog):
    from atomstat.cli import main

    _read_only(monkeypatch)
    assert main(["dashboard", str(tmp_path), "--dry-run"]) == 0
    assert f"DATA_DIR {tmp_path} is read-only" in caplog.text


def test_dashboard_data_folder_defaults_to_the_readme_one(monkeypatch, tmp_path, capsys):
    from atomstat.cli import main

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert main(["dashboard", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith(f"ATOMSTAT_DATA_DIR={tmp_path / 'atomstat-data'} ")
    assert "~/atomstat-data" in (ROOT / "README.md").read_text()


def test_upload_limit_comes_from_one_variable(monkeypatch):
    from atomstat.serve import upload_limit_bytes

    monkeypatch.setenv("ATOMSTAT_UPLOAD_LIMIT_MB", "16")
    assert upload_limit_bytes() == 16 * 2**20
    for bad in ("0", "-1", "nan", "lots"):
        monkeypatch.setenv("ATOMSTAT_UPLOAD_LIMIT_MB", bad)
        with pytest.raises(ValueError, match="ATOMSTAT_UPLOAD_LIMIT_MB must be a positive number"):
            upload_limit_bytes()
    assert app_data.DEFAULT_UPLOAD_LIMIT == 200 * 2**20  # what the widget states by default


# ------------------------------------------------------------------- models
def _keras_file(tmp_path, inputs, outputs):
    import keras

    inp = keras.Input(inputs)
    out = (
        keras.layers.Conv2D(outputs, 1)(inp)
        if len(inputs) == 3
        else keras.layers.Dense(outputs)(inp)
    )
    path = tmp_path / "mine.keras"
    keras.Model(inp, out).save(path)
    return path


@pytest.mark.parametrize(
    ("inputs", "outputs", "message"),
    [
        ((None, None, 3), 2, r"input \(None, None, None, 3\); atomstat needs \(None, H, W, 1\)"),
        (
            (None, None, 1),
            1,
            r"output \(None, None, None, 1\); atomstat needs \(None, H, W, C\) "
            r"with C >= 2",
        ),  # fmt: skip
        ((64,), 2, r"input \(None, 64\); atomstat needs \(None, H, W, 1\)"),
    ],
)
def test_a_model_of_the_wrong_shape_is_named(tmp_path, inputs, outputs, message):
    from atomstat.fcn.predict import load_model

    path = _keras_file(tmp_path, inputs, outputs)
    with pytest.raises(ValueError, match=f"the model {re.escape(str(path))} has the " + message):
        load_model(path)


# ------------------------------------------------------------------- server
TOKEN = "test-token-0123456789"
NOTEBOOK = {
    "cells": [{"cell_type": "code", "execution_count": None, "id": "slider", "metadata": {},
               "outputs": [], "source": ["import ipywidgets\n", "ipywidgets.IntSlider()"]}],
    "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                "name": "python3"}},
    "nbformat": 4, "nbformat_minor": 5,
}  # fmt: skip


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect (to the login page) is the answer itself


def _http(url: str, headers=None, timeout: float = 60):
    """(status, body) of a GET, redirects not followed."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A one-slider notebook served by atomstat.serve_app with a token; yields its URL."""
    from atomstat.serve import dashboard_command

    folder = tmp_path_factory.mktemp("served")
    notebook = folder / "slider.ipynb"
    notebook.write_text(json.dumps(NOTEBOOK))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = folder / "serve.log"
    env = {**os.environ, "ATOMSTAT_TOKEN": TOKEN, "ATOMSTAT_DATA_DIR": str(folder)}
    with log.open("w") as sink:
        proc = subprocess.Popen(dashboard_command(notebook, port=port), stdout=sink,
                                stderr=subprocess.STDOUT, env=env, cwd=folder)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while True:
        try:
            if _http(url + "voila/static/voila.js", timeout=2)[0] == 200:
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"the server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    yield url, log
    stop(proc)


def _kernel_count(url: str) -> int:
    status, body = _http(f"{url}atomstat/api/kernels?token={TOKEN}")
    assert status == 200, body
    return json.loads(body)["kernels"]


def test_the_token_is_required(served):
    url, _ = served
    assert _http(url)[0] in (302, 403)  # the login page, no kernel
    assert _http(f"{url}atomstat/api/kernels")[0] == 403
    assert _kernel_count(url) == 0


def test_a_foreign_host_is_refused_before_a_kernel_starts(served):
    url, _ = served
    port = url.rsplit(":", 1)[1].strip("/")
    status, body = _http(f"{url}?token={TOKEN}", headers={"Host": f"rebind.example:{port}"})
    assert status == 403 and b"Host 'rebind.example:" in body and b"--allow-host" in body
    assert _kernel_count(url) == 0
    assert _http(f"{url}voila/static/voila.js", headers={"Host": f"localhost:{port}"})[0] == 200


def test_a_websocket_without_the_v1_subprotocol_is_refused(served):
    from tornado.httpclient import HTTPClientError, HTTPRequest
    from tornado.websocket import websocket_connect

    url, _ = served
    status, page = _http(f"{url}?token={TOKEN}", timeout=120)
    assert status == 200
    kernel = re.search(rb'"kernelId": "([0-9a-f-]{36})"', page).group(1).decode()
    socket_url = f"ws://{url[7:]}api/kernels/{kernel}/channels?token={TOKEN}"

    async def connect(subprotocols):
        client = await websocket_connect(HTTPRequest(socket_url), subprotocols=subprotocols)
        protocol = client.selected_subprotocol
        client.close()
        return protocol

    with pytest.raises(HTTPClientError, match="HTTP 400"):
        asyncio.run(connect(None))  # plain Voila accepted it and later spun in write_message
    assert asyncio.run(connect(["v1.kernel.websocket.jupyter.org"])) == (
        "v1.kernel.websocket.jupyter.org"
    )
    assert _http(url + "voila/static/voila.js")[0] == 200  # still serving


def test_v1_header_refuses_what_is_not_a_v1_message():
    from voila.tornado.kernel_websocket_handler import read_header_from_binary_message

    from atomstat.serve_app import v1_header

    header = json.dumps({"msg_type": "execute_input"}).encode()
    parts = [b"iopub", header, b"{}", b"{}", b"{}"]
    offsets = [8 * (len(parts) + 1)]
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    v1 = b"".join(n.to_bytes(8, "little") for n in [len(parts), *offsets[:-1]]) + b"".join(parts)
    assert v1_header(v1) == read_header_from_binary_message(v1) == {"msg_type": "execute_input"}
    # A legacy binary message: a big-endian count of buffers, then their offsets. Voila read
    # its first 8 bytes as the count of parts (2**58 here) and looped over them.
    legacy = (2).to_bytes(4, "big") + (16).to_bytes(4, "big") + b"\x00" * 8 + b'{"header": {}}'
    assert int.from_bytes(legacy[:8], "little") > 2**50
    assert v1_header(legacy) is None
    assert v1_header(b"") is None and v1_header(v1[:20]) is None


@pytest.mark.parametrize(
    ("host", "allowed", "served_here"),
    [
        ("127.0.0.1:8866", (), True), ("[::1]:8866", (), True), ("localhost:8866", (), True),
        ("192.168.1.20:8866", (), True), ("LOCALHOST.:8866", (), True),
        ("rebind.example:8866", (), False), ("rebind.example", (), False), ("", (), False),
        ("lab.example.org:8866", ("lab.example.org",), True),
        ("localhost.rebind.example", (), False),
    ],
)  # fmt: skip
def test_host_check(host, allowed, served_here):
    from atomstat.serve_app import host_allowed

    assert host_allowed(host, allowed) is served_here


def test_a_token_is_required_off_loopback(monkeypatch):
    from atomstat.serve_app import _require_token

    monkeypatch.delenv("ATOMSTAT_TOKEN", raising=False)
    assert _require_token(["--Voila.ip=127.0.0.1"]) == ["--Voila.ip=127.0.0.1"]
    assert _require_token(["--Voila.ip=0.0.0.0"])[-1] == "--Voila.auto_token=True"
    monkeypatch.setenv("ATOMSTAT_TOKEN", "mine")
    assert _require_token(["--Voila.ip=0.0.0.0"])[-1] == "--Voila.token=mine"
    assert "ATOMSTAT_TOKEN" not in os.environ  # the kernels do not inherit it
