"""Input and output: frame readers, lazy stacks, zarr stores."""

from .lazy import open_stack
from .readers import diffread, dmread, imibread, mibheader, mibread, supported_formats
from .zarrstore import ZarrReport, to_zarr

__all__ = [
    "ZarrReport",
    "diffread",
    "dmread",
    "imibread",
    "mibheader",
    "mibread",
    "open_stack",
    "supported_formats",
    "to_zarr",
]
