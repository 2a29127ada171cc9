"""What real microscopes add to an ideal image: the artefacts of simulated scenes.

Each field of :class:`Artefacts` is one named setting, off by default, applied by
:func:`atomstat.simulate.simulate_lattice` at the stage where it happens in the
instrument:

- on the sample, before imaging: bright amorphous **contamination** (soft-edged
  textured patches many times brighter than the lattice) and **adsorbate clusters**
  (compact bright blobs off the lattice); the atoms under them cannot be seen and
  leave the training mask;
- in the optics: a **probe tail** (a Lorentzian skirt holding a fraction of the
  probe's intensity around its Gaussian core) and a **tilt smear** (a short line
  blur along one direction, from a slightly tilted sample);
- in the scan: a **scan wobble** (rows shifted by a slow sinusoid: the atoms move
  with it) and **line noise** (a random offset and a noisy streak per row);
- in the file: **JPEG** compression and a burned-in **scale bar** (with its label).

:func:`random_artefacts` draws a realistic mixture for training scenes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal

from ._checks import number

__all__ = ["Artefacts", "random_artefacts"]


@dataclass
class Artefacts:
    """Experimental artefacts of a simulated image; every one is off by default.

    Attributes
    ----------
    contamination : int
        Bright amorphous patches (2-5 lattice spacings across, textured).
    contamination_brightness : float
        Their peak height in host-column peaks (real carbon contamination on
        graphene: 10-50).
    clusters : int
        Adsorbate clusters: compact blobs 2-4 atom widths wide, off the lattice.
    cluster_brightness : float
        Their peak height in host-column peaks.
    probe_tail : float
        Fraction of each column's intensity moved into a Lorentzian skirt, in [0, 0.9].
    tail_width : float
        Half width at half maximum of the skirt, in atom widths.
    tilt_smear : float
        Length (px) of a line blur along a random direction (sample tilt).
    scan_wobble : float
        Amplitude (px) of a sinusoidal shift of the rows along x (scan distortion).
    line_noise : float
        Rms per-row offset and streak noise, relative to the host peak.
    jpeg_quality : int or None
        Save and reload the image as an 8-bit JPEG of this quality (1-95).
    scale_bar : bool
        Burn a white scale bar and its label into a corner.

    Raises
    ------
    ValueError, TypeError
        Naming the field, when a count is not an integer >= 0, a brightness or width not
        a finite number > 0, ``probe_tail`` outside [0, 0.9] or ``jpeg_quality`` outside
        1-95.
    """

    contamination: int = 0
    contamination_brightness: float = 20.0
    clusters: int = 0
    cluster_brightness: float = 10.0
    probe_tail: float = 0.0
    tail_width: float = 3.0
    tilt_smear: float = 0.0
    scan_wobble: float = 0.0
    line_noise: float = 0.0
    jpeg_quality: int | None = None
    scale_bar: bool = False

    def __post_init__(self):
        cls = "Artefacts"
        positive = {"low": 0, "high": 1e4, "low_open": True}
        for name in ("contamination", "clusters"):
            number(f"{cls}.{name}", getattr(self, name), low=0, high=1000, integer=True)
        for name in ("contamination_brightness", "cluster_brightness", "tail_width"):
            number(f"{cls}.{name}", getattr(self, name), **positive)
        number(f"{cls}.probe_tail", self.probe_tail, low=0, high=0.9)
        for name in ("tilt_smear", "scan_wobble", "line_noise"):
            number(f"{cls}.{name}", getattr(self, name), low=0, high=1e3)
        if self.jpeg_quality is not None:
            number(f"{cls}.jpeg_quality", self.jpeg_quality, low=1, high=95, integer=True)
        if not isinstance(self.scale_bar, bool | np.bool_):
            raise TypeError(f"Artefacts.scale_bar must be True or False, got {self.scale_bar!r}")


def random_artefacts(rng, mode: str = "stem") -> Artefacts:
    """A mixture of artefacts as real frames show them (each present in some scenes).

    Parameters
    ----------
    rng : numpy.random.Generator
    mode : {"stem", "stm"}
        STM frames get clusters, line noise and scale bars more often; STEM frames
        contamination and probe tails.
    """
    stm = mode == "stm"

    def maybe(p, value, off=0):
        return value if rng.random() < p else off

    return Artefacts(
        contamination=maybe(0.1 if stm else 0.3, int(rng.integers(1, 3))),
        contamination_brightness=float(np.exp(rng.uniform(np.log(3), np.log(50)))),
        clusters=maybe(0.5 if stm else 0.15, int(rng.integers(1, 8))),
        cluster_brightness=float(np.exp(rng.uniform(np.log(2), np.log(20)))),
        probe_tail=maybe(0.2 if stm else 0.5, float(rng.uniform(0.05, 0.35)), 0.0),
        tail_width=float(rng.uniform(2, 5)),
        tilt_smear=maybe(0.2, float(rng.uniform(0.5, 2.5)), 0.0),
        scan_wobble=maybe(0.2, float(rng.uniform(0.2, 1.5)), 0.0),
        line_noise=maybe(0.6 if stm else 0.2, float(rng.uniform(0.02, 0.3)), 0.0),
        jpeg_quality=maybe(0.5 if stm else 0.15, int(rng.integers(30, 95)), None),
        scale_bar=bool(rng.random() < (0.2 if stm else 0.1)),
    )


# --------------------------------------------------------------------------- on the sample
def wobble(truth, shape, art: Artefacts, rng):
    """Shift the atoms as a sinusoidal scan distortion of the rows does."""
    if art.scan_wobble <= 0:
        return truth
    period = shape[0] * rng.uniform(0.3, 1.5)
    phase = rng.uniform(0, 2 * np.pi)
    truth = truth.copy()
    truth["x"] = truth.x + art.scan_wobble * np.sin(2 * np.pi * truth.y / period + phase)
    return truth


def overlay(shape, spacing, sigma, art: Artefacts, rng):
    """The contamination and clusters to add to the clean image (host peak = 1)."""
    h, w = shape
    out = np.zeros(shape)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(art.contamination):
        r = rng.uniform(2, 5) * spacing
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        d = np.hypot(yy - cy, xx - cx)
        blob = 1 / (1 + np.exp(np.clip((d - r) / (0.15 * r), -50, 50)))  # a soft-edged patch
        texture = ndimage.gaussian_filter(rng.normal(0, 1, shape), sigma)
        texture /= texture.std() + 1e-12
        out += art.contamination_brightness * blob * np.clip(1 + 0.4 * texture, 0.2, None)
    for _ in range(art.clusters):
        s = sigma * rng.uniform(2, 4)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        out += art.cluster_brightness * np.exp(-0.5 * ((yy - cy) ** 2 + (xx - cx) ** 2) / s**2)
    return out


def hide(mask, extra, level=1.5):
    """Clear the mask where the overlay outshines the host columns ``level`` times."""
    if extra is None:
        return mask
    return np.where(extra > level, 0, mask).astype(mask.dtype)


# --------------------------------------------------------------------------- in the optics
def optics(clean, sigma, art: Artefacts, rng):
    """The probe's Lorentzian tail and the tilt smear, applied to the clean image."""
    out = clean
    if art.probe_tail > 0:
        gamma = art.tail_width * sigma
        half = int(min(max(clean.shape), np.ceil(6 * gamma)))
        yy, xx = np.mgrid[-half : half + 1, -half : half + 1]
        kernel = 1 / (1 + (yy**2 + xx**2) / gamma**2) ** 1.5  # a 2-D Lorentzian probe skirt
        kernel /= kernel.sum()
        padded = np.pad(out, half, mode="reflect")
        skirt = signal.fftconvolve(padded, kernel, mode="same")[half:-half, half:-half]
        out = (1 - art.probe_tail) * out + art.probe_tail * skirt
    if art.tilt_smear > 0:
        angle = np.radians(rng.uniform(0, 180))
        n = max(3, int(np.ceil(art.tilt_smear)) * 2 + 1)
        t = np.linspace(-art.tilt_smear / 2, art.tilt_smear / 2, n)
        kernel = np.zeros((n + 2, n + 2))
        c = (n + 1) / 2
        for ti in t:
            kernel[int(round(c + ti * np.sin(angle))), int(round(c + ti * np.cos(angle)))] += 1
        out = ndimage.convolve(out, kernel / kernel.sum(), mode="reflect")
    return out


# --------------------------------------------------------------------------- in the scan and file
def scan_and_file(image, unit, art: Artefacts, rng):
    """Line noise, a scale bar and JPEG compression on the recorded image.

    ``unit`` is the image value of one host peak (the dose for STEM, 1 for STM).
    Returns the image and a boolean map of the pixels the scale bar covers.
    """
    h, w = image.shape
    img = image.astype(np.float64)
    if art.line_noise > 0:
        img += unit * art.line_noise * rng.normal(0, 1, (h, 1))
        streaks = ndimage.gaussian_filter1d(rng.normal(0, 1, (h, w)), 2.0, axis=1)
        img += unit * art.line_noise * streaks * (rng.random((h, 1)) < 0.1) * 3
    covered = np.zeros((h, w), bool)
    if art.scale_bar:
        img, covered = _scale_bar(img, rng)
    if art.jpeg_quality is not None:
        img = _jpeg(img, art.jpeg_quality)
    return img.astype(np.float32), covered


def _scale_bar(img, rng):
    h, w = img.shape
    bright = float(np.percentile(img, 99.9)) * rng.uniform(1.2, 2.0)
    bar_h, bar_w = max(2, int(h * rng.uniform(0.015, 0.03))), int(w * rng.uniform(0.15, 0.25))
    y0 = h - int(h * rng.uniform(0.04, 0.08)) - bar_h
    x0 = int(w * rng.uniform(0.03, 0.08)) if rng.random() < 0.5 else w - bar_w - int(w * 0.05)
    covered = np.zeros((h, w), bool)
    covered[y0 : y0 + bar_h, x0 : x0 + bar_w] = True
    text_h = max(3, int(h * 0.04))  # the label: a few glyph-like strokes above the bar
    ty = max(0, y0 - text_h - bar_h)
    for k in range(int(rng.integers(2, 5))):
        gx = x0 + k * text_h
        covered[ty : ty + text_h, gx : gx + max(1, text_h // 4)] = True
        covered[ty : ty + max(1, text_h // 5), gx : gx + text_h // 2 + 1] = True
    img = img.copy()
    img[covered] = bright
    return img, ndimage.binary_dilation(covered, iterations=2)


def _jpeg(img, quality):
    from PIL import Image

    lo, hi = np.percentile(img, [0.05, 99.95])
    scale = max(hi - lo, 1e-12)
    u8 = np.clip(np.round((img - lo) / scale * 255), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(u8).save(buf, format="JPEG", quality=int(quality))
    back = np.asarray(Image.open(io.BytesIO(buf.getvalue())), np.float64)
    return back / 255 * scale + lo
