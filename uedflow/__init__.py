"""uedflow: ultrafast electron diffraction image analysis on lazy, chunked, parallel stacks.

Frame readers and kernels are drop-in replacements for scikit-ued's (``from uedflow import
autocenter`` for ``from skued import autocenter``);
:func:`open_stack` opens raw data lazily as a labelled :class:`xarray.DataArray` backed by dask,
and :func:`to_zarr` streams a stack into a compressed zarr v3 store.
"""

from importlib.metadata import PackageNotFoundError, version

try:  # first: modules imported below read it
    __version__ = version("uedflow")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

from .analysis import Lattice, QCalibration, electron_wavelength
from .baseline import (
    DTBaselinePlan,
    DWTBaselinePlan,
    available_dt_filters,
    available_first_stage_filters,
    baseline_dt,
    baseline_dwt,
    dt_first_stage,
    dt_max_level,
    dtcwt,
    idtcwt,
)
from .cluster import connect, slurm_cluster, worker_environment, worker_prologue
from .datasets import (
    beam_block_mask,
    default_center,
    diffraction_pattern,
    hot_pixel_positions,
    make_frame,
    make_run,
)
from .errors import CorruptFileError, FrameMismatchError, IncompleteStoreError, UedflowError
from .image import (
    AlignPlan,
    AzimuthalPlan,
    NFoldPlan,
    RunningStats,
    align,
    auto_masking,
    autocenter,
    azimuthal_average,
    bragg_peaks,
    bragg_peaks_persistence,
    brillouin_zones,
    brilluoin_zones,
    combine_masks,
    ialign,
    isnr,
    itrack_peak,
    mask_image,
    nfold,
    reflection,
    triml,
    trimr,
)
from .io import (
    RunFiles,
    StoreCheck,
    ZarrReport,
    diffread,
    dmread,
    imibread,
    mibheader,
    mibread,
    open_run,
    open_stack,
    scan_run,
    supported_formats,
    to_zarr,
    verify_store,
    writer_lock,
)
from .io.runs import read_delay_table
from .pipeline import (
    ReduceConfig,
    ReducedAccessor,
    StoreReport,
    file_digest,
    follow,
    open_live,
    open_reduced,
    quicklook,
    reduce,
    write_reduced,
)
from .pipeline.config import RunConfig
from .pipeline.export import to_csv
from .stack import UedAccessor, compute_passes, mask_from_collection, snr_from_collection


def __getattr__(name):
    """The browser viewer (bokeh) is imported when first asked for: ``uedflow.serve``."""
    if name == "serve":
        from . import viewer

        return getattr(viewer, name)
    raise AttributeError(f"module 'uedflow' has no attribute {name!r}")


__all__ = [
    "AlignPlan",
    "AzimuthalPlan",
    "CorruptFileError",
    "DTBaselinePlan",
    "DWTBaselinePlan",
    "FrameMismatchError",
    "IncompleteStoreError",
    "Lattice",
    "NFoldPlan",
    "QCalibration",
    "ReduceConfig",
    "ReducedAccessor",
    "RunConfig",
    "RunFiles",
    "RunningStats",
    "StoreCheck",
    "StoreReport",
    "UedAccessor",
    "UedflowError",
    "ZarrReport",
    "__version__",
    "align",
    "auto_masking",
    "autocenter",
    "available_dt_filters",
    "available_first_stage_filters",
    "azimuthal_average",
    "baseline_dt",
    "baseline_dwt",
    "beam_block_mask",
    "bragg_peaks",
    "bragg_peaks_persistence",
    "brillouin_zones",
    "brilluoin_zones",
    "combine_masks",
    "compute_passes",
    "connect",
    "default_center",
    "diffraction_pattern",
    "diffread",
    "dmread",
    "dt_first_stage",
    "dt_max_level",
    "dtcwt",
    "electron_wavelength",
    "file_digest",
    "follow",
    "hot_pixel_positions",
    "ialign",
    "idtcwt",
    "imibread",
    "isnr",
    "itrack_peak",
    "make_frame",
    "make_run",
    "mask_from_collection",
    "mask_image",
    "mibheader",
    "mibread",
    "nfold",
    "open_live",
    "open_reduced",
    "open_run",
    "open_stack",
    "quicklook",
    "read_delay_table",
    "reduce",
    "reflection",
    "scan_run",
    "serve",
    "slurm_cluster",
    "snr_from_collection",
    "supported_formats",
    "to_csv",
    "to_zarr",
    "triml",
    "trimr",
    "verify_store",
    "worker_environment",
    "worker_prologue",
    "write_reduced",
    "writer_lock",
]
