"""Per-frame image kernels (pure NumPy/SciPy/scikit-image, no dask).

Drop-in for scikit-ued's ``skued.image``. Work that depends only on a reference, mask, centre
or shape lives in plans (:class:`AlignPlan`, :class:`NFoldPlan`, :class:`AzimuthalPlan`,
:class:`RunningStats`) computed once and applied to many frames; the drop-in functions are thin
calls of the same plans. Lifting onto lazy stacks lives in :mod:`uedflow.stack`.
"""

from .alignment import AlignPlan, align, ialign, itrack_peak
from .brillouin import brillouin_zones, brilluoin_zones
from .center import auto_masking, autocenter
from .indexing import bragg_peaks, bragg_peaks_persistence, superlevel_persistence
from .metrics import (
    RunningStats,
    combine_masks,
    isnr,
    mask_from_collection,
    mask_image,
    snr_from_collection,
    triml,
    trimr,
)
from .powder import AzimuthalPlan, azimuthal_average
from .symmetry import NFoldPlan, nfold, reflection

__all__ = [
    "AlignPlan",
    "AzimuthalPlan",
    "NFoldPlan",
    "RunningStats",
    "align",
    "auto_masking",
    "autocenter",
    "azimuthal_average",
    "bragg_peaks",
    "bragg_peaks_persistence",
    "brillouin_zones",
    "brilluoin_zones",
    "combine_masks",
    "ialign",
    "isnr",
    "itrack_peak",
    "mask_from_collection",
    "mask_image",
    "nfold",
    "reflection",
    "snr_from_collection",
    "superlevel_persistence",
    "triml",
    "trimr",
]
