"""Dynamics of a trace against delay: exponential rises convolved with the instrument response,
time zero, relative changes and their errors.

The model of :func:`fit_exponentials`, for ``n`` = 1 or 2 exponentials::

    y(t) = offset + Σ_k A_k [S(t - t0) - E_k(t - t0)]

with ``S = H ⊗ G`` the unit step convolved with the Gaussian instrument response ``G`` of
standard deviation ``σ`` (full width at half maximum ``fwhm = 2 sqrt(2 ln 2) σ``) and
``E_k = (H e^{-t/τ_k}) ⊗ G``, both in closed form::

    S(t)   = erfc(-t / (σ √2)) / 2
    E_k(t) = exp(σ² / (2 τ_k²) - t / τ_k) erfc((σ² / τ_k - t) / (σ √2)) / 2

Each term rises from 0 before time zero to ``A_k`` after it (``1 - e^{-t/τ_k}`` without
instrument response); amplitudes of opposite signs make a rise and a recovery. ``E_k`` is
evaluated as ``exp(-t² / 2σ²) erfcx(x) / 2`` where its exponential would overflow.
"""

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import curve_fit
from scipy.special import erfc, erfcx

__all__ = ["FitResult", "exponential_model", "find_time_zero", "fit_exponentials",
           "onset", "relative_change"]

#: FWHM of a Gaussian over its standard deviation.
FWHM_PER_SIGMA = 2 * math.sqrt(2 * math.log(2))
_ROOT2 = math.sqrt(2)


def _step(t, sigma):
    if sigma == 0:
        return np.where(t > 0, 1.0, np.where(t == 0, 0.5, 0.0))
    return 0.5 * erfc(-t / (sigma * _ROOT2))


def _decay(t, sigma, tau):
    if sigma == 0:
        return np.where(t >= 0, np.exp(-np.maximum(t, 0) / tau), 0.0) * np.where(
            t == 0, 0.5, 1.0)
    x = (sigma / tau - t / sigma) / _ROOT2
    with np.errstate(over="ignore", under="ignore"):
        scaled = 0.5 * np.exp(-0.5 * (t / sigma) ** 2) * erfcx(np.maximum(x, 0))
        direct = 0.5 * np.exp(0.5 * (sigma / tau) ** 2 - t / tau) * erfc(np.minimum(x, 0))
    return np.where(x >= 0, scaled, direct)


def exponential_model(t, t0, fwhm, amplitudes, taus, offset=0.0):
    """The model of the module: ``offset + Σ A_k [S - E_k](t - t0)``.

    Parameters
    ----------
    t : array_like
        Delays, ps.
    t0 : float
        Time zero, ps.
    fwhm : float
        Full width at half maximum of the Gaussian instrument response, ps (0: none).
    amplitudes, taus : sequence of float
        Amplitude and time constant (ps, > 0) of each exponential.
    offset : float, optional
        Level before time zero.

    Returns
    -------
    ndarray

    Examples
    --------
    >>> import numpy as np
    >>> exponential_model(np.array([-1.0, 0.0, 1.0]), 0.0, 0.0, [2.0], [1.0]).round(4)
    array([0.    , 0.    , 1.2642])
    """
    t = np.asarray(t, dtype=float) - t0
    sigma = fwhm / FWHM_PER_SIGMA
    step = _step(t, sigma)
    out = np.full(t.shape, float(offset))
    for amplitude, tau in zip(amplitudes, taus, strict=True):
        out += amplitude * (step - _decay(t, sigma, tau))
    return out


@dataclass
class FitResult:
    """A fit of :func:`fit_exponentials`: parameters, standard errors, reduced χ².

    Attributes
    ----------
    names : list of str
        Parameter names: ``t0``, ``fwhm``, ``amplitude``, ``tau`` (and ``amplitude2``,
        ``tau2`` for two exponentials), ``offset``; fixed ones too.
    values, errors : dict
        Value and standard error of each parameter (error 0 for a fixed parameter).
    covariance : ndarray
        Covariance of the free parameters, in the order of ``free``.
    free : list of str
        The fitted parameters.
    chi2 : float
        Reduced χ²: ``Σ ((y - model) / error)² / dof``.
    dof : int
        Degrees of freedom: points minus free parameters.
    scaled : bool
        True if the errors were scaled by ``sqrt(chi2)`` (``absolute_errors=False``, or no
        errors given).

    Examples
    --------
    >>> import numpy as np
    >>> t = np.linspace(-2, 10, 60)
    >>> y = exponential_model(t, 0.3, 0.2, [0.1], [1.5])
    >>> fit = fit_exponentials(t, y + 1e-4 * np.cos(7 * t), np.full(t.size, 1e-4))
    >>> round(fit["tau"], 2), round(fit["t0"], 2)
    (1.5, 0.3)
    """

    names: list
    values: dict
    errors: dict
    covariance: np.ndarray
    free: list
    chi2: float
    dof: int
    scaled: bool = False
    n: int = 1
    extra: dict = field(default_factory=dict)

    def __getitem__(self, name):
        return self.values[name]

    def __call__(self, t):
        """The fitted model at delays ``t``."""
        v = self.values
        amplitudes = [v["amplitude"]] + ([v["amplitude2"]] if self.n == 2 else [])
        taus = [v["tau"]] + ([v["tau2"]] if self.n == 2 else [])
        return exponential_model(t, v["t0"], v["fwhm"], amplitudes, taus, v["offset"])

    def to_dict(self):
        """``{name: value, name_error: error, ..., "chi2": .., "dof": ..}``, JSON-ready."""
        out = {}
        for name in self.names:
            out[name] = float(self.values[name])
            out[f"{name}_error"] = float(self.errors[name])
        return {**out, "chi2": float(self.chi2), "dof": int(self.dof),
                "fixed": [n for n in self.names if n not in self.free]}

    def __str__(self):
        lines = [f"{name:10s} = {self.values[name]:.6g} ± {self.errors[name]:.2g}"
                 + ("" if name in self.free else " (fixed)") for name in self.names]
        lines.append(f"reduced χ² = {self.chi2:.3g} ({self.dof} degrees of freedom)")
        return "\n".join(lines)


def _check_trace(delay, values, errors):
    delay = np.asarray(delay, dtype=float).ravel()
    values = np.asarray(values, dtype=float).ravel()
    if delay.shape != values.shape:
        raise ValueError(f"delay and values differ in length: {delay.size} and {values.size}")
    if errors is not None:
        errors = np.asarray(errors, dtype=float).ravel()
        if errors.shape != values.shape:
            raise ValueError(f"errors and values differ in length: {errors.size} and "
                             f"{values.size}")
    use = np.isfinite(delay) & np.isfinite(values)
    if errors is not None:
        use &= np.isfinite(errors) & (errors > 0)
    return delay[use], values[use], (None if errors is None else errors[use])


def onset(delay, values, fraction=0.5):
    """Rough time zero of a trace: where it first crosses a ``fraction`` of its largest
    excursion from its level at the earliest delays (linear interpolation between delays).

    Parameters
    ----------
    delay, values : array_like
        The trace; NaN values are left out.
    fraction : float, optional
        Fraction of the excursion, in (0, 1].

    Returns
    -------
    float
        Delay of the crossing, ps.

    Raises
    ------
    ValueError
        If fewer than 3 finite points remain.

    Examples
    --------
    >>> onset([-2, -1, 0, 1, 2, 3], [0, 0, 0, 1, 1, 1])
    0.5
    """
    delay, values, _ = _check_trace(delay, values, None)
    if delay.size < 3:
        raise ValueError(f"a trace of {delay.size} finite points has no onset")
    order = np.argsort(delay)
    delay, values = delay[order], values[order]
    early = values[: max(2, delay.size // 5)]
    level = float(np.median(early))
    excursion = values - level
    peak = int(np.argmax(np.abs(excursion)))
    half = fraction * excursion[peak]
    crossed = np.flatnonzero(np.abs(excursion[: peak + 1]) >= abs(half))[0]
    if crossed == 0:
        return float(delay[0])
    a, b = excursion[crossed - 1], excursion[crossed]
    fraction = (half - a) / (b - a) if b != a else 1.0
    return float(delay[crossed - 1] + fraction * (delay[crossed] - delay[crossed - 1]))


def fit_exponentials(delay, values, errors=None, *, n=1, irf=None, t0=None,
                     absolute_errors=True):
    """Fit a trace to one or two exponentials convolved with a Gaussian instrument response.

    Parameters
    ----------
    delay : array_like
        Delays, ps.
    values : array_like
        The trace (e.g. a ΔI/I, an intensity or ⟨Δu²⟩); NaN points are left out.
    errors : array_like, optional
        Standard error of each value. Without them, every point weighs the same and the
        parameters' errors come from the scatter about the fit.
    n : {1, 2}, optional
        Number of exponentials.
    irf : float, optional
        FWHM of the instrument response (ps), fixed; default: fitted.
    t0 : float, optional
        Time zero (ps), fixed; default: fitted, starting from :func:`onset`.
    absolute_errors : bool, optional
        True (default): the parameters' errors follow from ``errors`` as they are (the
        reduced χ² then tells whether the model and the errors agree); False: scaled by
        ``sqrt(chi2)``, as if the errors were known only up to a factor.

    Returns
    -------
    FitResult

    Raises
    ------
    ValueError
        If ``n`` is not 1 or 2, the trace has fewer points than free parameters plus one, or
        no fit converges.

    Notes
    -----
    Least squares (:func:`scipy.optimize.curve_fit`, trust-region reflective) from several
    starting points (time constants across the delays' range; for two exponentials, the
    one-exponential fit split into a fast and a slow part, of equal or opposite signs); the
    best χ² wins. Errors are the square roots of the diagonal of the covariance (the inverse
    of the Hessian of χ² / 2 at the minimum). Bounds: time constants between a thousandth
    and ten times the delays' range, the FWHM between 0 and the range, ``t0`` within the
    delays. When the FWHM ends at 0 (the delays do not resolve the instrument response), it
    is fixed there and the fit is made again: a parameter at a bound has no standard error
    (``extra["at_bound"]`` lists it).
    """
    if n not in (1, 2):
        raise ValueError(f"n must be 1 or 2 exponentials, got {n!r}")
    delay, values, errors = _check_trace(delay, values, errors)
    names = ["t0", "fwhm", "amplitude", "tau"] + (["amplitude2", "tau2"] if n == 2 else []) \
        + ["offset"]
    fixed = {name: float(value) for name, value in (("t0", t0), ("fwhm", irf))
             if value is not None}
    if fixed.get("fwhm", 0) < 0:
        raise ValueError(f"irf must be a FWHM >= 0 (ps), got {irf}")
    free = [name for name in names if name not in fixed]
    if delay.size < len(free) + 1:
        raise ValueError(f"a fit of {len(free)} parameters needs at least {len(free) + 1} "
                         f"finite points with positive errors, got {delay.size}")
    span = float(np.ptp(delay)) or 1.0
    step = float(np.median(np.diff(np.unique(delay))))
    if n == 1:
        start_t0 = fixed.get("t0", onset(delay, values, 0.2))
        before = values[delay < start_t0]
        offset = float(np.mean(before)) if before.size else float(values[0])
        amplitude = float(np.mean(values[delay >= np.quantile(delay, 0.8)])) - offset
        base = {"t0": start_t0, "fwhm": fixed.get("fwhm", max(step, 1e-2 * span)),
                "offset": offset, "amplitude": amplitude}
        starts = [{**base, "tau": tau}
                  for tau in np.geomspace(max(step, 2e-3 * span), span / 3, 3)]
    else:
        one = fit_exponentials(delay, values, errors, n=1, irf=irf, t0=t0).values
        tau, amplitude = one["tau"], one["amplitude"]
        starts = [{**one, "tau": fast, "tau2": slow, "amplitude": share * amplitude,
                   "amplitude2": (1 - share) * amplitude}
                  for fast, slow, share in ((tau / 3, 3 * tau, 0.5), (tau / 5, 2 * tau, 1.5),
                                            (tau, 10 * tau, 0.8), (tau / 2, 5 * tau, -0.5))]
    chi2, p, cov = _best_fit(delay, values, errors, n, free, fixed, starts, span)
    if "fwhm" in free and p[free.index("fwhm")] <= 1e-6 * span:
        # no measurable instrument response: at its bound, the FWHM is fixed at 0 (its
        # error is not defined, and the covariance of a parameter at a bound is not either)
        fit = fit_exponentials(delay, values, errors, n=n, irf=0.0, t0=t0,
                               absolute_errors=absolute_errors)
        fit.extra["at_bound"] = ["fwhm"]
        return fit
    dof = delay.size - len(free)
    reduced = chi2 / dof if dof > 0 else math.nan
    scaled = errors is None or not absolute_errors
    if scaled and errors is not None and dof > 0:
        cov = cov * reduced
    if n == 2 and p[free.index("tau")] > p[free.index("tau2")]:  # the fast one first
        order = list(range(len(free)))
        for a, b in (("tau", "tau2"), ("amplitude", "amplitude2")):
            i, j = free.index(a), free.index(b)
            order[i], order[j] = order[j], order[i]
        p, cov = p[order], cov[np.ix_(order, order)]
    fitted = {**fixed, **dict(zip(free, p.tolist(), strict=True))}
    stderr = dict(zip(free, np.sqrt(np.clip(np.diag(cov), 0, None)).tolist(), strict=True))
    return FitResult(names, {k: fitted[k] for k in names},
                     {k: stderr.get(k, 0.0) for k in names}, cov, free, reduced, dof, scaled, n)


def _best_fit(delay, values, errors, n, free, fixed, starts, span):
    """The least-squares fit of the lowest χ² from the ``starts``: ``(chi2, p, cov)``."""
    lower = {"t0": delay.min(), "fwhm": 0.0, "tau": 1e-3 * span, "tau2": 1e-3 * span}
    upper = {"t0": delay.max(), "fwhm": span, "tau": 10 * span, "tau2": 10 * span}
    lo = [lower.get(name, -np.inf) for name in free]
    hi = [upper.get(name, np.inf) for name in free]

    def model(t, *p):
        v = {**fixed, **dict(zip(free, p, strict=True))}
        amplitudes = [v["amplitude"]] + ([v["amplitude2"]] if n == 2 else [])
        taus = [v["tau"]] + ([v["tau2"]] if n == 2 else [])
        return exponential_model(t, v["t0"], v["fwhm"], amplitudes, taus, v["offset"])

    best = None
    for start in starts:
        p0 = np.clip([start[name] for name in free], lo, hi)
        try:
            with np.errstate(all="ignore"):
                p, cov = curve_fit(model, delay, values, p0=p0, sigma=errors,
                                   absolute_sigma=errors is not None, bounds=(lo, hi),
                                   max_nfev=2000 * len(free))
        except (RuntimeError, ValueError):
            continue
        residual = (values - model(delay, *p)) / (1.0 if errors is None else errors)
        chi2 = float(residual @ residual)
        if np.isfinite(chi2) and (best is None or chi2 < best[0]):
            best = (chi2, p, cov)
    if best is None:
        raise ValueError("no fit converged; give t0 or irf, or check the trace")
    return best


def find_time_zero(delay, values, errors=None, *, irf=None):
    """Time zero of a trace, from the data: the ``t0`` of a one-exponential fit.

    Parameters
    ----------
    delay, values, errors, irf
        As for :func:`fit_exponentials`.

    Returns
    -------
    t0, t0_error : float
        Time zero and its standard error, ps, in the frame of ``delay``.

    Examples
    --------
    >>> import numpy as np
    >>> t = np.linspace(-3, 8, 45)
    >>> y = exponential_model(t, -0.4, 0.3, [-0.05], [2.0])
    >>> t0, error = find_time_zero(t, y + 2e-4 * np.sin(5 * t), np.full(t.size, 2e-4))
    >>> round(t0, 2)
    -0.4
    """
    fit = fit_exponentials(delay, values, errors, irf=irf)
    return fit["t0"], fit.errors["t0"]


def relative_change(values, errors, reference, reference_error, covariance=0.0):
    """``values / reference - 1`` and its standard error, to first order.

    Parameters
    ----------
    values, errors : array_like
        Values and their standard errors.
    reference, reference_error : array_like
        The reference (broadcast against ``values``) and its standard error. A reference of
        0 gives NaN.
    covariance : array_like, optional
        Covariance of each value with the reference: ``errors**2 / n`` for a value that is
        one of the ``n`` whose mean is the reference, 0 (default) for the others.

    Returns
    -------
    change, change_error : ndarray

    Examples
    --------
    >>> change, error = relative_change(110.0, 1.0, 100.0, 0.0)
    >>> float(change), float(error)
    (0.10000000000000009, 0.01)
    """
    values, errors = np.asarray(values, dtype=float), np.asarray(errors, dtype=float)
    reference = np.asarray(reference, dtype=float)
    reference = np.where(reference != 0, reference, np.nan)
    reference_error = np.asarray(reference_error, dtype=float)
    r2 = reference**2
    variance = (errors**2 / r2 + values**2 * reference_error**2 / r2**2
                - 2 * values / (r2 * reference) * covariance)
    return values / reference - 1, np.sqrt(np.maximum(variance, 0))
