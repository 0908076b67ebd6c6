"""Several lazy results of one stack, computed with the memory of one.

Computed together (``dask.compute(profiles, mask)``, or ``Dataset.to_zarr`` of both), the
results share the tasks that read the stack's chunks, and dask's ordering runs one result
over the whole stack before the other: every chunk read stays in memory until the other
result has used it, so that memory grows with the stack. Computed one after another, each
result is a chain of fused tasks per chunk (read, kernels, reduction) and its memory is that
of a few chunks, whatever the size of the stack; the price is one read of the stack per
result.
"""

import dask

__all__ = ["compute_passes"]


def compute_passes(*results, **kwargs):
    """Compute lazy results one after another, one streaming pass over the stack each.

    Parameters
    ----------
    *results
        Dask collections: lazy DataArrays (e.g. of the ``ued`` accessor), dask arrays, or
        the delayed writes of ``Dataset.to_zarr(..., compute=False)``.
    **kwargs
        Passed to :func:`dask.compute` (e.g. ``scheduler``).

    Returns
    -------
    tuple
        The computed results, in order.

    Examples
    --------
    >>> import numpy as np
    >>> import uedflow
    >>> frames = np.arange(4.0)[:, None, None] * np.ones((4, 8, 8))  # frame i is all i
    >>> stack = uedflow.open_stack(frames, chunks=2)
    >>> mean, top = compute_passes(stack.ued.mean(), stack.ued.max())
    >>> float(mean[0, 0]), float(top[0, 0])
    (1.5, 3.0)
    """
    return tuple(dask.compute(result, **kwargs)[0] for result in results)
