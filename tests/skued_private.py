"""scikit-ued's private baseline helpers, as thin adapters over uedflow's plans.

scikit-ued's tests of the baselines import three private functions along with the public
ones; the conformance runner takes all of them from here, so that those tests exercise
uedflow's implementation without uedflow carrying scikit-ued's private names.
"""

import numpy as np

from uedflow.baseline import DTBaselinePlan, DWTBaselinePlan, baseline_dt, baseline_dwt

__all__ = ["_dt_approx_rec", "_dwt_approx_rec", "_dwt_approx_rec2", "baseline_dt",
           "baseline_dwt"]


def _approximation(plan_class, array, axis, **options):
    array = np.asarray(array, dtype=float)
    plan = plan_class(array.shape, axis=axis, **options)
    if plan.padded_shape != array.shape:
        raise ValueError(f"array: even lengths along axis {axis} are required, "
                         f"got shape {array.shape}")
    return plan.approximation(array)


def _dwt_approx_rec(array, level, wavelet, mode, axis):
    axis = axis[0] if np.ndim(axis) > 0 else axis
    return _approximation(DWTBaselinePlan, array, axis, level=level, wavelet=wavelet, mode=mode)


def _dwt_approx_rec2(array, level, wavelet, mode, axis):
    return _approximation(DWTBaselinePlan, array, tuple(axis), level=level, wavelet=wavelet,
                          mode=mode)


def _dt_approx_rec(array, first_stage, wavelet, mode, level, axis=-1):
    return _approximation(DTBaselinePlan, array, axis, level=level, first_stage=first_stage,
                          wavelet=wavelet, mode=mode)
