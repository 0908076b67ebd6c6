"""The one place that lifts frame kernels onto dask-backed xarray stacks.

Importing this package registers the ``ued`` accessor of :class:`xarray.DataArray`
(:class:`UedAccessor`): ``stack.ued.align(...)``, ``stack.ued.azimuthal_average(...)``, ...
:func:`mask_from_collection` and :func:`snr_from_collection` take lazy stacks too, and then
reduce them in one streaming pass. :func:`compute_passes` computes several results of a stack
with the memory of one.
"""

from .accessor import UedAccessor
from .passes import compute_passes
from .reductions import mask_from_collection, snr_from_collection

__all__ = ["UedAccessor", "compute_passes", "mask_from_collection", "snr_from_collection"]
