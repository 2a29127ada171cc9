"""Dark atoms: images whose columns are darker than their background.

The network was trained on bright atoms (HAADF, STM topographs). On an
annular bright-field (ABF) or bright-field image the columns are dips in a
bright background, and it finds the bright gaps between them instead, or
almost nothing: on the SrTiO3 ABF image of the shared dev data, 26 atoms as
recorded and 336 once the image is inverted.

Image statistics do not tell the two contrasts apart: a low-dose HAADF
graphene frame and STM frames with dark defects are as skewed as the ABF
frame, and the gaps of a dark lattice form a lattice as dense as its atoms.
What does is the network's own confidence (the ``confidence`` column: each
blob's peak probability). Measured on the shared dev images and on simulated
lattices (square, hexagonal, honeycomb, dumbbells; dark ones with shot noise):

- the right contrast gives a median confidence of 0.95-1.00 on STEM images
  (0.83-0.96 on STM frames);
- the wrong one gives 0.71-0.83;
- where the frame as recorded reads below 0.9, inverting it raises the median by
  0.17-0.26 when its atoms are dark, and by at most 0.03 otherwise (the WSe2
  STM dev frames, graphite).

So :func:`atomstat.analyze` looks at its first frame as recorded: when the
median confidence is below :data:`DOUBTFUL`, that frame is also analysed
inverted (:func:`atomstat.preprocess.invert`), and the inverted reading is kept
for every frame when its median confidence is at least :data:`GAIN` higher. A
frame as recorded with fewer than :data:`FEW` atoms is tried inverted whatever
their confidence (a median of a handful says little: a dark square lattice gave
4 blobs at 0.91), and the inverted reading is kept when it holds at least
:data:`FEW` times as many atoms with no less confidence.
``attrs["warnings"]`` then says so, and ``preprocess="none"`` analyses the data
as recorded with no check. Frames read with confidence never pay for the
second pass; scanning-probe files (``imaging == "stm"``) are never checked.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DOUBTFUL", "FEW", "GAIN", "doubtful", "inverted_warning", "median_confidence",
           "prefer_inverted"]  # fmt: skip

#: Below this median confidence the frame as recorded is worth reading inverted too.
DOUBTFUL = 0.9
#: The inverted reading is kept when its median confidence is at least this much higher.
GAIN = 0.1
#: A frame with fewer atoms than this is tried inverted whatever their confidence.
FEW = 10


def median_confidence(atoms, frame: int = 0) -> float:
    """The median ``confidence`` of one frame's atoms; 0 when it has none.

    >>> import pandas as pd
    >>> median_confidence(pd.DataFrame({"frame": [0, 0, 1], "confidence": [0.8, 1.0, 0.1]}))
    0.9
    """
    values = atoms.loc[atoms["frame"] == frame, "confidence"].to_numpy(float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else 0.0


def doubtful(confidence: float, n_atoms: int | None = None) -> bool:
    """True when a frame read with this median confidence (and, if given, this many atoms)
    should be tried inverted: below :data:`DOUBTFUL`, or fewer than :data:`FEW` atoms,
    whose median says little (a dark square lattice read as recorded gave 4 blobs of
    median confidence 0.91).

    >>> doubtful(0.73), doubtful(0.99), doubtful(float("nan")), doubtful(0.99, 4)
    (True, False, True, True)
    """
    few = n_atoms is not None and n_atoms < FEW
    return few or not (math.isfinite(confidence) and confidence >= DOUBTFUL)


def prefer_inverted(
    confidence: float,
    confidence_inverted: float,
    n_atoms: int | None = None,
    n_inverted: int | None = None,
) -> bool:
    """Whether the inverted reading of a frame should replace the one as recorded: its
    median confidence is :data:`GAIN` higher, or (counts given) the frame as recorded
    holds fewer than :data:`FEW` atoms and the inverted one at least :data:`FEW` times
    as many, read with no less confidence.

    >>> prefer_inverted(0.73, 0.99), prefer_inverted(0.82, 0.85), prefer_inverted(0.95, 1.0)
    (True, False, False)
    >>> prefer_inverted(0.91, 1.0, 4, 62), prefer_inverted(0.91, 0.85, 4, 62)
    (True, False)
    """
    if not doubtful(confidence, n_atoms):
        return False
    if confidence_inverted >= confidence + GAIN:
        return True
    few = n_atoms is not None and n_inverted is not None and n_atoms < FEW
    return few and n_inverted >= FEW * max(n_atoms, 1) and confidence_inverted >= confidence


def inverted_warning(confidence: float, confidence_inverted: float) -> str:
    """The sentence for ``attrs["warnings"]`` when the inverted reading was kept."""
    return (
        f"the atoms are darker than the background (bright-field or ABF contrast): the "
        f"network's median confidence was {confidence:.2f} on the image as recorded and "
        f"{confidence_inverted:.2f} inverted, so it was analysed inverted "
        "(preprocess='invert'); pass preprocess='none' to analyse it as recorded"
    )
