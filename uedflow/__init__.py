"""uedflow: ultrafast electron diffraction image analysis on lazy, chunked, parallel stacks.

Frame readers are drop-in replacements for scikit-ued's (``from uedflow import diffread``);
:func:`open_stack` opens raw data lazily as a labelled :class:`xarray.DataArray` backed by dask,
and :func:`to_zarr` streams a stack into a compressed zarr v3 store.
"""

from importlib.metadata import PackageNotFoundError, version

from .errors import CorruptFileError, FrameMismatchError, IncompleteStoreError, UedflowError
from .io import (
    ZarrReport,
    diffread,
    dmread,
    imibread,
    mibheader,
    mibread,
    open_stack,
    supported_formats,
    to_zarr,
)

try:
    __version__ = version("uedflow")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "CorruptFileError",
    "FrameMismatchError",
    "IncompleteStoreError",
    "UedflowError",
    "ZarrReport",
    "__version__",
    "diffread",
    "dmread",
    "imibread",
    "mibheader",
    "mibread",
    "open_stack",
    "supported_formats",
    "to_zarr",
]
