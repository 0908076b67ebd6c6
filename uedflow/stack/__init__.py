"""The one place that lifts frame kernels onto dask-backed xarray stacks.

Importing this package registers the ``ued`` accessor of :class:`xarray.DataArray`
(:class:`UedAccessor`): ``stack.ued.align(...)``, ``stack.ued.azimuthal_average(...)``, ...
:func:`mask_from_collection` and :func:`snr_from_collection` take lazy stacks too, and then
reduce them in one streaming pass.
"""

from .accessor import UedAccessor
from .reductions import mask_from_collection, snr_from_collection

__all__ = ["UedAccessor", "mask_from_collection", "snr_from_collection"]
