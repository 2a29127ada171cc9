"""Sub-pixel refinement of atom centres on the raw image.

Interior atoms start from the Gaussian-mask estimator (Thompson, Larson &
Webb, Biophys. J. 2002): a weighted fit of the background-subtracted window,
with the background and amplitude solved linearly at each step. Two things
from the image itself make the weights the maximum-likelihood ones:

- **the atoms' shape**: their common covariance (an ellipse when the probe is
  astigmatic or the scan stretched) from pooled, Gaussian-weighted second
  moments;
- **the noise**: the pixel variance as a linear function of the mean,
  ``c0 + c1 * mean``, fitted to the residuals. Shot noise gives ``c1 > 0``
  and flattens the weight on the bright core, where the counts carry their
  own variance; read-out or white noise gives ``c1 = 0`` and the plain
  Gaussian (matched-filter) weight.

The weight is the atom's model divided by the variance, and each centre takes
Newton steps on the weighted first moment of the residual (data less model):
the score equation of the Poisson (or Gaussian) likelihood, so its root is the
maximum-likelihood centre. Isolated atoms take a first pass alone; atoms with a
close neighbour do not (alone, each leans on its partner's light, and two
columns 3 widths apart can slide onto one another: on a real Si[110] image a
third of the columns ran away so). They keep their start, their amplitudes are
fitted jointly with their neighbours' (relaxed sweeps at fixed centres), and
then every round subtracts the fitted model of every other atom from each
window and repeats the pass, so close neighbours (dumbbells, broad blobs)
neither pull centres together nor, through their light on one side of the
variance, push them apart. Where most atoms have a close neighbour, the shape
and the noise are measured again with the neighbours removed, with the probe's
skirt where the image shows one (:mod:`atomstat.probe`: a Lorentzian around
the Gaussian core, which a Gaussian neighbour model leaves behind), and the
fit is repeated once. Atoms whose window is cut by the image border, where a
truncated weight would bias the estimate, get a full Levenberg-Marquardt fit
of the atoms' shape on a background, with all other atoms' models removed
(the other border atoms' too), every round.

Measured against the Cramer-Rao bound (:func:`atomstat.metrics.position_bound`):
within 1 % on isolated atoms, 3-6 % on columns 3.2 widths apart at dose 200.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.spatial import cKDTree

from . import probe
from .gaussians import render

__all__ = ["refine_centres"]

_CHUNK = 8192
#: Width of the first pass's isotropic Gaussian weight relative to the atom
#: width (measured on simulated lattices, doses 10-200, sigma 1.6-2.6 px: 1.3
#: gives 6-9 % lower RMSE than 1.0 when the noise is not modelled).
_WEIGHT = 1.3
#: Most atoms used to measure the noise, and the shape (in its wider window).
_SAMPLE = 1000
_SHAPE_SAMPLE = 400
#: Share of atoms with a close neighbour above which the shape and the noise are
#: measured again on all atoms, with their neighbours' models removed.
_CROWDED_SHARE = 0.2
#: Measure-and-refit rounds: one takes the 7 px dumbbells from 0.19-0.21 to 0.15-0.18 px
#: RMSE; more move the shape further but cost a full fit each (movies: 0.37 s per frame).
_REMEASURE = 1
#: Share of a round's correction taken: the full step oscillates (7 px dumbbells: RMSE
#: 0.20 px against 0.18), 0.5 needs a fifth more rounds than 0.7 for the same centres.
_RELAX = 0.7
#: Neighbours' move (px, 95th percentile of a round) above which the border fits follow them.
_FOLLOW = 0.02
#: The round Gaussian's quadratic form (of determinant 1).
_ROUND = np.array([1.0, 0.0, 1.0])
#: Window radius of the likelihood-weighted pass, in widths along the major
#: axis: 3 keeps all but about 0.2 % of the position information at dose 40.
_REACH = 3.0


def refine_centres(
    image: np.ndarray, xy: np.ndarray, sigma: float, *, rounds: int = 8, iterations: int = 10
) -> np.ndarray:
    """Refine atom centres on the raw image.

    Parameters
    ----------
    image : ndarray of shape (H, W)
        Raw intensities (not normalised; counts where the detector counts).
    xy : ndarray of shape (N, 2)
        Starting centres (x, y) in px, within about half a width of the truth.
    sigma : float
        Typical atom width (px); sets the first weights and the window radius.
    rounds : int
        Most rounds. The first refines each isolated atom alone, with the
        shape and noise measured on up to 1000 isolated atoms (or the
        isotropic weight when there are fewer than 8), and fits the
        amplitudes of the others (closer than 5 widths to a neighbour) at
        their starts; later rounds move these with the neighbours' fitted
        models subtracted and stop once no centre moves by more than about
        0.005 px.
    iterations : int
        Centroid iterations per pass.

    Returns
    -------
    ndarray of shape (N, 2)
        Refined centres. An atom whose estimate runs away (further than
        ``max(1, 0.75 * sigma)`` px from its start, 3 sigma near the border,
        or non-finite) keeps its starting centre. Centres of atoms cut by the
        border may lie outside the image.

    Examples
    --------
    >>> yy, xx = np.mgrid[:32, :32]
    >>> img = 10 + 100 * np.exp(-((xx - 15.3) ** 2 + (yy - 16.6) ** 2) / (2 * 2.0**2))
    >>> np.round(refine_centres(img, np.array([[15.0, 17.0]]), 2.0), 2).tolist()
    [[15.3, 16.6]]
    """
    image = np.asarray(image, np.float64)
    start = np.asarray(xy, np.float64).reshape(-1, 2)
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be a positive width in px, got {sigma!r}")
    if len(start) == 0:
        return start.copy()
    single = image.astype(np.float32)  # for the centroid passes (see _gaussian_mask)
    width = _WEIGHT * sigma
    radius = int(np.clip(np.ceil(2.0 * width), 2, 30))  # the window follows the estimate
    iso = _metric(sigma**2 * np.eye(2))
    metric, noise = (iso, iso / _WEIGHT**2), None
    nearest = _nearest(start)
    crowded = nearest < 5 * sigma  # only these feel their neighbours' tails
    # The shape and the noise are measured on a sample of the isolated atoms,
    # refined with the isotropic weight first. The shape's window reaches as far
    # as the neighbours allow (a cut Gaussian reads narrow), up to 4 weight widths.
    sample, cov = _sample(start[~crowded]), None
    if len(sample) >= 8:
        sample, _ = _pass(single, sample, metric, radius, iterations, None)
        room = np.median(nearest[~crowded]) - 3 * sigma
        reach = int(np.clip(np.floor(room), radius, max(radius, np.ceil(4 * width))))
        cov = _atom_shape(image, _sample(sample, _SHAPE_SAMPLE), sigma, width, reach)
        if cov is not None:
            noise = _noise_model(image, sample, _metric(cov), radius)
    if noise is not None:
        metric = (_metric(cov), _metric(cov))
    cut = _cut_by_border(start, image.shape, sigma)
    fit = functools.partial(
        _fit_all, single, image, start, crowded, cut, sigma, radius, rounds, iterations
    )
    xy, amp = fit(start, metric, noise, cov)
    # Where most atoms have a close neighbour (dumbbells, dense STM lattices) the
    # few isolated ones give a poor shape and noise model, if any: measure both
    # again on every atom with its neighbours' fitted models removed, and refit.
    if crowded.mean() > _CROWDED_SHARE:
        for _ in range(_REMEASURE):
            found = _remeasure(image, xy, amp, metric[0], ~cut, sigma, width, radius)
            if found is None:
                break
            last, (cov, noise) = cov, found
            form = _probe(image, xy, amp, _metric(cov), ~cut, sigma)
            metric = (form, form)
            xy, amp = fit(xy, metric, noise, cov, amp)
            if last is not None and np.abs(cov - last).max() < 0.01 * np.trace(cov) / 2:
                break
    # A blob cut by the border may be the tail of an atom centred outside the
    # image, so its fitted centre may lie several pixels from the blob's.
    limit = np.where(cut, 3 * sigma, max(1.0, 0.75 * sigma))
    return _accept(xy, start, limit)


def _fit_all(
    single,
    image,
    start,
    crowded,
    cut,
    sigma,
    radius,
    rounds,
    iterations,
    xy,
    metric,
    noise,
    cov,
    amp=None,
):
    """One pass per atom from ``xy`` (the likelihood weights where ``noise`` is known),
    the border fits, then rounds with the neighbours' models removed; (xy, amp).

    Given the amplitudes of an earlier fit, the crowded atoms skip the lone pass
    (it would lean each on its close neighbour) and go straight to the rounds.
    """
    refit = amp is not None
    xy, amp = xy.copy(), (amp.copy() if refit else np.zeros(len(xy)))
    # The lone pass is for the isolated atoms only: a crowded atom fitted alone
    # leans on its neighbour's light, and two columns 3 widths apart can slide
    # onto one another. The crowded atoms keep their start and get amplitudes
    # fitted jointly with their neighbours' (below); the rounds then move them.
    lone = ~crowded
    if noise is None:  # no measured weights: the isotropic Gaussian-mask pass
        if lone.any():
            xy[lone], amp[lone] = _pass(single, xy[lone], metric, radius, iterations, None)
    else:
        # The likelihood's weight reaches further than the first pass's window,
        # except where a close neighbour would fall in it.
        reach = _REACH * np.sqrt(np.linalg.eigvalsh(cov)[1])
        wide = int(np.clip(np.round(reach), radius, 30))  # the disc reaches 0.5 px further
        if lone.any():
            xy[lone], amp[lone] = _pass(single, xy[lone], metric, wide, iterations, None, noise)
    if not refit and crowded.any():
        amp[crowded] = _joint_amplitudes(single, xy, amp, crowded, metric, radius, noise)
    # Atoms cut by the border get a full fit, with their close neighbours'
    # models removed; the neighbours' rounds then see the cut atoms' fits.
    form = metric[0]
    near_border = cut & crowded
    if cut.any():
        inner = _render_form(xy[~cut], image.shape, amp[~cut], form) if near_border.any() else 0
        _fit_cut(image - inner, xy, amp, start, cut, sigma, radius, iterations, form)
    moving = crowded & ~cut
    border, change = None, np.inf  # the cut atoms' model image, redrawn when they are refitted
    for _ in range(max(rounds, 1) - 1):
        if not moving.any():
            break
        full = _render_form(xy[~cut], image.shape, amp[~cut], form)
        if border is not None and near_border.any() and change > _FOLLOW:
            # the border fits follow their neighbours while these still move
            _fit_cut(image - full, xy, amp, start, cut, sigma, radius, iterations, form)
            border = None
        if cut.any():
            if border is None:
                border = _render_form(xy[cut], image.shape, amp[cut], form)
            full += border
        others = (full, xy[moving], amp[moving], form)
        new_xy, new_amp = _pass(single, xy[moving], metric, radius, iterations, others, noise)
        # Relaxed update: each round alone over-corrects the last and would oscillate.
        change = np.percentile(np.abs(new_xy - xy[moving]).max(axis=1), 95)
        xy[moving] = (1 - _RELAX) * xy[moving] + _RELAX * new_xy
        amp[moving] = (1 - _RELAX) * amp[moving] + _RELAX * new_amp
        if change < 0.005:
            break
    if near_border.any() and moving.any():  # once more, with the neighbours refined
        inner = _render_form(xy[~cut], image.shape, amp[~cut], form)
        _fit_cut(image - inner, xy, amp, start, cut, sigma, radius, iterations, form)
    return xy, amp


def _joint_amplitudes(image, xy, amp, crowded, metric, radius, noise, sweeps=4):
    """Amplitudes of the crowded atoms at fixed centres, each fitted with its
    neighbours' models removed; a few relaxed sweeps (Jacobi) settle them."""
    form = metric[0]
    # the first guess leans on the neighbours' light: each one alone, at its start
    _, first = _pass(image, xy[crowded], metric, radius, 1, None, noise)
    amp = amp.copy()
    amp[crowded] = first
    for _ in range(sweeps):
        full = _render_form(xy, image.shape, amp, form)
        others = (full, xy[crowded], amp[crowded], form)
        _, new = _pass(image, xy[crowded], metric, radius, 1, others, noise)
        amp[crowded] = (1 - _RELAX) * amp[crowded] + _RELAX * np.maximum(new, 0.0)
    return amp[crowded]


def _remeasure(image, xy, amp, form, use, sigma, width, radius):
    """(cov, noise) measured on a sample of the atoms ``use`` with every other atom's
    fitted model (quadratic form ``form``) removed; None when either fails."""
    full = _render_form(xy, image.shape, amp, form)
    idx = np.flatnonzero(use & np.isfinite(xy).all(axis=1) & (amp > 0))
    if len(idx) < 8:
        return None
    reach = int(np.clip(np.ceil(4 * width), radius, 30))
    pick = _sample(idx, _SHAPE_SAMPLE)
    cov = _atom_shape(image, xy[pick], sigma, width, reach, (full, amp[pick], form))
    if cov is None:
        return None
    pick = _sample(idx)
    noise = _noise_model(image, xy[pick], _metric(cov), radius, (full, amp[pick], form))
    return None if noise is None else (cov, noise)


def _probe(image, xy, amp, form, use, sigma):
    """The probe's form: ``form`` (a Gaussian), or where the image shows a skirt the
    form of 5 of :mod:`atomstat.probe`, measured on a sample of the atoms ``use``
    with every other atom's model removed (twice: the second time the neighbours
    are removed with their skirts)."""
    idx = np.flatnonzero(use & np.isfinite(xy).all(axis=1) & (amp > 0))
    if len(idx) < 8:
        return form
    reach = int(np.clip(np.ceil(5 * sigma), 5, 30))
    pick = _sample(idx, probe.SAMPLE)
    best = form
    for _ in range(2):
        full = _render_form(xy, image.shape, amp, best)
        dx, dy, ok, data = _sample_windows(image, xy[pick], reach, (full, amp[pick], best))
        best = probe.fit_skirt(_quad(dx, dy, form), ok, data, form)
        if len(best) == 3:
            break
    return best


def _pass(image, xy, metric, radius, iterations, others, noise=None):
    out, amp = np.empty_like(xy), np.empty(len(xy))
    for chunk in np.array_split(np.arange(len(xy)), -(-len(xy) // _CHUNK)):
        sub = None if others is None else (others[0], others[1][chunk], others[2][chunk], others[3])
        out[chunk], amp[chunk] = _gaussian_mask(
            image, xy[chunk], metric, radius, iterations, sub, noise
        )
    return out, amp


def _render_form(xy, shape, amp, form):
    """Sum of the atoms' models of probe ``form`` (from :func:`_metric`, or with a tail
    from :func:`_probe`) at peak heights ``amp``, float32."""
    lam, vec = np.linalg.eigh(np.array([[form[0], form[1]], [form[1], form[2]]]))
    # render's axes: u = dx cos t - dy sin t (width sigma_x), v = dx sin t + dy cos t.
    theta = np.full(len(xy), np.degrees(np.arctan2(-vec[1, 0], vec[0, 0])))
    sx, sy = np.full(len(xy), 1 / np.sqrt(lam[0])), np.full(len(xy), 1 / np.sqrt(lam[1]))
    if len(form) == 3:
        return render(xy, shape, amp, sx, sy, theta).astype(np.float32)
    share, k = form[3], form[4]
    out = render(xy, shape, amp * (1 - share), sx, sy, theta)
    return (out + probe.skirt(xy, shape, amp * share, form[:3] / (k * k))).astype(np.float32)


def _nearest(xy):
    """Distance from each point to its nearest neighbour (inf when alone)."""
    if len(xy) < 2:
        return np.full(len(xy), np.inf)
    d, _ = cKDTree(xy).query(xy, k=2)
    return d[:, 1]


def _metric(cov):
    """(a, b, c) of the quadratic form ``a dx^2 + 2 b dx dy + c dy^2`` of a covariance's inverse."""
    inv = np.linalg.inv(cov)
    return np.array([inv[0, 0], inv[0, 1], inv[1, 1]])


def _sample(xy, most=_SAMPLE):
    return xy[:: max(1, len(xy) // most)]


def _atom_shape(image, xy, sigma, width, radius, others=None):
    """The atoms' common covariance (px^2) from Gaussian-weighted second moments.

    The second moments of a Gaussian of covariance C weighted by an isotropic
    Gaussian of width W form the covariance (C^-1 + W^-2 I)^-1, which is solved
    for C. Pooled over up to ``_SAMPLE`` atoms with no close neighbour; None
    when there are fewer than 8, or when the result is not a plausible atom
    (a principal width outside 0.6-1.6 times ``sigma``). With ``others`` (see
    :func:`_sample_windows`) the atoms need not be isolated.
    """
    if len(xy) < 8:
        return None
    dx, dy, ok, data = _sample_windows(image, xy, radius, others)
    r2 = dx * dx + dy * dy
    amp, back = _linear_amp_back(data, np.exp(-r2 / (2 * sigma**2)) * ok, ok)
    good = np.isfinite(back) & (amp > 0)
    if good.sum() < 8:
        return None
    w = ((data - back[:, None]) * np.exp(-r2 / (2 * width**2)) * ok)[good]
    dx, dy = dx[good], dy[good]
    total = w.sum()
    if not total > 0:
        return None
    sxy = (w * dx * dy).sum()
    moments = np.array([[(w * dx * dx).sum(), sxy], [sxy, (w * dy * dy).sum()]]) / total
    try:
        cov = np.linalg.inv(np.linalg.inv(moments) - np.eye(2) / width**2)
    except np.linalg.LinAlgError:
        return None
    lam = np.linalg.eigvalsh(cov)
    if not (np.isfinite(lam).all() and (0.6 * sigma) ** 2 < lam[0] <= lam[1] < (1.6 * sigma) ** 2):
        return None
    return cov


def _noise_model(image, xy, shape, radius, others=None):
    """(c0, c1) of the pixel variance ``c0 + c1 * mean``, from the residuals of one
    Gaussian of the atoms' shape per window (with ``others``, after the neighbours'
    models are removed); None with too few pixels to tell."""
    if len(xy) < 8:
        return None
    dx, dy, ok, data = _sample_windows(image, xy, radius, others)
    g = np.exp(-0.5 * _quad(dx, dy, shape)) * ok
    amp, back = _linear_amp_back(data, g, ok)
    keep = (np.isfinite(amp) & np.isfinite(back))[:, None] & (ok > 0)
    mean = (back[:, None] + amp[:, None] * g)[keep]
    resid = data[keep] - mean
    # Twelve bins of equal counts along the mean; a line through their variances.
    edges = np.quantile(mean, np.linspace(0, 1, 13)[1:-1])
    which = np.searchsorted(edges, mean, side="right")
    n = np.bincount(which, minlength=12)
    use = n > 20
    if use.sum() < 3:
        return None
    nz = np.maximum(n, 1)
    m = np.bincount(which, mean, minlength=12)[use] / nz[use]
    r1 = np.bincount(which, resid, minlength=12) / nz
    v = np.bincount(which, resid * resid, minlength=12)[use] / nz[use] - r1[use] ** 2
    if not (np.isfinite(v).all() and v.max() > 0):
        return None
    c1, c0 = np.polyfit(m, v, 1)
    c1 = max(float(c1), 0.0)
    c0 = max(float(c0), 0.05 * float(v.min()), 1e-12 * float(v.max()))
    return c0, c1


def _sample_windows(image, xy, radius, others):
    """Offsets from the centre, validity and pixels of the windows of up to ``_SAMPLE``
    of the atoms ``xy``; with ``others`` (model image of all atoms, the atoms'
    amplitudes, their quadratic form) every other atom's model is removed."""
    keep = slice(None, None, max(1, len(xy) // _SAMPLE))
    xy = xy[keep]
    px, py, flat, ok = _window(image, xy, radius)
    dx, dy = px - xy[:, :1], py - xy[:, 1:]
    data = image.ravel()[flat]
    if others is not None:
        full, amp, form = others
        own = amp[keep, None] * probe.profile(_quad(dx, dy, form), form)
        data = data - full.ravel()[flat] + own
    return dx, dy, ok, data


def _gaussian_mask(image, xy, metric, radius, iterations, others, noise=None):
    """Iterated weighted fit of each centre; returns centres and amplitudes.

    ``metric`` is (model, weight), two quadratic forms from :func:`_metric`:
    the amplitude and background are fitted linearly with the model's Gaussian,
    and the centre by Newton steps on the weighted first moment of the residual,
    weighted with the weight's Gaussian divided by the pixel variance of the
    fitted model when a ``noise`` model (c0, c1) is given. The window is
    the disc of ``radius`` px (+ 0.5) around each rounded centre; offsets are
    kept relative to the centre, so single precision is ample.
    """
    model, wform = metric
    m = model.astype(np.float32)
    mw = wform.astype(np.float32)
    cov = np.linalg.inv(np.array([[model[0], model[1]], [model[1], model[2]]]))
    pixels = image.ravel()
    h, w = image.shape
    ox, oy = _disc(radius)
    oxf, oyf = ox.astype(np.float32), oy.astype(np.float32)
    xy = xy.copy()
    amp = np.zeros(len(xy))
    active = np.arange(len(xy))  # atoms still moving
    for _ in range(iterations):
        at = xy[active]
        centre = np.round(at).astype(np.int64)
        px, py = centre[:, :1] + ox, centre[:, 1:] + oy
        ok = ((px >= 0) & (px < w) & (py >= 0) & (py < h)).astype(np.float32)
        flat = np.clip(py, 0, h - 1) * w + np.clip(px, 0, w - 1)
        data = pixels[flat]
        frac = (at - centre).astype(np.float32)
        dx, dy = oxf - frac[:, :1], oyf - frac[:, 1:]  # pixel minus current estimate
        near = np.float32(0.0)
        if others is not None:
            full, own_xy, own_amp, form = others
            shift = (at - own_xy[active]).astype(np.float32)
            ex, ey = dx + shift[:, :1], dy + shift[:, 1:]
            f4 = form.astype(np.float32)
            own = own_amp[active, None].astype(np.float32) * probe.profile(_quad(ex, ey, f4), f4)
            near = full.ravel()[flat] - own
            data = data - near
        q = _quad(dx, dy, m)
        g = probe.profile(q, m)
        slope = g if len(m) == 3 else probe.slope(q, m)  # the model's gradient is amp * slope * M d
        amp[active], back = _linear_amp_back(data, g * ok, ok)
        weight = (slope if wform is model else np.exp(-0.5 * _quad(dx, dy, mw))) * ok
        if noise is not None:
            mean = np.maximum(back[:, None] + amp[active, None] * g + near, 0.0)
            weight = weight / (noise[0] + noise[1] * mean).astype(np.float32)
        # Newton step on sum(w * (data - model) * (pixel - centre)) = 0: at the
        # likelihood's weights this is its score equation, so the fixed point is
        # the maximum-likelihood centre even where the variance is lopsided (a
        # close neighbour's light on one side), and the window's own truncation
        # does not bias it as a plain weighted centroid's would.
        resid = (
            data - back[:, None].astype(np.float32) - amp[active, None].astype(np.float32) * g
        ) * weight
        f8 = np.float64
        fx, fy = (resid * dx).sum(axis=1, dtype=f8), (resid * dy).sum(axis=1, dtype=f8)
        wg = weight * slope * amp[active, None].astype(np.float32)
        sxx, syy = (wg * dx * dx).sum(axis=1, dtype=f8), (wg * dy * dy).sum(axis=1, dtype=f8)
        sxy = (wg * dx * dy).sum(axis=1, dtype=f8)
        det = sxx * syy - sxy * sxy
        det = np.where(det > 1e-12 * np.maximum(sxx * syy, 1e-300), det, np.nan)
        ux, uy = (syy * fx - sxy * fy) / det, (sxx * fy - sxy * fx) / det  # S^-1 F
        step = np.column_stack([cov[0, 0] * ux + cov[0, 1] * uy, cov[0, 1] * ux + cov[1, 1] * uy])
        step = np.clip(np.nan_to_num(step), -1.0, 1.0)
        xy[active] = at + step
        active = active[np.abs(step).max(axis=1) >= 2e-3]
        if not len(active):
            break
    return xy, amp


def _disc(radius):
    """Integer offsets (x, y) of the pixels within ``radius + 0.5`` of a centre pixel."""
    off = np.arange(-radius, radius + 1)
    ox, oy = np.meshgrid(off, off)
    keep = (ox**2 + oy**2 <= (radius + 0.5) ** 2).ravel()
    return ox.ravel()[keep], oy.ravel()[keep]


def _quad(dx, dy, m):
    """The quadratic form (a, b, c) from :func:`_metric` at offsets (dx, dy) from a centre."""
    return m[0] * dx * dx + 2 * m[1] * dx * dy + m[2] * dy * dy


def _linear_amp_back(data, g, ok):
    """Least-squares amplitude and background for fixed Gaussian weights."""
    f8 = np.float64
    sg, sgg, n = g.sum(axis=1, dtype=f8), (g * g).sum(axis=1, dtype=f8), ok.sum(axis=1, dtype=f8)
    si, sig = (data * ok).sum(axis=1, dtype=f8), (data * g).sum(axis=1, dtype=f8)
    det = sgg * n - sg * sg
    det = np.where(np.abs(det) > 1e-12, det, np.nan)
    return (sig * n - sg * si) / det, (sgg * si - sg * sig) / det


def _cut_by_border(xy, shape, sigma):
    h, w = shape
    reach = 2.5 * sigma
    return (
        (xy[:, 0] < reach)
        | (xy[:, 1] < reach)
        | (xy[:, 0] > w - 1 - reach)
        | (xy[:, 1] > h - 1 - reach)
    )


def _window(image, centres, radius):
    """Pixels of a (2r+1)^2 window around each rounded centre, with validity weights."""
    off = np.arange(-radius, radius + 1)
    ox, oy = np.meshgrid(off, off)
    inside_disc = (ox**2 + oy**2 <= (radius + 0.5) ** 2).ravel()
    cx = np.round(centres[:, 0]).astype(int)[:, None]
    cy = np.round(centres[:, 1]).astype(int)[:, None]
    px, py = cx + ox.ravel(), cy + oy.ravel()
    h, w = image.shape
    ok = (px >= 0) & (px < w) & (py >= 0) & (py < h) & inside_disc
    flat = np.clip(py, 0, h - 1) * w + np.clip(px, 0, w - 1)
    return px.astype(float), py.astype(float), flat, ok.astype(float)


def _initial(image, xy, sigma, radius):
    _, _, flat, ok = _window(image, xy, radius)
    vals = np.sort(np.where(ok > 0, image.ravel()[flat], np.inf), axis=1)
    valid = (ok > 0).sum(axis=1)
    back = vals[np.arange(len(vals)), (valid * 0.1).astype(int)]
    amp = vals[np.arange(len(vals)), np.maximum(valid - 1, 0)] - back
    return np.column_stack([xy, np.maximum(amp, 1e-6), np.full(len(xy), sigma), back])


def _lm(image, p, radius, iterations, unit=_ROUND, own=None):
    """Levenberg-Marquardt fit of :func:`_model` in each atom's window; with ``own``
    (centres, amplitudes, quadratic form) each atom's earlier model is added back
    to ``image`` (an image less every atom's model) in its own window."""
    px, py, flat, w = _window(image, p[:, :2], radius)
    data = image.ravel()[flat]
    if own is not None:
        (ox, oy), oamp, oform = own[0].T[:, :, None], own[1], own[2]
        data = data + oamp[:, None] * probe.profile(_quad(px - ox, py - oy, oform), oform)
    lam = np.full(len(p), 1e-2)
    for _ in range(iterations):
        f, jac = _model(p, px, py, unit)
        r = (data - f) * w
        jw = jac * w[..., None]
        a = np.einsum("npi,npj->nij", jw, jac)
        g = np.einsum("npi,np->ni", jw, r)
        diag = np.einsum("nii->ni", a)
        a = a + (lam[:, None] * diag + 1e-12)[..., None] * np.eye(5)
        try:
            step = np.linalg.solve(a, g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            break
        step[:, :2] = np.clip(step[:, :2], -1.0, 1.0)
        trial = p + step
        trial[:, 3] = np.clip(trial[:, 3], 0.3, 3 * radius)
        better = _cost(trial, px, py, data, w, unit) < (r * r).sum(axis=1)  # r: at p
        p = np.where(better[:, None], trial, p)
        lam = np.where(better, lam * 0.3, lam * 10)
    return p


def _model(p, px, py, unit=_ROUND):
    """Gaussian (x0, y0, amplitude, width s, background) of the atoms' shape ``unit``
    (a quadratic form of determinant 1) scaled by s, and its Jacobian."""
    x0, y0, a, s, b = (p[:, i : i + 1] for i in range(5))
    dx, dy = px - x0, py - y0
    q = _quad(dx, dy, unit)
    g = np.exp(-q / (2 * s**2))
    ag = a * g
    ux, uy = unit[0] * dx + unit[1] * dy, unit[1] * dx + unit[2] * dy
    jac = np.stack([ag * ux / s**2, ag * uy / s**2, g, ag * q / s**3, np.ones_like(g)], axis=-1)
    return b + ag, jac


def _cost(p, px, py, data, w, unit=_ROUND):
    return (((data - _model(p, px, py, unit)[0]) * w) ** 2).sum(axis=1)


def _fit_cut(target, xy, amp, start, cut, sigma, radius, iterations, form):
    """Levenberg-Marquardt fit of the atoms' shape on a background for each atom cut by the
    border (``xy`` and ``amp`` updated in place) on ``target``, the image less its
    neighbours' models where they matter. Every call starts from ``start``: a fit
    started from the last round's drifts, round after round, off some border atoms.
    The atoms' shape (quadratic form ``form``) is kept and only its size fitted.
    The other cut atoms' models (at their last fit) are removed too: two columns of
    a dumbbell on the border row, each fitted alone, would both take the pair's
    centre and come out as one atom counted twice."""
    unit = form[:3] / np.sqrt(form[0] * form[2] - form[1] ** 2)
    p0 = _initial(target, start[cut], sigma, radius)
    own = None
    if (amp[cut] > 0).any():
        own = (xy[cut], np.maximum(amp[cut], 0.0), form)
        target = target - _render_form(own[0], target.shape, own[1], form)
    p0[:, 3] = (form[0] * form[2] - form[1] ** 2) ** -0.25  # the shape's mean width
    p = _lm(target, p0, radius, iterations, unit, own)
    good = np.isfinite(p[:, :3]).all(axis=1)
    xy[cut] = np.where(good[:, None], p[:, :2], start[cut])
    amp[cut] = np.where(good, p[:, 2], 0.0)


def _accept(fitted, start, limit):
    moved = np.hypot(*(fitted - start).T)
    good = np.isfinite(fitted).all(axis=1) & (moved < limit)
    return np.where(good[:, None], fitted, start)
