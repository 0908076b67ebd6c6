"""Input and output: frame readers, lazy stacks and runs, zarr stores (written safely:
:mod:`uedflow.io.safety`)."""

from .lazy import open_stack
from .readers import diffread, dmread, imibread, mibheader, mibread, supported_formats
from .runs import RunFiles, open_run, scan_run
from .safety import StoreCheck, verify_store, writer_lock
from .zarrstore import ZarrReport, to_zarr

__all__ = [
    "RunFiles",
    "StoreCheck",
    "ZarrReport",
    "diffread",
    "dmread",
    "imibread",
    "mibheader",
    "mibread",
    "open_run",
    "open_stack",
    "scan_run",
    "supported_formats",
    "to_zarr",
    "verify_store",
    "writer_lock",
]
