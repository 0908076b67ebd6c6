"""Input and output: frame readers, lazy stacks and runs, zarr stores."""

from .lazy import open_stack
from .readers import diffread, dmread, imibread, mibheader, mibread, supported_formats
from .runs import RunFiles, open_run, scan_run
from .zarrstore import ZarrReport, to_zarr

__all__ = [
    "RunFiles",
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
]
