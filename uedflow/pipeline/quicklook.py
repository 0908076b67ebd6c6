"""Quick-look plots of a reduced run: :func:`quicklook`.

Three PNG files, drawn with matplotlib's Agg renderer (no display, no pyplot state), each
showing the data as stored, never recomputed:

* ``pattern.png``: the equilibrium pattern on a log scale, with the centre ``(row, col)`` and
  the masked pixels (their fraction of the frame, and of each part of the mask);
* ``radial.png``: the stored ΔI/I of the radial profiles (``radial_change``, against the
  reference the reduction used), radius against delay, one row per measured delay;
* ``peaks.png``: the time-averaged radial profile with its strongest peaks, and the stored ΔI/I
  at those peaks against delay, with the error bars of ``radial_change_error``.

:func:`pattern_figure`, :func:`radial_figure` and :func:`peaks_figure` return the figures.
"""

import json
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["pattern_figure", "peaks_figure", "quicklook", "radial_figure"]

#: Number of peaks of the radial profile whose intensity change is plotted.
NPEAKS = 4
#: Smallest prominence of those peaks, as a fraction of the range of the profile.
MIN_PROMINENCE = 0.05
#: Percentiles of the finite values that bound the colour scales.
PATTERN_PERCENTILES = (1.0, 99.9)
CHANGE_PERCENTILE = 99.0
#: Most delay tick labels on the delay axis of ``radial.png``.
MAX_TICKS = 24
#: Colour of the masked pixels in ``pattern.png``.
MASKED_COLOR = "#4c9be8"
#: Colour of NaN in ``radial.png``.
NAN_COLOR = "0.6"


def quicklook(ds_or_store, outdir):
    """Write quick-look PNGs of a reduced run.

    Parameters
    ----------
    ds_or_store : xarray.Dataset or path-like
        A reduced Dataset, or a complete store written by
        :func:`uedflow.pipeline.store.write_reduced`. It needs ``radial (delay, radius)``,
        ``radial_change (delay, radius)`` and ``equilibrium (y, x)`` (or ``diffraction
        (delay, y, x)``, averaged over delays); ``radial_change_error``, ``mask`` and
        ``center`` are drawn where present, and the provenance (``attrs["uedflow"]``) gives
        time zero, the reference of ΔI/I and the parts of the mask.
    outdir : path-like
        Directory of the PNG files (created if needed).

    Returns
    -------
    paths : list of pathlib.Path
        ``pattern.png``, ``radial.png`` and ``peaks.png`` in ``outdir``.

    Raises
    ------
    ValueError
        If the Dataset lacks the variables the plots need.
    """
    from .store import open_reduced

    ds = ds_or_store if isinstance(ds_or_store, xr.Dataset) else open_reduced(ds_or_store)
    missing = [name for name in ("radial", "radial_change") if name not in ds]
    if "equilibrium" not in ds and "diffraction" not in ds:
        missing.append("equilibrium or diffraction")
    if missing:
        raise ValueError(f"quicklook needs the variable(s) {', '.join(missing)}; the Dataset "
                         f"has {', '.join(map(str, ds.data_vars))}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, draw in (("pattern.png", pattern_figure), ("radial.png", radial_figure),
                       ("peaks.png", peaks_figure)):
        draw(ds).savefig(outdir / name, dpi=100)
        paths.append(outdir / name)
    return paths


def pattern_figure(ds):
    """The equilibrium pattern (log scale), its centre ``(row, col)`` and its mask.

    Parameters
    ----------
    ds : xarray.Dataset
        With ``equilibrium (y, x)`` or ``diffraction (delay, y, x)``; ``mask`` and ``center``
        are drawn where present.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib import colormaps
    from matplotlib.patches import Patch

    if "equilibrium" in ds:
        name, image, what = "equilibrium", ds["equilibrium"], "equilibrium pattern"
    else:
        name, what = "diffraction", "diffraction averaged over delays"
        image = ds["diffraction"].mean("delay")
    image = np.asarray(image, dtype=float)
    valid = np.asarray(ds["mask"], dtype=bool) if "mask" in ds else np.ones(image.shape, bool)
    shown = np.where(valid, image, np.nan)
    positive = shown[np.isfinite(shown) & (shown > 0)]
    low, high = (np.percentile(positive, PATTERN_PERCENTILES) if positive.size else (1.0, 10.0))
    high = max(high, low * 10 ** 0.01)
    with np.errstate(invalid="ignore"):
        logged = np.log10(np.clip(shown, low, None))

    fig, ax = _figure((6.4, 6.0))
    cmap = colormaps["inferno"].with_extremes(bad=MASKED_COLOR)
    drawn = ax.imshow(logged, cmap=cmap, vmin=np.log10(low), vmax=np.log10(high),
                      interpolation="nearest")
    fig.colorbar(drawn, ax=ax, extend="both",
                 label=f"log10 intensity ({_units(ds, name, 'counts')})")
    handles = []
    if "mask" in ds:
        handles.append(Patch(color=MASKED_COLOR, label=f"masked: {_masked_text(ds, valid)}"))
    if "center" in ds:
        row, col = _center(ds["center"])
        (marker,) = ax.plot(col, row, "+", color="lime", markersize=16, markeredgewidth=2,
                            label=f"centre (row, col) = ({row:.2f}, {col:.2f}) px")
        handles.append(marker)
    if handles:
        fig.legend(handles=handles, loc="outside lower center", fontsize="small",
                   frameon=False)
    ax.set(xlabel=_label(ds, "x", "column x", "px"), ylabel=_label(ds, "y", "row y", "px"),
           title=what)
    return fig


def radial_figure(ds):
    """The stored ΔI/I of the radial profiles: radius against delay, one row per delay.

    The rows are the measured delays in order, equally tall whatever their spacing, their
    values on the tick labels; a dashed line marks time zero; NaN is grey.

    Parameters
    ----------
    ds : xarray.Dataset
        With ``radial_change (delay, radius)``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib import colormaps

    change = ds["radial_change"].sortby("delay").transpose("delay", ...)
    values = np.asarray(change, dtype=float)
    delays = np.asarray(change["delay"], dtype=float)
    radius = _radius(change)
    limit = _symmetric_limit(values)
    rows = np.arange(delays.size)

    fig, ax = _figure((7.5, 5.5))
    cmap = colormaps["RdBu_r"].with_extremes(bad=NAN_COLOR)  # NaN apart from 0 (white)
    mesh = ax.pcolormesh(radius, rows, values, shading="nearest", cmap=cmap,
                         vmin=-limit, vmax=limit)
    fig.colorbar(mesh, ax=ax, extend="both", label=_label(ds, "radial_change", "ΔI/I", "1"))
    step = -(-delays.size // MAX_TICKS)
    ax.set_yticks(rows[::step], [f"{t:g}" for t in delays[::step]])
    t0, reference = _dynamics(ds)
    if t0 is not None and delays[0] < t0 <= delays[-1]:
        ax.axhline(np.searchsorted(delays, t0) - 0.5, color="k", linestyle="--", linewidth=1)
        reference += " (dashed)"
    uniform = delays.size < 3 or np.ptp(np.diff(delays)) <= 1e-6 * np.ptp(delays)
    delay_label = _label(ds, "delay", "delay", "ps")
    ax.set(xlabel=_label(ds, "radius", "radius", "px"),
           ylabel=delay_label if uniform else f"{delay_label}, one row per delay",
           title=f"ΔI/I of the radial profiles{reference}")
    return fig


def peaks_figure(ds):
    """The stored ΔI/I at the strongest peaks of the radial profile, against delay.

    Left, the radial profile averaged over delays with its :data:`NPEAKS` most prominent peaks
    marked; right, ``radial_change`` at those radii at every delay (at its value; a symmetric
    log axis when the delays are unevenly spaced), with the error bars of
    ``radial_change_error`` when the Dataset has it.

    Parameters
    ----------
    ds : xarray.Dataset
        With ``radial (delay, radius)`` and ``radial_change (delay, radius)``.

    Returns
    -------
    matplotlib.figure.Figure
    """
    change = ds["radial_change"].sortby("delay").transpose("delay", ...)
    values = np.asarray(change, dtype=float)
    errors = (np.asarray(ds["radial_change_error"].sortby("delay").transpose(*change.dims),
                         dtype=float) if "radial_change_error" in ds else None)
    delays = np.asarray(change["delay"], dtype=float)
    radius = _radius(change)
    profile = np.asarray(ds["radial"].transpose("delay", ...), dtype=float)
    with warnings.catch_warnings():  # a radius with no finite value stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        profile = np.nanmean(profile, axis=0)
    peaks = _strongest_peaks(profile)
    radius_label = _label(ds, "radius", "radius", "px")
    radius_units = _units(ds, "radius", "px")

    fig, (left, right) = _figure((11.0, 4.6), ncols=2, width_ratios=(1, 1.5))
    left.plot(radius, profile, color="k", linewidth=1)
    left.set(xlabel=radius_label, ylabel=_label(ds, "radial", "intensity", "counts"),
             title="radial profile, averaged over delays")
    t0, reference = _dynamics(ds)
    for i in peaks:
        label = f"r = {radius[i]:g} {radius_units}"
        bars = right.errorbar(delays, values[:, i], yerr=None if errors is None else errors[:, i],
                              fmt="o-", markersize=4, capsize=2, linewidth=1, label=label)
        left.plot(radius[i], profile[i], "v", color=bars.lines[0].get_color(), markersize=8)
    right.axhline(0, color="grey", linewidth=0.8)
    if t0 is not None and delays.min() <= t0 <= delays.max():
        right.axvline(t0, color="k", linestyle="--", linewidth=1)
        reference += " (dashed)"
    _delay_scale(right, delays)
    right.set(xlabel=_label(ds, "delay", "delay", "ps"),
              ylabel=_label(ds, "radial_change", "ΔI/I", "1"),
              title=f"ΔI/I at the peaks{reference}")
    right.legend(fontsize="small")
    return fig


def _figure(size, ncols=1, **gridspec):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(1, ncols, gridspec_kw=gridspec or None)
    return fig, axes


def _units(ds, name, fallback):
    units = ds[name].attrs.get("units") if name in ds.variables else None
    return units or fallback


def _label(ds, name, fallback_name, fallback_units):
    """``long_name (units)`` of a variable or coordinate from its attrs (dimensionless: no
    units), falling back on the given name and units."""
    attrs = ds[name].attrs if name in ds.variables else {}
    units = attrs.get("units") or fallback_units
    text = attrs.get("long_name") or fallback_name
    return text if units in ("1", "") else f"{text} ({units})"


def _radius(profiles):
    dim = profiles.dims[1]
    if dim in profiles.coords:
        return np.asarray(profiles[dim], dtype=float)
    return np.arange(profiles.shape[1], dtype=float)


def _center(center):
    """``(row, col)`` of a ``center`` variable (a ``coord`` dim labelled row/col, or in that
    order)."""
    if "coord" in center.dims and "coord" in center.coords:
        center = center.sel(coord=["row", "col"])
    return tuple(float(v) for v in np.asarray(center, dtype=float))


def _provenance(ds):
    try:
        provenance = json.loads(ds.attrs.get("uedflow", "{}"))
    except (TypeError, ValueError):
        return {}
    return provenance if isinstance(provenance, dict) else {}


def _dynamics(ds):
    """Time zero (None if unknown) and a description of the reference of ΔI/I."""
    dynamics = _provenance(ds).get("config", {}).get("dynamics", {})
    t0 = dynamics.get("t0")
    t0 = None if t0 is None else float(t0)
    units = _units(ds, "delay", "ps")
    if dynamics.get("reference") == "pump_off":
        return t0, "\nagainst the pump-off frames" + ("" if t0 is None else
                                                      f", t0 = {t0:g} {units}")
    if t0 is not None:
        return t0, f"\nagainst the delays before t0 = {t0:g} {units}"
    return t0, ""


def _masked_text(ds, valid):
    """Masked fraction of the frame (%), and of each part of the mask when recorded."""
    text = f"{_percent(1 - valid.mean())} of the frame"
    parts = _provenance(ds).get("mask", {})
    parts = {name.replace("_", " "): value for name, value in parts.items()
             if name != "total" and isinstance(value, (int, float)) and value > 0}
    if parts:
        text += " (" + ", ".join(f"{name} {_percent(value)}"
                                 for name, value in parts.items()) + ")"
    return text


def _percent(fraction):
    """A fraction in %, to 0.1 %; "< 0.1 %" when positive but smaller."""
    return "< 0.1 %" if 0 < fraction < 0.0005 else f"{100 * fraction:.1f} %"


def _symmetric_limit(values):
    """Colour limit of ΔI/I: a percentile of the finite absolute values (1 if none)."""
    finite = np.abs(values[np.isfinite(values)])
    limit = np.percentile(finite, CHANGE_PERCENTILE) if finite.size else 0.0
    return float(limit) if limit > 0 else 1.0


def _delay_scale(ax, delays):
    """A symmetric log delay axis when the delays are unevenly spaced (linear over twice the
    smallest spacing about zero), ticked at plain 1-2-5 values; else linear."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    steps = np.diff(np.unique(delays))
    if steps.size < 2 or steps.max() <= 4 * steps.min():
        return
    linthresh = 2 * steps.min()
    ax.set_xscale("symlog", linthresh=linthresh, linscale=1.0)
    low, high = delays.min(), delays.max()
    for mantissas in ((1, 2, 5), (1,)):
        nice = np.array([sign * m * 10.0**k for k in range(-4, 7) for m in mantissas
                         for sign in (1, -1)])
        ticks = np.sort(np.r_[0.0, nice[(nice >= low) & (nice <= high)
                                        & (np.abs(nice) >= linthresh)]])
        if ticks.size <= 12:
            break
    transform = ax.xaxis.get_transform()  # 3 % of the axis free at either end
    ends = transform.transform(np.array([low, high]))
    pad = 0.03 * (ends[1] - ends[0])
    ax.set_xlim(*transform.inverted().transform(ends + np.array([-pad, pad])))
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def _strongest_peaks(profile, n=NPEAKS):
    """Indices of the ``n`` most prominent peaks of ``profile``, of a prominence at least
    :data:`MIN_PROMINENCE` of its range (its maximum if it has none)."""
    from scipy.signal import find_peaks

    finite = np.isfinite(profile)
    if not finite.any():
        return [0]
    profile = np.where(finite, profile, np.nanmin(profile))
    peaks, props = find_peaks(profile, prominence=MIN_PROMINENCE * np.ptp(profile))
    if peaks.size == 0:
        return [int(np.argmax(profile))]
    return sorted(peaks[np.argsort(props["prominences"])[::-1][:n]])
