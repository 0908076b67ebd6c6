"""From a reduced run to physics: ``q`` calibration, lattices and indexing, dynamics fits and
time zero, region means, Bragg-peak integration, Debye–Waller.

Pure NumPy/SciPy kernels (no dask, no xarray): the ``.ued`` accessor of reduced Datasets
(:class:`uedflow.pipeline.ReducedAccessor`) applies them lazily to reduced stores. See
``docs/analysis.md``.
"""

from .calibration import QCalibration, electron_wavelength
from .debye_waller import mean_square_displacement
from .dynamics import (
    FitResult,
    exponential_model,
    find_time_zero,
    fit_exponentials,
    onset,
    relative_change,
)
from .lattice import Lattice, index_peaks, read_cif_cell
from .regions import (
    annulus_pixels,
    bragg_regions,
    equivalent_groups,
    integration_weights,
    refine_peaks,
    region_means,
    weighted_sums,
    zone_regions,
)

__all__ = [
    "FitResult",
    "Lattice",
    "QCalibration",
    "annulus_pixels",
    "bragg_regions",
    "electron_wavelength",
    "equivalent_groups",
    "exponential_model",
    "find_time_zero",
    "fit_exponentials",
    "index_peaks",
    "integration_weights",
    "mean_square_displacement",
    "onset",
    "read_cif_cell",
    "refine_peaks",
    "region_means",
    "relative_change",
    "weighted_sums",
    "zone_regions",
]
