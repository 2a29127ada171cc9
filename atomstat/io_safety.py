"""Checks :func:`atomstat.load` makes before a reader opens a file.

A file from a visitor must not make the loader block, read other files, or
allocate more than the machine has:

* Only regular files are read (and a ``.zspy`` folder of regular files): a
  FIFO, socket or device named ``image.npy`` blocks the reader or never ends.
* HDF5 files (``.h5``, ``.hspy``, ``.emd``, ... whatever their extension)
  may not hold datasets with external storage, virtual datasets or external
  links: each reads another file, e.g. ``/etc/passwd``, as if it were the image.
* The data a file declares (the shape and dtype of every HDF5 dataset or
  zarr array) must fit in the memory available, as a few kB of compressed
  zeros can declare many GB. Lazy loads need room for one frame at a time.
"""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import h5py
import numpy as np

from atomstat.errors import LoadError

__all__ = ["available_memory", "check_before_reading", "check_regular"]

#: Room for the copies reading makes (float32 conversion, NaN filling), as a factor.
_COPIES = 2.0
_KINDS = {stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}  # fmt: skip


def _refuse(path: Path, problem: str) -> LoadError:
    return LoadError(f"Cannot load {path}: {problem}.")


def available_memory() -> int:
    """Bytes of memory this process may still use: the system's available
    memory, or less where a cgroup (container) limit says so."""
    import psutil

    available = psutil.virtual_memory().available
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text())
        if limit != "max":
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return max(int(available), 0)


def check_regular(path: Path) -> None:
    """Refuse anything but a regular file (symbolic links are followed).

    Raises
    ------
    LoadError
        If ``path`` is a FIFO, socket or device.
    """
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
        raise _refuse(path, f"it is {kind}, not a regular file; atomstat reads only regular files")


def check_before_reading(path: Path, *, lazy: bool = False) -> None:
    """Refuse HDF5 links to other files and data larger than memory in ``path``.

    Parameters
    ----------
    path : pathlib.Path
        A regular file or a ``.zspy`` folder, already checked to exist.
    lazy : bool, optional
        Whether the file is read lazily: then one frame at a time must fit.

    Raises
    ------
    LoadError
        Naming the dataset that reads another file, or the declared size and
        the memory available.
    """
    if path.suffix.lower() == ".npy" and path.is_file():
        _check_npy(path)
        return
    if path.is_dir():
        arrays = _zarr_folder(path)
    elif path.suffix.lower() == ".zspy" and zipfile.is_zipfile(path):
        arrays = _zarr_zip(path)
    elif h5py.is_hdf5(path):
        arrays = _hdf5(path)
    else:
        return
    _check_size(path, arrays, lazy=lazy)


def _check_npy(path: Path) -> None:
    """Refuse a .npy file whose header declares more bytes than the file holds."""
    try:
        with open(path, "rb") as file:
            version = np.lib.format.read_magic(file)
            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                    else np.lib.format.read_array_header_2_0)  # fmt: skip
            shape, _, dtype = read(file)
            start = file.tell()
    except (ValueError, OSError, SyntaxError):
        return  # not a .npy file: the reader says why
    declared = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if declared > path.stat().st_size - start:
        raise _refuse(
            path,
            f"it is not a readable image: its header declares {'x'.join(map(str, shape))} "
            f"{dtype} ({declared / 2**20:.1f} MiB) but the file holds "
            f"{(path.stat().st_size - start) / 2**20:.1f} MiB of data (truncated or corrupt file?)",
        )


def _hdf5(path: Path) -> list[tuple[str, tuple, np.dtype]]:
    """(name, shape, dtype) of every dataset; refuse datasets and links that read other files."""
    arrays, outside = [], []

    def link(name, info):
        if isinstance(info, h5py.ExternalLink):
            outside.append(f"'{name}' is an external link to {info.filename}:{info.path}")

    def dataset(name, obj):
        if not isinstance(obj, h5py.Dataset):
            return
        if obj.external:
            files = sorted({str(entry[0]) for entry in obj.external})
            outside.append(f"dataset '{name}' keeps its data in the external file(s) {files}")
        elif obj.is_virtual:
            files = sorted({source.file_name for source in obj.virtual_sources()})
            outside.append(f"dataset '{name}' is a virtual dataset reading {files}")
        arrays.append((name, obj.shape or (), obj.dtype))

    try:
        with h5py.File(path, "r") as file:
            file.visititems_links(link)
            file.visititems(dataset)
    except OSError:
        return []  # not readable: the reader says why
    if outside:
        raise _refuse(
            path,
            f"its {outside[0]}; atomstat does not read data stored outside the file itself"
            + (f" ({len(outside) - 1} more such datasets or links)" if len(outside) > 1 else ""),
        )
    return arrays


def _zarr_folder(path: Path) -> list[tuple[str, tuple, np.dtype]]:
    """(name, shape, dtype) of the zarr arrays of a folder of regular files only."""
    documents = {}
    for entry in sorted(path.rglob("*")):
        if entry.is_symlink() or not (entry.is_file() or entry.is_dir()):
            what = "a symbolic link" if entry.is_symlink() else "not a regular file"
            raise _refuse(
                path,
                f"{entry.relative_to(path)} is {what}; a .zspy folder holds regular files only",
            )
        if entry.name in (".zarray", ".zmetadata"):
            documents[str(entry.relative_to(path))] = entry.read_bytes()
    return _zarr_arrays(documents)


def _zarr_zip(path: Path) -> list[tuple[str, tuple, np.dtype]]:
    with zipfile.ZipFile(path) as archive:
        names = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] in (".zarray", ".zmetadata")]
        return _zarr_arrays({name: archive.read(name) for name in names})


def _zarr_arrays(documents: dict[str, bytes]) -> list[tuple[str, tuple, np.dtype]]:
    """The arrays described by ``.zarray`` documents and consolidated ``.zmetadata``.

    An array described in both counts once, with the larger of the two sizes.
    """
    found: dict[str, tuple[str, tuple, np.dtype]] = {}
    for name, text in documents.items():
        try:
            parsed = json.loads(text)
        except ValueError:
            continue
        if name.endswith(".zmetadata"):
            entries = (parsed.get("metadata") or {}) if isinstance(parsed, dict) else {}
            metas = {k: v for k, v in entries.items() if k.endswith(".zarray")}
        else:
            metas = {name: parsed}
        for key, meta in metas.items():
            array = _zarray(key.rsplit("/", 1)[0] if "/" in key else ".", meta)
            if array[0] not in found or _nbytes(array) > _nbytes(found[array[0]]):
                found[array[0]] = array
    return list(found.values())


def _zarray(name: str, meta) -> tuple[str, tuple, np.dtype]:
    """(name, shape, dtype) from a zarr ``.zarray`` document ((), uint8 if unreadable)."""
    try:
        dtype = np.dtype(meta["dtype"] if isinstance(meta["dtype"], str) else "V1")
        return name, tuple(int(n) for n in meta["shape"]), dtype
    except (ValueError, TypeError, KeyError):
        return name, (), np.dtype(np.uint8)


def _nbytes(array) -> float:
    """Bytes of an array as read: at least float32 per element."""
    _, shape, dtype = array
    return float(np.prod(shape, dtype=np.float64)) * max(dtype.itemsize, 4)


def _check_size(path: Path, arrays, *, lazy: bool) -> None:
    """Refuse data that would not fit in the memory available."""
    if not arrays:
        return
    sizes = [(_nbytes(array), *array) for array in arrays]
    biggest = max(sizes, key=lambda s: s[0])
    if lazy:
        _, name, shape, dtype = biggest
        frame = _nbytes((name, shape[-2:], dtype))
        need, what = frame * _COPIES, f"a frame of {'x'.join(map(str, shape[-2:]))} {dtype}"
    else:
        need = sum(s[0] for s in sizes) * _COPIES
        _, name, shape, dtype = biggest
        what = f"{len(sizes)} dataset(s), the largest '{name}' of shape {shape} {dtype}"
    available = available_memory()
    if need > available:
        hint = "" if lazy else "; a stack can be read frame by frame with lazy=True"
        raise _refuse(
            path,
            f"it declares {what}, which needs about {need / 2**30:.1f} GiB to read, more than "
            f"the {available / 2**30:.1f} GiB of memory available{hint}",
        )
