"""Pixel masks and per-pixel statistics of collections of frames.

The collection functions read their frames once, in batches ``(k, ...)``, and keep only
per-pixel accumulators (:class:`RunningStats`): memory does not grow with the number of frames.
A collection is any iterable of frames (a list, a generator), or one array: an array of three or
more dimensions is a stack of frames along its first axis, a lower-dimensional array is a single
frame.
"""

from collections.abc import Iterable

import numpy as np

__all__ = [
    "RunningStats",
    "combine_masks",
    "intensity_bounds",
    "isnr",
    "mask_from_collection",
    "mask_image",
    "snr_dtype",
    "snr_from_collection",
    "triml",
    "trimr",
]

#: Frames are gathered into batches of about this many bytes (at most ``_MAX_BATCH`` frames).
_BATCH_BYTES = 64 * 2**20
_MAX_BATCH = 64
#: The moment update works on pixel tiles whose float scratch has about this many bytes,
#: small enough to stay in the CPU cache.
_TILE_BYTES = 2**20


def _work_dtype(dtype):
    """Float type of the batch deviations: float32 where it holds them to about 1e-7."""
    if (dtype.kind in "biu" and dtype.itemsize <= 2) or dtype in (np.float16, np.float32):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


class RunningStats:
    """Per-pixel count, mean, variance, minimum and maximum of a stream of frames.

    Batches of frames are folded in with :meth:`update`; two accumulators of disjoint parts of
    a stream are combined with :meth:`merge`. Each batch is reduced with the two-pass
    algorithm and combined with the running totals by the pairwise update of Chan, Golub &
    LeVeque [1]_, which stays accurate when the mean is large compared with the spread.

    Parameters
    ----------
    shape : tuple of int
        Shape of one frame.
    dtype : data-type, optional
        Data type of :attr:`min` and :attr:`max` (that of the frames).

    Attributes
    ----------
    count : int
        Number of frames folded in.

    References
    ----------
    .. [1] T. F. Chan, G. H. Golub and R. J. LeVeque, "Algorithms for computing the sample
       variance: analysis and recommendations", The American Statistician 37, 242-247 (1983).
    .. [2] B. P. Welford, "Note on a method for calculating corrected sums of squares and
       products", Technometrics 4, 419-420 (1962).

    Examples
    --------
    >>> import numpy as np
    >>> frames = np.random.default_rng(0).normal(5.0, 2.0, size=(40, 8, 8))
    >>> stats = RunningStats((8, 8))
    >>> stats.update(frames[:25]).update(frames[25:]).count
    40
    >>> bool(np.allclose(stats.var, frames.var(axis=0)))
    True
    """

    def __init__(self, shape, dtype=np.float64):
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        size = int(np.prod(self.shape))
        self.count = 0
        self._mean = np.zeros(size)
        self._m2 = np.zeros(size)
        self._min = np.zeros(size, self.dtype)
        self._max = np.zeros(size, self.dtype)

    def update(self, batch):
        """Fold a batch of frames, shape ``(k, *shape)``, into the statistics.

        Returns
        -------
        self : RunningStats
        """
        batch = np.asarray(batch)
        if batch.shape[1:] != self.shape:
            raise ValueError(f"batch must have shape (k, *{self.shape}), got {batch.shape}")
        k = batch.shape[0]
        if k == 0:
            return self
        flat = batch.reshape(k, -1)
        size = flat.shape[1]
        work_dtype = _work_dtype(batch.dtype)
        tile = min(size, max(1, _TILE_BYTES // (k * work_dtype.itemsize)))
        deviations = np.empty((k, tile), work_dtype)
        extreme = np.empty(tile, self.dtype)
        batch_mean = np.empty(tile)
        batch_m2 = np.empty(tile)
        first = self.count == 0
        n = self.count + k
        for start in range(0, size, tile):
            span = slice(start, min(start + tile, size))
            width = span.stop - start
            x = flat[:, span]
            self._fold_extremes(x, span, extreme[:width], first)

            d, mean_b, m2_b = deviations[:, :width], batch_mean[:width], batch_m2[:width]
            np.add.reduce(x, axis=0, dtype=np.float64, out=mean_b)
            mean_b /= k
            np.subtract(x, mean_b, out=d)
            np.square(d, out=d)
            np.add.reduce(d, axis=0, dtype=np.float64, out=m2_b)
            # Pairwise update: delta is the difference of the batch and running means.
            mean, m2 = self._mean[span], self._m2[span]
            delta = np.subtract(mean_b, mean, out=mean_b)
            m2 += m2_b
            np.square(delta, out=m2_b)
            m2_b *= self.count * k / n
            m2 += m2_b
            delta *= k / n
            mean += delta
        self.count = n
        return self

    def _fold_extremes(self, x, span, scratch, first):
        lo, hi = self._min[span], self._max[span]
        if first:
            np.fmin.reduce(x, axis=0, out=lo)
            np.fmax.reduce(x, axis=0, out=hi)
        else:
            np.fmin(lo, np.fmin.reduce(x, axis=0, out=scratch), out=lo)
            np.fmax(hi, np.fmax.reduce(x, axis=0, out=scratch), out=hi)

    def merge(self, other):
        """Combine with the statistics of another, disjoint, part of the stream.

        Uses the pairwise formula of Chan, Golub & LeVeque; ``other`` is left unchanged.

        Returns
        -------
        self : RunningStats
        """
        if not isinstance(other, RunningStats):
            raise ValueError(f"other must be a RunningStats, got {type(other).__name__}")
        if other.shape != self.shape:
            raise ValueError(f"other has frame shape {other.shape}, expected {self.shape}")
        if other.count == 0:
            return self
        if self.count == 0:
            self._mean[:] = other._mean
            self._m2[:] = other._m2
            self._min[:] = other._min
            self._max[:] = other._max
            self.count = other.count
            return self
        n = self.count + other.count
        delta = other._mean - self._mean
        self._m2 += other._m2
        self._m2 += np.square(delta) * (self.count * other.count / n)
        delta *= other.count / n
        self._mean += delta
        np.fmin(self._min, other._min, out=self._min)
        np.fmax(self._max, other._max, out=self._max)
        self.count = n
        return self

    def _frame(self, flat):
        if self.count == 0:
            raise ValueError("no frames have been folded in yet")
        return flat.reshape(self.shape).copy()

    @property
    def mean(self):
        """Per-pixel mean, float64."""
        return self._frame(self._mean)

    @property
    def var(self):
        """Per-pixel population variance (``ddof=0``, as :func:`numpy.var`), float64."""
        return self._frame(self._m2) / self.count

    @property
    def std(self):
        """Per-pixel population standard deviation, float64."""
        return np.sqrt(self.var)

    def snr(self, fill_value=0.0):
        """Per-pixel signal-to-noise ratio, mean / population standard deviation, in
        :func:`snr_dtype` of the frames' dtype; ``fill_value`` where the deviation is 0."""
        std = np.sqrt(self._m2 / self.count)
        snr = np.full(std.shape, fill_value, dtype=snr_dtype(self.dtype))
        np.divide(self._mean, std, out=snr, where=std != 0)
        return snr.reshape(self.shape)

    @property
    def min(self):
        """Per-pixel minimum (NaN only where a pixel is NaN in every frame)."""
        return self._frame(self._min)

    @property
    def max(self):
        """Per-pixel maximum (NaN only where a pixel is NaN in every frame)."""
        return self._frame(self._max)


def _frames(images):
    """Yield the frames of ``images`` one by one, cast to the data type of the first one."""
    if isinstance(images, np.ndarray) and images.ndim < 3:
        images = (images,)
    first = None
    for index, frame in enumerate(images):
        if first is None:
            frame = first = np.asarray(frame)
        else:
            frame = np.asarray(frame, dtype=first.dtype)
            if frame.shape != first.shape:
                raise ValueError(
                    f"images: frame {index} has shape {frame.shape}, "
                    f"but frame 0 has shape {first.shape}"
                )
        yield frame
    if first is None:
        raise ValueError("images is empty: no frames to reduce")


def _frame_batches(images):
    """Yield the frames of ``images`` in batches ``(k, ...)`` of one shape and data type.

    A batch buffer is reused: each batch is valid until the next one is requested.
    """
    if isinstance(images, np.ndarray) and images.ndim >= 3 and len(images):
        k = _batch_length(images[0])
        for start in range(0, len(images), k):
            yield images[start : start + k]
        return
    frames = _frames(images)
    first = next(frames)
    buffer = np.empty((_batch_length(first), *first.shape), first.dtype)
    buffer[0] = first
    filled = 1
    for frame in frames:
        if filled == len(buffer):
            yield buffer
            filled = 0
        buffer[filled] = frame
        filled += 1
    yield buffer[:filled]


def _batch_length(frame):
    return int(np.clip(_BATCH_BYTES // max(frame.nbytes, 1), 1, _MAX_BATCH))


def snr_dtype(dtype):
    """The dtype of a signal-to-noise ratio of frames of ``dtype``: theirs if float, else
    float64."""
    dtype = np.dtype(dtype)
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def isnr(images, fill_value=0.0):
    """Pixelwise signal-to-noise ratio of a collection, after each frame.

    Parameters
    ----------
    images : iterable of array_like, or array_like
        Frames of repeated, identical measurements: a list, a generator, or a stack
        ``(n, y, x)`` (a 2D array is a single frame).
    fill_value : float, optional
        Value of pixels whose standard deviation is zero.

    Yields
    ------
    snr : numpy.ndarray
        Mean over standard deviation (``ddof=0``) of each pixel over the frames seen so far;
        a new array each time. Float input keeps its float type, other input gives float64.

    Raises
    ------
    ValueError
        On the first iteration, if ``images`` is empty or its frames differ in shape.

    See Also
    --------
    snr_from_collection : the ratio over the whole collection, without the intermediate ones.
    RunningStats : the per-pixel accumulator, Welford's update frame by frame.

    Examples
    --------
    >>> import numpy as np
    >>> from uedflow import isnr, snr_from_collection
    >>> frames = np.random.default_rng(0).poisson(100, size=(5, 8, 8))
    >>> running = list(isnr(frames))                 # one SNR image after each frame
    >>> len(running), bool(np.allclose(running[-1], snr_from_collection(frames)))
    (5, True)
    """
    stats = None
    for frame in _frames(images):
        if stats is None:
            stats = RunningStats(frame.shape, frame.dtype)
        stats.update(frame[np.newaxis])
        yield stats.snr(fill_value)


def snr_from_collection(images, fill_value=0.0):
    """Pixelwise signal-to-noise ratio of a collection of frames, in one streaming pass.

    The ratio is the per-pixel mean over the per-pixel standard deviation (``ddof=0``).
    Memory does not grow with the number of frames.

    Parameters
    ----------
    images : iterable of array_like, or array_like
        Frames of repeated, identical measurements: a list, a generator, or a stack
        ``(n, y, x)`` (a 2D array is a single frame).
    fill_value : float, optional
        Value of pixels whose standard deviation is zero.

    Returns
    -------
    snr : numpy.ndarray
        Shape of a frame. Float input keeps its float type, other input gives float64.

    Raises
    ------
    ValueError
        If ``images`` is empty or its frames differ in shape.

    See Also
    --------
    isnr : the ratio after each frame.
    """
    stats = None
    for batch in _frame_batches(images):
        if stats is None:
            stats = RunningStats(batch.shape[1:], batch.dtype)
        stats.update(batch)
    return stats.snr(fill_value)


def intensity_bounds(px_thresh):
    """``(low, high)`` of ``px_thresh``: one number (the high bound; low None) or several
    (their min and max); ValueError if empty or NaN."""
    if isinstance(px_thresh, Iterable):
        bounds = [float(value) for value in px_thresh]
        if not bounds:
            raise ValueError("px_thresh is empty")
        low, high = min(bounds), max(bounds)
    else:
        low, high = None, float(px_thresh)
        bounds = [high]
    if any(np.isnan(bounds)):
        raise ValueError(f"px_thresh must not be NaN, got {px_thresh!r}")
    return low, high


def _flag_noisy(flat, stats, spread, std_thresh, rejected):
    """Set ``rejected`` where the running std exceeds ``std_thresh`` after any frame of ``flat``.

    The statistics before the batch are in ``stats``; ``spread`` is each pixel's range over all
    frames so far, this batch included. A variance never exceeds a quarter of the squared range
    (Popoviciu's inequality), so only pixels whose range exceeds ``2 * std_thresh`` are followed
    frame by frame (Welford's update).
    """
    candidates = np.flatnonzero((spread > 2 * std_thresh) & ~rejected)
    chunk = _TILE_BYTES // 64  # the running sums of a chunk stay in the CPU cache
    for start in range(0, candidates.size, chunk):
        pixels = candidates[start : start + chunk]
        n = stats.count
        mean = stats._mean[pixels]
        m2 = stats._m2[pixels]
        noisy = np.zeros(pixels.size, dtype=bool)
        for frame in flat[:, pixels]:
            n += 1
            delta = frame - mean
            mean += delta / n
            m2 += delta * (frame - mean)
            noisy |= m2 > n * std_thresh**2
        rejected[pixels[noisy]] = True


def mask_from_collection(images, px_thresh=(0, 3e4), std_thresh=None):
    """Mask of the bad pixels of a collection of identical measurements, in one pass.

    A pixel is rejected if, in any frame, its value is above ``max(px_thresh)`` or below
    ``min(px_thresh)``; and, if ``std_thresh`` is given, if its running standard deviation
    (``ddof=0``) over the first ``j`` frames exceeds ``std_thresh`` for any ``j``. Memory does
    not grow with the number of frames.

    Parameters
    ----------
    images : iterable of array_like, or array_like
        Frames of repeated, identical measurements (e.g. the frames before time zero): a list,
        a generator, or a stack ``(n, y, x)`` (a 2D array is a single frame).
    px_thresh : float or iterable of float, optional
        Allowed pixel values ``[min(px_thresh), max(px_thresh)]``. A single number is the upper
        bound only. ``numpy.inf`` leaves a side open.
    std_thresh : float or None, optional
        Largest allowed running standard deviation of a pixel; None (default) for no limit.

    Returns
    -------
    mask : numpy.ndarray of bool
        Shape of a frame. **True where a pixel is rejected** (as scikit-ued's
        ``mask_from_collection``; note that :func:`mask_image` and :func:`combine_masks` take
        the opposite convention, True = valid: pass ``~mask`` to them).

    Raises
    ------
    ValueError
        If ``images`` is empty or its frames differ in shape, if ``px_thresh`` is empty or NaN,
        or if ``std_thresh`` is negative or NaN.

    Notes
    -----
    Pixels that are NaN in a frame are judged on their other frames. Statistics of integer
    frames are computed in floating point.

    References
    ----------
    .. [1] B. P. Welford, "Note on a method for calculating corrected sums of squares and
       products", Technometrics 4, 419-420 (1962).
    .. [2] T. Popoviciu, "Sur les équations algébriques ayant toutes leurs racines réelles",
       Mathematica (Cluj) 9, 129-145 (1935).
    """
    low, high = intensity_bounds(px_thresh)
    if std_thresh is not None and not std_thresh >= 0:
        raise ValueError(f"std_thresh must be a number >= 0 or None, got {std_thresh!r}")

    lo = hi = stats = rejected = None
    for batch in _frame_batches(images):
        flat = batch.reshape(len(batch), -1)
        if lo is None:
            shape = batch.shape[1:]
            lo = np.fmin.reduce(flat, axis=0)
            hi = np.fmax.reduce(flat, axis=0)
            rejected = np.zeros(lo.shape, dtype=bool)
            if std_thresh is not None:
                stats = RunningStats(shape, batch.dtype)
        else:
            np.fmin(lo, np.fmin.reduce(flat, axis=0), out=lo)
            np.fmax(hi, np.fmax.reduce(flat, axis=0), out=hi)
        if std_thresh is not None:
            spread = np.subtract(hi, lo, dtype=np.float64)
            _flag_noisy(flat, stats, spread, std_thresh, rejected)
            stats.update(batch)

    rejected |= hi > high
    if low is not None:
        rejected |= lo < low
    return rejected.reshape(shape)


def _as_mask(mask, name):
    """``mask`` as a boolean array; numbers are accepted if they are all 0 or 1."""
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask
    if mask.dtype.kind not in "iuf":
        raise ValueError(f"{name} must be a boolean array, got dtype {mask.dtype}")
    if not np.all((mask == 0) | (mask == 1)):
        raise ValueError(
            f"{name} must be boolean (True on valid pixels); its {mask.dtype} values are not "
            "all 0 or 1"
        )
    return mask.astype(bool)


def combine_masks(*masks):
    """Combine pixel masks: a pixel is valid only if it is valid in every mask.

    Parameters
    ----------
    *masks : array_like of bool
        Masks of one shape, True on valid pixels (numbers 0 and 1 are accepted).

    Returns
    -------
    combined : numpy.ndarray of bool
        Logical AND of the masks.

    Raises
    ------
    ValueError
        If no mask is given, or a mask is not boolean or differs in shape from the first.

    Examples
    --------
    >>> import numpy as np
    >>> from uedflow import combine_masks
    >>> block = np.array([[True, False], [True, True]])
    >>> hot = np.array([[True, True], [False, True]])
    >>> combine_masks(block, hot)
    array([[ True, False],
           [False,  True]])
    """
    if not masks:
        raise ValueError("combine_masks needs at least one mask")
    combined = _as_mask(masks[0], "masks[0]").copy()
    for index, mask in enumerate(masks[1:], start=1):
        mask = _as_mask(mask, f"masks[{index}]")
        if mask.shape != combined.shape:
            raise ValueError(
                f"masks[{index}] has shape {mask.shape}, but masks[0] has shape "
                f"{combined.shape}"
            )
        np.logical_and(combined, mask, out=combined)
    return combined


def mask_image(image, mask, fill_value=0, copy=True):
    """Set the invalid pixels of an image to ``fill_value``.

    Parameters
    ----------
    image : array_like
        Image, or a batch of images ``(..., y, x)``.
    mask : array_like of bool
        True on valid pixels (numbers 0 and 1 are accepted); the shape of ``image``, or of one
        image of a batch.
    fill_value : float, optional
        Value given to invalid pixels.
    copy : bool, optional
        If True (default), work on a copy of ``image``; if False, modify ``image`` in place
        (it must then be an array).

    Returns
    -------
    masked : numpy.ndarray
        The masked image: ``image`` itself if ``copy`` is False.

    Raises
    ------
    ValueError
        If ``mask`` is not boolean or its shape matches neither ``image`` nor its trailing
        dimensions.

    Examples
    --------
    >>> import numpy as np
    >>> from uedflow import mask_image
    >>> image = np.arange(4.0).reshape(2, 2)
    >>> mask_image(image, np.array([[True, False], [True, True]]), fill_value=np.nan)
    array([[ 0., nan],
           [ 2.,  3.]])
    """
    image = np.array(image, copy=copy)
    mask = _as_mask(mask, "mask")
    if mask.ndim == 0 or mask.ndim > image.ndim or image.shape[image.ndim - mask.ndim :] != (
        mask.shape
    ):
        raise ValueError(f"mask has shape {mask.shape}, which does not match image {image.shape}")
    invalid = np.logical_not(mask)
    if mask.ndim == image.ndim:
        image[invalid] = fill_value
    else:
        image[..., invalid] = fill_value
    return image


def _trim(array, percentile, axis, fill_value, outside):
    array = np.array(array)
    if array.size == 0:
        raise ValueError("array is empty")
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {percentile!r}")
    limit = np.percentile(array, q=float(percentile), axis=axis, keepdims=True)
    array[outside(array, limit)] = fill_value
    return array


def triml(array, percentile, axis=None, fill_value=0):
    """Replace the values below a percentile.

    Parameters
    ----------
    array : array_like
        Data, typically an image (it is copied).
    percentile : float
        Percentile in [0, 100]; values below it are replaced.
    axis : int or None, optional
        Axis along which the percentile is taken; None (default) for the whole array.
    fill_value : float, optional
        Replacement value.

    Returns
    -------
    trimmed : numpy.ndarray
        Same shape as ``array``.

    See Also
    --------
    trimr : replace the values above a percentile.

    Examples
    --------
    >>> import numpy as np
    >>> from uedflow import triml
    >>> triml(np.arange(10), percentile=30)
    array([0, 0, 0, 3, 4, 5, 6, 7, 8, 9])
    """
    return _trim(array, percentile, axis, fill_value, np.less)


def trimr(array, percentile, axis=None, fill_value=0):
    """Replace the values above a percentile.

    Parameters
    ----------
    array : array_like
        Data, typically an image (it is copied).
    percentile : float
        Percentile in [0, 100]; values above it are replaced.
    axis : int or None, optional
        Axis along which the percentile is taken; None (default) for the whole array.
    fill_value : float, optional
        Replacement value.

    Returns
    -------
    trimmed : numpy.ndarray
        Same shape as ``array``.

    See Also
    --------
    triml : replace the values below a percentile.

    Examples
    --------
    >>> import numpy as np
    >>> from uedflow import trimr
    >>> trimr(np.arange(10), percentile=70)
    array([0, 1, 2, 3, 4, 5, 6, 0, 0, 0])
    """
    return _trim(array, percentile, axis, fill_value, np.greater)
