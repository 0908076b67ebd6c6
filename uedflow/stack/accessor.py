"""The ``ued`` accessor: scikit-ued's frame analyses on lazy, labelled stacks.

``stack.ued.align(...)``, ``stack.ued.azimuthal_average(...)``, ... on a
:class:`xarray.DataArray` with dims ``(..., "y", "x")`` (as :func:`uedflow.open_stack` returns)
build lazy dask graphs: nothing is read or computed until the result is. Results keep the
leading dims and coordinates (``delay``, ``scan``, ...) of the stack.
"""

import itertools
import operator
from functools import partial

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..baseline import DTBaselinePlan, DWTBaselinePlan
from ..image._validate import check_mask
from ..image.alignment import DEFAULT_UPSAMPLE_FACTOR, AlignPlan
from ..image.center import autocenter
from ..image.indexing import bragg_peaks
from ..image.powder import AzimuthalPlan
from ..image.symmetry import NFoldPlan
from .lift import Plans, as_stack, frame_labels, frame_mask, map_frames, per_frame, wrap
from .reductions import reduce_stack

__all__ = ["UedAccessor"]

#: Labels of the ``coord`` dim of centres, and of the ``shift`` dim of shifts.
ROW_COL = ["row", "col"]


def _valid_mask(mask, shape):
    """A boolean frame mask (True on valid pixels) with a valid pixel, or None."""
    mask = frame_mask(mask, shape)
    if mask is None:
        return None
    return check_mask(mask, shape)


def _xy(center):
    """A centre ``(row, col)`` as the ``(x, y)`` of the frame kernels (None stays None)."""
    if center is None:
        return None
    values = np.asarray(center)
    if values.shape != (2,) or values.dtype.kind not in "iuf" or not np.isfinite(values).all():
        raise ValueError(f"center must be (row, col): two finite numbers, or a DataArray with "
                         f"a dim 'coord' labelled ('row', 'col'); got {center!r}")
    return (float(values[1]), float(values[0]))


def _centers(center, stack, order):
    """Per-frame centres from a DataArray with a ``coord`` dim labelled row/col, in ``order``."""
    if "coord" not in center.indexes or set(center.indexes["coord"]) != set(ROW_COL):
        raise ValueError("center as a DataArray needs a dim 'coord' labelled ('row', 'col'), "
                         f"as ued.autocenter() returns; it has dims {center.dims}")
    return per_frame(center.sel(coord=order), stack, {"coord": 2}, "center")


def _autocenter_frame(frame, mask, *, normalize_bg):
    return autocenter(frame, mask, normalize_bg)


def _shift_frame(frame, plans, *reference):
    return plans.get(*reference).shift(frame)


def _align_frame(frame, plans, *reference, fill_value):
    return plans.get(*reference).align(frame, fill_value)


def _nfold_plan(center, shape, mod, mask, fill_value):
    return NFoldPlan(shape, mod, center, mask, fill_value)


def _nfold_frame(frame, plans, *center):
    return plans.get(*center)(frame)


def _azimuthal_plan(center, shape, mask, angular_bounds, trim):
    return AzimuthalPlan(shape, center, mask, angular_bounds, trim)


def _azimuthal_frame(frame, plans, *center, start, size):
    radius, average = plans.get(*center)(frame)
    out = np.zeros(size)
    out[radius - start] = average
    return out


def _bragg_frame(frame, mask, center, *, min_dist):
    peaks = bragg_peaks(frame, mask, center, min_dist)
    return np.array(peaks, dtype=float).reshape(-1, 2)


def _baseline_block(block, labels, plans, mask, *, max_iter, regions):
    plans = plans[block.shape]
    mask = None if mask is None else np.broadcast_to(mask, block.shape)
    try:
        return plans.get()(block, max_iter, background_regions=regions, mask=mask)
    except Exception as exc:
        failed = exc
    # Name the first profile that fails on its own.
    factory, _, kwargs, _ = plans.recipe
    profile = factory(block.shape[labels.ndim:], **kwargs)
    for index in np.ndindex(labels.shape):
        try:
            profile(block[index], max_iter, background_regions=regions,
                    mask=None if mask is None else mask[index])
        except Exception as exc:
            raise type(failed)(f"frame {labels[index]}: {exc}") from exc
    raise failed


@xr.register_dataarray_accessor("ued")
class UedAccessor:
    """Frame analyses of a stack ``(..., y, x)``, lazily over all its frames.

    Every method builds a dask graph at once, checks its arguments (a bad mask, reference or
    centre raises ``ValueError`` before any compute), and returns a lazy
    :class:`xarray.DataArray` with the leading dims and coordinates of the stack. Chunks must
    hold whole frames (as :func:`uedflow.open_stack` makes them); they are never rechunked.
    A plan of the frame kernel is built once per call and enters the graph once; a frame on
    which a kernel fails is named in the error (``frame delay=0.5, scan=1: ...``).

    Centres and references are either one value for all frames or DataArrays with some of
    the stack's leading dims (one per frame, broadcast over the others); centres as
    DataArrays have a ``coord`` dim labelled ``("row", "col")``, as :meth:`autocenter`
    returns.

    Every centre taken or returned is ``(row, col)``, as :meth:`autocenter` returns it, also
    in :meth:`nfold` and :meth:`azimuthal_average`: only the scikit-ued drop-in functions
    (:func:`uedflow.nfold`, :func:`uedflow.azimuthal_average`) take ``(x, y)`` = ``(col, row)``.
    """

    def __init__(self, obj):
        self._obj = obj

    def _stack(self):
        return as_stack(self._obj)

    def autocenter(self, mask=None, normalize_bg=True):
        """Centre of every frame, from its inversion symmetry (:func:`uedflow.autocenter`).

        Parameters
        ----------
        mask : array_like of bool, shape (y, x), optional
            True on valid pixels.
        normalize_bg : bool, optional
            Divide out the slowly varying background first.

        Returns
        -------
        xarray.DataArray
            Dims ``(..., "coord")``, ``coord = ["row", "col"]``, float64.
        """
        stack = self._stack()
        mask = _valid_mask(mask, stack.shape[-2:])
        data = map_frames(stack, partial(_autocenter_frame, normalize_bg=bool(normalize_bg)),
                          mask, out={"coord": 2}, name="autocenter")
        return wrap(data, stack, ("coord",), {"coord": ROW_COL}, "center")

    def _align_plans(self, stack, reference, mask, upsample_factor, max_shift):
        """Plans and per-frame references of a registration."""
        shape = stack.shape[-2:]
        mask = frame_mask(mask, shape)
        mask = check_mask(mask, shape)
        options = {"upsample_factor": upsample_factor, "max_shift": max_shift}
        AlignPlan(np.zeros((2, 2)), **options)  # checks the options before any compute
        if isinstance(reference, xr.DataArray) and set(reference.dims) - {"y", "x"}:
            references = per_frame(reference, stack, dict(zip(("y", "x"), shape, strict=True)),
                                   "reference")
            return Plans(AlignPlan, (mask,), options, per_frame=True), (references,)
        if reference is None:
            reference = stack.data[(0,) * (stack.ndim - 2)]
        elif isinstance(reference, xr.DataArray):
            reference = reference.transpose("y", "x").data
        else:
            reference = np.asarray(reference)
        if reference.shape != shape:
            raise ValueError(f"reference has shape {reference.shape}, the frames {shape}")
        if isinstance(reference, da.Array):  # built once, by one task, when computed
            reference = reference.rechunk(-1).to_delayed(optimize_graph=False).item()
            return dask.delayed(Plans, pure=True)(AlignPlan, (reference, mask), options), ()
        return Plans(AlignPlan, (reference, mask), options), ()

    def shifts(self, reference=None, mask=None, *, upsample_factor=DEFAULT_UPSAMPLE_FACTOR,
               max_shift=None):
        """Shift ``(row, col)`` that moves every frame onto a reference (see
        :class:`uedflow.AlignPlan`).

        Parameters
        ----------
        reference : array_like or xarray.DataArray, optional
            Reference frame ``(y, x)``, or DataArray of references per frame (dims among the
            leading dims, and ``y``, ``x``). Default: the first frame.
        mask : array_like of bool, shape (y, x), optional
            True on valid pixels (masked normalized cross-correlation); None: phase
            correlation.
        upsample_factor : int, optional
            Shifts to ``1 / upsample_factor`` px; 1 gives scikit-ued's integer shifts.
        max_shift : float, optional
            Largest shift searched along each axis, in pixels.

        Returns
        -------
        xarray.DataArray
            Dims ``(..., "shift")``, ``shift = ["row", "col"]``, float64.
        """
        stack = self._stack()
        plans, references = self._align_plans(stack, reference, mask, upsample_factor,
                                               max_shift)
        data = map_frames(stack, _shift_frame, plans, params=references, out={"shift": 2},
                          name="shifts")
        return wrap(data, stack, ("shift",), {"shift": ROW_COL}, "shift")

    def align(self, reference=None, mask=None, fill_value=0.0, *,
              upsample_factor=DEFAULT_UPSAMPLE_FACTOR, max_shift=None):
        """Every frame aligned onto a reference (:func:`uedflow.align`).

        Parameters
        ----------
        reference, mask, upsample_factor, max_shift
            As for :meth:`shifts`.
        fill_value : float, optional
            Value of the pixels that a shifted frame does not cover.

        Returns
        -------
        xarray.DataArray
            The aligned stack, of the stack's dims, coordinates and dtype.
        """
        stack = self._stack()
        plans, references = self._align_plans(stack, reference, mask, upsample_factor,
                                               max_shift)
        data = map_frames(stack, partial(_align_frame, fill_value=fill_value), plans,
                          params=references, dtype=stack.dtype, name="align")
        return stack.copy(data=data)

    def nfold(self, mod, center=None, mask=None, fill_value=0.0):
        """Every frame averaged over its n-fold rotational symmetry (:func:`uedflow.nfold`).

        Parameters
        ----------
        mod : int
            Order of the symmetry; a divisor of 360.
        center : array_like or xarray.DataArray, optional
            Rotation centre ``(row, col)`` (as :meth:`autocenter` returns it; the drop-in
            :func:`uedflow.nfold` takes ``(x, y)`` instead), or per-frame centres (a
            DataArray with ``coord`` labelled ``row``, ``col``). Default: the array centre.
        mask : array_like of bool, shape (y, x), optional
            True on valid pixels.
        fill_value : float, optional
            Value of the pixels that no valid pixel reaches.

        Returns
        -------
        xarray.DataArray
            Symmetrized stack, float64, of the stack's dims and coordinates.
        """
        stack = self._stack()
        shape = stack.shape[-2:]
        mask = frame_mask(mask, shape)
        if isinstance(center, xr.DataArray):
            NFoldPlan(shape, mod)  # checks mod
            mask = check_mask(mask, shape, require_valid=False)
            plans = Plans(_nfold_plan, (shape, mod, mask, fill_value), per_frame=True)
            params = (_centers(center, stack, ["col", "row"]),)
        else:
            plans = Plans(NFoldPlan, (shape, mod, _xy(center), mask, fill_value))
            params = ()
        data = map_frames(stack, _nfold_frame, plans, params=params, name="nfold")
        return stack.copy(data=data)

    def azimuthal_average(self, center, mask=None, angular_bounds=None, trim=True):
        """Azimuthal average of every frame (:func:`uedflow.azimuthal_average`).

        Parameters
        ----------
        center : array_like or xarray.DataArray
            Centre ``(row, col)`` (as :meth:`autocenter` returns it; the drop-in
            :func:`uedflow.azimuthal_average` takes ``(x, y)`` instead), or per-frame centres
            (a DataArray with ``coord`` labelled ``row``, ``col``).
        mask : array_like of bool, shape (y, x), optional
            True on valid pixels.
        angular_bounds : 2-tuple of float, optional
            Angles (degrees) between which pixels are averaged.
        trim : bool, optional
            Drop leading and trailing radii that no valid pixel reaches.

        Returns
        -------
        xarray.DataArray
            Dims ``(..., "radius")`` with the ``radius`` coordinate [px], float64.

        Notes
        -----
        The radial axis is the same for every frame, so it is fixed when the graph is built:
        with one centre, the radii of the frame kernel's result with ``trim=False``, or with
        ``trim=True`` those from the first to the last radius that has a valid pixel (the
        frame kernel also trims radii whose valid pixels are all zero in a frame); with
        per-frame centres, every radius a frame can have. Radii that the frame kernel does
        not return for a frame are 0.
        """
        stack = self._stack()
        shape = stack.shape[-2:]
        mask = frame_mask(mask, shape)
        if isinstance(center, xr.DataArray):
            mask = check_mask(mask, shape, require_valid=False)
            plans = Plans(_azimuthal_plan, (shape, mask, angular_bounds, trim), per_frame=True)
            params = (_centers(center, stack, ["col", "row"]),)
            radius = np.arange(int(np.rint(np.hypot(shape[0] - 1, shape[1] - 1))) + 1)
        else:
            if center is None:
                raise ValueError("center: azimuthal_average needs a centre (row, col)")
            plans = Plans(AzimuthalPlan, (shape, _xy(center), mask, angular_bounds, trim))
            params = ()
            radius = plans.plan.radius[:-1]
            if trim:
                filled = np.flatnonzero(plans.plan.counts)
                radius = plans.plan.radius[filled[0] : filled[-1] + 1]
        func = partial(_azimuthal_frame, start=int(radius[0]), size=radius.size)
        data = map_frames(stack, func, plans, params=params, out={"radius": radius.size},
                          name="azimuthal-average")
        return wrap(data, stack, ("radius",), {"radius": radius}, stack.name)

    def bragg_peaks(self, mask=None, center=None, min_dist=None):
        """Bragg peaks of every frame (:func:`uedflow.bragg_peaks`).

        Parameters
        ----------
        mask : array_like of bool, shape (y, x), optional
            True on valid pixels.
        center : array_like or xarray.DataArray, optional
            Centre ``(row, col)`` (as :func:`uedflow.bragg_peaks` too), or per-frame centres (a
            DataArray with ``coord`` labelled ``row``, ``col``). Default: each frame's
            :func:`uedflow.autocenter`.
        min_dist : float, optional
            Smallest distance between peaks [px].

        Returns
        -------
        xarray.DataArray
            Dims: the leading dims, dtype object: each element is a float64 array
            ``(n, 2)`` of the ``(row, col)`` of a frame's ``n`` peaks (``n`` may differ
            between frames, and be 0), sorted by distance to the centre.
        """
        stack = self._stack()
        mask = _valid_mask(mask, stack.shape[-2:])
        func = partial(_bragg_frame, min_dist=min_dist)
        if isinstance(center, xr.DataArray):
            data = map_frames(stack, func, mask, params=(_centers(center, stack, ROW_COL),),
                              out={}, dtype=object, name="bragg-peaks")
        else:
            center = None if center is None else _xy(center)[::-1]
            data = map_frames(stack, func, mask, center, out={}, dtype=object,
                              name="bragg-peaks")
        return wrap(data, stack, name="peaks")

    def _baseline(self, factory, max_iter, dim, mask, background_regions, options):
        obj = self._obj
        dims = (dim,) if isinstance(dim, str) else tuple(dim)
        if not dims or any(d not in obj.dims for d in dims):
            raise ValueError(f"dim: {dim!r} must name dims of the array, which has {obj.dims}")
        try:
            max_iter = operator.index(max_iter)
        except TypeError:
            raise ValueError(f"max_iter must be an integer, got {max_iter!r}") from None
        if max_iter < 1:
            raise ValueError(f"max_iter: at least one iteration is needed, got {max_iter}")
        moved = obj.transpose(..., *dims)
        if not isinstance(moved.data, da.Array):
            moved = moved.chunk()
        lead = moved.dims[: -len(dims)]
        split = [d for d in dims if len(moved.chunksizes[d]) > 1]
        if split:
            raise ValueError(f"the array's chunks split {split}: a baseline needs the whole "
                             f"dim in each chunk; rechunk explicitly, e.g. .chunk({{"
                             f"{split[0]!r}: -1}})")
        profile = moved.shape[len(lead):]
        if mask is not None:
            mask = np.asarray(mask)
            if mask.dtype != bool or mask.shape != profile:
                raise ValueError(f"mask: expected a boolean array of shape {profile} (along "
                                 f"{dims}), got {mask.dtype} array of shape {mask.shape}")
        regions = [(Ellipsis, *r) if isinstance(r, tuple) else (Ellipsis, r)
                   for r in background_regions or ()]
        options = {**options, "axis": -1 if len(dims) == 1 else (-2, -1)}
        # one plan per block shape (at most two sizes along each leading dim)
        block_shapes = itertools.product(*(sorted(set(c)) for c in moved.chunks[: len(lead)]))
        plans = {shape + profile: Plans(factory, (shape + profile,), options)
                 for shape in block_shapes}
        labels = da.from_array(frame_labels(moved, lead), chunks=moved.chunks[: len(lead)])
        ind = tuple(range(moved.ndim))
        data = da.blockwise(
            _baseline_block, ind, moved.data, ind, labels, ind[: len(lead)],
            dask.delayed(plans, pure=True), None,
            None if mask is None else dask.delayed(mask, pure=True), None,
            token=factory.__name__.lower(), dtype=float, meta=np.empty((0,) * len(ind)),
            max_iter=max_iter, regions=regions)
        return moved.copy(data=data).transpose(*obj.dims)

    def baseline_dwt(self, max_iter, level=None, wavelet="sym6", background_regions=None,
                     mask=None, mode="constant", dim="radius"):
        """Baseline of every profile along ``dim`` (:func:`uedflow.baseline_dwt`).

        Works on any DataArray, e.g. the radial profiles of :meth:`azimuthal_average`.

        Parameters
        ----------
        max_iter, level, wavelet, mode
            As :func:`uedflow.baseline_dwt`.
        background_regions : iterable, optional
            Indices along ``dim`` of pure background, as for one profile.
        mask : array_like of bool, optional
            True where invalid (baseline 0); the shape of one profile.
        dim : str or 2-tuple of str, optional
            Dim of 1D baselines, or two dims (e.g. ``("y", "x")``) of 2D baselines.

        Returns
        -------
        xarray.DataArray
            Baselines, float64, of the array's dims and coordinates.
        """
        options = {"level": level, "wavelet": wavelet, "mode": mode}
        return self._baseline(DWTBaselinePlan, max_iter, dim, mask, background_regions,
                              options)

    def baseline_dt(self, max_iter, level=None, first_stage="sym6", wavelet="qshift1",
                    background_regions=None, mask=None, mode="constant", dim="radius"):
        """Baseline of every profile along ``dim`` by the dual-tree method
        (:func:`uedflow.baseline_dt`).

        Parameters
        ----------
        max_iter, level, first_stage, wavelet, mode
            As :func:`uedflow.baseline_dt`.
        background_regions : iterable, optional
            Indices along ``dim`` of pure background, as for one profile.
        mask : array_like of bool, optional
            True where invalid (baseline 0); the shape of one profile.
        dim : str, optional
            Dim of the 1D baselines.

        Returns
        -------
        xarray.DataArray
            Baselines, float64, of the array's dims and coordinates.
        """
        if not isinstance(dim, str):
            raise ValueError(f"dim: baseline_dt computes 1D baselines along one dim, got {dim!r}")
        options = {"level": level, "first_stage": first_stage, "wavelet": wavelet, "mode": mode}
        return self._baseline(DTBaselinePlan, max_iter, dim, mask, background_regions,
                              options)

    def mask_from_collection(self, px_thresh=(0, 3e4), std_thresh=None, dim=None):
        """Mask of bad pixels over the frames, in one streaming pass.

        See :func:`uedflow.stack.mask_from_collection` (``std_thresh`` bounds the standard
        deviation over all frames reduced).

        Parameters
        ----------
        px_thresh : float or iterable of float, optional
            Allowed pixel values.
        std_thresh : float, optional
            Largest allowed standard deviation of a pixel.
        dim : str or sequence of str, optional
            Dims reduced; default all leading dims.

        Returns
        -------
        xarray.DataArray of bool
            True where a pixel is rejected.
        """
        return reduce_stack(self._obj, "mask", dim, px_thresh=px_thresh, std_thresh=std_thresh)

    def snr(self, fill_value=0.0, dim=None):
        """Per-pixel signal-to-noise ratio (mean / std) over frames, in one streaming pass.

        Parameters
        ----------
        fill_value : float, optional
            Value where the standard deviation is zero.
        dim : str or sequence of str, optional
            Dims reduced; default all leading dims.

        Returns
        -------
        xarray.DataArray
        """
        return reduce_stack(self._obj, "snr", dim, fill_value=fill_value)

    def mean(self, dim=None):
        """Per-pixel mean over ``dim`` (default: all leading dims), streaming, float64."""
        return reduce_stack(self._obj, "mean", dim)

    def std(self, dim=None):
        """Per-pixel standard deviation (``ddof=0``) over ``dim`` (default: all leading
        dims), streaming and numerically stable, float64."""
        return reduce_stack(self._obj, "std", dim)

    def min(self, dim=None):
        """Per-pixel minimum over ``dim`` (default: all leading dims), NaN ignored."""
        return reduce_stack(self._obj, "min", dim)

    def max(self, dim=None):
        """Per-pixel maximum over ``dim`` (default: all leading dims), NaN ignored."""
        return reduce_stack(self._obj, "max", dim)
