"""Mergeable partial results of a run reduction: :class:`PixelSums`.

A delay's average over scans is not computed from all its frames at once: each task adds
the frames of a group of scans into a :class:`PixelSums`, partials are merged (in any
grouping, in a fixed order), and :meth:`PixelSums.result` turns the merged sums into the
average, its standard error and the robust cut of outlying pixels. Memory per task is one
partial (about 30 bytes per pixel) plus the frames of its group, whatever the number of
scans; the same partials serve a live reduction that adds scans as they arrive.

The pixel cut from bounded pieces
---------------------------------
Along with the sums, each pixel keeps its highest and its lowest value and the scan they came
from. The cut compares each extreme with the mean of the other values (the *trimmed mean*,
without the highest and lowest), with a noise of at least the shot noise and the given floor;
an extreme beyond ``pixel_z`` times that noise is taken out of the sums. For 3 or 4 values the
trimmed mean is the median, as in a median-based cut. The approximation against a cut of
every outlier: at most one value above and one below are cut per pixel and delay, so a second
outlier in the same pixel and delay stays in (and pulls the trimmed mean by its excess over
``n - 2``).
"""

import threading

import numpy as np

__all__ = ["PixelSums"]

#: Released arrays kept for new partials, at most this many sets per frame shape.
POOL = 4
_pool = {}
_pool_lock = threading.Lock()


def _strips(rows, cols, pixels=2**16):
    """Slices of rows of about ``pixels`` pixels each."""
    step = max(1, pixels // max(cols, 1))
    return [slice(r, r + step) for r in range(0, rows, step)]


def _take(shape):
    with _pool_lock:
        free = _pool.get(shape)
        return free.pop() if free else None


def _give(arrays):
    with _pool_lock:
        free = _pool.setdefault(arrays[0].shape, [])
        if len(free) < POOL:
            free.append(arrays)


class PixelSums:
    """Per-pixel sums of aligned frames, mergeable, with extremes for a robust pixel cut and
    the sums of the frames' radial profiles (:attr:`profiles` counts the frames added).

    Parameters
    ----------
    shape : tuple of int
        Frame shape.
    profile : scipy.sparse matrix, shape (bins, pixels)
        The radial profile of a flat frame, ``profile @ frame.ravel()`` (each row: the
        pixels of one bin, weighted 1 / their number).
    """

    def __init__(self, shape, profile):
        self.profile = profile
        arrays = _take(tuple(shape))
        if arrays is None:  # new memory: every page is touched (and faulted in) below
            arrays = (np.empty(shape, np.int32), np.empty(shape), np.empty(shape),
                      np.empty(shape, np.float32), np.empty(shape, np.int32),
                      np.empty(shape, np.float32), np.empty(shape, np.int32))
        (self.missing, self.sum, self.squares, self.high, self.high_scan, self.low,
         self.low_scan) = arrays
        self.missing[...] = 0  # frames added without a value, per pixel
        self.sum[...] = 0
        self.squares[...] = 0
        self.high[...] = -np.inf
        self.low[...] = np.inf  # the scans are read only where an extreme was set
        self.profiles = 0
        self.profile_sum = np.zeros(profile.shape[0])
        self.profile_squares = np.zeros(profile.shape[0])

    def __sizeof__(self):
        """Bytes held (what ``sys.getsizeof`` and dask's ``sizeof`` report): the scheduler of
        a cluster weighs it when it decides where the next task runs, moving the smaller
        inputs (a group's frames) to the partial rather than the partial to them."""
        arrays = (self.missing, self.sum, self.squares, self.high, self.high_scan, self.low,
                  self.low_scan, self.profile_sum, self.profile_squares)
        return object.__sizeof__(self) + sum(a.nbytes for a in arrays if a is not None)

    def release(self):
        """Give the arrays back for the next partial of this process (a partial's first
        touch of new memory costs as much as adding a few frames); do not use it after."""
        _give((self.missing, self.sum, self.squares, self.high, self.high_scan, self.low,
               self.low_scan))
        self.missing = self.sum = self.squares = self.high = self.low = None

    def add(self, frame, scan, work, flag):
        """Add an aligned ``frame`` (float32, NaN where it has no value; overwritten with 0
        there) of scan index ``scan``; ``work`` (float32) and ``flag`` (bool) are buffers of
        the frame's shape."""
        # branch-free updates (a masked copy of half the pixels is 8 times slower)
        index = work.view(np.int32)
        for extreme, scans, better, keep in ((self.high, self.high_scan, np.greater, np.fmax),
                                             (self.low, self.low_scan, np.less, np.fmin)):
            better(frame, extreme, out=flag)  # NaN compares False
            np.subtract(scan, scans, out=index)
            index *= flag
            scans += index  # the scan where the frame is the new extreme
            keep(extreme, frame, out=extreme)  # fmax, fmin: a NaN of the frame is ignored
        np.isnan(frame, out=flag)
        self.missing += flag
        np.copyto(frame, 0, where=flag)
        self.sum += frame
        np.square(frame, out=work)
        self.squares += work
        profile = (self.profile @ frame.ravel()).astype(np.float64)
        self.profiles += 1
        self.profile_sum += profile
        self.profile_squares += profile**2

    def merge(self, other):
        """Add the sums of ``other`` (of other scans) to these; returns ``self``."""
        self.missing += other.missing
        self.sum += other.sum
        self.squares += other.squares
        higher = other.high > self.high
        np.copyto(self.high, other.high, where=higher)
        np.copyto(self.high_scan, other.high_scan, where=higher)
        lower = other.low < self.low
        np.copyto(self.low, other.low, where=lower)
        np.copyto(self.low_scan, other.low_scan, where=lower)
        self.profiles += other.profiles
        self.profile_sum += other.profile_sum
        self.profile_squares += other.profile_squares
        return self

    def scaled(self, factor):
        """A copy of these sums with every value added multiplied by ``factor`` (> 0): the
        frames' common normalisation applied once to their sums (a live reduction keeps the
        sums of frames divided by their own totals; the delay's level changes as scans come).
        """
        out = PixelSums(self.sum.shape, self.profile)
        out.missing[...] = self.missing
        np.multiply(self.sum, factor, out=out.sum)
        np.multiply(self.squares, factor**2, out=out.squares)
        np.multiply(self.high, np.float32(factor), out=out.high)
        np.multiply(self.low, np.float32(factor), out=out.low)
        out.high_scan[...] = self.high_scan
        out.low_scan[...] = self.low_scan
        out.profiles = self.profiles
        out.profile_sum = self.profile_sum * factor
        out.profile_squares = self.profile_squares * factor**2
        return out

    def result(self, pixel_z, noise, n_scans):
        """Average, standard error and the cut (the sums are changed: call it once, on the
        merged partial).

        Parameters
        ----------
        pixel_z : float or None
            Cut an extreme more than ``pixel_z`` times the noise from the trimmed mean
            (see the module's notes); None: no cut.
        noise : ndarray
            Least noise of each pixel (e.g. the spread of a sample of frames); the shot
            noise ``sqrt(trimmed mean)`` (in counts) applies too.
        n_scans : int
            Length of the cuts per scan.

        Returns
        -------
        mean, error : ndarray of float32
            Per pixel: the mean of the values kept (NaN without any) and its standard error
            (NaN with fewer than 2).
        cuts : ndarray of int64, shape (n_scans,)
            Pixels cut in each scan's frame.
        radial_error : ndarray
            Standard error of the mean radial profile, from the spread of the frames'
            profiles (NaN with fewer than 2 frames).
        """
        n = np.subtract(self.profiles, self.missing, out=self.missing)  # values per pixel
        total, squares = self.sum, self.squares  # changed in place: a partial is used once
        cuts = np.zeros(n_scans, np.int64)
        if pixel_z is not None:
            # an extreme is at most high - low from the trimmed mean, and the noise is at
            # least max(1, noise): only pixels with a wider range can have a cut
            with np.errstate(invalid="ignore"):
                wide = np.subtract(self.high, self.low) > pixel_z * np.maximum(noise, 1)
            at = np.flatnonzero(wide & (n >= 3))
            m = n.flat[at].astype(float)
            high, low = self.high.flat[at].astype(float), self.low.flat[at].astype(float)
            trimmed = (total.flat[at] - high - low) / (m - 2)
            limit = pixel_z * np.maximum(np.sqrt(np.maximum(trimmed, 1)), noise.flat[at])
            for extreme, scans, cut in ((high, self.high_scan, high - trimmed > limit),
                                        (low, self.low_scan, trimmed - low > limit)):
                where = at[cut]
                total.flat[where] -= extreme[cut]
                squares.flat[where] -= extreme[cut] ** 2
                n.flat[where] -= 1
                cuts += np.bincount(scans.flat[where], minlength=n_scans)
        mean = np.empty(n.shape, np.float32)
        error = np.empty(n.shape, np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            for rows in _strips(n.shape[0], n.shape[1]):  # temporaries that stay in cache
                count = n[rows]
                average = total[rows] / count
                spread = squares[rows] - total[rows] * average
                np.maximum(spread, 0, out=spread)
                spread /= count - 1
                spread /= count
                np.sqrt(spread, out=spread)
                mean[rows] = average
                error[rows] = np.where(count >= 2, spread, np.nan)
            k = self.profiles
            centre = self.profile_sum / k
            spread = np.maximum(self.profile_squares - self.profile_sum * centre, 0) / (k - 1)
            radial_error = np.sqrt(spread / k) if k >= 2 else np.full(centre.shape, np.nan)
        return mean, error, cuts, radial_error
