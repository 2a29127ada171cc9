"""The overlay file of ``atomstat analyze``: the atoms are marked where they are.

The picture is read back as pixels: every atom's dot lies on it (red), an atom cut
by the border is a ring (red around, the image inside), the image between atoms
keeps its grey, and the title strip sits above. SVG and PDF go through matplotlib.
"""

import numpy as np
import pytest
from PIL import Image

from atomstat.plot import save_overlay
from atomstat.table import make_atoms


@pytest.fixture
def scene():
    yy, xx = np.mgrid[:100, :120]
    atoms = make_atoms({"x": [20.0, 60.3, 95.7, 0.4], "y": [30.0, 50.8, 75.2, 60.0],
                        "edge": [False, False, False, True]})  # fmt: skip
    image = np.zeros((100, 120))
    for x, y in atoms[["x", "y"]].to_numpy():
        image += np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.0**2))
    return image, atoms


def _red(pixel):
    r, g, b = (int(v) for v in pixel[:3])
    return r > 200 and g < 120 and b < 120


def test_png_marks_every_atom_where_it_is(tmp_path, scene):
    image, atoms = scene
    path = tmp_path / "overlay.png"
    save_overlay(path, image, atoms, title="4 atoms", dpi=100)
    picture = np.asarray(Image.open(path).convert("RGB"))
    scale = 8.0 * 100 / image.shape[1]  # 8 inches at 100 dpi over 120 px
    strip = picture.shape[0] - round(image.shape[0] * scale)
    assert picture.shape[1] == 800 and 10 < strip < 60
    assert (picture[: strip - 2] > 200).all(axis=-1).mean() > 0.9  # a white title strip
    assert (picture[: strip - 2] < 80).all(axis=-1).any()  # with dark text on it
    for x, y, edge in atoms[["x", "y", "edge"]].itertuples(index=False):
        col, row = (x + 0.5) * scale, (y + 0.5) * scale + strip
        centre = picture[int(row), int(col)]
        if edge:
            assert not _red(centre)  # a ring: the image shows inside it
            ring = [picture[int(row), int(col + dx)] for dx in np.arange(2, 14)]
            assert any(_red(p) for p in ring)
        else:
            assert _red(centre), (x, y, centre)
    between = picture[int(10 * scale) + strip, int(100 * scale)]  # dark background
    assert between[0] == between[1] == between[2] and between[0] < 60


@pytest.mark.parametrize("suffix, magic", [(".svg", b"<?xml"), (".pdf", b"%PDF")])
def test_vector_overlays_are_written_by_matplotlib(tmp_path, scene, suffix, magic):
    image, atoms = scene
    path = tmp_path / f"overlay{suffix}"
    save_overlay(path, image, atoms, title="4 atoms")
    assert path.read_bytes().startswith(magic)
