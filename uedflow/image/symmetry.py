"""Symmetrization of images: n-fold rotational averages and mirror reflections."""

import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from skimage.transform import warp

from ._cache import PlanCache
from ._validate import check_image, check_mask
from .center import _check_center_xy

__all__ = ["NFoldPlan", "nfold", "reflection"]

#: Pixels per band of the frames that :class:`NFoldPlan` symmetrizes band by band.
BAND_PIXELS = 2**17
#: Plans that :func:`nfold` keeps for its latest distinct (shape, mod, centre, mask, fill).
CACHED_PLANS = 2



def _default_center(shape):
    """Centre ``(x, y)`` of the array, the rotation centre when none is given."""
    ny, nx = shape
    return nx / 2 - 0.5, ny / 2 - 0.5


def _about(matrix, center):
    """Homogeneous map ``p -> center + matrix @ (p - center)`` of ``(x, y)`` coordinates."""
    center = np.asarray(center, dtype=float)
    out = np.eye(3)
    out[:2, :2] = matrix
    out[:2, 2] = center - matrix @ center
    return out


def _rotation(angle, center):
    """Output-to-input map of a rotation by ``angle`` degrees (counter-clockwise on screen)."""
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return _about(np.array([[c, -s], [s, c]]), center)


def _warp(image, transform, order=1, rows=None):
    """``image`` resampled through ``transform``; only the output ``rows`` (a slice) if given.

    Bilinear interpolation never leaves the range of its inputs, so the output is not clipped.
    """
    shape = image.shape
    if rows is not None:
        transform = transform @ _shift_rows(rows.start)
        shape = (rows.stop - rows.start, shape[1])
    return warp(image, transform, output_shape=shape, order=order, mode="constant", cval=0,
                clip=False, preserve_range=True)


def _shift_rows(start):
    """Homogeneous map ``(x, y) -> (x, y + start)``."""
    out = np.eye(3)
    out[1, 2] = start
    return out


def _float_image(im, valid, name="im"):
    """``im`` as a writable float64 array with non-finite values under the mask set to 0.

    Raises ValueError if a valid pixel is not finite.
    """
    im = np.asarray(im, dtype=float)
    finite = np.isfinite(im)
    if not finite.all():
        if valid is None or (valid & ~finite).any():
            raise ValueError(f"{name} has NaN or infinite values at valid pixels")
        return np.where(finite, im, 0.0)
    return im if im.flags.writeable else im.copy()


class NFoldPlan:
    """N-fold rotational averaging of frames of one shape, centre and mask.

    The rotations, the rotated mask weights and their normalization depend only on the
    shape, centre, symmetry and mask; they are computed once here, and each frame then
    costs ``mod - 1`` bilinear rotations and a weighted sum.

    Parameters
    ----------
    shape : tuple of int
        Frame shape ``(ny, nx)``.
    mod : int
        Order of the rotational symmetry; a divisor of 360.
    center : array_like, shape (2,), optional
        Rotation centre ``(x, y)`` = ``(col, row)``, inside the frame. Default: the centre
        of the array, ``(nx / 2 - 0.5, ny / 2 - 0.5)``.
    mask : ndarray of bool, optional
        True on valid pixels. Invalid pixels, and parts rotated in from outside the frame,
        get zero weight in the average.
    fill_value : float, optional
        Value of the pixels that no valid pixel reaches (with a mask), and, if not 0, of
        the pixels that are invalid in every rotation.
    workers : int, optional
        Threads that compute the rotations of a frame at once (-1: one per core). The
        default, 1, suits stacks, whose chunks already run in parallel.

    Attributes
    ----------
    weight : ndarray of float or None
        Sum of the rotated mask weights at each pixel (None without a mask).
    """

    def __init__(self, shape, mod, center=None, mask=None, fill_value=0.0, *, workers=1):
        shape = tuple(int(n) for n in shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"shape must be (ny, nx) with positive sizes, got {shape}")
        if isinstance(mod, bool) or not np.isreal(mod) or mod < 1 or mod != int(mod) or 360 % mod:
            raise ValueError(f"mod must be a positive divisor of 360, got {mod!r}")
        self.shape = shape
        self.mod = int(mod)
        self.center = _default_center(shape) if center is None else _check_center_xy(center, shape)
        self.fill_value = float(fill_value)
        self.workers = (os.cpu_count() or 1) if workers == -1 else int(workers)
        if self.workers < 1:
            raise ValueError(f"workers must be a positive number of threads or -1, got {workers}")
        # Rows per band of the per-frame work: about 2**17 pixels, a 1 MiB float64 band
        self._band_rows = max(1, BAND_PIXELS // shape[1])
        step = 360 // self.mod
        self._transforms = [_rotation(a, self.center) for a in range(step, 360, step)]
        self.mask = None if mask is None else check_mask(mask, shape, require_valid=False)
        self.weight = None
        if self.mask is None:
            return

        weight = self.mask.astype(float)
        self._weights = self._map(lambda t: _warp(weight, t).astype(np.float32),
                                  self._transforms)
        for rotated in self._weights:
            weight += rotated
        self.weight = weight
        with np.errstate(divide="ignore"):
            self._inverse = np.where(weight > 0, 1 / weight, 0.0)
        fill = weight == 0
        if self.fill_value != 0:
            invalid = ~self.mask
            overlap = invalid.copy()
            for t in self._transforms:
                overlap &= _warp(invalid, t, order=0).astype(bool)
            fill |= overlap
        self._fill = fill

    def __call__(self, im):
        """Symmetrize a frame ``(ny, nx)`` or each frame of a batch ``(n, ny, nx)``.

        Returns
        -------
        ndarray of float64
            The symmetrized frame(s).
        """
        im = np.asarray(im)
        if im.ndim == 3 and im.shape[1:] == self.shape:
            return np.stack([self(frame) for frame in im])
        im = check_image(im)
        if im.shape != self.shape:
            raise ValueError(f"im has shape {im.shape}, but the plan is for shape {self.shape}")
        im = _float_image(im, self.mask)
        out = np.empty(self.shape)
        bands = [slice(start, min(start + self._band_rows, self.shape[0]))
                 for start in range(0, self.shape[0], self._band_rows)]
        self._map(lambda rows: self._average(im, out, rows), bands)
        return out

    def _map(self, function, items):
        """``[function(item) for item in items]``, on ``workers`` threads."""
        if self.workers == 1 or len(items) < 2:
            return [function(item) for item in items]
        with ThreadPoolExecutor(min(self.workers, len(items))) as pool:
            return list(pool.map(function, items))

    def _average(self, im, out, rows):
        """Write the rows ``rows`` (a slice) of the symmetrized ``im`` into ``out``.

        Working band by band keeps the rotated rows in cache while they are weighted and
        summed, and lets threads share the frame without sharing buffers.
        """
        band = out[rows]
        if self.mask is None:
            band[...] = im[rows]
            for transform in self._transforms:
                band += _warp(im, transform, rows=rows)
            band /= self.mod
            return
        np.multiply(im[rows], self.mask[rows], out=band)
        for transform, weight in zip(self._transforms, self._weights, strict=True):
            rotated = _warp(im, transform, rows=rows)
            rotated *= weight[rows]
            band += rotated
        band *= self._inverse[rows]
        band[self._fill[rows]] = self.fill_value


#: The plans of the latest :func:`nfold` calls.
_plans = PlanCache(NFoldPlan, CACHED_PLANS)


def nfold(im, mod, center=None, mask=None, fill_value=0.0):
    """Average an image over its n-fold rotational symmetry, to raise its signal-to-noise.

    Parameters
    ----------
    im : array_like, ndim 2
        Image, e.g. a diffraction pattern of known symmetry.
    mod : int
        Order of the rotational symmetry; must divide 360.
    center : array_like, shape (2,) or None, optional
        Rotation centre ``(col, row)``. Default: the centre of the array,
        ``(cols / 2 - 0.5, rows / 2 - 0.5)``.
    mask : ndarray of bool or None, optional
        True on valid pixels; invalid pixels do not enter the average.
    fill_value : float, optional
        Value of the pixels where the mask overlaps itself in every rotation.

    Returns
    -------
    out : ndarray of float
        Symmetrized image.

    Raises
    ------
    ValueError
        If ``mod`` does not divide 360, ``center`` is outside the image, ``mask`` is not a
        boolean array of the image's shape, or ``im`` has NaN or infinite values at valid
        pixels.

    See Also
    --------
    NFoldPlan : the same average with the rotated mask weights computed once.

    Notes
    -----
    The image is rotated by multiples of ``360 / mod`` degrees with bilinear
    interpolation (zero outside the frame); with a mask, the rotations are averaged with
    the rotated mask as weights. This function keeps the :class:`NFoldPlan` (on one thread
    per core) of its last few distinct ``(shape, mod, center, mask, fill_value)``, keyed by
    a digest of the mask's contents: symmetrizing a stack frame by frame rotates the mask
    once, not once per frame.
    """
    im = check_image(im)
    center = _default_center(im.shape) if center is None else _check_center_xy(center, im.shape)
    mask = None if mask is None else np.asarray(mask)
    return _plans(im.shape, mod, center, mask, fill_value, workers=-1)(im)


def reflection(im, angle, center=None, mask=None, fill_value=0.0):
    """Symmetrize an image about a mirror line through a centre.

    Parameters
    ----------
    im : array_like, ndim 2
        Image.
    angle : float
        Angle (degrees) of the mirror line, counter-clockwise from the positive x-axis;
        ``angle`` and ``angle + 180`` are the same line.
    center : array_like, shape (2,) or None, optional
        A point ``(col, row)`` of the mirror line. Default: the centre of the array,
        ``(cols / 2 - 0.5, rows / 2 - 0.5)``.
    mask : ndarray of bool or None, optional
        True on valid pixels.
    fill_value : float, optional
        Value of the pixels whose mirror image is invalid.

    Returns
    -------
    out : ndarray of float
        Mean of the image and its mirror image (bilinear interpolation, zero outside the
        frame).

    Raises
    ------
    ValueError
        If ``angle`` is not finite, ``center`` is outside the image, ``mask`` is not a
        boolean array of the image's shape, or ``im`` has NaN or infinite values at valid
        pixels.

    Notes
    -----
    The mirror image is one bilinear resampling through the reflection
    :math:`p \\mapsto c + M (p - c)`, with :math:`M` the reflection about the line at
    ``angle``. scikit-ued composes two rotations about ``center`` with a flip of the
    array's rows, which reflects about the intended line only when ``center`` is on the
    array's middle row; here the line always passes through ``center``.
    """
    im = check_image(im)
    angle = float(angle)
    if not math.isfinite(angle):
        raise ValueError(f"angle must be finite, got {angle}")
    center = _default_center(im.shape) if center is None else _check_center_xy(center, im.shape)
    valid = None if mask is None else check_mask(mask, im.shape, require_valid=False)
    im = _float_image(im, valid)
    c, s = math.cos(math.radians(2 * angle)), math.sin(math.radians(2 * angle))
    transform = _about(np.array([[c, -s], [-s, -c]]), center)
    out = im + _warp(im, transform)
    out /= 2
    if valid is not None:
        out[_warp((~valid).astype(float), transform) > 0] = fill_value
    return out
