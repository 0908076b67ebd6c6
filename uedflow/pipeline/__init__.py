"""Run reductions: stack operations composed into a resumable raw-run → zarr pipeline.

Importing this package registers the ``ued`` accessor of :class:`xarray.Dataset`
(:class:`ReducedAccessor`): ``reduced.ued.time_series(...)``.
"""

from .accessor import ReducedAccessor
from .config import ReduceConfig
from .live import follow, open_live
from .quicklook import quicklook
from .reduce import file_digest, reduce
from .store import StoreReport, open_reduced, write_reduced

__all__ = [
    "ReduceConfig",
    "ReducedAccessor",
    "StoreReport",
    "file_digest",
    "follow",
    "open_live",
    "open_reduced",
    "quicklook",
    "reduce",
    "write_reduced",
]
