"""Centre of diffraction patterns, and masks of their darkest pixels."""

import numpy as np
from scipy import fft, ndimage

from ._validate import check_image, check_mask

__all__ = ["auto_masking", "autocenter"]

#: Size (pixels) of the binned image searched for the rough centre.
COARSE_SIZE = 256
#: Half-size (pixels of the binned crop) of the region searched for the precise centre.
FINE_HALF_SIZE = 128
#: Smallest overlap of a frame with its point reflection, as a fraction of the largest.
MIN_OVERLAP = 0.05
#: Percentile of the valid pixels at which frames are clipped before the search: hot pixels
#: in clusters (which the neighbour test below cannot see) end there, among the brightest
#: pixels of the pattern, instead of dominating the correlation.
CLIP_PERCENTILE = 99.9
#: Local maxima of the rough score judged by the symmetry of the background.
CANDIDATES = 8
#: Candidates ranked within this of the best (a sum of three scores up to 1) are judged.
RANKING_MARGIN = 0.5
#: The best-ranked candidate is replaced only by one whose background is this much more
#: symmetric (noise in the background of a faint pattern must not decide).
ASYMMETRY_RATIO = 0.9
#: ... and only by one whose background is symmetric up to a gradient within this (relative
#: RMS residual): a background the block medians did not free of spots decides nothing.
ASYMMETRY_MAX = 0.3
#: Size (pixels of the binned frame) of the blocks whose median is the background.
BACKGROUND_BLOCK = 4
#: Width (blocks) of the Gaussian smoothing of the background.
BACKGROUND_SMOOTH = 1
#: Fewest blocks across a background that judges candidates (smaller frames: ranking alone).
MIN_BACKGROUND = 32
#: 3x3 neighbourhood without its centre, to clip isolated hot pixels.
_NEIGHBOURS = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=bool)


def _check_center_xy(center, shape):
    """Centre ``(x, y)`` as floats inside a frame of ``shape``, or ValueError."""
    try:
        xc, yc = (float(v) for v in center)
    except (TypeError, ValueError):
        raise ValueError(f"center must be two numbers (x, y), got {center!r}") from None
    ny, nx = shape
    if not (0 <= xc <= nx - 1 and 0 <= yc <= ny - 1):
        raise ValueError(
            f"center (x, y) = ({xc}, {yc}) is outside the image of shape (rows, cols) = {shape}"
        )
    return xc, yc


def _bin(image, valid, factor):
    """Mean of the valid pixels in ``factor`` x ``factor`` blocks, and the blocks' validity."""
    if factor == 1:
        return image.astype(float), valid
    ny, nx = (n - n % factor for n in image.shape)
    shape = (ny // factor, factor, nx // factor, factor)
    sums = image[:ny, :nx].reshape(shape).sum(axis=(1, 3), dtype=float)
    counts = valid[:ny, :nx].reshape(shape).sum(axis=(1, 3))
    sums /= np.maximum(counts, 1)
    return sums, counts * 2 >= factor * factor


def _parabola_peak(left, mid, right):
    """Offset of the vertex of the parabola through three equally spaced values."""
    curvature = left - 2 * mid + right
    if not np.isfinite(curvature) or curvature >= 0:
        return 0.0
    return float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))


def _prepare(image, valid, smooth=0):
    """``image`` zeroed outside ``valid``, isolated hot pixels clipped, optionally blurred.

    Isolated hot pixels are clipped to the brightest of their neighbours. With ``smooth``,
    the valid pixels are blurred by a Gaussian of that width (a normalized convolution, so
    that masked pixels do not darken their surroundings).
    """
    image = np.where(valid, image, 0.0)
    np.minimum(image, ndimage.maximum_filter(image, footprint=_NEIGHBOURS), out=image)
    np.minimum(image, np.percentile(image[valid], CLIP_PERCENTILE), out=image)
    if smooth:
        image = ndimage.gaussian_filter(image, smooth, mode="constant")
        weight = ndimage.gaussian_filter(valid.astype(float), smooth, mode="constant")
        image /= np.maximum(weight, 1e-6)
    return image


def _padded_size(shape):
    """FFT size for the full linear convolution of two arrays of ``shape``."""
    return [fft.next_fast_len(2 * n - 1, real=True) for n in shape]


def _inversion_scores(image, valid, normalize_bg, guess=None, radius=None, detrend=False):
    """Normalized correlation of ``image`` with its point reflections about every ``t / 2``.

    The correlation of :math:`I(x)` with :math:`I(t - x)` over the valid pixels is a
    normalized auto-convolution, computed for every ``t`` at once with the masked
    correlation of Padfield (2012). ``t`` outside ``radius`` of ``2 * guess`` (when given)
    and reflections that overlap too few pixels score ``-inf``. ``image`` is not modified.
    """
    weight = valid.astype(float)
    image = image.astype(float)
    if detrend:
        rr, cc = np.indices(image.shape)
        design = np.stack([np.ones(valid.sum()), rr[valid], cc[valid]], axis=1)
        coef = np.linalg.lstsq(design, image[valid], rcond=None)[0]
        image -= coef[0] + coef[1] * rr + coef[2] * cc
    if normalize_bg:
        sigma = min(image.shape) / 25
        background = ndimage.gaussian_filter(image, sigma, mode="constant")
        norm = ndimage.gaussian_filter(weight, sigma, mode="constant")
        background /= np.maximum(norm, 1e-6)
        np.divide(image, background, out=image, where=valid & (background > 0))
    mean = image[valid].mean()
    std = image[valid].std()
    image -= mean
    image /= std if std > 0 else 1.0
    image *= weight

    size = _padded_size(image.shape)
    f_image = fft.rfft2(image, size, workers=-1)
    f_square = fft.rfft2(image * image, size, workers=-1)
    f_weight = fft.rfft2(weight, size, workers=-1)
    crop = tuple(slice(0, 2 * n - 1) for n in image.shape)

    def convolve(a, b):
        return fft.irfft2(a * b, size, workers=-1)[crop]

    overlap = np.rint(convolve(f_weight, f_weight))
    sums = convolve(f_image, f_weight)
    products = convolve(f_image, f_image)
    squares = convolve(f_square, f_weight)
    allowed = overlap >= max(MIN_OVERLAP * overlap.max(), 16)
    if guess is not None:
        tt = np.indices(overlap.shape, sparse=True)
        allowed &= (tt[0] - 2 * guess[0]) ** 2 + (tt[1] - 2 * guess[1]) ** 2 <= (2 * radius) ** 2
    n = np.where(allowed, overlap, 1.0)
    means = sums / n
    score = np.full(overlap.shape, -np.inf)
    variance = squares / n - means * means
    good = allowed & (variance > 1e-9)
    score[good] = (products[good] / n[good] - means[good] ** 2) / variance[good]
    if not np.isfinite(score).any():
        raise ValueError("mask leaves too few valid pixels to find the centre")
    return score


def _bright_overlap(envelope, valid):
    """Overlap of the bright half of ``envelope`` with its point reflection about every ``t / 2``.

    The auto-convolution of the envelope above its median, scaled to a largest value of 1.
    Unlike a normalized correlation, it is largest where the brightest region (the
    surroundings of the undiffracted beam, where form factor and Debye-Waller factor are
    largest) reflects onto itself, which no other inversion centre of a lattice does.
    """
    bright = np.where(valid, np.maximum(envelope - np.median(envelope[valid]), 0), 0)
    size = _padded_size(bright.shape)
    f_bright = fft.rfft2(bright, size, workers=-1)
    crop = tuple(slice(0, 2 * n - 1) for n in bright.shape)
    overlap = fft.irfft2(f_bright * f_bright, size, workers=-1)[crop]
    peak = overlap.max()
    return overlap / peak if peak > 0 else overlap


def _log_background(image, valid):
    """Logarithm of the diffuse background of a (binned) pattern, binned further, and its
    valid pixels.

    The background is the median of the valid pixels in blocks of :data:`BACKGROUND_BLOCK`
    pixels (rings and spots cover less than half of a block), smoothed.
    """
    block = BACKGROUND_BLOCK
    ny, nx = (n - n % block for n in image.shape)
    shape = (ny // block, block, nx // block, block)
    blocks = np.where(valid, _prepare(image, valid), np.nan)[:ny, :nx].reshape(shape)
    valid = valid[:ny, :nx].reshape(shape).sum(axis=(1, 3)) * 2 >= block * block
    blocks = blocks.transpose(0, 2, 1, 3).reshape(*valid.shape, -1)  # a copy
    blocks[np.isnan(blocks).all(axis=-1)] = 0  # no valid pixel: 0 (and no warning)
    background = np.nanmedian(blocks, axis=-1)
    background = _prepare(background, valid, smooth=BACKGROUND_SMOOTH)
    values = background[valid]
    floor = max(np.percentile(values, 1), 1e-3 * np.abs(values).max(), np.finfo(float).tiny)
    return np.log(np.maximum(background, floor)), valid


def _background_asymmetry(log_background, valid, center):
    """How far the background is from point symmetry about ``center`` up to a gradient.

    A multiplicative intensity gradient adds a plane to the log-background :math:`L`, so
    about the true centre :math:`c`, :math:`L(x) - L(2c - x)` is a plane; about any other
    point it is not, unless the background is Gaussian. Returned: the RMS residual of a
    plane fitted to it over the valid pairs, relative to the spread of :math:`L`; ``inf``
    without enough pairs.
    """
    ny, nx = log_background.shape
    rows, cols = np.indices((ny, nx))
    rows2 = np.rint(2 * center[0] - rows).astype(np.intp)
    cols2 = np.rint(2 * center[1] - cols).astype(np.intp)
    pair = (rows2 >= 0) & (rows2 < ny) & (cols2 >= 0) & (cols2 < nx)
    rows, cols, rows2, cols2 = rows[pair], cols[pair], rows2[pair], cols2[pair]
    pair = valid[rows, cols] & valid[rows2, cols2]
    if pair.sum() < 16:
        return np.inf
    rows, cols, rows2, cols2 = rows[pair], cols[pair], rows2[pair], cols2[pair]
    difference = log_background[rows, cols] - log_background[rows2, cols2]
    design = np.stack([np.ones(difference.size), rows - center[0], cols - center[1]], axis=1)
    residual = difference - design @ np.linalg.lstsq(design, difference, rcond=None)[0]
    spread = np.std(log_background[valid])
    return np.sqrt(np.mean(residual**2)) / (spread if spread > 0 else 1.0)


def _peak_center(score, peak=None):
    """Centre ``t / 2`` at the maximum of ``score`` (or at index ``peak``), refined to sub-pixel
    by parabolas."""
    if peak is None:
        peak = np.unravel_index(np.argmax(score), score.shape)
    offsets = []
    for axis in (0, 1):
        lo, hi = list(peak), list(peak)
        lo[axis] -= 1
        hi[axis] += 1
        if lo[axis] < 0 or hi[axis] >= score.shape[axis]:
            offsets.append(0.0)
        else:
            offsets.append(_parabola_peak(score[tuple(lo)], score[peak], score[tuple(hi)]))
    return (np.array(peak, dtype=float) + offsets) / 2


def autocenter(im, mask=None, normalize_bg=True):
    """Find the centre of a diffraction pattern from its inversion (Friedel) symmetry.

    Parameters
    ----------
    im : array_like, shape (N, M)
        Diffraction pattern.
    mask : ndarray of bool, shape (N, M), optional
        True on the pixels to use (e.g. False on the beam block and its holder).
    normalize_bg : bool, optional
        If True (default), the slowly varying background is divided out before the
        symmetry search, so that intensity gradients (e.g. from Ewald-sphere walk-off)
        do not pull the centre.

    Returns
    -------
    center : ndarray of float, shape (2,)
        ``(row, col)`` of the centre: ``im[row, col]`` is the intensity at the centre.

    Raises
    ------
    ValueError
        If ``im`` is not 2D and numeric, ``mask`` is not a boolean array of ``im``'s shape
        or has too few valid pixels, or ``im`` has NaN or infinite values at valid pixels.

    Notes
    -----
    A diffraction pattern is point-symmetric about its centre :math:`c` (Friedel's law
    for single crystals, rotational symmetry for rings), so the normalized correlation
    of the pattern :math:`I(x)` with :math:`I(t - x)` is largest at :math:`t = 2c`. This
    is the Friedel-pair comparison of [1]_, written for all :math:`t` at once as a
    masked normalized auto-convolution computed with FFTs [2]_, which handles masks,
    frame edges and far off-centre patterns without cropping. The search runs first on
    the frame binned to about 256 pixels, then on a full-resolution crop about the rough
    centre (binned 2x for frames over 1500 pixels), with a parabolic sub-pixel peak.
    A lattice of Bragg spots is point-symmetric about each of its points and half-points;
    the rough search therefore also scores the symmetry of the blurred pattern (its
    envelope), and ranks the local maxima by the overlap of the envelope's bright part with
    its reflection, largest at the true centre. An intensity gradient across the frame (a
    tilted crystal's Ewald sphere, uneven illumination) moves that bright part; so the best
    few are then judged by the diffuse background (block medians, free of rings and spots):
    about the true centre its logarithm differs from its reflection by a plane (the
    gradient) alone, and a candidate whose background is clearly more symmetric in that
    sense replaces the best-ranked one.
    Isolated hot pixels are clipped to their brightest neighbour, and every frame to its
    99.9th percentile, before the search, so that saturated pixels, alone or in clusters,
    cannot create false symmetry centres.

    References
    ----------
    .. [1] L. C. Liu, *Chemistry in Action: Making Molecular Movies with Ultrafast
       Electron Diffraction and Data Science*, ch. 2. Springer Nature (2020).
    .. [2] D. Padfield, "Masked object registration in the Fourier domain", IEEE Trans.
       Image Process. 21, 2706-2718 (2012).

    Examples
    --------
    >>> import numpy as np
    >>> from uedflow import autocenter
    >>> from uedflow.datasets import beam_block_mask, make_frame
    >>> frame = make_frame((256, 256), (120.3, 135.7), seed=0)
    >>> print(np.round(autocenter(frame, mask=beam_block_mask((256, 256), (120.3, 135.7))), 1))
    [120.3 135.7]
    """
    im = check_image(im)
    valid = np.ones(im.shape, dtype=bool) if mask is None else check_mask(mask, im.shape)
    if not valid.any():
        raise ValueError("mask has no valid (True) pixel")
    if im.dtype.kind == "f":
        bad = ~np.isfinite(im)
        if (bad & valid).any():
            raise ValueError("im has NaN or infinite values at valid pixels")
        if bad.any():
            im = np.where(bad, 0, im)

    # Rough centre. A lattice is point-symmetric about each of its points and half-points,
    # so three scores are added: the symmetry of the binned pattern's details (blurred by a
    # bin if binned, so that spots narrower than a bin still overlap their reflections), the
    # symmetry of its envelope (the pattern blurred beyond its lattice), and the overlap of
    # the envelope's bright part with its reflection, which only the true centre maximizes.
    factor = max(1, round(min(im.shape) / COARSE_SIZE))
    binned, binned_valid = _bin(im, valid, factor)
    detail = _prepare(binned, binned_valid, smooth=1 if factor > 1 else 0)
    envelope = _prepare(binned, binned_valid, smooth=min(binned.shape) / 20)
    score = _inversion_scores(detail, binned_valid, normalize_bg)
    # A linear intensity gradient (Ewald-sphere walk-off) breaks the envelope's symmetry;
    # removing the best-fitting plane restores it, but also distorts an off-centre envelope:
    # the better of the two counts.
    score += np.maximum(
        _inversion_scores(envelope, binned_valid, False),
        _inversion_scores(envelope, binned_valid, False, detrend=True),
    )
    # The bright overlap only ranks the local maxima: it is smooth, and would pull the
    # centre of a pattern without fine detail. An intensity gradient moves it, though: the
    # best few are judged by the symmetry of the diffuse background instead.
    candidates = (score == ndimage.maximum_filter(score, size=3)) & np.isfinite(score)
    indices = np.flatnonzero(candidates)
    ranking = score.flat[indices] + _bright_overlap(envelope, binned_valid).flat[indices]
    order = np.argsort(ranking)[::-1][:CANDIDATES]
    best = [np.unravel_index(indices[k], score.shape) for k in order
            if ranking[k] >= ranking[order[0]] - RANKING_MARGIN]
    peak = best[0]
    block = BACKGROUND_BLOCK
    if min(binned.shape) >= MIN_BACKGROUND * block:  # rings and spots narrower than a block
        background, background_valid = _log_background(binned, binned_valid)
        asymmetry = [_background_asymmetry(background, background_valid,
                                           (np.array(t) / 2 - (block - 1) / 2) / block)
                     for t in best]  # centre t / 2 in binned pixels, in blocks
        choice = int(np.argmin(asymmetry))
        if asymmetry[choice] < min(ASYMMETRY_RATIO * asymmetry[0], ASYMMETRY_MAX):
            peak = best[choice]
    rough = factor * _peak_center(score, peak) + (factor - 1) / 2
    if factor == 1:
        return rough

    # Precise centre: the unblurred details alone, near the rough centre.
    fine = max(1, round(min(im.shape) / 1024))
    half = FINE_HALF_SIZE * fine
    corner = [
        max(0, min(round(c) - half, n - 2 * half)) for c, n in zip(rough, im.shape, strict=True)
    ]
    window = tuple(slice(c, c + 2 * half) for c in corner)
    crop, crop_valid = _bin(im[window], valid[window], fine)
    guess = (rough - corner - (fine - 1) / 2) / fine
    crop = _prepare(crop, crop_valid)
    score = _inversion_scores(crop, crop_valid, normalize_bg, guess, factor / fine + 2)
    local = _peak_center(score)
    return fine * local + (fine - 1) / 2 + corner


def auto_masking(im, threshold=0.1):
    """Mask of the pixels brighter than a fraction of the median intensity.

    Parameters
    ----------
    im : ndarray, shape (N, M)
        Image.
    threshold : float, optional
        Pixels at or below ``threshold`` times the median of the image (negative values
        counted as 0) are masked. Default 0.1.

    Returns
    -------
    mask : ndarray of bool, shape (N, M)
        True on valid pixels.

    Examples
    --------
    >>> import numpy as np
    >>> from uedflow import auto_masking
    >>> image = np.ones((4, 4))
    >>> image[0, 0] = 0.0
    >>> mask = auto_masking(image, threshold=0.5)      # False on the dark pixel
    >>> bool(mask[0, 0]), int(mask.sum())
    (False, 15)
    """
    return im > threshold * np.median(np.maximum(im, 0))
