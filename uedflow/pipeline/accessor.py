"""The ``ued`` accessor of reduced Datasets: ``ds.ued.time_series(...)``.

Registered on :class:`xarray.Dataset` (the ``ued`` accessor of DataArrays, for stacks, is
:class:`uedflow.stack.UedAccessor`). Centres are ``(row, col)``, as everywhere in uedflow's
own APIs and as the ``center`` of a reduced Dataset. The analyses (``q`` calibration, time
zero, fits, Bragg-peak and diffuse traces, Debye–Waller) are the kernels of
:mod:`uedflow.analysis`, applied here lazily: a trace of a lazy store is lazy until
``.compute()``, one task per chunk of delays.
"""

import json

import numpy as np
import xarray as xr

from ..analysis import QCalibration, fit_exponentials, relative_change

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

    def time_series(self, rect=None, disk=None, ring=None, var="diffraction"):
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
