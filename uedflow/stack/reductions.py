"""Per-pixel statistics of stacks in one streaming pass: a chain of :class:`RunningStats`.

Every chunk is reduced to a :class:`~uedflow.image.RunningStats` (two-pass within the chunk),
in parallel, and the chunks' statistics are folded one after another into a running total
with the update of Chan, Golub & LeVeque, which stays accurate when the mean is large
compared with the spread. No stack is materialised and every frame is read once.

A chain rather than a tree: a tree holds up to ``split_every`` partial statistics (several
float64 images each) on every level, so that its memory grows with the logarithm of the
number of chunks; the chain holds the total and the few chunk statistics not yet folded,
whatever the size of the stack. The folds are cheap next to the chunks' statistics.
"""

from functools import partial
from itertools import product

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from ..image import metrics
from ..image.metrics import RunningStats, intensity_bounds, snr_dtype
from .lift import as_stack

__all__ = ["mask_from_collection", "reduce_stack", "snr_from_collection", "stats_reduction"]


def _chunk_stats(block, axis):
    """Statistics of a block over ``axis``, as one RunningStats of the remaining axes."""
    moved = np.moveaxis(block, axis, tuple(range(len(axis))))
    batch = moved.reshape((-1, *moved.shape[len(axis):]))
    return RunningStats(batch.shape[1:], block.dtype).update(batch)


def _fold(total, stats):
    """``stats`` merged into ``total``, in place: the running total of a chain (at first the
    statistics of its first chunk) is used by the next fold only."""
    return total.merge(stats)


def stats_reduction(data, axis, finish, dtype, name):
    """Lazy ``finish(stats)`` of the per-element statistics of ``data`` over ``axis``.

    Parameters
    ----------
    data : dask.array.Array
        Data; any chunks.
    axis : tuple of int
        Axes reduced (the frames); the others are kept, in order.
    finish : callable
        Module-level function (or partial of one) of the merged :class:`RunningStats`,
        returning an array of the kept axes' shape.
    dtype : data-type
        Data type of ``finish``'s result.
    name : str
        Prefix of the graph keys.

    Returns
    -------
    dask.array.Array
        One pass over ``data``: one task per chunk (fused with the chunk's read), then a
        chain of folds per block of the result.
    """
    if data.size == 0:
        raise ValueError("images is empty: no frames to reduce")
    # Keys of one reduction (finish included): a chunk's statistics are used by the folds of
    # their own chain only, so that the folds may merge into them in place.
    token = tokenize(data, axis, finish, dtype)
    out, fold = f"{name}-{token}", f"{name}-fold-{token}"
    ind = tuple(range(data.ndim))
    stats = da.blockwise(_chunk_stats, ind, data, ind, axis=axis, name=f"{name}-chunk-{token}",
                         dtype=object, meta=np.empty((0,) * data.ndim, object))
    kept = [i for i in ind if i not in axis]
    layer = {}
    for index in product(*(range(data.numblocks[i]) for i in kept)):
        chunks = []
        for reduced in product(*(range(data.numblocks[i]) for i in axis)):
            block = dict(zip(kept, index, strict=True)) | dict(zip(axis, reduced, strict=True))
            chunks.append((stats.name, *(block[i] for i in ind)))
        total = chunks[0]
        for step, chunk in enumerate(chunks[1:]):
            layer[(fold, *index, step)] = (_fold, total, chunk)
            total = (fold, *index, step)
        layer[(out, *index)] = (finish, total)
    graph = HighLevelGraph.from_collections(out, layer, dependencies=[stats])
    return da.Array(graph, out, chunks=tuple(data.chunks[i] for i in kept),
                    meta=np.empty((0,) * len(kept), dtype))


def _mean(stats):
    return stats.mean


def _std(stats):
    return stats.std


def _min(stats):
    return stats.min


def _max(stats):
    return stats.max


def _snr_of(stats, fill_value):
    return stats.snr(fill_value)


def _mask_of(stats, low, high, std_thresh):
    rejected = stats.max > high
    if low is not None:
        rejected |= stats.min < low
    if std_thresh is not None:
        rejected |= stats.std > std_thresh
    return rejected


_FINISHERS = {"mean": (_mean, None), "std": (_std, None), "min": (_min, "same"),
              "max": (_max, "same")}


def _mask_finisher(px_thresh, std_thresh):
    low, high = intensity_bounds(px_thresh)
    if std_thresh is not None and not std_thresh >= 0:
        raise ValueError(f"std_thresh must be a number >= 0 or None, got {std_thresh!r}")
    return partial(_mask_of, low=low, high=high, std_thresh=std_thresh)


def reduce_stack(stack, statistic, dim=None, **kwargs):
    """Streaming per-pixel statistic of a stack over some of its dims.

    Parameters
    ----------
    stack : xarray.DataArray
        Stack with dims ``(..., y, x)``.
    statistic : {"mean", "std", "min", "max", "snr", "mask"}
        What to compute; ``"snr"`` takes ``fill_value``, ``"mask"`` takes ``px_thresh``
        and ``std_thresh`` (see :func:`mask_from_collection`).
    dim : str or sequence of str, optional
        Dims reduced. Default: all leading dims (every frame).

    Returns
    -------
    xarray.DataArray
        Lazy, with the dims and coordinates of ``stack`` that are not reduced.
    """
    stack = as_stack(stack, whole_frames=False)
    lead = stack.dims[:-2]
    dims = lead if dim is None else (dim,) if isinstance(dim, str) else tuple(dim)
    unknown = [d for d in dims if d not in stack.dims]
    if unknown:
        raise ValueError(f"dim: {unknown} are not dims of the stack {stack.dims}")
    if statistic == "snr":
        finish, dtype = partial(_snr_of, **kwargs), snr_dtype(stack.dtype)
    elif statistic == "mask":
        finish, dtype = _mask_finisher(**kwargs), np.dtype(bool)
    else:
        finish, same = _FINISHERS[statistic]
        dtype = stack.dtype if same else np.dtype(float)
    axis = tuple(stack.dims.index(d) for d in dims)
    data = stats_reduction(stack.data, axis, finish, dtype, f"stack-{statistic}")
    kept = [d for d in stack.dims if d not in dims]
    coords = {k: v for k, v in stack.coords.items() if set(v.dims) <= set(kept)}
    return xr.DataArray(data, dims=kept, coords=coords, name=statistic)


def _frame_axes(images):
    """Axes of the frames of a dask array: the first (a stack) or none (a single frame)."""
    return (0,) if images.ndim >= 3 else ()


def mask_from_collection(images, px_thresh=(0, 3e4), std_thresh=None):
    """Mask of the bad pixels of a collection; a streaming dask reduction for lazy stacks.

    Parameters
    ----------
    images : xarray.DataArray, dask array, iterable of array_like or array_like
        Frames of identical measurements. A DataArray with dims ``(..., y, x)`` is reduced
        over all its leading dims, a dask array over its first axis (a 2D one is one frame),
        both lazily in one pass; anything else goes to
        :func:`uedflow.image.mask_from_collection`.
    px_thresh : float or iterable of float, optional
        Allowed pixel values ``[min(px_thresh), max(px_thresh)]``; a single number is the
        upper bound only.
    std_thresh : float or None, optional
        Largest allowed standard deviation (``ddof=0``) of a pixel; None for no limit.

    Returns
    -------
    mask : xarray.DataArray, dask array or numpy.ndarray of bool
        **True where a pixel is rejected**; lazy (of the type of ``images``) for lazy input.

    Raises
    ------
    ValueError
        If the collection is empty, ``px_thresh`` is empty or NaN, ``std_thresh`` is negative
        or NaN (at once, before any compute), or the DataArray has no ``y``/``x`` dims.

    Notes
    -----
    For lazy input ``std_thresh`` bounds the standard deviation over the whole collection.
    The frame kernel bounds the running standard deviation after every frame (over the
    first ``j`` frames, for all ``j``), which depends on the order of the frames and cannot
    be merged from chunks in one pass; it rejects every pixel the lazy criterion rejects,
    and possibly more. Without ``std_thresh`` both are identical.
    """
    if isinstance(images, xr.DataArray):
        return reduce_stack(images, "mask", px_thresh=px_thresh, std_thresh=std_thresh)
    if isinstance(images, da.Array):
        return stats_reduction(images, _frame_axes(images),
                               _mask_finisher(px_thresh, std_thresh), bool, "stack-mask")
    return metrics.mask_from_collection(images, px_thresh, std_thresh)


def snr_from_collection(images, fill_value=0.0):
    """Pixelwise signal-to-noise ratio of a collection; a streaming dask reduction for lazy
    stacks.

    Parameters
    ----------
    images : xarray.DataArray, dask array, iterable of array_like or array_like
        Frames of repeated measurements. A DataArray with dims ``(..., y, x)`` is reduced
        over all its leading dims, a dask array over its first axis (a 2D one is one frame),
        both lazily in one pass; anything else goes to
        :func:`uedflow.image.snr_from_collection`.
    fill_value : float, optional
        Value of pixels whose standard deviation is zero.

    Returns
    -------
    snr : xarray.DataArray, dask array or numpy.ndarray
        Mean over standard deviation (``ddof=0``) of each pixel; lazy for lazy input. Float
        input keeps its float type, other input gives float64.

    Raises
    ------
    ValueError
        If the collection is empty, or the DataArray has no ``y``/``x`` dims.
    """
    if isinstance(images, xr.DataArray):
        return reduce_stack(images, "snr", fill_value=fill_value)
    if isinstance(images, da.Array):
        return stats_reduction(images, _frame_axes(images), partial(_snr_of,
                               fill_value=fill_value), snr_dtype(images.dtype), "stack-snr")
    return metrics.snr_from_collection(images, fill_value)

