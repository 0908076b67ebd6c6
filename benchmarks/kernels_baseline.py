"""Wavelet baselines: uedflow.baseline against scikit-ued.

2D ``baseline_dwt`` on synthetic diffraction frames (the tutorial's hot-pixel settings on a
frame of a quarter of the size, then fewer iterations at full size) and 1D ``baseline_dt`` /
``baseline_dwt`` on powder-profile-sized (1000-sample) signals, single and stacked.
"""

import warnings

import numpy as np
import skued
from _harness import Case, main_for

from uedflow.baseline.dualtree import DTBaselinePlan, baseline_dt
from uedflow.baseline.dwt import DWTBaselinePlan, baseline_dwt
from uedflow.datasets import make_frame


def powder_profiles(n, length=1000, seed=0):
    """``n`` powder-like profiles: diffuse background and Bragg peaks."""
    rng = np.random.default_rng(seed)
    s = np.linspace(0.1, 10, length)
    centres = np.array([1.5, 2.6, 4.1, 5.3, 7.2])
    peaks = np.exp(-((s[None, :] - centres[:, None]) ** 2) / 0.005).sum(axis=0)
    scale = rng.uniform(0.8, 1.2, (n, 1))
    return scale * (20 / (1 + s**2) + 5 * peaks) + 0.1 * rng.random((n, length))


def cases(size):
    warnings.simplefilter("ignore")  # pywt's boundary-effect warnings inside scikit-ued
    small = make_frame((size // 4, size // 4)).astype(float)
    frame = make_frame((size, size)).astype(float)
    iterations = 20 if size <= 1024 else 10
    tutorial = dict(max_iter=250, level=1, wavelet="sym2", axis=(0, 1))
    hotpix = dict(max_iter=iterations, level=1, wavelet="sym2", axis=(0, 1))
    default = dict(max_iter=5, axis=(0, 1))
    plan = DWTBaselinePlan(frame.shape, level=1, wavelet="sym2", axis=(0, 1))
    profile = powder_profiles(1)[0]
    stack = powder_profiles(size // 16)
    dt_plan = DTBaselinePlan(stack.shape)
    return [
        Case("baseline_dwt 2D tutorial", lambda: baseline_dwt(small, **tutorial),
             lambda: skued.baseline_dwt(small, **tutorial),
             f"{size // 4}² frame, max_iter=250, level=1, sym2"),
        Case("baseline_dwt 2D level=1 sym2", lambda: baseline_dwt(frame, **hotpix),
             lambda: skued.baseline_dwt(frame, **hotpix), f"max_iter={iterations}"),
        Case("DWTBaselinePlan 2D level=1 sym2", lambda: plan(frame, iterations),
             lambda: skued.baseline_dwt(frame, **hotpix), "plan reused across frames"),
        Case("baseline_dwt 2D default", lambda: baseline_dwt(frame, **default),
             lambda: skued.baseline_dwt(frame, **default), "sym6, maximum level, max_iter=5"),
        Case("baseline_dt 1D profile", lambda: baseline_dt(profile, 100),
             lambda: skued.baseline_dt(profile, 100), "1000 samples, max_iter=100"),
        Case("baseline_dt 1D stack", lambda: dt_plan(stack, 100),
             lambda: skued.baseline_dt(stack, 100),
             f"({size // 16}, 1000) along axis -1, max_iter=100"),
        Case("baseline_dt 1D stack axis 0", lambda: baseline_dt(stack.T, 100, axis=0),
             lambda: skued.baseline_dt(stack.T, 100, axis=0),
             f"(1000, {size // 16}) along axis 0, max_iter=100"),
        Case("baseline_dwt 1D profile", lambda: baseline_dwt(profile, 100),
             lambda: skued.baseline_dwt(profile, 100), "1000 samples, max_iter=100"),
    ]


if __name__ == "__main__":
    main_for(cases)
