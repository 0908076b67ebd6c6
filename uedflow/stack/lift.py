"""The engine that runs frame kernels over dask-backed stacks.

A stack is an :class:`xarray.DataArray` with dims ``(..., "y", "x")`` whose chunks hold whole
frames. :func:`map_frames` makes one task per chunk that calls a frame kernel on each frame of
the chunk; the kernel's plan travels in the graph once, as one key (:class:`Plans`).
"""

import copy
import threading

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..io.lazy import open_stack

__all__ = ["FRAME_DIMS", "Plans", "as_stack", "frame_labels", "frame_mask", "map_frames",
           "named_error", "per_frame", "wrap"]

#: Dims of one frame, the last two of a stack.
FRAME_DIMS = ("y", "x")


def as_stack(stack, whole_frames=True):
    """``stack`` with dims ``(..., y, x)``, dask-backed, checked before any graph is built.

    Parameters
    ----------
    stack : xarray.DataArray
        Stack of frames with dims ``y`` and ``x`` (moved last if they are not).
    whole_frames : bool, optional
        Require every chunk to hold whole frames (frame kernels do).

    Returns
    -------
    xarray.DataArray
        The stack, transposed to ``(..., y, x)``; a NumPy-backed stack is chunked as
        :func:`uedflow.open_stack` chunks arrays.

    Raises
    ------
    ValueError
        If ``stack`` is not a DataArray with dims ``y`` and ``x``, or (``whole_frames``) if
        its chunks split frames along ``y`` or ``x``: stacks are never rechunked silently.
    """
    if not isinstance(stack, xr.DataArray):
        raise ValueError(f"stack must be an xarray.DataArray, got {type(stack).__name__}")
    if not set(FRAME_DIMS) <= set(stack.dims):
        raise ValueError(f"stack must have the frame dims ('y', 'x'); it has dims {stack.dims}")
    stack = stack.transpose(..., *FRAME_DIMS)
    if not isinstance(stack.data, da.Array):
        stack = open_stack(stack)
    split = [d for d, c in zip(FRAME_DIMS, stack.chunks[-2:], strict=True) if len(c) > 1]
    if whole_frames and split:
        raise ValueError(
            f"stack chunks split frames along {split}; frame kernels need whole frames in "
            "each chunk. Rechunk explicitly, e.g. stack.chunk({'y': -1, 'x': -1})")
    return stack


def frame_mask(mask, shape, name="mask"):
    """``mask`` as a NumPy array of the frame ``shape`` (None stays None), or ValueError."""
    if mask is None:
        return None
    mask = np.asarray(mask.values if isinstance(mask, xr.DataArray) else mask)
    if mask.shape != tuple(shape):
        raise ValueError(f"{name} has shape {mask.shape}, but the frames have shape "
                         f"{tuple(shape)}")
    return mask


def _label_value(value):
    value = value.item() if isinstance(value, np.generic) else value
    return f"{value:g}" if isinstance(value, float) else str(value)


def frame_labels(stack, dims=None):
    """Name of every frame, e.g. ``"delay=0.5, scan=1"``, as an object array of ``dims``
    (default: the leading dims): index coordinates (positions where a dim has none), then
    other 1-D coordinates along those dims (e.g. ``file``)."""
    dims = stack.dims[:-2] if dims is None else tuple(dims)
    shape = tuple(stack.sizes[d] for d in dims)
    parts = []
    for axis, dim in enumerate(dims):
        values = stack.indexes[dim].values if dim in stack.indexes else np.arange(shape[axis])
        parts.append((axis, dim, values))
        parts.extend((axis, name, coord.values) for name, coord in stack.coords.items()
                     if coord.dims == (dim,) and name != dim)
    labels = np.empty(shape, dtype=object)
    for index in np.ndindex(shape):
        labels[index] = ", ".join(f"{name}={_label_value(values[index[axis]])}"
                                  for axis, name, values in parts)
    return labels


class Plans:
    """Plans of one frame kernel for one stack, built once, kept per thread.

    With ``per_frame=False`` the plan ``factory(*args, **kwargs)`` is built at once (on the
    client, so that bad arguments fail before any compute). It pickles as its recipe
    (``factory`` and its arguments: the reference, mask, ... bytes once), and is built again
    where it is unpickled: once per worker process. With ``per_frame=True`` plans
    ``factory(*head, *args, **kwargs)`` are built where used, for the per-frame leading
    arguments ``head`` (e.g. a per-frame centre), and reused while ``head`` stays the same.

    Most plans own work buffers, so each thread uses its own copy (:meth:`get`); a plan
    class that declares ``thread_safe = True`` (its calls write to no buffer of the plan,
    e.g. :class:`uedflow.AzimuthalPlan`) is shared by all threads instead.

    Parameters
    ----------
    factory : callable
        Plan class or function that builds a plan.
    args : tuple, optional
        Positional arguments of ``factory`` (after the per-frame ones).
    kwargs : dict, optional
        Keyword arguments of ``factory``.
    per_frame : bool, optional
        Whether :meth:`get` takes per-frame leading arguments.
    """

    def __init__(self, factory, args=(), kwargs=None, per_frame=False):
        self.recipe = (factory, tuple(args), dict(kwargs or {}), per_frame)
        self.plan = None if per_frame else factory(*args, **self.recipe[2])
        self._local = threading.local()

    def __reduce__(self):
        return Plans, self.recipe

    def __dask_tokenize__(self):
        factory, args, kwargs, per_frame = self.recipe
        return ("uedflow.stack.Plans", f"{factory.__module__}.{factory.__qualname__}",
                dask.base.tokenize(args, kwargs), per_frame)

    def get(self, *head):
        """This thread's plan (for the per-frame arguments ``head``)."""
        if getattr(self.plan, "thread_safe", False):
            return self.plan
        cached = getattr(self._local, "cached", None)
        if cached is not None and _same(cached[0], head):
            return cached[1]
        factory, args, kwargs, per_frame = self.recipe
        plan = factory(*head, *args, **kwargs) if per_frame else copy.deepcopy(self.plan)
        self._local.cached = (head, plan)
        return plan


def _same(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def per_frame(value, stack, extra, name):
    """``value`` broadcast to one per frame: a dask array ``(*leading, *extra sizes)`` chunked
    as the stack's leading dims.

    Parameters
    ----------
    value : xarray.DataArray
        Dims among the stack's leading dims, plus all of ``extra``.
    stack : xarray.DataArray
        Stack ``(..., y, x)``.
    extra : dict
        Trailing dims of ``value`` and their required sizes (e.g. ``{"coord": 2}``).
    name : str
        Argument name for error messages.

    Raises
    ------
    ValueError
        If the dims of ``value`` do not broadcast against the stack's leading dims (unknown
        dims, other sizes or other coordinate values) or ``extra`` is not matched.
    """
    lead = stack.dims[:-2]
    unknown = [d for d in value.dims if d not in lead and d not in extra]
    if unknown:
        raise ValueError(f"{name} has dims {value.dims}; {unknown} are not leading dims of "
                         f"the stack {lead} nor {tuple(extra)}")
    for dim, size in extra.items():
        if value.sizes.get(dim) != size:
            raise ValueError(f"{name} needs a dim '{dim}' of size {size}; it has "
                             f"sizes {dict(value.sizes)}")
    for dim in (d for d in value.dims if d in lead):
        if value.sizes[dim] != stack.sizes[dim]:
            raise ValueError(f"{name} has {value.sizes[dim]} values along '{dim}', the "
                             f"stack {stack.sizes[dim]}")
        if dim in value.indexes and dim in stack.indexes and not value.indexes[dim].equals(
                stack.indexes[dim]):
            raise ValueError(f"{name} has other '{dim}' coordinates than the stack")
    present = [d for d in lead if d in value.dims]
    data = da.asarray(value.transpose(*present, *extra).data)
    chunks = dict(zip(lead, stack.chunks[:-2], strict=True))
    data = data.rechunk(tuple(chunks[d] for d in present) + tuple((n,) for n in extra.values()))
    data = data[tuple(slice(None) if d in value.dims else None for d in lead)]
    return da.broadcast_to(data, tuple(stack.sizes[d] for d in lead) + tuple(extra.values()),
                           chunks=(*stack.chunks[:-2], *((n,) for n in extra.values())))


def named_error(exc, label):
    """``exc`` (same type where it can be) with the frame's name in front of its message."""
    message = f"frame {label}: {exc}"
    try:
        return type(exc)(message)
    except Exception:
        return RuntimeError(f"frame {label}: {type(exc).__name__}: {exc}")


def _whole(block):
    """The one block of a per-frame parameter: blockwise hands over its dims that the result
    does not have as nested lists of their blocks, one each here."""
    while isinstance(block, list):
        (block,) = block
    return block


def _run_block(block, labels, *args, kernel, nparams, out_shape, block_shape, out_dtype):
    """Apply ``kernel(frame, *shared, *params)`` to every frame of a block."""
    params, shared = [_whole(p) for p in args[:nparams]], args[nparams:]
    lead = block.shape[:-2]
    out = np.empty(lead + out_shape, dtype=out_dtype)
    for index in np.ndindex(lead):
        try:
            out[index] = kernel(block[index], *shared, *(p[index] for p in params))
        except Exception as exc:
            raise named_error(exc, labels[index]) from exc
    return out.reshape(lead + block_shape)


def map_frames(stack, func, *shared, params=(), out=None, dtype=float, name="frames"):
    """Lazy ``func(frame, *shared, *frame_params)`` over every frame of ``stack``.

    Parameters
    ----------
    stack : xarray.DataArray
        Stack ``(..., y, x)`` from :func:`as_stack` (whole frames per chunk).
    func : callable
        Module-level function of one frame (pickled by reference).
    *shared
        Objects given to every call (plans, masks); each enters the graph once, as one key.
    params : sequence of dask arrays, optional
        Per-frame arguments ``(*leading, ...)`` chunked as the leading dims (:func:`per_frame`).
    out : dict or None, optional
        Dims and sizes (at most two) of the result of one frame; None for a result of the
        frame's shape (an image), ``{}`` for one object per frame.
    dtype : data-type, optional
        Data type of the result.
    name : str, optional
        Prefix of the graph keys.

    Returns
    -------
    dask.array.Array
        Shape ``(*leading, *out sizes)``, one task per chunk of the stack.
    """
    lead = tuple(f"lead{i}" for i in range(stack.ndim - 2))
    frame_ind = ("frame_y", "frame_x")
    # A result of one frame takes the place of the frame's two dims (padded with length-1
    # dims, dropped at the end): a blockwise task that drops no dim fuses with the kernel
    # before it (align -> azimuthal_average: one task per chunk, no aligned stack held).
    out_shape = tuple(stack.shape[-2:]) if out is None else tuple(out.values())
    block_shape = (*out_shape, 1, 1)[:2]
    labels = da.from_array(frame_labels(stack), chunks=stack.chunks[:-2])
    args = [stack.data, lead + frame_ind, labels, lead]
    for i, param in enumerate(params):
        args += [param, lead + tuple(f"p{i}_{k}" for k in range(param.ndim - len(lead)))]
    for obj in shared:
        args += [obj if obj is None else dask.delayed(obj, pure=True), None]
    data = da.blockwise(
        _run_block, lead + frame_ind, *args, token=name, dtype=dtype,
        adjust_chunks=dict(zip(frame_ind, block_shape, strict=True)),
        meta=np.empty((0,) * (len(lead) + 2), dtype), kernel=func, nparams=len(params),
        out_shape=out_shape, block_shape=block_shape, out_dtype=dtype)
    return data[(..., *[0] * (2 - len(out_shape)))]


def wrap(data, stack, dims=(), coords=None, name=None):
    """DataArray of ``data`` ``(*leading, *dims)`` with the leading dims and coordinates of
    ``stack`` (and ``coords`` of the new dims)."""
    lead = stack.dims[:-2]
    kept = {k: v for k, v in stack.coords.items() if set(v.dims) <= set(lead)}
    return xr.DataArray(data, dims=(*lead, *dims), coords={**kept, **(coords or {})},
                        name=name)
