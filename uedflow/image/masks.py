"""Detector defects from the structure of a mean pattern: :func:`find_beam_block`,
:func:`find_dead_pixels`.

Both work on the mean of many frames (dark-subtracted or not), never on a per-pixel
threshold of one frame: at a few counts per pixel a single frame's background is
indistinguishable from a beam block, while the mean of a few tens of frames, smoothed over a
few pixels, is not.
"""

import numpy as np
from scipy import ndimage as ndi

from ._validate import check_image, check_mask

__all__ = ["find_beam_block", "find_dead_pixels"]

#: Smoothing (px) of the mean pattern in which the beam block is first found.
BLOCK_SIGMA = 4.0
#: Width (px) of the band about the first estimate in which the block's edge is refined.
BLOCK_BAND = 10
#: Pixels (about) from which the radial medians are taken: a sub-grid of larger frames.
RADIAL_PIXELS = 2**20


def _smooth(image, weight, sigma):
    """Gaussian smoothing of ``image`` over the pixels of positive ``weight`` (normalised
    convolution); NaN where no such pixel is near."""
    num = ndi.gaussian_filter(np.where(weight > 0, image, 0.0) * weight, sigma, mode="nearest")
    den = ndi.gaussian_filter(weight.astype(float), sigma, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-3, num / den, np.nan)


def _keep(labels, n, min_area, test):
    """Union of the labelled regions of at least ``min_area`` pixels that pass ``test``
    (called with the region and a shell 2 to 8 px outside it, cropped about the region, and
    the crop's slices)."""
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    kept = np.zeros(labels.shape, bool)
    for k, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None or areas[k] < min_area:
            continue
        box = tuple(slice(max(b.start - 9, 0), b.stop + 9) for b in box)
        region = labels[box] == k
        distance = ndi.distance_transform_edt(~region)
        if test(region, (distance > 2) & (distance <= 8), box):
            kept[box] |= region
    return kept


def _radial_level(image, known, radius):
    """Median of ``image`` over the ``known`` pixels of every integer ``radius`` (NaN where
    none)."""
    index = np.arange(radius.max() + 1)
    step = max(1, int(np.sqrt(image.size / RADIAL_PIXELS)))  # a sub-grid of large frames
    grid = (slice(None, None, step),) * 2
    level = np.asarray(ndi.median(image[grid], np.where(known[grid], radius[grid], -1), index),
                       float)
    return np.where(np.isfinite(level), level, np.nan)


def _dark_for_its_radius(image, smooth, known, radius, level, min_area):
    """Regions darker than a quarter of the median ``level`` of their radius (a stick, a
    block that lets a little through), and the central disk: every radius up to R darker
    than a quarter of all the radii R + 2 to R + 12 (a bright ring is narrower)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = smooth / level[radius]
    labels, n = ndi.label(known & (ratio < 0.25), np.ones((3, 3)))
    block = _keep(labels, n, min_area, lambda region, shell, box: np.nanmean(
        ratio[box][shell & known[box]]) > 0.6)
    level = np.nan_to_num(level)
    ahead = np.zeros_like(level)
    ahead[:-2] = ndi.minimum_filter1d(level, 11, origin=-5)[2:]
    with np.errstate(invalid="ignore", divide="ignore"):
        contrast = np.nan_to_num(ahead / np.maximum.accumulate(np.maximum(level, 0)),
                                 posinf=0.0)
    inner = int(np.argmax(contrast))
    if inner > 2 and contrast[inner] >= 4:
        block |= known & (radius <= inner + 1) & (image < 0.25 * ahead[inner])
    return block


def find_beam_block(image, mask=None, center=None, *, contrast=0.1, min_area=None):
    """The beam block: large, connected regions much darker than the pattern about them.

    The mean pattern is smoothed (Gaussian, :data:`BLOCK_SIGMA` px). Candidates are kept if
    they cover at least ``min_area`` pixels and the pattern just outside them (a shell 2 to
    8 px away) is much brighter than inside (a dim, smoothly fading corner is not):

    * regions darker than ``floor + contrast * (level - floor)``, with ``floor`` the 0.1
      percentile and ``level`` the median of the smoothed pattern: a block that stops every
      electron. They are grown to the pixels connected to them within 5 noise levels of the
      block's own level, which becomes the zero of what follows (a dark offset that was not
      subtracted);
    * with a ``center``, regions darker than a quarter of the median of their radius (a
      stick across bright rings, a block that lets a few % through), and the central disk
      where the innermost radii are darker than a quarter of all the radii just outside.

    The edge is refined within :data:`BLOCK_BAND` px, on the pattern smoothed by 1.5 px: a
    pixel connected to the block belongs to it if it is darker than half of what is expected
    there (the median of its radius with a ``center``; else the non-block pixels about it).
    Holes are filled and the block is grown by one pixel (its penumbra).

    Parameters
    ----------
    image : ndarray, shape (N, M)
        Mean of many frames (the more, the better at few counts per pixel), with or without
        the dark offset.
    mask : ndarray of bool, shape (N, M), optional
        True on valid pixels; invalid ones (hot pixels, a known mask) are ignored.
    center : tuple of float or "auto", optional
        Pattern centre ``(row, col)``; "auto": :func:`uedflow.autocenter` of the pattern
        without the dark regions of the first kind. None: regions of the first kind only.
    contrast : float, optional
        Fraction of the way from the dark level to the median below which pixels are
        candidates of the first kind.
    min_area : int, optional
        Smallest block (pixels); default ``max(64, 5e-4 * N * M)``.

    Returns
    -------
    block : ndarray of bool, shape (N, M)
        True on the beam block (all False if the pattern has none).

    Examples
    --------
    >>> import numpy as np
    >>> from uedflow.image.masks import find_beam_block
    >>> rng = np.random.default_rng(0)
    >>> image = rng.poisson(3.0, (128, 128)).astype(float)       # 3 counts per pixel
    >>> image[50:80, 50:80] = rng.normal(0, 0.5, (30, 30))       # blocked: dark, read noise
    >>> block = find_beam_block(image)
    >>> near = np.zeros_like(block)
    >>> near[47:83, 47:83] = True                                 # the block, 3 px about it
    >>> bool(block[50:80, 50:80].all()), bool(block[~near].any())
    (True, False)
    """
    image = check_image(image, "image").astype(float)
    valid = np.ones(image.shape, bool) if mask is None else check_mask(mask, image.shape)
    if min_area is None:
        min_area = max(64, int(5e-4 * image.size))
    smooth = _smooth(image, valid, BLOCK_SIGMA)
    known = valid & np.isfinite(smooth)
    none = np.zeros(image.shape, bool)
    if known.sum() < min_area:
        return none
    floor = np.percentile(smooth[known], 0.1)
    level = np.median(smooth[known])
    span = level - floor
    if not span > 0:
        return none
    labels, n = ndi.label(known & (smooth <= floor + contrast * span), np.ones((3, 3)))
    def darker(region, shell, box):
        shell &= known[box]
        return shell.any() and (smooth[box][shell].mean() - smooth[box][region].mean()
                                >= 0.3 * span)

    core = _keep(labels, n, min_area, darker)
    zero = 0.0
    if core.any():
        zero = np.median(smooth[core])
        noise = 1.4826 * np.median(np.abs(smooth[core] - zero))
        reach = known & (smooth <= zero + max(contrast * (level - zero), 5 * noise))
        core = ndi.binary_propagation(core, np.ones((3, 3)), reach)
    image = image - zero
    smooth = smooth - zero
    if isinstance(center, str) and center == "auto":
        from .center import autocenter

        center = autocenter(np.where(np.isfinite(image), image, 0), known & ~core)
    if center is not None:
        yy, xx = np.indices(image.shape)
        radius = np.rint(np.hypot(yy - center[0], xx - center[1])).astype(np.intp)
        radial = _radial_level(image, known & ~core, radius)
        core |= _dark_for_its_radius(image, smooth, known, radius, radial, min_area)
    if not core.any():
        return none
    band = (ndi.distance_transform_edt(~core) <= BLOCK_BAND) & ~core & valid
    if center is not None:
        expected = np.nan_to_num(radial[radius], nan=level - zero)
    else:
        expected = np.nan_to_num(_smooth(image, valid & ~core & ~band, BLOCK_SIGMA),
                                 nan=level - zero)
    with np.errstate(invalid="ignore"):
        edge = band & (_smooth(image, valid, 1.5) < 0.5 * expected)
    block = ndi.binary_propagation(core, np.ones((3, 3)), core | edge)
    return ndi.binary_dilation(ndi.binary_fill_holes(block), np.ones((3, 3), bool))


#: Length (px) of the segments over which dead columns and rows are also looked for.
LINE = 31


def _dead(image, noise, z, fraction):
    """Pixels of ``image`` below ``fraction`` of the median of their 5 x 5 neighbourhood and
    below it by more than ``z`` times ``noise`` (already smoothed over 2 px); the median is
    only taken about candidates, darker than ``fraction`` of their smoothed surroundings."""
    candidates = np.flatnonzero(image < fraction * ndi.gaussian_filter(image, 1.5,
                                                                       mode="nearest"))
    dead = np.zeros(image.shape, bool)
    if candidates.size == 0:
        return dead
    rows, cols = np.unravel_index(candidates, image.shape)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(image, 2, mode="edge"), (5, 5))
    local = np.median(windows[rows, cols].reshape(len(rows), 25), axis=1)
    local_noise = noise[rows, cols]
    dead[rows, cols] = (image[rows, cols] < fraction * local) & (
        local - image[rows, cols] > z * local_noise)
    return dead


def find_dead_pixels(image, noise, *, z=8.0, fraction=0.2):
    """Pixels, columns and rows that stay dark where their neighbours see electrons.

    A pixel is dead if it is below ``fraction`` of the median of its 5 x 5 neighbourhood and
    below it by more than ``z`` times the local noise (``noise`` smoothed over 2 px): with the
    mean of ``n`` frames, ``noise`` is the per-pixel standard deviation over frames divided by
    ``sqrt(n)``. Dead columns and rows are also looked for in segments of :data:`LINE` pixels
    along them (their mean, whose noise is ``sqrt(LINE)`` times smaller), so that a dead
    column is found where a few electrons a pixel leave a single pixel in doubt. Bright
    features (rings, Bragg spots) are never flagged: only pixels darker than their
    surroundings are.

    Parameters
    ----------
    image : ndarray, shape (N, M)
        Mean of many frames, dark-subtracted.
    noise : ndarray, shape (N, M), or float
        Standard error of ``image``.
    z, fraction : float, optional
        Significance and depth of the deficit.

    Returns
    -------
    dead : ndarray of bool, shape (N, M)

    Examples
    --------
    >>> import numpy as np
    >>> from uedflow.image.masks import find_dead_pixels
    >>> rng = np.random.default_rng(1)
    >>> frames = rng.poisson(4.0, (32, 64, 64)).astype(float)
    >>> frames[:, :, 20] = 0                                      # a dead column
    >>> dead = find_dead_pixels(frames.mean(0), frames.std(0) / np.sqrt(32))
    >>> np.flatnonzero(dead.all(axis=0)).tolist(), int(dead.sum())
    ([20], 64)
    """
    image = check_image(image, "image").astype(float)
    noise = ndi.gaussian_filter(np.broadcast_to(np.asarray(noise, float), image.shape), 2.0,
                                mode="nearest")
    dead = _dead(image, noise, z, fraction)
    for axis in (0, 1):  # columns, then rows
        line = ndi.uniform_filter1d(image, LINE, axis=axis, mode="nearest")
        dead |= _dead(line, noise / np.sqrt(LINE), z, fraction)
    return dead
