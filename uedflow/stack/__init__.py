"""The one place that lifts frame kernels onto dask-backed xarray stacks."""
