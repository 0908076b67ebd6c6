"""Iterative baseline determination with the discrete wavelet transform (Galloway et al.)."""

from warnings import warn

import numpy as np
import pywt

from ._wavelets import (
    IterativeBaseline,
    analysis_steps,
    check_level,
    check_mode,
    normalize_axes,
    run_steps,
    synthesis_steps,
)

__all__ = ["DWTBaselinePlan", "baseline_dwt"]


def _wavelet(wavelet):
    """A pywt.Wavelet from a name or a Wavelet; ValueError naming the argument otherwise."""
    if isinstance(wavelet, pywt.Wavelet):
        return wavelet
    if wavelet not in pywt.wavelist(kind="discrete"):
        raise ValueError(f"wavelet: unknown discrete wavelet {wavelet!r}; use one of "
                         f"{', '.join(pywt.wavelist(kind='discrete'))}")
    return pywt.Wavelet(wavelet)


class DWTBaselinePlan(IterativeBaseline):
    """Plan of :func:`baseline_dwt` for arrays of one shape.

    The wavelet filters, the decomposition level and the work buffers are set up once; the
    plan is then called as ``plan(array, max_iter, background_regions=None, mask=None)``
    on as many arrays of that shape as needed.

    Parameters
    ----------
    shape : tuple of int
        Shape of the arrays.
    level : int or None, optional
        Decomposition level; None (default) is the maximum level. A level above the maximum
        is lowered to the maximum, with a warning.
    wavelet : str or pywt.Wavelet, optional
        Discrete wavelet (see ``pywt.wavelist(kind='discrete')``).
    mode : str, optional
        Signal-extension mode of the decomposition (see ``pywt.Modes.modes``).
        ``'periodization'`` is supported for 2D baselines only.
    axis : int or 2-tuple of ints, optional
        Axis of a 1D baseline, or the two axes of a 2D baseline.
    """

    def __init__(self, shape, level=None, wavelet="sym6", mode="constant", axis=-1):
        axes = normalize_axes(axis, len(shape), max_axes=2)
        super().__init__(shape, axes)
        wavelet = _wavelet(wavelet)
        check_mode(mode)
        if mode == "periodization" and len(axes) == 1:
            raise ValueError("mode: 'periodization' is only supported for 2D baselines "
                             "(axis given as a 2-tuple)")
        level = check_level(level)
        max_level = pywt.dwt_max_level(min(self.padded_shape[ax] for ax in axes),
                                       wavelet.dec_len)
        if level is None:
            level = max_level
        elif level > max_level:
            warn(f"level: decomposition level {level} is higher than the maximum "
                 f"{max_level}; the maximum is used", stacklevel=3)
            level = max_level
        self.level = level
        self.wavelet = wavelet
        # Analyse the last (contiguous) axis first and synthesise it last: the other axes
        # are then filtered on the smallest arrays.
        shape, analyses = self.padded_shape, []
        for ax in sorted(axes, reverse=True):
            steps, shape = analysis_steps(shape, ax, [wavelet] * level, mode)
            analyses.append(steps)
        self._steps = [step for steps in analyses for step in steps]
        for steps in reversed(analyses):
            steps, shape = synthesis_steps(shape, steps)
            self._steps.extend(steps)

    def approximation(self, signal):
        """Approximation of an even-length ``signal``: detail coefficients set to zero.

        The result is a buffer of the plan, overwritten by the next call.
        """
        if self.level == 0:
            return np.array(signal, dtype=float)
        return run_steps(self._steps, signal)


def baseline_dwt(array, max_iter, level=None, wavelet="sym6", background_regions=None,
                 mask=None, mode="constant", axis=-1):
    """Baseline of a signal or an image by the iterative wavelet method of Galloway et al.

    At each iteration the signal is replaced by the smaller of itself and its wavelet
    approximation (detail coefficients set to zero), so that peaks are progressively
    removed and the approximation converges to the smooth background under them.

    Parameters
    ----------
    array : array_like
        Data with background.
    max_iter : int
        Number of iterations, at least 1.
    level : int or None, optional
        Decomposition level; higher levels give smoother baselines. None (default) is the
        maximum level; a level above the maximum is lowered to it, with a warning.
    wavelet : str or pywt.Wavelet, optional
        Discrete wavelet (see ``pywt.wavelist(kind='discrete')``). Default is ``'sym6'``.
    background_regions : iterable or None, optional
        Indices (ints, slices or tuples of them, as used to index ``array``) of values known
        to be pure background: they are reset to the data at every iteration.
    mask : ndarray of bool or None, optional
        True for invalid pixels (e.g. a beam block); the baseline is 0 there. Same shape as
        ``array``.
    mode : str, optional
        Signal-extension mode (see ``pywt.Modes.modes``). Default is ``'constant'``.
    axis : int or 2-tuple of ints, optional
        Axis of a 1D baseline (computed for every 1D slice along it), or two axes for a 2D
        baseline. Default is -1.

    Returns
    -------
    baseline : ndarray of float64
        Baseline, same shape as ``array``.

    Raises
    ------
    ValueError
        For an unknown ``wavelet`` or ``mode``, a negative ``level``, ``max_iter`` < 1, a
        ``mask`` that is not a boolean array of the shape of ``array``, an invalid index in
        ``background_regions``, invalid axes, or NaN/infinite values in ``array``.

    See Also
    --------
    DWTBaselinePlan : the same, set up once for many arrays of one shape.
    baseline_dt : the same method on the dual-tree complex wavelet transform (1D).

    References
    ----------
    .. [1] C. M. Galloway, E. C. Le Ru and P. G. Etchegoin, "An iterative algorithm for
           background removal in spectroscopy by wavelet transforms", Appl. Spectrosc. 63,
           1370-1376 (2009).

    Examples
    --------
    >>> import numpy as np
    >>> from uedflow import baseline_dwt
    >>> x = np.linspace(0, 10, 512)
    >>> background = 5 * np.exp(-x / 4)
    >>> signal = background + np.exp(-((x - 3) ** 2) / 0.01) + np.exp(-((x - 7) ** 2) / 0.01)
    >>> baseline = baseline_dwt(signal, max_iter=100, level=4)
    >>> at_peaks = np.searchsorted(x, [3, 7])
    >>> print(np.round(signal[at_peaks] - baseline[at_peaks], 1))   # the peaks are 1 high
    [0.8 0.7]
    """
    array = np.asarray(array)
    plan = DWTBaselinePlan(array.shape, level=level, wavelet=wavelet, mode=mode, axis=axis)
    return plan(array, max_iter, background_regions=background_regions, mask=mask)
