"""Registration: the drift of every frame of a movie, from its images or its features.

Each frame is registered on the previous one:

1. A coarse shift comes from the cross-correlation of the two frames. It is
   the zero-normalised cross-correlation of the overlapping parts, weighted
   by the overlap's share of the frame: the normalisation makes bright and
   dim regions count alike, and the weight makes the true shift beat its
   aliases by a lattice vector, which match the lattice as well but overlap
   less. Without images, the displacements between the features of the
   two frames vote in a histogram instead: a point-set match.
2. Correlation peaks within 10 % of the highest are candidates, and the one
   closest to the previous frame's shift wins: drift turns slowly, and
   this settles ties between a shift and its aliases.
3. The shift is refined to sub-pixel precision as the median displacement
   of the features matched one to one under it. If fewer than half of the
   features match, the point-set estimate is tried too and the better kept.

On 228 frame pairs of 12 simulated dumbbell movies (drift 12-17 px per
frame, dumbbells 29-35 px apart), ``skimage.registration.
phase_cross_correlation`` gave a lattice alias instead of the true shift
for 16 pairs with ``normalization=None`` (an alias's overlap can hold more
bright columns) and 35 with the default phase normalisation; steps 1-2
without the previous-shift rule for 6, and with it for none.

A perfectly periodic crystal is ambiguous: a drift of more than half a
lattice period in one frame looks like a smaller one. The edges of the
field of view, defects and the features that enter and leave break that
symmetry in practice, and the previous shift settles the rest.
"""

from __future__ import annotations

import logging
import numbers

import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial import cKDTree

from ._arrays import as_array
from .table import check_finite

__all__ = ["align_frames", "estimate_drift"]

log = logging.getLogger(__name__)

_MATCH = 0.3  # matching radius of the refinement, as a fraction of the spacing
_GOOD = 0.5  # least share of features matched for a shift to be trusted
# Correlation peaks this close to the highest (relative) are candidates; of those, the one
# closest to the previous frame's shift wins. Points need more: their votes are counts.
_IMAGE_MARGIN = 0.1
_POINT_MARGIN = 0.25
_BINNED = 128  # frames are binned to about this many px for the image registration
_CHUNK = 16  # frames read at a time


def estimate_drift(
    table: pd.DataFrame, images=None, *, client=None, frames_per_task: int = 16
) -> pd.DataFrame:
    """Drift of every frame relative to frame 0, from the images and/or the features.

    Parameters
    ----------
    table : pandas.DataFrame
        Features with ``frame``, ``x``, ``y``.
    images : ndarray of shape (T, H, W) or Signal2D, optional
        The movie; each frame is registered on the previous one by
        cross-correlation (see the module notes). Without it, the features
        are registered.
    client : distributed.Client, optional
        Cross-correlate the frame pairs as tasks on this Dask cluster,
        ``frames_per_task`` pairs a task (a file, or a lazy signal loaded from
        one, is read by the workers). The choice among each pair's peaks, which
        follows the previous frame's shift, and the refinement on the features
        run here; the drift is the same as without ``client``.
    frames_per_task : int
        Frame pairs in one task with ``client``.

    Returns
    -------
    drift : pandas.DataFrame
        Index ``frame`` (every frame of ``images``, else every frame from
        the first to the last of ``table``); ``dx``, ``dy``: where a fixed
        point of the sample lies in that frame minus where it lies in the
        first (px); ``matched``: the share of features matched one to one
        with the previous frame under the shift (NaN for the first).

    Examples
    --------
    >>> from atomstat.table import make_atoms
    >>> rng = np.random.default_rng(0)
    >>> pts = rng.uniform(0, 200, (40, 2))
    >>> table = make_atoms({"frame": np.repeat([0, 1], 40),
    ...                     "x": np.r_[pts[:, 0], pts[:, 0] - 31.5],
    ...                     "y": np.r_[pts[:, 1], pts[:, 1] + 7.25]})
    >>> estimate_drift(table)[["dx", "dy"]].round(2).to_numpy().tolist()
    [[0.0, 0.0], [-31.5, 7.25]]
    """
    from .table import validate_atoms

    validate_atoms(table)
    frames = None if images is None else as_array(images)
    first, last = _frame_range(table, frames)
    spacing = _spacing(table, required=frames is None)
    groups = dict(_positions(table))
    # Without images, frames without features are skipped and interpolated afterwards.
    sequence = list(range(first, last + 1)) if frames is not None else sorted(groups)
    steps, matched = [np.zeros(2)], [np.nan]
    if frames is not None and client is not None:
        pairs = _candidates_on(client, images, frames, first, last + 1, frames_per_task)
    elif frames is not None:
        pairs = _candidates_here(frames, first, last + 1)
    for f0, f1 in zip(sequence[:-1], sequence[1:], strict=True):
        image = None if frames is None else next(pairs)
        a, b = groups.get(f0, np.empty((0, 2))), groups.get(f1, np.empty((0, 2)))
        step, share = _step(a, b, image, spacing, steps[-1])
        steps.append(step)
        matched.append(share)
    drift = pd.DataFrame(np.cumsum(steps, axis=0), columns=["dx", "dy"])
    drift["matched"] = matched
    drift.index = pd.Index(sequence, name="frame", dtype="int64")
    full = pd.RangeIndex(first, last + 1, name="frame")
    if len(sequence) < len(full):
        drift = drift.reindex(full)
        drift[["dx", "dy"]] = drift[["dx", "dy"]].interpolate(limit_area="inside")
    return drift


def align_frames(images, drift: pd.DataFrame, *, fill: float = np.nan) -> np.ndarray:
    """Shift every frame back by its drift, so that the sample stands still.

    Parameters
    ----------
    images : ndarray of shape (T, H, W) or Signal2D
    drift : pandas.DataFrame
        ``dx``, ``dy`` indexed by frame (:func:`estimate_drift`, :func:`get_drift`).
    fill : float
        Value of the pixels shifted in from outside the field of view.

    Returns
    -------
    aligned : ndarray of shape (T, H, W), float32

    Examples
    --------
    >>> frames = np.zeros((2, 8, 8), np.float32)
    >>> frames[0, 2, 3] = frames[1, 3, 5] = 1
    >>> drift = pd.DataFrame({"dx": [0.0, 2.0], "dy": [0.0, 1.0]})
    >>> aligned = align_frames(frames, drift, fill=0.0)
    >>> [tuple(map(int, np.argwhere(a)[0])) for a in aligned]
    [(2, 3), (2, 3)]
    """
    from scipy import ndimage

    frames = as_array(images)
    if np.ndim(frames) != 3:
        raise ValueError(f"images must be a stack (T, H, W), got shape {np.shape(frames)}")
    check_drift(drift, range(len(frames)))
    if isinstance(fill, bool) or not isinstance(fill, numbers.Real):
        raise ValueError(f"fill must be a number (NaN allowed), got {fill!r}")
    out = np.empty(np.shape(frames), np.float32)
    for t, frame in enumerate(_read_frames(frames, 0, len(frames))):
        shift = (-drift.loc[t, "dy"], -drift.loc[t, "dx"])
        out[t] = ndimage.shift(frame, shift, order=1, cval=fill)
    return out


def check_drift(drift, frames) -> pd.DataFrame:
    """Refuse a drift table that is not one: not a DataFrame with ``dx`` and ``dy``,
    no row for one of ``frames``, or NaN or infinite shifts on those rows."""
    if not isinstance(drift, pd.DataFrame) or not {"dx", "dy"} <= set(drift.columns):
        raise ValueError("drift must be a DataFrame with columns 'dx' and 'dy' indexed by frame")
    frames = sorted(set(frames))
    missing = sorted(set(frames) - set(drift.index))
    if missing:
        raise ValueError(f"drift has no row for frame(s) {missing[:5]}")
    check_finite(drift.loc[frames], ("dx", "dy"), "drift")
    return drift


# ------------------------------------------------------------------ registration


def _step(a, b, image, spacing, prior):
    """Shift (dx, dy) of frame b relative to frame a, and the share of features matched;
    ``image`` is the pair's correlation peaks (:func:`_image_peaks`), or None."""
    points = bool(len(a) and len(b) and np.isfinite(spacing))
    candidates = []
    if image is not None:
        candidates.append(_pick(image, prior))
    if points and (not candidates or _matched(a, b, candidates[0], spacing) < _GOOD):
        candidates.append(_correlate_points(a, b, spacing, prior))
    if not candidates:
        log.warning("no images and no features to register two frames on: drift step kept")
        return np.asarray(prior, float), np.nan
    best, share = candidates[0], -1.0
    for coarse in candidates:
        refined = _refine(a, b, coarse, spacing) if points else coarse
        score = _matched(a, b, refined, spacing) if points else np.nan
        if not score <= share:  # NaN (no features) keeps the image shift
            best, share = refined, score
    if np.isfinite(share) and share < _GOOD:
        log.warning("only %.0f %% of the features match between two frames", 100 * share)
    return best, share


def _correlate(img_a, img_b, prior):
    """Shift (dx, dy) of img_b relative to img_a from the overlap-weighted NCC."""
    return _pick(_image_peaks(img_a, img_b), prior)


def _image_peaks(img_a, img_b):
    """The candidate shifts of img_b relative to img_a: ``(coarse, fine)``, each (n, 2) as
    (dx, dy) px, the integer peaks of the overlap-weighted NCC and their sub-pixel values.

    For every shift, the normalised cross-correlation of the overlapping
    parts (zero-normalised, so bright and dim regions count alike) is
    weighted by the overlap's share of the frame, so an alias of the true
    shift by a lattice vector, which matches the lattice as well but
    overlaps less, scores lower. Frames are binned to about 128 px first
    (the features refine the shift); each peak is located to sub-pixel
    precision by a parabola.
    """
    scale = max(1, min(img_a.shape) // _BINNED)
    score = _overlap_ncc(_bin(img_a, scale), _bin(img_b, scale))
    peaks = _peaks(score, _IMAGE_MARGIN)
    half = np.array(score.shape) / 2
    coarse = np.where(peaks > half, peaks - score.shape, peaks)[:, ::-1] * scale
    fine = np.empty((len(peaks), 2))
    for k, peak in enumerate(peaks):
        sub = peak + _parabola(score, peak)
        fine[k] = scale * np.where(sub > half, sub - score.shape, sub)[::-1]
    return coarse, fine


def _pick(image, prior):
    """Of a pair's candidate shifts, the one whose peak is closest to the previous shift."""
    coarse, fine = image
    return fine[_closest(coarse, prior)]


def _candidates_here(frames, start, stop):
    """The correlation peaks of every pair of consecutive frames, in this process."""
    reader = _read_frames(frames, start, stop)
    prev = next(reader)
    for img in reader:
        yield _image_peaks(prev, img)
        prev = img


def _candidates_on(client, images, frames, start, stop, per_task):
    """The same, ``per_task`` pairs a task on ``client``, yielded in order (the results are
    gathered task by task, and only a few tasks ahead are held)."""
    if not isinstance(per_task, int) or per_task < 1:
        raise ValueError(f"frames_per_task must be an integer >= 1, got {per_task!r}")
    from .distributed import _source_path

    path = _source_path(images) if not isinstance(images, np.ndarray) else None
    spans = [(a, min(a + per_task, stop - 1)) for a in range(start, stop - 1, per_task)]

    def submit(a, b):  # pairs (a, a+1) .. (b-1, b): frames a..b
        if path is not None:
            return client.submit(_pair_peaks, str(path.resolve()), a, b + 1, retries=1,
                                 pure=False)  # fmt: skip
        import dask

        chunk = frames[a : b + 1]
        if isinstance(chunk, np.ndarray):
            return client.submit(_pair_peaks, chunk, a, b + 1, retries=1, pure=False)
        return client.compute(dask.delayed(_pair_peaks)(chunk, a, b + 1), retries=1)

    ahead = 4 * max(1, len(client.nthreads()))
    futures = [submit(*span) for span in spans[:ahead]]
    for i in range(len(spans)):
        if i + ahead < len(spans):
            futures.append(submit(*spans[i + ahead]))
        future, futures[i] = futures[i], None
        yield from future.result()
        future.release()


def _pair_peaks(source, start, stop):
    """Task: :func:`_image_peaks` of the pairs of consecutive frames ``start`` to
    ``stop - 1``, read from the file ``source`` (on the worker) or given as the chunk."""
    from .distributed import ChunkError, Settings, open_source, reading_here

    try:
        if isinstance(source, str):
            with reading_here():
                frames = as_array(open_source(source, Settings()))
                chunk = np.asarray(frames[start:stop])
        else:
            chunk = np.asarray(source)
        return list(_candidates_here(_Offset(chunk, start), start, stop))
    except ValueError:
        raise
    except Exception as exc:
        where = source if isinstance(source, str) else "the stack"
        raise ChunkError(f"{where} frames {start}-{stop - 1}: {type(exc).__name__}: {exc}") from exc


class _Offset:
    """A chunk of frames indexed by the frame numbers of the whole stack."""

    def __init__(self, chunk, start):
        self.chunk, self.start = chunk, start

    def __getitem__(self, key):
        return self.chunk[key.start - self.start : key.stop - self.start]


def _overlap_ncc(a, b):
    """Overlap-weighted zero-normalised cross-correlation for every shift (circular index)."""
    h, w = a.shape
    shape = (2 * h, 2 * w)  # zero padding: linear, not circular, correlation

    def spectrum(x):
        return np.fft.rfft2(x, s=shape)

    def corr(fx, fy):  # sum_p x(p) y(p + s)
        return np.fft.irfft2(np.conj(fx) * fy, s=shape)

    fa, fb, f1 = spectrum(a), spectrum(b), spectrum(np.ones_like(a))
    n = np.maximum(np.round(corr(f1, f1)), 1)
    sa, sb = corr(fa, f1), corr(f1, fb)
    var_a = corr(spectrum(a * a), f1) - sa**2 / n
    var_b = corr(f1, spectrum(b * b)) - sb**2 / n
    cov = corr(fa, fb) - sa * sb / n
    score = cov / np.sqrt(np.maximum(var_a * var_b, 1e-12)) * n / (h * w)
    score[n < 0.2 * h * w] = -np.inf
    return score


def _correlate_points(a, b, spacing, prior):
    """Shift of point set b relative to a: the most common displacement between them.

    Every displacement from a point of ``a`` to a point of ``b`` (up to half
    the extent of the sets) votes in a 1 px histogram smoothed over about a
    tenth of the spacing; the true shift collects one vote per feature seen
    in both frames, an alias by a lattice vector about as many.
    """
    reach = max(float(np.ptp(np.concatenate([a, b]), axis=0).max()) / 2, 2 * spacing)
    pairs = cKDTree(a).sparse_distance_matrix(cKDTree(b), reach, output_type="coo_matrix")
    if pairs.nnz == 0:
        return np.asarray(prior, float)
    d = b[pairs.col] - a[pairs.row]
    edges = np.arange(-np.ceil(reach) - 0.5, np.ceil(reach) + 1.5)
    votes, _, _ = np.histogram2d(d[:, 1], d[:, 0], bins=(edges, edges))
    votes = ndimage.gaussian_filter(votes, max(1.0, 0.1 * spacing), mode="constant")
    shifts = (_peaks(votes, _POINT_MARGIN) - (len(edges) - 2) / 2)[:, ::-1]
    return shifts[_closest(shifts, prior)]


def _peaks(score, margin):
    """(row, col) of the local maxima within ``margin`` (relative) of the highest."""
    top = score.max()
    local = (score == ndimage.maximum_filter(score, size=3, mode="wrap")) & np.isfinite(score)
    local &= score >= top - margin * abs(top)
    return np.argwhere(local)


def _closest(shifts, prior):
    """Index of the shift closest to the previous frame's (drift changes slowly)."""
    return int(np.argmin(np.hypot(*(shifts - np.asarray(prior, float)).T)))


def _parabola(score, peak):
    """Sub-pixel offset of a peak from a parabola through it and its two neighbours per axis."""
    offset = np.zeros(2)
    for axis in range(2):
        lo, hi = list(peak), list(peak)
        lo[axis] = (peak[axis] - 1) % score.shape[axis]
        hi[axis] = (peak[axis] + 1) % score.shape[axis]
        y0, y1, y2 = score[tuple(lo)], score[tuple(peak)], score[tuple(hi)]
        denom = y0 - 2 * y1 + y2
        if np.isfinite(denom) and denom < 0:
            offset[axis] = np.clip(0.5 * (y0 - y2) / denom, -0.5, 0.5)
    return offset


def _bin(image, scale):
    if scale == 1:
        return image
    h, w = (np.array(image.shape) // scale) * scale
    return image[:h, :w].reshape(h // scale, scale, w // scale, scale).mean(axis=(1, 3))


def _pairs(a, b, shift, spacing):
    """One-to-one matches (ia, ib) of a + shift and b within the matching radius."""
    from .metrics import match_points

    ia, ib, _ = match_points(a + shift, b, _MATCH * spacing)
    return ia, ib


def _refine(a, b, shift, spacing):
    """Median displacement of the matched features, twice (the second pass on the first)."""
    for _ in range(2):
        if not (len(a) and len(b)):
            break
        ia, ib = _pairs(a, b, shift, spacing)
        if len(ia) < 2:
            break
        shift = np.median(b[ib] - a[ia], axis=0)
    return np.asarray(shift, float)


def _matched(a, b, shift, spacing):
    ia, _ = _pairs(a, b, shift, spacing)
    return len(ia) / max(1, min(len(a), len(b)))


# ------------------------------------------------------------------ helpers


def _spacing(table, *, required=True):
    """Median distance between neighbouring features of the same frame (px; NaN if none)."""
    dists = [cKDTree(xy).query(xy, k=2)[0][:, 1] for _, xy in _positions(table) if len(xy) > 1]
    if not dists and required:
        raise ValueError(
            "no frame holds two features: cannot tell the feature spacing; pass search_range"
        )
    return float(np.median(np.concatenate(dists))) if dists else float("nan")


def _positions(table):
    """(frame, xy) of every frame that has features."""
    xy = table[["x", "y"]].to_numpy(float)
    for f, rows in table.groupby("frame", sort=True).indices.items():
        yield int(f), xy[rows]


def _read_frames(frames, start, stop):
    """Frames start..stop-1 one by one, read 16 at a time: a lazy stack computes each chunk once."""
    for first in range(start, stop, _CHUNK):
        chunk = np.asarray(frames[first : min(first + _CHUNK, stop)], np.float64)
        bad = ~np.isfinite(chunk).all(axis=(1, 2))
        if bad.any():
            raise ValueError(
                f"frame {first + int(np.argmax(bad))} holds NaN or infinite pixels; "
                "atomstat.load repairs them, or replace them yourself"
            )
        yield from chunk


def _frame_range(table, frames):
    if frames is None:
        if not len(table):
            raise ValueError("the table is empty and no images were given: nothing to register")
        return int(table["frame"].min()), int(table["frame"].max())
    if np.ndim(frames) != 3:
        raise ValueError(f"images must be a stack (T, H, W), got shape {np.shape(frames)}")
    if len(table) and (table["frame"].min() < 0 or table["frame"].max() >= len(frames)):
        raise ValueError(
            f"the table's frames run from {table['frame'].min()} to {table['frame'].max()}, "
            f"but images has {len(frames)} frames"
        )
    return 0, len(frames) - 1
