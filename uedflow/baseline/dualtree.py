"""Dual-tree complex wavelet transform (Kingsbury) and the iterative baseline built on it.

The transform runs two real wavelet trees side by side. The first level uses an ordinary
(orthogonal or biorthogonal) wavelet in both trees, offset by one sample between them; the
later levels use Kingsbury's Q-shift filter pairs, whose two members are swapped between the
trees at every level so that the two trees stay a quarter sample apart. Tree ``a`` gives the
real part of the complex coefficients and tree ``b`` the imaginary part.

The Q-shift coefficients (``data/qshift.npz``) come from the ``dtcwt`` package; see
``data/LICENSE-dtcwt-filters.txt``.
"""

import functools
from importlib import resources

import numpy as np
import pywt
from numpy.lib.array_utils import normalize_axis_index

from ._wavelets import (
    IterativeBaseline,
    analysis_steps,
    check_level,
    check_mode,
    normalize_axes,
    run_steps,
    synthesis_steps,
)

__all__ = [
    "DTBaselinePlan",
    "available_dt_filters",
    "available_first_stage_filters",
    "baseline_dt",
    "dt_first_stage",
    "dt_max_level",
    "dtcwt",
    "idtcwt",
]

_QSHIFT_NAMES = ("qshift1", "qshift2", "qshift3", "qshift4", "qshift5", "qshift6")


def available_dt_filters():
    """Names of the Q-shift filter banks usable at levels > 1 of the dual-tree transform.

    Returns
    -------
    names : list of str
        Sorted names, e.g. ``'qshift1'``.
    """
    return sorted(_QSHIFT_NAMES)


def available_first_stage_filters():
    """Names of the wavelets usable at the first level of the dual-tree transform.

    Returns
    -------
    names : list of str
        Sorted names of PyWavelets' discrete wavelets (all but ``'dmey'``).
    """
    return sorted(name for name in pywt.wavelist(kind="discrete") if name != "dmey")


@functools.cache
def _qshift_arrays():
    """All Q-shift filters, read once from the package data."""
    source = resources.files(__package__).joinpath("data", "qshift.npz")
    with source.open("rb") as file, np.load(file) as banks:
        return {key: banks[key] for key in banks.files}


@functools.cache
def _qshift_wavelets(name):
    """Tree-a and tree-b wavelets of the Q-shift bank ``name``."""
    if name not in _QSHIFT_NAMES:
        raise ValueError(f"wavelet: unknown dual-tree filter {name!r}; use one of "
                         f"{', '.join(available_dt_filters())}")
    arrays = _qshift_arrays()

    def tree(t):
        bank = [arrays[f"{name}_{k}{t}"] for k in ("h0", "h1", "g0", "g1")]
        return pywt.Wavelet(name=f"{name}{t}", filter_bank=bank)

    return tree("a"), tree("b")


def dt_first_stage(wavelet):
    """The two first-level wavelets of the dual-tree transform, one sample apart.

    Both are ``wavelet`` with its filters lengthened by two zero taps: tree ``a`` has one
    zero on each side; tree ``b`` has its analysis filters delayed by one sample (two zeros
    in front) and its synthesis filters advanced by one sample (two zeros behind).

    Parameters
    ----------
    wavelet : str or pywt.Wavelet
        One of :func:`available_first_stage_filters`.

    Returns
    -------
    wavelet_a, wavelet_b : pywt.Wavelet

    Raises
    ------
    ValueError
        If ``wavelet`` is not a first-stage wavelet.
    """
    if isinstance(wavelet, pywt.Wavelet):
        return _first_stage(wavelet.name, tuple(map(tuple, wavelet.filter_bank)))
    return _first_stage(wavelet, None)


@functools.cache
def _first_stage(name, filter_bank):
    if name not in available_first_stage_filters():
        raise ValueError(f"first_stage: {name!r} is not a first-stage wavelet; use one of "
                         f"{', '.join(available_first_stage_filters())}")
    if filter_bank is None:
        filter_bank = pywt.Wavelet(name).filter_bank
    dec, rec = filter_bank[:2], filter_bank[2:]
    bank_a = [np.pad(f, (1, 1)) for f in filter_bank]
    bank_b = [np.pad(f, (2, 0)) for f in dec] + [np.pad(f, (0, 2)) for f in rec]
    return (pywt.Wavelet(name=name, filter_bank=bank_a),
            pywt.Wavelet(name=name, filter_bank=bank_b))


def dt_max_level(data, first_stage, wavelet, axis=-1):
    """Maximum useful decomposition level of the dual-tree transform of ``data``.

    Parameters
    ----------
    data : array_like
        Input data.
    first_stage : str
        First-stage wavelet (see :func:`available_first_stage_filters`).
    wavelet : str
        Q-shift filter bank (see :func:`available_dt_filters`).
    axis : int, optional
        Transform axis. Default is -1.

    Returns
    -------
    max_level : int
        ``pywt.dwt_max_level`` of the length along ``axis`` and the Q-shift filter length.
    """
    dt_first_stage(first_stage)
    shape = np.shape(data)
    return _max_level(shape[normalize_axis_index(axis, len(shape))], wavelet)


def _max_level(length, wavelet):
    tree_a, tree_b = _qshift_wavelets(wavelet)
    return pywt.dwt_max_level(length, max(tree_a.dec_len, tree_b.dec_len))


def _trees(first_stage, wavelet):
    """(first-level wavelet, (wavelet of even levels, of odd levels)) of trees a and b."""
    first_a, first_b = dt_first_stage(first_stage)
    q_a, q_b = _qshift_wavelets(wavelet)
    return (first_a, (q_a, q_b)), (first_b, (q_b, q_a))


def _tree_wavelets(tree, level):
    """Wavelet of each level 1..level of one tree."""
    first, pair = tree
    return [first] + [pair[j % 2] for j in range(level - 1)]


def _analysis(data, tree, level, mode, axis):
    wavelets = _tree_wavelets(tree, level)
    details = []
    approx = data
    for wavelet in wavelets:
        approx, detail = pywt.dwt(approx, wavelet, mode=mode, axis=axis)
        details.append(detail)
    return [approx, *reversed(details)]


def _synthesis(coeffs, tree, mode, axis):
    approx, details = coeffs[0], coeffs[1:]
    wavelets = _tree_wavelets(tree, len(details))
    for detail, wavelet in zip(details, reversed(wavelets), strict=True):
        # Coarse approximations may be one sample longer than the matching details.
        keep = [slice(None)] * approx.ndim
        keep[axis] = slice(0, detail.shape[axis])
        approx = pywt.idwt(approx[tuple(keep)], detail, wavelet, mode=mode, axis=axis)
    return approx


def dtcwt(data, first_stage, wavelet, mode="constant", level=None, axis=-1):
    """Dual-tree complex wavelet transform along one axis.

    Parameters
    ----------
    data : array_like
        Input data, of any number of dimensions; even length along ``axis`` (unless
        ``level`` is 0).
    first_stage : str
        First-level wavelet (see :func:`available_first_stage_filters`).
    wavelet : str
        Q-shift filter bank of the levels > 1 (see :func:`available_dt_filters`).
    mode : str, optional
        Signal-extension mode (see ``pywt.Modes.modes``). Default is ``'constant'``.
    level : int or None, optional
        Decomposition level, >= 0. None (default) is :func:`dt_max_level`.
    axis : int, optional
        Transform axis. Default is -1.

    Returns
    -------
    coeffs : list of ndarray
        ``[cA_n, cD_n, ..., cD_1]``: complex approximation coefficients at level ``n``,
        then the complex detail coefficients from the coarsest to the finest level. For
        ``level=0``, the list holds ``data / sqrt(2)`` alone.

    Raises
    ------
    ValueError
        For an invalid ``axis``, ``first_stage``, ``wavelet``, ``mode`` or ``level``, or an
        odd length along ``axis``.

    References
    ----------
    .. [1] N. G. Kingsbury, "Complex wavelets for shift invariant analysis and filtering of
           signals", Appl. Comput. Harmon. Anal. 10, 234-253 (2001).
    .. [2] I. W. Selesnick, R. G. Baraniuk and N. G. Kingsbury, "The dual-tree complex
           wavelet transform", IEEE Signal Process. Mag. 22(6), 123-151 (2005).

    Examples
    --------
    >>> import numpy as np
    >>> from uedflow import dtcwt, idtcwt
    >>> signal = np.random.default_rng(0).normal(size=256)
    >>> coeffs = dtcwt(signal, first_stage="sym6", wavelet="qshift1", level=3)
    >>> len(coeffs)                                   # approximation and 3 detail levels
    4
    >>> bool(np.allclose(idtcwt(coeffs, first_stage="sym6", wavelet="qshift1"), signal))
    True
    """
    data = np.asarray(data, dtype=float)
    axis = normalize_axis_index(axis, data.ndim)
    tree_a, tree_b = _trees(first_stage, wavelet)
    check_mode(mode)
    level = check_level(level)
    if level is None:
        level = dt_max_level(data, first_stage, wavelet, axis=axis)
    data = data / np.sqrt(2)
    if level == 0:
        return [data]
    if data.shape[axis] % 2:
        raise ValueError(f"data: length {data.shape[axis]} along axis {axis} must be even")
    real = _analysis(data, tree_a, level, mode, axis)
    imag = _analysis(data, tree_b, level, mode, axis)
    return [r + 1j * i for r, i in zip(real, imag, strict=True)]


def idtcwt(coeffs, first_stage, wavelet, mode="constant", axis=-1):
    """Inverse of :func:`dtcwt`.

    Parameters
    ----------
    coeffs : list of ndarray
        ``[cA_n, cD_n, ..., cD_1]`` as returned by :func:`dtcwt`.
    first_stage : str
        First-level wavelet used in the forward transform.
    wavelet : str
        Q-shift filter bank used in the forward transform.
    mode : str, optional
        Signal-extension mode. Default is ``'constant'``.
    axis : int, optional
        Transform axis. Default is -1.

    Returns
    -------
    reconstructed : ndarray of float64

    Raises
    ------
    ValueError
        If ``coeffs`` is empty, or for an invalid ``axis``, ``first_stage``, ``wavelet`` or
        ``mode``.
    """
    if len(coeffs) < 1:
        raise ValueError("coeffs: at least one coefficient array is needed, got none")
    if len(coeffs) == 1:
        return np.sqrt(2) * np.asarray(coeffs[0])
    coeffs = [np.asarray(c) for c in coeffs]
    axis = normalize_axis_index(axis, coeffs[0].ndim)
    tree_a, tree_b = _trees(first_stage, wavelet)
    check_mode(mode)
    inverse = _synthesis([c.real for c in coeffs], tree_a, mode, axis)
    inverse += _synthesis([c.imag for c in coeffs], tree_b, mode, axis)
    inverse *= np.sqrt(2) / 2
    return inverse


class DTBaselinePlan(IterativeBaseline):
    """Plan of :func:`baseline_dt` for arrays of one shape.

    Set up once (filters, level, buffers), then called as
    ``plan(array, max_iter, background_regions=None, mask=None)``.

    Parameters
    ----------
    shape : tuple of int
        Shape of the arrays.
    level : int or None, optional
        Decomposition level; None (default) is :func:`dt_max_level`.
    first_stage : str, optional
        First-level wavelet (see :func:`available_first_stage_filters`).
    wavelet : str, optional
        Q-shift filter bank (see :func:`available_dt_filters`).
    mode : str, optional
        Signal-extension mode of the decomposition; ``'periodization'`` is not supported.
    axis : int, optional
        Axis along which the 1D baselines are computed.
    """

    def __init__(self, shape, level=None, first_stage="sym6", wavelet="qshift1",
                 mode="constant", axis=-1):
        axes = normalize_axes(axis, len(shape), max_axes=1)
        super().__init__(shape, axes)
        trees = _trees(first_stage, wavelet)
        check_mode(mode)
        if mode == "periodization":
            raise ValueError("mode: 'periodization' is not supported by baseline_dt")
        level = check_level(level)
        length = self.padded_shape[axes[0]]
        if level is None:
            level = _max_level(length, wavelet)
        self.level = level
        self._trees = []
        for tree in trees if level else ():
            analysis, shape = analysis_steps(self.padded_shape, axes[0],
                                             _tree_wavelets(tree, level), mode)
            self._trees.append(analysis + synthesis_steps(shape, analysis)[0])

    def approximation(self, signal):
        """Mean of the two trees' approximations of an even-length ``signal``.

        The result is a buffer of the plan, overwritten by the next call.
        """
        if self.level == 0:
            return np.array(signal, dtype=float)
        tree_a, tree_b = (run_steps(steps, signal) for steps in self._trees)
        tree_a += tree_b
        tree_a *= 0.5
        return tree_a


def baseline_dt(array, max_iter, level=None, first_stage="sym6", wavelet="qshift1",
                background_regions=None, mask=None, mode="constant", axis=-1):
    """Baseline of 1D signals by the iterative method on the dual-tree complex wavelet transform.

    The iteration of Galloway et al. (see :func:`uedflow.baseline.baseline_dwt`) with the
    approximation of the dual-tree complex wavelet transform, which is nearly
    shift-invariant, as proposed by René de Cotret and Siwick for powder diffraction.

    Parameters
    ----------
    array : array_like
        Data with background; the baseline is computed for every 1D slice along ``axis``.
    max_iter : int
        Number of iterations, at least 1.
    level : int or None, optional
        Decomposition level; None (default) is :func:`dt_max_level`.
    first_stage : str, optional
        First-level wavelet (see :func:`available_first_stage_filters`). Default ``'sym6'``.
    wavelet : str, optional
        Q-shift filter bank (see :func:`available_dt_filters`). Default ``'qshift1'``.
    background_regions : iterable or None, optional
        Indices (ints, slices or tuples of them) of values known to be pure background:
        they are reset to the data at every iteration.
    mask : ndarray of bool or None, optional
        True for invalid values; the baseline is 0 there. Same shape as ``array``.
    mode : str, optional
        Signal-extension mode (see ``pywt.Modes.modes``; not ``'periodization'``).
    axis : int, optional
        Axis of the 1D signals. Default is -1.

    Returns
    -------
    baseline : ndarray of float64
        Baseline, same shape as ``array``.

    Raises
    ------
    ValueError
        For an invalid ``first_stage``, ``wavelet``, ``mode``, ``level``, ``axis``, ``mask``
        or ``background_regions``, ``max_iter`` < 1, or NaN/infinite values in ``array``.

    References
    ----------
    .. [1] C. M. Galloway, E. C. Le Ru and P. G. Etchegoin, "An iterative algorithm for
           background removal in spectroscopy by wavelet transforms", Appl. Spectrosc. 63,
           1370-1376 (2009).
    .. [2] L. P. René de Cotret and B. J. Siwick, "A general method for baseline-removal in
           ultrafast electron powder diffraction data using the dual-tree complex wavelet
           transform", Struct. Dyn. 4, 044004 (2017).
    .. [3] N. G. Kingsbury, "Complex wavelets for shift invariant analysis and filtering of
           signals", Appl. Comput. Harmon. Anal. 10, 234-253 (2001).

    Examples
    --------
    >>> import numpy as np
    >>> from uedflow import baseline_dt
    >>> x = np.linspace(0, 10, 512)
    >>> background = 5 * np.exp(-x / 4)
    >>> signal = background + np.exp(-((x - 3) ** 2) / 0.01) + np.exp(-((x - 7) ** 2) / 0.01)
    >>> baseline = baseline_dt(signal, max_iter=100, level=4)
    >>> at_peaks = np.searchsorted(x, [3, 7])
    >>> print(np.round(signal[at_peaks] - baseline[at_peaks], 1))   # the peaks are 1 high
    [1. 1.]
    """
    array = np.asarray(array)
    plan = DTBaselinePlan(array.shape, level=level, first_stage=first_stage, wavelet=wavelet,
                          mode=mode, axis=axis)
    return plan(array, max_iter, background_regions=background_regions, mask=mask)
