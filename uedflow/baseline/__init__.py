"""Baseline removal kernels (wavelet and dual-tree complex wavelet), pure NumPy/PyWavelets.

Drop-in for scikit-ued's ``skued.baseline``; the iterative baselines run through plans
(:class:`DWTBaselinePlan`, :class:`DTBaselinePlan`) that keep their filter banks and buffers.
"""

from .dualtree import (
    DTBaselinePlan,
    available_dt_filters,
    available_first_stage_filters,
    baseline_dt,
    dt_first_stage,
    dt_max_level,
    dtcwt,
    idtcwt,
)
from .dwt import DWTBaselinePlan, baseline_dwt

__all__ = [
    "DTBaselinePlan",
    "DWTBaselinePlan",
    "available_dt_filters",
    "available_first_stage_filters",
    "baseline_dt",
    "baseline_dwt",
    "dt_first_stage",
    "dt_max_level",
    "dtcwt",
    "idtcwt",
]
