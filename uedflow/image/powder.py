"""Azimuthal averages of powder (polycrystalline) diffraction patterns."""

import math

import numpy as np

from ._cache import PlanCache
from ._validate import check_image, check_mask
from .center import _check_center_xy

__all__ = ["AzimuthalPlan", "azimuthal_average", "refine_center"]

#: Plans that :func:`azimuthal_average` keeps for its latest distinct geometries.
CACHED_PLANS = 2
#: :func:`refine_center` bins frames larger than this (px) to about this size.
REFINE_SIZE = 512


def _wrap_degrees(angle):
    """Shift an angle by whole turns into [0, 360]; 0 and 360 are kept as they are."""
    angle = float(angle)
    if angle < 0:
        angle += 360 * math.ceil(-angle / 360)
    elif angle > 360:
        angle -= 360 * math.ceil(angle / 360 - 1)
    return angle


class AzimuthalPlan:
    """Radial-bin geometry of an azimuthal average, computed once for many frames.

    Pixels are binned by their distance to ``center`` rounded to the nearest integer; a bin
    holds the mean of its valid pixels (those under ``mask`` and within
    ``angular_bounds``). The geometry is stored as the bin of every pixel (8 bytes a pixel),
    so that applying the plan to a frame is one weighted ``numpy.bincount``.

    Parameters
    ----------
    shape : tuple of int
        Frame shape ``(ny, nx)``.
    center : array_like, shape (2,)
        Centre ``(xc, yc)`` in pixels (column, row), inside the frame.
    mask : ndarray of bool, shape ``shape``, optional
        True on valid pixels.
    angular_bounds : 2-tuple of float, optional
        Only pixels whose angle (degrees, from the positive x-axis, in [0, 360]) lies
        between the two bounds, inclusive, are averaged. Bounds outside [0, 360] are
        wrapped into it.
    trim : bool, optional
        If True, leading and trailing bins whose sum is zero are dropped from the result.

    Attributes
    ----------
    thread_safe : bool
        True: calls use no buffer of the plan, so threads may share one plan (and
        :class:`uedflow.stack.lift.Plans` does not copy it per thread).

    Notes
    -----
    Bins, angles and trimming follow :func:`azimuthal_average` of scikit-ued, including
    its convention that ``trim=False`` drops the last (outermost) bin.
    """

    thread_safe = True

    def __init__(self, shape, center, mask=None, angular_bounds=None, trim=True):
        shape = tuple(int(n) for n in shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"shape must be (ny, nx) with positive sizes, got {shape}")
        xc, yc = _check_center_xy(center, shape)
        self.shape = shape
        self.center = (xc, yc)
        self.trim = bool(trim)

        yy, xx = np.indices(shape, dtype=float)
        xx -= xc
        yy -= yc
        bins = np.rint(np.hypot(xx, yy)).astype(np.intp).ravel()
        include = np.ones(bins.size, dtype=bool)
        if angular_bounds:
            if len(angular_bounds) != 2 or not np.all(np.isfinite(angular_bounds)):
                raise ValueError(
                    f"angular_bounds must be two finite angles in degrees, got {angular_bounds}"
                )
            low, high = sorted(_wrap_degrees(b) for b in angular_bounds)
            angles = np.rad2deg(np.arctan2(yy, xx)).ravel() + 180
            include = (angles >= low) & (angles <= high)
        # The number of bins follows every pixel within the bounds, valid or not.
        self.nbins = int(bins[include].max()) + 1 if include.any() else 0
        if mask is not None:
            include &= check_mask(mask, shape, require_valid=False).ravel()
        if not include.any():
            raise ValueError("mask and angular_bounds leave no valid pixel to average")

        counts = np.bincount(bins[include], minlength=self.nbins).astype(float)
        #: Number of valid pixels in each bin.
        self.counts = counts
        # Pixels not averaged go to one more bin, dropped after summing.
        self._bins = np.where(include, bins, self.nbins)
        self.radius = np.arange(self.nbins)

    def _one(self, frame, out):
        sums = np.bincount(self._bins, frame.ravel(), self.nbins + 1)
        np.divide(sums[:-1], np.maximum(self.counts, 1), out=out)
        if not np.isfinite(out).all():
            raise ValueError("image has NaN or infinite values at valid pixels")

    def __call__(self, image):
        """Azimuthal average of a frame ``(ny, nx)`` or of a batch ``(n, ny, nx)``.

        Parameters
        ----------
        image : array_like, shape ``(ny, nx)`` or ``(n, ny, nx)``
            Frame(s) of the plan's shape.

        Returns
        -------
        radius : ndarray of int, shape (m,)
            Radius of each bin [px].
        intensity : ndarray of float, shape (m,) or (n, m)
            Mean of the valid pixels of each bin. For a batch, trimming keeps every bin
            that is non-zero in at least one frame.
        """
        image = np.asarray(image)
        if image.ndim not in (2, 3) or image.shape[-2:] != self.shape:
            raise ValueError(
                f"image must have shape {self.shape} or (n, *{self.shape}), got {image.shape}"
            )
        if image.dtype == bool or not np.issubdtype(image.dtype, np.number):
            raise ValueError(f"image must be numeric, got dtype {image.dtype}")
        frames = image.reshape((-1, *self.shape))
        out = np.empty((frames.shape[0], self.nbins))
        for frame, row in zip(frames, out, strict=True):
            self._one(frame, row)

        first, last = 0, -1
        if self.trim:
            nonzero = np.flatnonzero(np.any(out != 0, axis=0))
            first, last = (nonzero[0], nonzero[-1] + 1) if nonzero.size else (0, 0)
        out = out[:, first:last]
        return self.radius[first:last], out[0] if image.ndim == 2 else out


def azimuthal_average(image, center, mask=None, angular_bounds=None, trim=True):
    """Azimuthal (angular) average of an image about a centre, e.g. of powder rings.

    Parameters
    ----------
    image : array_like, shape (M, N)
        Image.
    center : array_like, shape (2,)
        Centre ``(xc, yc)`` in pixels: ``image[yc, xc]`` is the intensity at the centre.
    mask : ndarray of bool, optional
        True on valid pixels.
    angular_bounds : 2-tuple of float, optional
        If given, only pixels at angles (degrees from the positive x-axis, in [0, 360])
        between the two bounds, inclusive, are averaged. Bounds outside [0, 360] are
        wrapped into it.
    trim : bool, optional
        If True, leading and trailing bins that sum to zero (e.g. masked away) are removed.

    Returns
    -------
    radius : ndarray of int, ndim 1
        Radius of each bin [px]; it may not start at 0 if ``trim`` is True.
    average : ndarray of float, ndim 1
        Mean intensity of the valid pixels at each radius.

    Raises
    ------
    ValueError
        If ``center`` is outside the image, ``mask`` is not a boolean array of the image's
        shape, no pixel is left to average, or ``image`` has NaN or infinite values at
        valid pixels.

    See Also
    --------
    AzimuthalPlan : the same average, with the bin geometry computed once for many frames.

    Notes
    -----
    Each pixel goes to the bin of its distance to the centre rounded to the nearest
    integer (no sub-pixel splitting), as in scikit-ued. With ``trim=False`` the last bin
    is not returned, also as in scikit-ued.
    """
    image = check_image(image, "image")
    mask = None if mask is None else np.asarray(mask)
    return _plans(image.shape, center, mask, angular_bounds, trim)(image)


#: The plans of the latest :func:`azimuthal_average` calls.
_plans = PlanCache(AzimuthalPlan, CACHED_PLANS)


def _ring_sharpness(center, rows, cols, values, nbins):
    """Between-bin sum of squares ``sum_b S_b**2 / N_b`` of the azimuthal average about
    ``center`` (row, col), each pixel split linearly between its two nearest radii: smooth in
    the centre, largest where the rings are sharpest."""
    radius = np.hypot(rows - center[0], cols - center[1])
    low = np.floor(radius).astype(np.intp)
    upper = radius - low
    lower = 1.0 - upper
    sums = (np.bincount(low, values * lower, nbins) + np.bincount(low + 1, values * upper, nbins))
    counts = np.bincount(low, lower, nbins) + np.bincount(low + 1, upper, nbins)
    return float(np.sum(sums**2 / np.maximum(counts, 1e-9)))


def refine_center(image, center, mask=None, *, search=3.0):
    """Centre ``(row, col)`` at which the azimuthal average of ``image`` is sharpest.

    Starting from ``center`` (e.g. :func:`uedflow.autocenter`'s), the centre is moved (within
    ``search`` px along each axis) to minimise the variance of the pixels about the mean of
    their radius, each pixel split linearly between its two nearest radii so that the
    criterion is smooth (Nelder–Mead). Rings and symmetric spots are sharpest about the true
    centre whatever the beam block, a mask or an intensity gradient across the frame; it
    refines a centre, it does not find one from afar.

    Parameters
    ----------
    image : ndarray, shape (N, M)
        Pattern, best the mean of many aligned frames.
    center : tuple of float
        Starting centre ``(row, col)``, within a pixel or two of the truth.
    mask : ndarray of bool, shape (N, M), optional
        True on valid pixels.
    search : float, optional
        Largest move along each axis (px); farther, ``center`` is returned unchanged.

    Returns
    -------
    ndarray of float, shape (2,)
        ``(row, col)``.

    Examples
    --------
    >>> import numpy as np
    >>> from uedflow.datasets import diffraction_pattern
    >>> from uedflow.image.powder import refine_center
    >>> truth = (100.3, 121.7)
    >>> image = diffraction_pattern((256, 256), truth, kind="polycrystalline")
    >>> np.round(refine_center(image, (101.0, 121.0)), 1)
    array([100.3, 121.7])
    """
    image = check_image(image, "image")
    valid = np.ones(image.shape, bool) if mask is None else check_mask(mask, image.shape)
    valid = valid & np.isfinite(image)
    start = np.asarray(center, dtype=float)
    # frames larger than REFINE_SIZE are binned: the rings stay as sharp, relative to the bins
    factor = max(1, min(image.shape) // REFINE_SIZE)
    if factor > 1:
        ny, nx = (n - n % factor for n in image.shape)
        blocks = (ny // factor, factor, nx // factor, factor)
        weight = valid[:ny, :nx].reshape(blocks).sum(axis=(1, 3))
        binned = np.where(valid, image, 0)[:ny, :nx].reshape(blocks).sum(axis=(1, 3),
                                                                         dtype=float)
        image, valid = binned / np.maximum(weight, 1), weight * 2 >= factor * factor
    rows, cols = np.nonzero(valid)
    values = image[valid].astype(float)
    guess = (start + 0.5) / factor - 0.5
    reach = search / factor
    nbins = int(np.hypot(*image.shape)) + int(reach) + 3

    def cost(c):
        if np.any(np.abs(c - guess) > reach):
            return np.inf
        return -_ring_sharpness(c, rows, cols, values, nbins)

    from scipy.optimize import minimize

    step = 0.5 / factor
    best = minimize(cost, guess, method="Nelder-Mead",
                    options={"xatol": 2e-3 / factor, "fatol": np.inf, "maxfev": 200,
                             "initial_simplex": guess + np.array([[0, 0], [step, 0],
                                                                  [0, step]])})
    if not np.isfinite(best.fun):
        return start
    return (best.x + 0.5) * factor - 0.5
