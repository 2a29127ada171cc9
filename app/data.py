"""Where the dashboard's data comes from: a confined data folder, uploads, examples.

No widgets here. Every path the page receives is resolved by :func:`inside`,
which refuses anything that leaves the data folder (``..``, absolute paths,
symbolic links pointing out).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import atomstat
from atomstat.examples import examples
from atomstat.simulate import Defects

__all__ = [
    "DEFAULT_UPLOAD_LIMIT",
    "Example",
    "PathError",
    "data_dir_from_env",
    "example_catalogue",
    "inside",
    "list_folder",
    "save_upload",
    "session_path",
]

#: Largest upload accepted, bytes (``ATOMSTAT_UPLOAD_LIMIT_MB`` changes it).
DEFAULT_UPLOAD_LIMIT = int(float(os.environ.get("ATOMSTAT_UPLOAD_LIMIT_MB", "200")) * 2**20)
SESSION_SUFFIX = ".atomstat.json"
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


class PathError(ValueError):
    """A path the page asked for is outside the data folder, or unusable."""


def data_dir_from_env(default: str | Path | None = None) -> Path:
    """The data folder: ``$ATOMSTAT_DATA_DIR``, else ``default``, else ``~/atomstat-data``."""
    chosen = os.environ.get("ATOMSTAT_DATA_DIR") or default or Path.home() / "atomstat-data"
    path = Path(chosen).expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def inside(data_dir: str | Path, relative: str | Path) -> Path:
    """Resolve ``relative`` within ``data_dir``; refuse any path that leaves it.

    Symbolic links are followed before the check, so a link inside the folder
    that points outside it is refused too.

    Raises
    ------
    PathError
        If the path is absolute, climbs out with ``..``, or resolves outside.
    """
    root = Path(data_dir).resolve()
    text = str(relative)
    if not text or text.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", text):
        raise PathError(f"path must be relative to the data folder, got {text!r}")
    if ".." in Path(text).parts:
        raise PathError(f"path must not contain '..': {text!r}")
    path = (root / text).resolve()
    if path != root and root not in path.parents:
        raise PathError(f"{text!r} leads outside the data folder")
    return path


def list_folder(data_dir: str | Path, relative: str = ".") -> list[str]:
    """Entries of a folder inside ``data_dir``: sub-folders (ending in ``/``) then files.

    Hidden entries, session files and entries that resolve outside the data
    folder (symbolic links out) are left out.
    """
    folder = inside(data_dir, relative) if relative not in ("", ".") else Path(data_dir).resolve()
    if not folder.is_dir():
        raise PathError(f"{relative!r} is not a folder in the data folder")
    dirs, files = [], []
    for entry in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
        if entry.name.startswith(".") or entry.name.endswith(SESSION_SUFFIX):
            continue
        try:
            inside(data_dir, entry.relative_to(Path(data_dir).resolve()))
        except PathError:
            continue
        (dirs if entry.is_dir() else files).append(entry.name + ("/" if entry.is_dir() else ""))
    return dirs + files


def save_upload(data_dir: str | Path, name: str, content: bytes, *, limit: int) -> Path:
    """Write an uploaded file into ``data_dir/uploads`` under a safe name.

    Raises
    ------
    PathError
        If the file is larger than ``limit`` bytes (the message gives both
        sizes) or has no usable name.
    """
    size = len(content)
    if size > limit:
        raise PathError(
            f"{name} is {size / 2**20:.1f} MB; uploads are limited to {limit / 2**20:.1f} MB. "
            "Put large files in the data folder on the server instead."
        )
    safe = _SAFE_NAME.sub("_", Path(str(name)).name).lstrip(".")
    if not safe:
        raise PathError(f"unusable file name {name!r}")
    folder = Path(data_dir).resolve() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / safe
    path.write_bytes(bytes(content))
    return path


def session_path(data_dir: str | Path, source: str) -> Path:
    """Where the session of ``source`` autosaves: ``<file>.atomstat.json`` beside a file
    of the data folder, ``<data_dir>/examples/<name>.atomstat.json`` for an example."""
    if source.startswith("example:"):
        name = _SAFE_NAME.sub("_", source.removeprefix("example:"))
        folder = Path(data_dir).resolve() / "examples"
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name}{SESSION_SUFFIX}"
    return Path(source).with_name(Path(source).name + SESSION_SUFFIX)


@dataclass(frozen=True)
class Example:
    """A bundled example: a file shipped with atomstat or a simulation with a fixed seed."""

    name: str
    description: str
    path: Path | None = None
    kind: str | None = None  # simulated: "lattice:<kind>", "movie"

    def load(self):
        """The example's data: a Signal2D (file) or ``(frames, pixel_size, units)``."""
        if self.path is not None:
            return atomstat.load(self.path)
        if self.kind == "movie":
            movie = atomstat.simulate_movie(12, shape=(256, 256), drift=4.0, rng=5)
            return movie.frames, 1.0, "px"
        lattice = self.kind.removeprefix("lattice:")
        defects = Defects(vacancies=0.02, dopants=0.03, dopant_ratio=0.55, adatoms=0.01)
        sim = atomstat.simulate_lattice(
            lattice, shape=(512, 512), spacing=18, sigma=2.4, defects=defects, rng=11
        )
        return sim.image[None].astype(np.float32), 1.0, "px"


def example_catalogue() -> dict[str, Example]:
    """Bundled examples by display name: the shipped images and three simulations."""
    out = {
        name.replace("_", " "): Example(
            name.replace("_", " "), "real image (see ATTRIBUTION)", path
        )
        for name, path in examples().items()
    }
    for kind in ("hexagonal", "square"):
        name = f"Simulated {kind} lattice with dopants"
        out[name] = Example(name, "simulated, seed 11", kind=f"lattice:{kind}")
    out["Simulated dumbbell movie"] = Example(
        "Simulated dumbbell movie", "12 frames, simulate_movie seed 5", kind="movie"
    )
    return out
