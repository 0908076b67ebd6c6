"""The mean-square atomic displacement from the Debye–Waller factor of Bragg peaks.

For an isotropic displacement ``u``, a Bragg peak at scattering vector ``q`` (1/Å) is
weakened by the Debye–Waller factor ``exp(-q² ⟨u²⟩ / 3)``; its change from an equilibrium
state gives the change of the mean-square displacement::

    ln(I(t) / I₀) = -q² Δ⟨u²⟩(t) / 3

(``⟨u²⟩`` the three-dimensional mean-square displacement, ``q = 2π / d``). With several peaks,
``Δ⟨u²⟩`` is the weighted least-squares slope of ``-ln(I / I₀)`` against ``q² / 3``.
"""

import numpy as np

__all__ = ["mean_square_displacement"]


def mean_square_displacement(ratio, ratio_error, q, *, intercept=False):
    """``Δ⟨u²⟩`` (Å²) from the intensity ratios ``I / I₀`` of peaks at several ``q``.

    Parameters
    ----------
    ratio, ratio_error : ndarray, shape (..., K)
        ``I / I₀`` of ``K`` peaks (or families of equivalent peaks) and its standard error.
        Peaks with a non-finite or non-positive ratio or error are left out.
    q : array_like, shape (K,)
        Scattering vector of each peak, 1/Å.
    intercept : bool, optional
        Also fit a ``q``-independent term ``a``: ``ln(I / I₀) = a - q² Δ⟨u²⟩ / 3`` (e.g. a
        change of the overall intensity that the normalisation left); default: none.

    Returns
    -------
    msd, msd_error, chi2 : ndarray, shape (...)
        ``Δ⟨u²⟩`` (Å²), its standard error, and the reduced χ² of the fit (NaN without a
        degree of freedom). With ``intercept``, also ``a`` and its error (five arrays).

    Notes
    -----
    ``y = ln(I / I₀)`` has the standard error ``σ_y = σ / (I / I₀)`` (first order);
    weights ``w = 1 / σ_y²``, ``x = q² / 3``: ``Δ⟨u²⟩ = -Σ w x y / Σ w x²`` with the error
    ``1 / sqrt(Σ w x²)`` (without intercept), or the usual two-parameter weighted least
    squares. The errors assume the peaks independent, which they are but for ``I₀`` when it
    and ``I`` share delays (before time zero).

    Examples
    --------
    >>> import numpy as np
    >>> q = np.array([2.0, 3.0, 4.0])
    >>> ratio = np.exp(-q**2 * 0.01 / 3)        # Δ⟨u²⟩ = 0.01 Å²
    >>> msd, error, chi2 = mean_square_displacement(ratio, 0.001 * ratio, q)
    >>> round(float(msd), 6)
    0.01
    """
    ratio = np.asarray(ratio, dtype=float)
    ratio_error = np.asarray(ratio_error, dtype=float)
    x = np.broadcast_to(np.asarray(q, dtype=float) ** 2 / 3, ratio.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.log(ratio)
        w = (ratio / ratio_error) ** 2
    use = np.isfinite(y) & np.isfinite(w) & (w > 0) & (ratio_error > 0)
    w = np.where(use, w, 0.0)
    y = np.where(use, y, 0.0)
    n = use.sum(axis=-1)
    sw, sx, sy = w.sum(-1), (w * x).sum(-1), (w * y).sum(-1)
    sxx, sxy = (w * x * x).sum(-1), (w * x * y).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if not intercept:
            slope = sxy / sxx
            msd, error = -slope, 1 / np.sqrt(sxx)
            chi2 = (w * (y - slope[..., None] * x) ** 2).sum(-1) / (n - 1)
            chi2 = np.where(n > 1, chi2, np.nan)
            return msd, error, chi2
        det = sw * sxx - sx**2
        slope = (sw * sxy - sx * sy) / det
        a = (sxx * sy - sx * sxy) / det
        chi2 = (w * (y - a[..., None] - slope[..., None] * x) ** 2).sum(-1) / (n - 2)
        chi2 = np.where(n > 2, chi2, np.nan)
        return -slope, np.sqrt(sw / det), chi2, a, np.sqrt(sxx / det)
