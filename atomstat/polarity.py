"""Dark atoms: images whose columns are darker than their background.

The network was trained on bright atoms (HAADF, STM topographs). On an
annular bright-field (ABF) or bright-field image the columns are dips in a
bright background and it finds almost nothing: on the SrTiO3 ABF image of
the shared dev data, 0 atoms where the image's Fourier lattice predicts about
260, and 224 once the image is inverted.

Image statistics alone do not tell the two contrasts apart: a low-dose
HAADF graphene frame and STM frames with dark defects are as skewed as the
ABF frame. What does is the network itself. :func:`atomstat.analyze`
therefore looks at its first frame as recorded: when it gives fewer than
:data:`LOW` of the sites that the lattice period predicts, the frame is also
analysed inverted (:func:`atomstat.preprocess.invert`), and the inverted
reading is kept when it finds at least :data:`GAIN` times as many atoms.
``attrs["warnings"]`` then says so, and ``preprocess="none"`` analyses the
data as recorded with no such check. An image that works as recorded never
pays for the second pass.
"""

from __future__ import annotations

import math

__all__ = ["GAIN", "LOW", "doubtful", "expected_sites", "inverted_warning", "prefer_inverted"]

#: Below this share of the lattice's predicted sites the frame as recorded is doubtful.
LOW = 0.25
#: The inverted frame must find at least this many times as many atoms to be kept.
GAIN = 2.0


def expected_sites(shape, period: float) -> float:
    """About how many sites a lattice of Fourier ``period`` (px) puts in an image of ``shape``.

    One site per ``period**2``: exact for a square lattice whose period is its
    spacing, and within a factor of about two for the others (the sites per
    cell and the cell's shape differ), which is all the check needs. NaN
    when no lattice was resolved.

    Examples
    --------
    >>> expected_sites((400, 380), 24.0)
    263.88888888888886
    >>> expected_sites((64, 64), float("nan"))
    nan
    """
    if period is None or not math.isfinite(period) or period <= 0:
        return float("nan")
    return float(shape[0]) * float(shape[1]) / period**2


def doubtful(found: int, expected: float) -> bool:
    """True when ``found`` atoms are too few for the ``expected`` sites (see :data:`LOW`).

    >>> doubtful(0, 264.0), doubtful(200, 264.0), doubtful(0, float("nan"))
    (True, False, False)
    """
    return math.isfinite(expected) and found < LOW * expected


def prefer_inverted(found: int, found_inverted: int, expected: float) -> bool:
    """Whether the inverted reading of a frame should replace the one as recorded.

    >>> prefer_inverted(0, 224, 264.0), prefer_inverted(150, 160, 264.0)
    (True, False)
    """
    return doubtful(found, expected) and found_inverted >= GAIN * max(found, 1)


def inverted_warning(found: int, found_inverted: int, expected: float) -> str:
    """The sentence for ``attrs["warnings"]`` when the inverted reading was kept."""
    return (
        f"the image as recorded gave {found} atoms where its lattice predicts about "
        f"{expected:.0f}, and {found_inverted} once inverted: its atoms are darker than the "
        "background (bright-field or ABF contrast), so it was analysed inverted "
        "(preprocess='invert'); pass preprocess='none' to analyse it as recorded"
    )
