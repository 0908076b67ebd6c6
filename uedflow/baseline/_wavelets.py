"""Shared machinery of the wavelet baselines: low-pass wavelet cascades and the iteration.

The iterative baseline only ever needs the *approximation* of a signal: its projection on the
coarse scaling functions, with every detail band set to zero. That projection is a cascade of
low-pass filtering with decimation (analysis) followed by low-pass filtering with
interpolation (synthesis), so the detail filters are never applied here. Both are computed
in polyphase form with NumPy, into buffers kept between calls.
"""

import operator

import numpy as np
import pywt
from numpy.lib.array_utils import normalize_axis_index

#: Signal-extension modes, as named by PyWavelets.
MODES = tuple(pywt.Modes.modes)


def check_mode(mode):
    """Raise ``ValueError`` unless ``mode`` is a PyWavelets signal-extension mode."""
    if mode not in MODES:
        raise ValueError(f"mode: unknown signal extension mode {mode!r}; "
                         f"use one of {', '.join(MODES)}")


def check_level(level):
    """Validate a decomposition level: ``None`` or an integer >= 0."""
    if level is None:
        return None
    level = operator.index(level)
    if level < 0:
        raise ValueError(f"level: decomposition level must be >= 0, got {level}")
    return level


def _index(ndim, axis, part):
    """Index selecting ``part`` (a slice) along ``axis`` of an ``ndim``-array."""
    index = [slice(None)] * ndim
    index[axis] = part
    return tuple(index)


def _resized(shape, axis, length):
    return tuple(length if ax == axis else n for ax, n in enumerate(shape))


def _border_weights(n, filter_len, mode, left, right):
    """How PyWavelets extends a length-``n`` signal by ``left`` and ``right`` samples.

    Returns ``(columns, weights)`` for each side: the extended samples are
    ``weights @ x[columns]``. Found by running ``pywt.dwt`` with unit-impulse filters on unit
    vectors, so that every mode and short signal is extended exactly as PyWavelets does.
    Far from the ends only the ``filter_len`` first and last samples can matter.
    """
    columns = np.arange(n) if n <= 2 * filter_len else np.r_[0:filter_len, n - filter_len:n]
    probe = np.eye(n)[:, columns]
    extended = {}
    for shift in (0, 1, filter_len - 2, filter_len - 1):
        impulse = np.zeros(filter_len)
        impulse[shift] = 1.0
        wavelet = pywt.Wavelet(filter_bank=[impulse] * 4)
        approx = pywt.dwt(probe, wavelet, mode=mode, axis=0)[0]
        for k, row in enumerate(approx):  # approx[k] is the extended sample 2k + 1 - shift
            extended[2 * k + 1 - shift] = row
    sides = []
    for positions in (range(-left, 0), range(n, n + right)):
        weights = np.zeros((len(positions), len(columns)))
        for row, i in enumerate(positions):
            weights[row] = extended[i]
        used = np.flatnonzero(np.any(weights != 0, axis=0))
        sides.append((columns[used], weights[:, used]))
    return sides


def _direct(shape, axis, filter_len, mode):
    """Whether NumPy polyphase filtering is used, rather than PyWavelets.

    PyWavelets' C loops are faster along the last (contiguous) axis; NumPy, which filters
    whole rows at once, is much faster along the others. Periodization and odd-length
    filters are left to PyWavelets.
    """
    return axis != len(shape) - 1 and mode != "periodization" and filter_len % 2 == 0


class Decimate:
    """Low-pass analysis along one axis: PyWavelets' approximation coefficients ``cA``.

    Computed in polyphase form, only at the kept samples, into buffers kept between calls
    (see :func:`_direct`).

    Parameters
    ----------
    shape : tuple of int
        Shape of the input.
    axis : int
        Normalised axis.
    wavelet : pywt.Wavelet
    mode : str
        PyWavelets signal-extension mode.
    """

    def __init__(self, shape, axis, wavelet, mode):
        self.shape, self.axis, self.wavelet, self.mode = shape, axis, wavelet, mode
        n, size = shape[axis], wavelet.dec_len
        n_out = pywt.dwt_coeff_len(n, size, mode)
        self.out_shape = _resized(shape, axis, n_out)
        self.direct = _direct(shape, axis, size, mode)
        if not self.direct:
            return
        left, right = size - 2, 2 * n_out - n
        ndim = len(shape)
        self._ext = np.empty(_resized(shape, axis, left + n + right))
        self._middle = _index(ndim, axis, slice(left, left + n))
        self._borders = list(zip(
            (_index(ndim, axis, slice(0, left)), _index(ndim, axis, slice(left + n, None))),
            _border_weights(n, size, mode, left, right), strict=True))
        # cA[k] = sum_j h[j] ext[2k + size - 1 - j]
        self._taps = [(_index(ndim, axis, slice(size - 1 - j, size - 1 - j + 2 * n_out - 1, 2)),
                       c) for j, c in enumerate(wavelet.dec_lo) if c != 0]
        self._out = np.empty(self.out_shape)
        self._tmp = np.empty(self.out_shape)

    def __call__(self, x):
        if not self.direct:
            return pywt.dwt(x, self.wavelet, mode=self.mode, axis=self.axis)[0]
        ext = self._ext
        np.copyto(ext[self._middle], x)
        for region, (columns, weights) in self._borders:
            border = np.tensordot(weights, np.take(x, columns, axis=self.axis),
                                  axes=(1, self.axis))
            np.moveaxis(ext[region], self.axis, 0)[...] = border
        return _accumulate(self._out, self._tmp, [(ext[i], c) for i, c in self._taps])


class Interpolate:
    """Low-pass synthesis along one axis: PyWavelets' ``idwt(cA, None)``, first samples.

    Parameters
    ----------
    shape : tuple of int
        Shape of the input coefficients.
    axis : int
        Normalised axis.
    wavelet : pywt.Wavelet
    mode : str
        PyWavelets signal-extension mode.
    length : int or None
        Number of output samples kept (None: all).
    """

    def __init__(self, shape, axis, wavelet, mode, length):
        self.shape, self.axis, self.wavelet, self.mode = shape, axis, wavelet, mode
        n, size = shape[axis], wavelet.rec_len
        self.direct = _direct(shape, axis, size, mode)
        full = len(pywt.idwt(np.zeros(n), None, wavelet, mode=mode))
        self.length = full if length is None else length
        self.out_shape = _resized(shape, axis, self.length)
        if not self.direct:
            return
        ndim = len(shape)
        # y[2r + p] = sum_q g[2q + p] a[r + size/2 - 1 - q], for the phases p = 0, 1
        self._phases = []
        for p in (0, 1):
            count = len(range(p, self.length, 2))
            taps = [(_index(ndim, axis, slice(size // 2 - 1 - q, size // 2 - 1 - q + count)), c)
                    for q, c in enumerate(wavelet.rec_lo[p::2]) if c != 0]
            self._phases.append((_index(ndim, axis, slice(p, None, 2)),
                                 _index(ndim, axis, slice(0, count)), taps))
        self._out = np.empty(self.out_shape)
        self._tmp = np.empty(_resized(shape, axis, len(range(0, self.length, 2))))

    def __call__(self, a):
        if not self.direct:
            y = pywt.idwt(a, None, self.wavelet, mode=self.mode, axis=self.axis)
            return y[_index(a.ndim, self.axis, slice(0, self.length))]
        for phase, part, taps in self._phases:
            _accumulate(self._out[phase], self._tmp[part], [(a[i], c) for i, c in taps])
        return self._out


def _accumulate(out, tmp, terms):
    """``out = sum(c * x for x, c in terms)``, in place."""
    (first, c), *rest = terms
    np.multiply(first, c, out=out)
    for x, c in rest:
        np.multiply(x, c, out=tmp)
        out += tmp
    return out


def run_steps(steps, x):
    """Apply ``steps`` in turn to ``x``."""
    for step in steps:
        x = step(x)
    return x


def analysis_steps(shape, axis, wavelets, mode):
    """Steps of the analysis along ``axis``, one per level (finest first); output shape."""
    steps = []
    for wavelet in wavelets:
        steps.append(Decimate(shape, axis, wavelet, mode))
        shape = steps[-1].out_shape
    return steps, shape


def synthesis_steps(shape, analysis):
    """Steps undoing the ``analysis`` steps of one axis with zero details; output shape.

    Without periodization, synthesised signals are cut at each level to the length of the
    analysed one (their first samples do not depend on the dropped ones); with it, only at
    the end.
    """
    steps = []
    for step in reversed(analysis):
        keep = None
        if step.mode != "periodization" or step is analysis[0]:
            keep = step.shape[step.axis]
        steps.append(Interpolate(shape, step.axis, step.wavelet, step.mode, keep))
        shape = steps[-1].out_shape
    return steps, shape


def normalize_axes(axis, ndim, max_axes):
    """Tuple of distinct non-negative axes from an int or a tuple of ints."""
    axes = (axis,) if np.ndim(axis) == 0 else tuple(axis)
    if not 1 <= len(axes) <= max_axes:
        raise ValueError(f"axis: expected an int or a tuple of at most {max_axes} ints, "
                         f"got {axis!r}")
    axes = tuple(normalize_axis_index(operator.index(ax), ndim) for ax in axes)
    if len(set(axes)) != len(axes):
        raise ValueError(f"axis: repeated axes in {axis!r}")
    return axes


class IterativeBaseline:
    """Plan of the iterative baseline of Galloway et al. for arrays of one shape.

    Subclasses define :meth:`approximation`, the low-pass projection of an even-length
    signal. Odd-length axes are extended by one sample (edge value) and trimmed back at the
    end. Work buffers are kept between calls.

    Parameters
    ----------
    shape : tuple of int
        Shape of the arrays.
    axes : tuple of int
        Normalised axes of the wavelet transform.
    """

    def __init__(self, shape, axes):
        self.shape = tuple(shape)
        self.axes = axes
        self._pad = [(0, n % 2 if ax in axes else 0) for ax, n in enumerate(self.shape)]
        self.padded_shape = tuple(n + p for n, (_, p) in zip(self.shape, self._pad, strict=True))
        self._crop = tuple(slice(0, n) for n in self.shape)
        self._original = np.empty(self.padded_shape)
        self._signal = np.empty(self.padded_shape)
        self._too_large = np.empty(self.padded_shape, dtype=bool)

    def approximation(self, signal):
        """Approximation of ``signal`` (padded shape), as a new array."""
        raise NotImplementedError

    def __call__(self, array, max_iter, background_regions=None, mask=None):
        """Baseline of ``array`` after ``max_iter`` iterations.

        See :func:`uedflow.baseline.baseline_dwt` for the parameters.
        """
        array = np.asarray(array)
        if array.shape != self.shape:
            raise ValueError(f"array: shape {array.shape} differs from the plan's {self.shape}")
        if not np.isfinite(array).all():
            raise ValueError("array: contains NaN or infinite values")
        max_iter = operator.index(max_iter)
        if max_iter < 1:
            raise ValueError(f"max_iter: at least one iteration is needed, got {max_iter}")
        if mask is not None:
            mask = np.asarray(mask)
            if mask.dtype != bool or mask.shape != self.shape:
                raise ValueError(f"mask: expected a boolean array of shape {self.shape}, "
                                 f"got {mask.dtype} array of shape {mask.shape}")
        regions = [] if background_regions is None else list(background_regions)

        original, signal = self._original, self._signal
        if any(p for _, p in self._pad):
            original[...] = np.pad(array, self._pad, mode="edge")
        else:
            np.copyto(original, array)
        np.copyto(signal, original)
        for index in regions:
            try:
                signal[index] = original[index]
            except (IndexError, TypeError) as error:
                raise ValueError(f"background_regions: {index!r} is not a valid index of an "
                                 f"array of shape {self.padded_shape}: {error}") from None

        too_large = self._too_large
        for _ in range(max_iter):
            for index in regions:
                signal[index] = original[index]
            # The baseline is non-negative and never above the data; the signal is then
            # capped by the baseline, which removes the peaks from the next approximation.
            background = self.approximation(signal)
            np.maximum(background, 0, out=background)
            np.greater(background, original, out=too_large)
            np.copyto(background, signal, where=too_large)
            np.minimum(signal, background, out=signal)

        background = np.array(background[self._crop])
        if mask is not None:
            background[mask] = 0
        return background
