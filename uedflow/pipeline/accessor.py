"""The ``ued`` accessor of reduced Datasets: ``ds.ued.time_series(...)``.

Registered on :class:`xarray.Dataset` (the ``ued`` accessor of DataArrays, for stacks, is
:class:`uedflow.stack.UedAccessor`). Centres are ``(row, col)``, as everywhere in uedflow's
own APIs and as the ``center`` of a reduced Dataset. The analyses (``q`` calibration, time
zero, fits, Bragg-peak and diffuse traces, Debye–Waller) are the kernels of
:mod:`uedflow.analysis`, applied here lazily: a trace of a lazy store is lazy until
``.compute()``, one task per chunk of delays.
"""

import json
from functools import partial

import numpy as np
import xarray as xr
from scipy.spatial import cKDTree

from ..analysis import (
    Lattice,
    QCalibration,
    bragg_regions,
    equivalent_groups,
    fit_exponentials,
    index_peaks,
    integration_weights,
    mean_square_displacement,
    refine_peaks,
    region_means,
    relative_change,
    weighted_sums,
    zone_regions,
)
from ..image import bragg_peaks, brillouin_zones

__all__ = ["ReducedAccessor"]


def _selection(shape, rect, disk, ring):
    """Boolean ``(y, x)`` selection of exactly one of a rectangle, a disk or a ring, and its
    description."""
    given = {name: value for name, value in (("rect", rect), ("disk", disk), ("ring", ring))
             if value is not None}
    if len(given) != 1:
        raise ValueError(f"time_series needs exactly one of rect, disk or ring; got "
                         f"{sorted(given) or 'none'}")
    (name, value), = given.items()
    forms = {"rect": "(row0, row1, col0, col1)", "disk": "((row, col), radius)",
             "ring": "((row, col), r1, r2)"}
    try:
        if name == "rect":
            row0, row1, col0, col1 = (int(v) for v in value)
            selection = np.zeros(shape, dtype=bool)
            selection[row0:row1, col0:col1] = True
            return selection, f"rect {(row0, row1, col0, col1)}"
        (row, col), *radii = value
        row, col, *radii = (float(v) for v in (row, col, *radii))
        inner, outer = (0.0, *radii) if name == "disk" else radii
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected {forms[name]}, got {value!r}") from None
    yy, xx = np.indices(shape)
    r = np.hypot(yy - row, xx - col)
    radii = f"{outer:g}" if name == "disk" else f"{inner:g}, {outer:g}"
    return (r >= inner) & (r <= outer), f"{name} (({row:g}, {col:g}), {radii}) px"


def provenance(ds):
    """The ``uedflow`` provenance of a Dataset, as a dict (empty without one)."""
    text = ds.attrs.get("uedflow")
    return json.loads(text) if text else {}


def _with_provenance(ds, **entries):
    """``ds`` (a shallow copy) with ``entries`` added to its provenance."""
    out = ds.copy()
    out.attrs["uedflow"] = json.dumps({**provenance(ds), **entries})
    return out


def time_zero(ds):
    """Time zero of a reduced Dataset in its delay coordinate: 0 after
    :meth:`ReducedAccessor.shift_time_zero`, else the reduction's ``dynamics.t0`` (0 when the
    Dataset has no provenance)."""
    record = provenance(ds)
    if "time_zero" in record:
        return float(record["time_zero"]["t0"])
    return float(record.get("config", {}).get("dynamics", {}).get("t0", 0.0))


def _reference_kind(ds):
    return provenance(ds).get("config", {}).get("dynamics", {}).get("reference", "before_t0")


def _trace(trace, error, var):
    """``(delay, values, errors)`` of a ``(delay,)`` trace: a DataArray (and its error), or a
    Dataset with ``var`` and ``{var}_error`` (``var`` may be omitted when the Dataset has one
    variable and its error)."""
    if isinstance(trace, xr.Dataset):
        if var is None:
            names = [name for name in trace.data_vars if not name.endswith("_error")]
            if len(names) != 1:
                raise ValueError(f"var: the trace Dataset has the variables {names}; name one")
            var = names[0]
        if var not in trace.data_vars:
            raise ValueError(f"var: {var!r} is not a variable of the trace Dataset; it has "
                             f"{list(trace.data_vars)}")
        if error is None and f"{var}_error" in trace.data_vars:
            error = trace[f"{var}_error"]
        trace = trace[var]
    if not isinstance(trace, xr.DataArray) or trace.dims != ("delay",):
        dims = getattr(trace, "dims", None)
        raise ValueError(f"trace must have the one dim 'delay' (select a single peak, zone or "
                         f"radius first), got dims {dims}")
    values = np.asarray(trace.values, dtype=float)
    errors = None if error is None else np.asarray(getattr(error, "values", error), dtype=float)
    return trace["delay"].values, values, errors


#: Default integration radii, as fractions of the distance between neighbouring peaks: the
#: disk, and the inner and outer radii of the background annulus.
DISK, ANNULUS = 0.2, (0.3, 0.45)
#: Relative difference of |q| (or of the distance to the centre) below which two peaks are
#: taken as symmetry-equivalent.
EQUIVALENT = 0.01
#: Least fraction of a Brillouin zone's pixels (Bragg disks excluded) that must be valid.
ZONE_VALID = 0.25


def _valid(ds):
    shape = ds.sizes["y"], ds.sizes["x"]
    return ds["mask"].values.astype(bool) if "mask" in ds else np.ones(shape, dtype=bool)


def _lifted(ds, var, kernel, size):
    """Lazy ``kernel(images, errors)`` (:func:`uedflow.analysis.region_means` or
    :func:`~uedflow.analysis.weighted_sums` of fixed regions) of ``ds[var]``, one task per
    chunk of delays: ``(..., region)`` values and standard errors (the latter with the
    Dataset's ``error_correlation``)."""
    error_name = f"{var}_error"
    if var not in ds.data_vars or ds[var].dims[-2:] != ("y", "x"):
        raise ValueError(f"var: {var!r} is not an image variable (..., 'y', 'x') of the "
                         f"Dataset; it has {list(ds.data_vars)}")
    if error_name not in ds.data_vars:
        raise ValueError(f"the Dataset has no {error_name!r}: no errors for the traces")
    values, errors = xr.apply_ufunc(
        kernel, ds[var], ds[error_name], input_core_dims=[["y", "x"], ["y", "x"]],
        output_core_dims=[["region"], ["region"]], dask="parallelized",
        output_dtypes=[float, float],
        dask_gufunc_kwargs={"output_sizes": {"region": size}, "allow_rechunk": True})
    if "error_correlation" in ds.data_vars:
        errors = errors * np.sqrt(ds["error_correlation"])
    return values, errors


def _on_equilibrium(ds, kernel):
    """``kernel`` of the equilibrium image and its errors (eager: one image), the errors
    with the mean ``error_correlation`` of the delays that make it."""
    image = ds["equilibrium"].values[None]
    error = ds["equilibrium_error"].values[None] if "equilibrium_error" in ds else None
    values, errors = kernel(image, error)
    if errors is None:
        errors = np.zeros_like(values)
    if "error_correlation" in ds.data_vars:
        members = ReducedAccessor(ds).reference_delays().values
        correlation = ds["error_correlation"].values
        errors = errors * np.sqrt(correlation[members].mean() if members.any()
                                  else correlation.mean())
    return values[0], errors[0]


def _found_peaks(ds, peaks, min_dist):
    """Peak positions ``(K, 2)``: given, or the Bragg peaks of the equilibrium pattern."""
    if peaks is not None:
        peaks = np.asarray(peaks, dtype=float)
        if peaks.ndim != 2 or peaks.shape[1] != 2 or not np.isfinite(peaks).all():
            raise ValueError(f"peaks must be finite (row, col) pairs of shape (K, 2), got "
                             f"shape {peaks.shape}")
        return peaks
    if "equilibrium" not in ds.data_vars:
        raise ValueError("the Dataset has no 'equilibrium' in which to find the peaks; "
                         "give peaks")
    image = ds["equilibrium"].values.astype(float)
    valid = _valid(ds) & np.isfinite(image)
    found = bragg_peaks(np.where(valid, image, 0.0), mask=valid,
                        center=ds["center"].values, min_dist=min_dist)
    if len(found) < 2:
        raise ValueError(f"{len(found)} Bragg peaks found in the equilibrium pattern: give "
                         "peaks")
    return np.array(found)


def _spacing(points):
    """Median distance of every point to its nearest neighbour."""
    distance, _ = cKDTree(points).query(points, k=2)
    return float(np.median(distance[:, 1]))


def _family_label(hkl, attrs):
    """The indices that name a family of equivalent reflections ``hkl``: of all reflections
    of the zone with their ``q``, the one with most non-negative indices, then the largest."""
    candidates = [tuple(row) for row in hkl.tolist()]
    if "lattice" in attrs and "zone_axis" in attrs:
        lattice, axis = Lattice(*attrs["lattice"]), np.array(attrs["zone_axis"])
        q = lattice.q(hkl[0])
        span = np.arange(-int(np.abs(hkl).max()) - 1, int(np.abs(hkl).max()) + 2)
        grid = np.stack(np.meshgrid(span, span, span, indexing="ij"), axis=-1).reshape(-1, 3)
        grid = grid[(grid @ axis == 0) & (np.abs(lattice.q(grid) - q) <= 1e-6 * q)]
        candidates += [tuple(v) for v in grid.tolist()]
    best = max(candidates, key=lambda v: (sum(i >= 0 for i in v), v))
    return " ".join(str(int(i)) for i in best)


def _peak_table(ds, points, center, lattice, zone_axis):
    """Coordinates of the peaks: row, col, radius, and q and Miller indices when known."""
    distance = np.hypot(*(points - center).T)
    coords = {"row": ("peak", points[:, 0], {"units": "px", "long_name": "peak row"}),
              "col": ("peak", points[:, 1], {"units": "px", "long_name": "peak column"}),
              "radius": ("peak", distance, {"units": "px",
                                            "long_name": "distance to the centre"})}
    q = None
    calibration = ReducedAccessor(ds).q_calibration
    if calibration is not None:
        q = calibration.q(distance)
    if lattice is not None:
        hkl, indexed, _, _ = index_peaks(points, center, lattice, zone_axis)
        q = np.where(indexed, lattice.q(hkl), np.nan if q is None else q)
        for axis, name in enumerate("hkl"):
            coords[name] = ("peak", hkl[:, axis], {"units": "1",
                                                   "long_name": f"Miller index {name}"})
        coords["indexed"] = ("peak", indexed, {"units": "1",
                                               "long_name": "on the lattice of the zone"})
    if q is not None:
        coords["q"] = ("peak", q, Q_ATTRS)
    return coords


def _traces(ds, means, errors, reference, reference_error, dim, coords, units, what):
    """The traces Dataset: intensity, change against the equilibrium, their errors."""
    members = ReducedAccessor(ds).reference_delays()
    reference = xr.DataArray(reference, dims=dim)
    reference_error = xr.DataArray(reference_error, dims=dim)
    change, change_error = _change(means, errors, reference, reference_error, members)
    out = xr.Dataset(
        {"intensity": means.assign_attrs(units=units, long_name=what),
         "intensity_error": errors.assign_attrs(units=units,
                                                long_name=f"standard error of the {what}"),
         "change": change.assign_attrs(units="1", long_name=f"relative change of the {what}"),
         "change_error": change_error.assign_attrs(units="1",
                                                   long_name="standard error of the change"),
         "equilibrium": reference.assign_attrs(units=units, long_name=f"equilibrium {what}"),
         "equilibrium_error": reference_error.assign_attrs(
             units=units, long_name=f"standard error of the equilibrium {what}")},
        coords=coords)
    out = out.transpose(dim, "delay", ...)
    if "delay" in ds.coords:
        out["delay"].attrs.update(ds["delay"].attrs)
    return out


def _average_families(traces, ds):
    """The mean of the symmetry-equivalent peaks of ``traces`` (same ``family``)."""
    if "peak" not in traces.dims or "family" not in traces.coords:
        raise ValueError("traces: per-peak traces of peak_traces (dim 'peak', coordinate "
                         "'family') are needed")
    family = traces["family"].values
    groups = np.unique(family)
    members = [np.flatnonzero(family == g) for g in groups]
    count = np.array([len(m) for m in members])
    average = xr.DataArray((family[None, :] == groups[:, None]) / count[:, None],
                           dims=("family", "peak"))

    def mean_of(name):
        if name.endswith("_error"):
            return np.sqrt(xr.dot(average**2, traces[name] ** 2, dim="peak"))
        return xr.dot(average, traces[name], dim="peak")

    coords = {"family": groups,
              "members": ("family", count, {"units": "1",
                                                   "long_name": "equivalent peaks averaged"})}
    for name in ("radius", "q"):
        if name in traces.coords:
            values = traces[name].values
            coords[name] = ("family", [values[m].mean() for m in members],
                            traces[name].attrs)
    if "h" in traces.coords:
        hkl = np.stack([traces[name].values for name in "hkl"], axis=1)
        coords["hkl"] = ("family", [_family_label(hkl[m], traces.attrs) for m in members],
                         {"units": "1", "long_name": "Miller indices of the family"})
    what = traces["intensity"].attrs["long_name"]
    out = _traces(ds, mean_of("intensity"), mean_of("intensity_error"),
                  mean_of("equilibrium").values, mean_of("equilibrium_error").values,
                  "family", coords, traces["intensity"].attrs["units"], f"mean {what}")
    out.attrs.update(traces.attrs)
    return out


Q_ATTRS = {"units": "1/Å", "long_name": "scattering vector q = 4π sin(θ) / λ"}


def _change(values, errors, reference, reference_error, members):
    """Lazy :func:`uedflow.analysis.relative_change` of ``(delay, ...)`` values against a
    reference that is the mean of the ``members`` delays (covariance ``e**2 / n`` for them)."""
    n = max(int(members.sum()), 1)
    covariance = members * errors**2 / n
    change, error = xr.apply_ufunc(relative_change, values, errors, reference, reference_error,
                                   covariance, dask="parallelized",
                                   output_dtypes=[float, float], output_core_dims=[[], []])
    return change, error


def _equilibrium_again(ds, before):
    """Equilibrium and radial change of the delays ``before`` (see ``shift_time_zero``), in
    place on ``ds``; the names of the variables computed again."""
    n = int(before.sum())
    done = []

    def mean_of(name):
        values = ds[name].where(before, drop=True)
        error = ds[f"{name}_error"].where(before, drop=True)
        return values.mean("delay"), np.sqrt((error.astype(float) ** 2).sum("delay")) / n

    if {"diffraction", "diffraction_error", "equilibrium"} <= set(ds.data_vars):
        image, error = mean_of("diffraction")
        for name, value in (("equilibrium", image), ("equilibrium_error", error)):
            if name in ds.data_vars:
                ds[name] = value.astype(ds[name].dtype).assign_attrs(ds[name].attrs)
                done.append(name)
    if {"radial", "radial_error", "radial_change"} <= set(ds.data_vars):
        profile, error = mean_of("radial")
        profile = profile.where(profile != 0)
        change, change_error = _change(ds["radial"], ds["radial_error"], profile, error, before)
        ds["radial_change"] = change.assign_attrs(ds["radial_change"].attrs)
        done.append("radial_change")
        if "radial_change_error" in ds.data_vars:
            ds["radial_change_error"] = change_error.assign_attrs(
                ds["radial_change_error"].attrs)
            done.append("radial_change_error")
    return done


@xr.register_dataset_accessor("ued")
class ReducedAccessor:
    """Analyses of a reduced run (as :func:`uedflow.pipeline.reduce.reduce` returns it)."""

    def __init__(self, obj):
        self._obj = obj

    def time_series(self, rect=None, disk=None, ring=None, var="diffraction", change=False):
        """Mean intensity in a region of every frame of the movie, with its standard error,
        against delay.

        Give exactly one region. Pixels outside ``mask`` (when the Dataset has one; it is
        read at once, the rest stays lazy) are left out, and so are pixels whose value is not
        finite in a frame (the mean of a delay is over its finite pixels).

        Parameters
        ----------
        rect : tuple of int, optional
            ``(row0, row1, col0, col1)``: rows ``row0 <= row < row1``, columns alike.
        disk : tuple, optional
            ``((row, col), radius)``: pixels within ``radius`` of the centre ``(row, col)``
            (e.g. ``ds.center.values``).
        ring : tuple, optional
            ``((row, col), r1, r2)``: pixels between the radii ``r1`` and ``r2``, inclusive.
        var : str, optional
            Variable ``(delay, y, x)`` to average; its standard errors are ``{var}_error``.
        change : bool, optional
            Also the relative change of the mean against the same region of the Dataset's
            ``equilibrium``, ``change`` and ``change_error`` (with the covariance of the
            delays that make the equilibrium), as for :meth:`peak_traces`.

        Returns
        -------
        xarray.Dataset
            Dims ``("delay",)`` (the leading dims of ``var``), lazy where the inputs are:

            * ``{var}`` (e.g. ``diffraction``): the mean over the region's ``N`` valid pixels;
            * ``{var}_error``: its standard error, ``sqrt(c * sum(error_i**2)) / N`` over the
              same pixels, with ``error_i`` from ``{var}_error`` and ``c`` the Dataset's
              ``error_correlation`` (1 without it), which accounts for the correlation of
              neighbouring pixels' errors; NaN at a delay where a pixel's error is unknown.
              Absent when the Dataset has no ``{var}_error``.

            Both with ``units`` and ``long_name`` attrs; the Dataset's attrs ``region``
            describe the region and ``pixels`` count its valid pixels (before the finite
            check).

        Notes
        -----
        A Dataset, like xarray's own methods with several results (``polyfit``,
        ``curvefit``): the mean and its error stay together through ``.sel``, ``.compute()``
        or ``.to_dataframe()``, and ``ts[var].plot()`` or ``plt.errorbar(ts.delay, ts[var],
        ts[f"{var}_error"])`` plot them. The error is not a coordinate of a DataArray, since
        arithmetic on the DataArray would carry such a coordinate unchanged, a silently wrong
        error. The variables keep the names of the Dataset they come from (a variable
        ``mean`` would be hidden by the method :meth:`xarray.Dataset.mean`).

        Raises
        ------
        ValueError
            If not exactly one region is given or it is malformed, ``var`` is not a
            ``(delay, ..., y, x)`` variable, or the region holds no valid pixel.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> import uedflow.pipeline
        >>> level = np.array([1.0, 2.0])[:, None, None]
        >>> ds = xr.Dataset({"diffraction": (("delay", "y", "x"), np.ones((2, 8, 8)) * level),
        ...                  "diffraction_error": (("delay", "y", "x"), np.ones((2, 8, 8)))},
        ...                 coords={"delay": [-1.0, 1.0]})
        >>> ts = ds.ued.time_series(disk=((4, 4), 1))   # the centre and its 4 neighbours
        >>> ts["diffraction"].values, ts["diffraction_error"].values   # 1 / sqrt(5)
        (array([1., 2.]), array([0.4472136, 0.4472136]))
        """
        ds = self._obj
        if var not in ds.data_vars or ds[var].ndim < 3 or ds[var].dims[-2:] != ("y", "x"):
            raise ValueError(f"var: {var!r} is not a variable with dims (delay, ..., 'y', 'x') "
                             f"of the Dataset; it has {list(ds.data_vars)}")
        images = ds[var]
        selection, region = _selection(images.shape[-2:], rect, disk, ring)
        if "mask" in ds:
            selection &= ds["mask"].values.astype(bool)
        if not selection.any():
            raise ValueError(f"the region {region} holds no valid pixel")
        selection = xr.DataArray(selection, dims=("y", "x"))
        images = images.astype(np.float64)
        used = selection & np.isfinite(images)
        count = used.sum(("y", "x"))
        mean = images.where(used).sum(("y", "x")) / count
        units = images.attrs.get("units", "counts")
        name = images.attrs.get("long_name", var)
        out = xr.Dataset({var: mean.assign_attrs(units=units, long_name=f"mean {name}")},
                         attrs={"region": region, "pixels": int(selection.sum())})
        error_name = f"{var}_error"
        if error_name in ds.data_vars:
            squares = (ds[error_name].astype(np.float64) ** 2).where(used, 0.0)
            variance = squares.sum(("y", "x"), skipna=False)
            if "error_correlation" in ds.data_vars:
                variance = variance * ds["error_correlation"]
            error = np.sqrt(variance) / count
            out[error_name] = error.assign_attrs(
                units=units, long_name=f"standard error of the mean {name}")
        if change:
            if "equilibrium" not in ds.data_vars or error_name not in ds.data_vars:
                raise ValueError(f"change needs the Dataset's 'equilibrium' and {error_name!r}")
            kernel = partial(region_means, regions=[np.flatnonzero(selection.values)])
            reference, reference_error = _on_equilibrium(ds, kernel)
            relative, relative_error = _change(out[var], out[error_name], reference[0],
                                               reference_error[0], self.reference_delays())
            out["change"] = relative.assign_attrs(units="1", long_name=f"relative change of "
                                                  f"the mean {name}")
            out["change_error"] = relative_error.assign_attrs(
                units="1", long_name="standard error of the change")
        for dim in out.dims:
            if dim in ds.coords:
                out[dim].attrs.update(ds[dim].attrs)
        return out

    # ------------------------------------------------------------------ q calibration

    def calibrate_q(self, calibration):
        """The Dataset with a ``q`` coordinate (1/Å) on its ``radius`` dim and the
        calibration in its provenance.

        Parameters
        ----------
        calibration : uedflow.analysis.QCalibration
            From the geometry (:meth:`~uedflow.analysis.QCalibration.from_geometry`) or from
            known reflections (:meth:`~uedflow.analysis.QCalibration.from_reflections`).

        Returns
        -------
        xarray.Dataset
            A shallow copy (nothing is computed): ``q (radius)`` when the Dataset has the
            dim ``radius``; ``attrs["uedflow"]`` with ``"q_calibration"``, which
            :attr:`q_calibration` and the peak tables of :meth:`peak_traces` read.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> from uedflow.analysis import QCalibration
        >>> import uedflow.pipeline
        >>> ds = xr.Dataset({"radial": (("delay", "radius"), np.ones((2, 3)))},
        ...                 coords={"radius": [10, 20, 30]})
        >>> cal = QCalibration.from_reflections([20.0], q=[1.0])
        >>> ds.ued.calibrate_q(cal)["q"].values
        array([0.5, 1. , 1.5])
        """
        if not isinstance(calibration, QCalibration):
            raise ValueError(f"calibration must be a uedflow.analysis.QCalibration, got "
                             f"{type(calibration).__name__}")
        out = _with_provenance(self._obj, q_calibration=calibration.to_dict())
        if "radius" in out.dims:
            radius = out["radius"].values if "radius" in out.coords else \
                np.arange(out.sizes["radius"])
            out = out.assign_coords(q=("radius", calibration.q(radius), Q_ATTRS))
        return out

    @property
    def q_calibration(self):
        """The :class:`~uedflow.analysis.QCalibration` of :meth:`calibrate_q`, or None."""
        data = provenance(self._obj).get("q_calibration")
        return QCalibration.from_dict(data) if data else None

    # ------------------------------------------------------------------ time zero and fits

    @property
    def time_zero(self):
        """Time zero (ps) in the delay coordinate: 0 after :meth:`shift_time_zero`, else the
        reduction's ``dynamics.t0``."""
        return time_zero(self._obj)

    def reference_delays(self):
        """The delays whose mean is the equilibrium: a boolean ``(delay,)`` DataArray, True
        before time zero; all False when the equilibrium is the pump-off frames."""
        delay = self._obj["delay"]
        before = delay < self.time_zero
        if _reference_kind(self._obj) == "pump_off":
            before = before & False
        return before.rename("reference")

    def shift_time_zero(self, t0):
        """The Dataset with time zero moved to ``t0``: its delays become ``delay - t0``.

        Parameters
        ----------
        t0 : float
            The new time zero, ps, in the current delay coordinate (e.g. from
            :meth:`find_time_zero`).

        Returns
        -------
        xarray.Dataset
            A shallow copy, lazy where the Dataset is. Its provenance records
            ``"time_zero": {"shift": s, "t0": 0.0, "recomputed": [...]}`` (``s`` the total
            shift from the reduction's delays, shifts adding up).

        Raises
        ------
        ValueError
            If ``t0`` is not a finite number, or no delay would be left before time zero for
            an equilibrium of the delays before it.

        Notes
        -----
        The equilibrium depends on time zero only when it is the mean of the delays before it
        (``dynamics.reference = "before_t0"``) and the shift moves a delay across time zero.
        Then ``equilibrium`` and ``equilibrium_error`` (the mean of ``diffraction`` over the
        delays now before time zero, and its error) and ``radial_change`` and
        ``radial_change_error`` (against the mean of those delays' ``radial``) are computed
        again, lazily, as the reduction does; their names are listed in ``"recomputed"``.
        Otherwise (a shift within the gap between two delays, or the pump-off reference)
        only the coordinate moves. ``baseline`` and everything per frame does not depend on
        time zero.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> import uedflow.pipeline
        >>> ds = xr.Dataset({"radial": (("delay", "radius"), [[1.0], [1.0], [2.0]])},
        ...                 coords={"delay": [-1.0, 0.5, 2.0]})
        >>> shifted = ds.ued.shift_time_zero(1.0)
        >>> shifted["delay"].values, shifted.ued.reference_delays().values
        (array([-2. , -0.5,  1. ]), array([ True,  True, False]))
        """
        try:
            t0 = float(t0)
        except (TypeError, ValueError):
            raise ValueError(f"t0 must be a number of ps, got {t0!r}") from None
        if not np.isfinite(t0):
            raise ValueError(f"t0 must be a finite number of ps, got {t0}")
        ds = self._obj
        old = self.reference_delays()
        record = provenance(ds).get("time_zero", {})
        shifted = ds.assign_coords(delay=ds["delay"] - t0)
        shifted["delay"].attrs.update(ds["delay"].attrs)
        entry = {"shift": float(record.get("shift", 0.0)) + t0, "t0": 0.0,
                 "recomputed": list(record.get("recomputed", []))}
        out = _with_provenance(shifted, time_zero=entry)
        new = out.ued.reference_delays()
        if _reference_kind(ds) != "pump_off" and (old.values != new.values).any():
            if not new.values.any():
                raise ValueError(f"t0: no delay before {t0:g} ps is left for the equilibrium "
                                 f"(the earliest delay is {float(ds['delay'].min()):g} ps)")
            recomputed = _equilibrium_again(out, new)
            entry["recomputed"] = sorted(set(entry["recomputed"]) | set(recomputed))
            out = _with_provenance(out, time_zero=entry)
        return out

    def fit(self, trace, error=None, *, var=None, n=1, irf=None, t0=None,
            absolute_errors=True):
        """Fit a ``(delay,)`` trace to ``n`` exponentials convolved with a Gaussian instrument
        response (:func:`uedflow.analysis.fit_exponentials`).

        Parameters
        ----------
        trace : xarray.DataArray or xarray.Dataset
            A trace with the one dim ``delay`` (computed if lazy), e.g. a region's
            :meth:`time_series`, one peak of :meth:`peak_traces` (``.sel(peak=3)``) or
            ``ds["radial_change"].sel(radius=40)``; or a Dataset holding it as ``var`` with
            its error ``{var}_error``.
        error : xarray.DataArray or array_like, optional
            Standard errors of ``trace`` (default: ``{var}_error`` of a Dataset).
        var : str, optional
            The variable of a Dataset ``trace``.
        n, irf, t0, absolute_errors
            As for :func:`uedflow.analysis.fit_exponentials`.

        Returns
        -------
        uedflow.analysis.FitResult
        """
        delay, values, errors = _trace(trace, error, var)
        return fit_exponentials(delay, values, errors, n=n, irf=irf, t0=t0,
                                absolute_errors=absolute_errors)

    def find_time_zero(self, trace, error=None, *, var=None, irf=None):
        """Time zero of a trace (its onset, as the ``t0`` of a one-exponential fit) and its
        standard error, ps, in the Dataset's delay coordinate; pass it to
        :meth:`shift_time_zero`. Arguments as for :meth:`fit`."""
        fit = self.fit(trace, error, var=var, irf=irf)
        return fit["t0"], fit.errors["t0"]

    # ------------------------------------------------------------------ Bragg peaks

    def peak_traces(self, peaks=None, *, radius=None, background=None, lattice=None,
                    zone_axis=(0, 0, 1), average=False, min_dist=None, var="diffraction"):
        """The integrated intensity of every Bragg peak against delay, with its error.

        Parameters
        ----------
        peaks : array_like, shape (K, 2), optional
            Peak positions ``(row, col)``; default: the Bragg peaks of the ``equilibrium``
            pattern (:func:`uedflow.image.bragg_peaks`, read at once; the traces stay lazy).
        radius : float, optional
            Radius of the integration disk (px). Default: 0.2 times the median distance
            between neighbouring peaks.
        background : tuple of float, optional
            ``(inner, outer)`` radii (px) of the background annulus about each peak (pixels
            within ``inner`` of another peak are left out). Default: 0.3 and 0.45 times that
            distance.
        lattice : uedflow.analysis.Lattice, optional
            With it, the peaks are indexed (:func:`uedflow.analysis.index_peaks`): Miller
            indices ``h, k, l`` and the exact ``q = |G_hkl|``.
        zone_axis : sequence of 3 int, optional
            The zone axis of the pattern, with ``lattice``.
        average : bool, optional
            Average the symmetry-equivalent peaks (same ``|q|``, or the same distance to the
            centre, within 1 %): dim ``family`` instead of ``peak``.
        min_dist : float, optional
            Passed to :func:`uedflow.image.bragg_peaks`.
        var : str, optional
            The image variable ``(delay, y, x)``; its errors are ``{var}_error``.

        Returns
        -------
        xarray.Dataset
            Dims ``(peak, delay)`` (or ``(family, delay)``), lazy where the Dataset is:

            * ``intensity``: the disk's sum less the background under it, the plane fitted
              to the annulus (counts, :func:`uedflow.analysis.integration_weights`), and
              ``intensity_error``;
            * ``change``: ``intensity / equilibrium - 1`` and ``change_error``, with the
              covariance of the delays that make the equilibrium;
            * ``equilibrium (peak)``: the same integration of the ``equilibrium`` image,
              and ``equilibrium_error``.

            Coordinates of the peak table: ``row``, ``col``, ``radius`` (distance to the
            ``center``, px), ``pixels`` (of the disk), ``family`` (symmetry-equivalent
            group, numbered by increasing ``|q|``), ``q`` (1/Å; from the lattice, else from
            the Dataset's :attr:`q_calibration`), ``h, k, l`` and ``indexed`` with a lattice.
            Attrs ``radius`` and ``background``.

        Raises
        ------
        ValueError
            If no peak is left (every disk must be fully valid, and the annulus half
            valid), a radius is bad, or the Dataset lacks ``var``, ``{var}_error`` or (to
            find the peaks) ``equilibrium``.

        Notes
        -----
        Errors: ``sqrt(c Σ w² e²)`` over the disk's and the annulus' pixels with their
        weights ``w``, ``c`` the ``error_correlation`` (as :meth:`time_series`). Peaks
        whose disk holds a masked pixel, whose annulus is less than half valid, or that
        lie within the annulus' outer radius of the centre (the undiffracted beam) are left
        out. Each task reads one chunk of delays and gathers the pixels of the disks and
        annuli only.
        """
        ds = self._obj
        valid = _valid(ds)
        shape = valid.shape
        center = ds["center"].values.astype(float)
        points = _found_peaks(ds, peaks, min_dist)
        spacing = _spacing(np.vstack([points, center]))
        radius = DISK * spacing if radius is None else float(radius)
        background = tuple(s * spacing for s in ANNULUS) if background is None else \
            tuple(float(b) for b in background)
        if peaks is None:
            points = refine_peaks(ds["equilibrium"].values, points, radius, background, valid)
        whole = bragg_regions(shape, points, radius, background)
        disks, annuli = bragg_regions(shape, points, radius, background, valid)
        keep = np.array([len(d) == len(d0) and 2 * len(a) >= len(a0) > 0
                         for d, a, d0, a0 in zip(disks, annuli, *whole, strict=True)])
        keep &= np.hypot(*(points - center).T) > background[1]
        keep &= ((points >= radius) & (points <= np.array(shape) - 1 - radius)).all(axis=1)
        if not keep.any():
            raise ValueError(f"no peak of {len(points)} has a fully valid disk of radius "
                             f"{radius:.3g} px and a half-valid background annulus "
                             f"{background} px, away from the centre")
        points = points[keep]
        disks = [d for d, k in zip(disks, keep, strict=True) if k]
        annuli = [a for a, k in zip(annuli, keep, strict=True) if k]
        coords = _peak_table(ds, points, center, lattice, zone_axis)
        sizes = np.array([len(d) for d in disks])
        coords["pixels"] = ("peak", sizes, {"units": "1", "long_name": "pixels of the disk"})
        key = coords["q"][1] if "q" in coords else coords["radius"][1]
        coords["family"] = ("peak", equivalent_groups(np.log(key), EQUIVALENT),
                            {"units": "1", "long_name": "symmetry-equivalent peaks"})
        coords["peak"] = np.arange(len(points))

        kernel = partial(weighted_sums, **dict(zip(
            ("regions", "weights"), integration_weights(shape, disks, annuli), strict=True)))
        intensity, error = _lifted(ds, var, kernel, len(points))
        intensity, error = intensity.rename(region="peak"), error.rename(region="peak")
        reference = _on_equilibrium(ds, kernel)
        units = ds[var].attrs.get("units", "counts")
        out = _traces(ds, intensity, error, *reference, "peak", coords, units,
                      "integrated Bragg-peak intensity")
        out.attrs.update(radius=radius, background=list(background))
        if lattice is not None:
            out.attrs.update(lattice=[lattice.a, lattice.b, lattice.c, lattice.alpha,
                                      lattice.beta, lattice.gamma],
                             zone_axis=[int(i) for i in zone_axis])
        return self.average_peaks(out) if average else out

    def average_peaks(self, traces):
        """The mean of the symmetry-equivalent peaks of :meth:`peak_traces` (those of one
        ``family``), as ``peak_traces(..., average=True)`` returns it.

        Returns
        -------
        xarray.Dataset
            Dims ``(family, delay)``: the variables of :meth:`peak_traces`, averaged (the
            errors as ``sqrt(Σ e²) / n``), and ``change`` recomputed from the averages;
            coordinates ``members``, the mean ``radius`` and ``q``, and ``hkl`` (a member's
            indices) when the peaks were indexed.
        """
        return _average_families(traces, self._obj)

    def diffuse_traces(self, peaks=None, *, exclude=None, symmetry=None, min_dist=None,
                       var="diffraction"):
        """The mean diffuse intensity in every Brillouin zone, Bragg disks excluded, against
        delay, with its error.

        Parameters
        ----------
        peaks : array_like, shape (K, 2), optional
            Bragg peaks ``(row, col)`` whose Voronoi cells about the ``center`` are the
            zones (:class:`uedflow.image.brillouin_zones`); default: those of the
            ``equilibrium`` pattern, as for :meth:`peak_traces`.
        exclude : float, optional
            Radius (px) of the disk left out about every peak and the centre. Default: 0.3
            times the median distance between neighbouring peaks (the inner radius of
            :meth:`peak_traces`' background).
        symmetry : int, optional
            Keep only the zones with that many corners (e.g. 6 for a hexagonal lattice).
        min_dist : float, optional
            Passed to :func:`uedflow.image.bragg_peaks`.
        var : str, optional
            The image variable ``(delay, y, x)``; its errors are ``{var}_error``.

        Returns
        -------
        xarray.Dataset
            Dims ``(zone, delay)``, lazy where the Dataset is: ``intensity`` (the mean per
            pixel, counts) and ``intensity_error``, ``change`` and ``change_error`` against
            the equilibrium, ``equilibrium (zone)`` and ``equilibrium_error``. Coordinates:
            ``row``, ``col`` (the zone's peak; the first zone is the centre's when it is
            visible), ``radius``, ``pixels``, and ``q`` with a :attr:`q_calibration`.

        Raises
        ------
        ValueError
            If no zone is visible and at least a quarter valid.

        Notes
        -----
        A zone is kept when it is bounded, within 0.49 frame heights of the centre
        (:meth:`~uedflow.image.brillouin_zones.getVisibleBZs`), and at least a quarter of
        its pixels outside the excluded disks are valid. The mean and its error are those of
        :meth:`time_series` over the zone's valid pixels.
        """
        ds = self._obj
        valid = _valid(ds)
        center = ds["center"].values.astype(float)
        points = _found_peaks(ds, peaks, min_dist)
        spacing = _spacing(np.vstack([points, center]))
        exclude = ANNULUS[0] * spacing if exclude is None else float(exclude)
        image = ds["equilibrium"].values if "equilibrium" in ds else np.zeros(valid.shape)
        zones = brillouin_zones(np.nan_to_num(image), valid, points, center=center)
        visible = zones.getVisibleBZs(symmetry=symmetry)
        everything = np.vstack([center, points])
        regions = zone_regions(valid.shape, [z.visible_vertices for z in visible], everything,
                               exclude, valid)
        whole = zone_regions(valid.shape, [z.visible_vertices for z in visible], everything,
                             exclude)
        keep = [k for k, (r, w) in enumerate(zip(regions, whole, strict=True))
                if len(r) and len(r) >= ZONE_VALID * len(w)]
        if not keep:
            raise ValueError(f"no Brillouin zone of {len(points)} peaks is visible and at least "
                             f"{ZONE_VALID:.0%} valid")
        regions = [regions[k] for k in keep]
        centres = np.array([visible[k].center for k in keep], dtype=float)
        distance = np.hypot(*(centres - center).T)
        coords = {"zone": np.arange(len(keep)),
                  "row": ("zone", centres[:, 0], {"units": "px", "long_name": "zone row"}),
                  "col": ("zone", centres[:, 1], {"units": "px", "long_name": "zone column"}),
                  "radius": ("zone", distance, {"units": "px",
                                                "long_name": "distance to the centre"}),
                  "pixels": ("zone", [len(r) for r in regions],
                             {"units": "1", "long_name": "pixels of the zone"})}
        if self.q_calibration is not None:
            coords["q"] = ("zone", self.q_calibration.q(distance), Q_ATTRS)
        kernel = partial(region_means, regions=regions)
        means, errors = _lifted(ds, var, kernel, len(regions))
        means, errors = means.rename(region="zone"), errors.rename(region="zone")
        reference = _on_equilibrium(ds, kernel)
        out = _traces(ds, means, errors, *reference, "zone", coords,
                      ds[var].attrs.get("units", "counts"), "mean diffuse intensity")
        out.attrs.update(exclude=exclude)
        return out

    # ------------------------------------------------------------------ Debye–Waller

    def debye_waller(self, traces, *, intercept=False):
        """The change of the mean-square atomic displacement ``Δ⟨u²⟩(t)`` from Bragg-peak
        traces against ``q`` (:func:`uedflow.analysis.mean_square_displacement`).

        Parameters
        ----------
        traces : xarray.Dataset
            :meth:`peak_traces` (per peak or averaged), with ``q``: from a lattice, or a
            :meth:`calibrate_q` before :meth:`peak_traces`.
        intercept : bool, optional
            Also fit a ``q``-independent change of ``ln I``.

        Returns
        -------
        xarray.Dataset
            Dims ``(delay,)``, lazy where ``traces`` are: ``msd`` (``Δ⟨u²⟩``, Å²),
            ``msd_error``, ``chi2`` (reduced χ² of the fit at each delay), and with
            ``intercept`` ``intercept`` and ``intercept_error``.

        Raises
        ------
        ValueError
            If ``traces`` have no ``q`` or no ``change``.
        """
        dim = "family" if "family" in traces.dims else "peak"
        if "q" not in traces.coords or "change" not in traces.data_vars:
            raise ValueError("traces: peak_traces with a q coordinate are needed (give a "
                             "lattice, or calibrate_q the Dataset first)")
        q = traces["q"]
        outputs = 5 if intercept else 3
        results = xr.apply_ufunc(
            mean_square_displacement, traces["change"] + 1, traces["change_error"], q,
            kwargs={"intercept": intercept}, input_core_dims=[[dim], [dim], [dim]],
            output_core_dims=[[]] * outputs, dask="parallelized",
            output_dtypes=[float] * outputs, dask_gufunc_kwargs={"allow_rechunk": True})
        names = ["msd", "msd_error", "chi2", "intercept", "intercept_error"][:outputs]
        attrs = [{"units": "Å²", "long_name": "change of the mean-square displacement"},
                 {"units": "Å²", "long_name": "standard error of the change of ⟨u²⟩"},
                 {"units": "1", "long_name": "reduced χ² of the Debye-Waller fit"},
                 {"units": "1", "long_name": "q-independent change of ln I"},
                 {"units": "1", "long_name": "standard error of the intercept"}]
        out = xr.Dataset({name: result.drop_vars(
            [c for c in result.coords if c != "delay"]).assign_attrs(a)
            for name, result, a in zip(names, results, attrs, strict=False)})
        if "delay" in traces.coords:
            out["delay"].attrs.update(traces["delay"].attrs)
        return out
