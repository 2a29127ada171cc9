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
for every frame when its median confidence is at least :data:`GAIN` higher.
``attrs["warnings"]`` then says so, and ``preprocess="none"`` analyses the data
as recorded with no check. Frames read with confidence never pay for the
second pass; scanning-probe files (``imaging == "stm"``) are never checked.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DOUBTFUL", "GAIN", "doubtful", "inverted_warning", "median_confidence",
           "prefer_inverted"]  # fmt: skip

#: Below this median confidence the frame as recorded is worth reading inverted too.
DOUBTFUL = 0.9
#: The inverted reading is kept when its median confidence is at least this much higher.
GAIN = 0.1


def median_confidence(atoms, frame: int = 0) -> float:
    """The median ``confidence`` of one frame's atoms; 0 when it has none.

    >>> import pandas as pd
    >>> median_confidence(pd.DataFrame({"frame": [0, 0, 1], "confidence": [0.8, 1.0, 0.1]}))
    0.9
    """
    values = atoms.loc[atoms["frame"] == frame, "confidence"].to_numpy(float)
    values = values[np.isfinite(values)]
    return float(np.median(values)) if len(values) else 0.0


def doubtful(confidence: float) -> bool:
    """True when a frame read with this median confidence should be tried inverted.

    >>> doubtful(0.73), doubtful(0.99), doubtful(float("nan"))
    (True, False, True)
    """
    return not (math.isfinite(confidence) and confidence >= DOUBTFUL)


def prefer_inverted(confidence: float, confidence_inverted: float) -> bool:
    """Whether the inverted reading of a frame should replace the one as recorded.

    >>> prefer_inverted(0.73, 0.99), prefer_inverted(0.82, 0.85), prefer_inverted(0.95, 1.0)
    (True, False, False)
    """
    return doubtful(confidence) and confidence_inverted >= confidence + GAIN


def inverted_warning(confidence: float, confidence_inverted: float) -> str:
    """The sentence for ``attrs["warnings"]`` when the inverted reading was kept."""
    return (
        f"the atoms are darker than the background (bright-field or ABF contrast): the "
        f"network's median confidence was {confidence:.2f} on the image as recorded and "
        f"{confidence_inverted:.2f} inverted, so it was analysed inverted "
        "(preprocess='invert'); pass preprocess='none' to analyse it as recorded"
    )
