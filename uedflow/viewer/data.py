"""What the viewer shows, computed from a reduced Dataset: plain functions, no bokeh.

Frames travel to the browser one window at a time, averaged over blocks of pixels down to the
screen's size; a region's trace is the Dataset's own :meth:`ReducedAccessor.time_series` of
the region's bounding box (the same pixels, the same numbers, only the chunks it needs).
"""

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from ..image import brillouin_zones
from ..pipeline.export import to_csv

__all__ = ["MAX_PIXELS", "RADIAL", "REQUIRED", "block_mean", "check_store", "color_limits",
           "frame_window", "lattice_overlay", "live_info", "live_label", "mask_window",
           "pattern_image", "radius_trace",
           "region_from_box", "region_label", "region_trace", "traces_csv", "visible_window"]

#: Most pixels along either side of an image sent to the browser.
MAX_PIXELS = 1024


#: The variables of a reduced Dataset that the viewer needs.
REQUIRED = ("diffraction", "diffraction_error", "equilibrium", "center")
#: The radial profiles, for the map, the profile and radius ranges (absent when a store was
#: reduced with ``[radial] enabled = false``: the viewer shows the rest).
RADIAL = ("radial", "radial_error", "radial_change", "radial_change_error")


def check_store(ds, store):
    """Raise a ValueError naming ``store`` and what it lacks, unless ``ds`` has every
    variable of :data:`REQUIRED` and a ``delay`` coordinate."""
    missing = [name for name in (*REQUIRED, "delay") if name not in ds.variables]
    if missing:
        raise ValueError(f"'{store}' is not a reduced uedflow store with the viewer's "
                         f"variables: it lacks {', '.join(missing)}")
    if ds["diffraction"].dims != ("delay", "y", "x"):
        raise ValueError(f"'{store}': diffraction has dims {ds['diffraction'].dims}, not "
                         "(delay, y, x)")


def block_mean(image, factor):
    """Mean of ``factor`` × ``factor`` blocks of ``image`` (NaN ignored; a ragged edge is
    averaged over the pixels it has).

    Examples
    --------
    >>> block_mean(np.arange(16.0).reshape(4, 4), 2)
    array([[ 2.5,  4.5],
           [10.5, 12.5]], dtype=float32)
    """
    image = np.asarray(image, dtype=np.float32)
    if factor <= 1:
        return image
    ny, nx = image.shape
    pad = (-ny % factor, -nx % factor)
    padded = np.pad(image, ((0, pad[0]), (0, pad[1])), constant_values=np.nan)
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # blocks with no finite pixel: NaN
        return np.nanmean(blocks, axis=(1, 3))


def visible_window(shape, x0, x1, y0, y1, margin=0.25):
    """The pixel window ``(row0, row1, col0, col1)`` of a frame of ``shape`` that covers the
    plot's ranges (``x`` = column, ``y`` = row, in either order) and a ``margin`` (a fraction of
    each side) around them, within the frame."""
    (y0, y1), (x0, x1) = sorted((y0, y1)), sorted((x0, x1))
    dy, dx = margin * (y1 - y0), margin * (x1 - x0)
    row0, row1 = max(0, int(np.floor(y0 - dy))), min(shape[0], int(np.ceil(y1 + dy)))
    col0, col1 = max(0, int(np.floor(x0 - dx))), min(shape[1], int(np.ceil(x1 + dx)))
    if row1 <= row0 or col1 <= col0:
        return 0, shape[0], 0, shape[1]
    return row0, row1, col0, col1


def frame_window(image, window, max_pixels=MAX_PIXELS):
    """One window of a frame, averaged over blocks down to at most ``max_pixels`` a side.

    Parameters
    ----------
    image : xarray.DataArray
        ``(y, x)``, lazy or not: only the window is read.
    window : tuple of int
        ``(row0, row1, col0, col1)``.
    max_pixels : int, optional

    Returns
    -------
    values : ndarray
        float32, ``ceil((row1 - row0) / f)`` × ``ceil((col1 - col0) / f)``.
    factor : int
        ``f``, the side of the blocks (1: full resolution).
    """
    row0, row1, col0, col1 = window
    factor = max(1, -(-max(row1 - row0, col1 - col0) // max_pixels))
    values = image.isel(y=slice(row0, row1), x=slice(col0, col1)).values
    return block_mean(values, factor), factor


def pattern_image(ds, index, window, mode="counts", max_pixels=MAX_PIXELS):
    """The pattern at the delay ``index`` as the viewer shows it, in one window of the frame.

    Parameters
    ----------
    ds : xarray.Dataset
        A reduced Dataset (lazy: only the window of one frame is read).
    index : int
        Position along ``delay``.
    window : tuple of int
        ``(row0, row1, col0, col1)``.
    mode : {"counts", "change"}, optional
        The counts, or ΔI/I against the ``equilibrium`` (``frame / equilibrium - 1``, of the
        block means; NaN where the equilibrium is not positive).
    max_pixels : int, optional

    Returns
    -------
    values : ndarray
    factor : int
        As for :func:`frame_window`.
    """
    values, factor = frame_window(ds["diffraction"].isel(delay=index), window, max_pixels)
    if mode == "change":
        reference, _ = frame_window(ds["equilibrium"], window, max_pixels)
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.where(reference > 0, values / reference - 1, np.nan)
    elif mode != "counts":
        raise ValueError(f"mode must be counts or change, got {mode!r}")
    return values.astype(np.float32), factor


def mask_window(mask, window, factor):
    """The masked pixels of one window, for an overlay: 1 where more than half of a block
    is masked, NaN elsewhere (``mask`` True = valid, as in a reduced Dataset)."""
    row0, row1, col0, col1 = window
    masked = block_mean(~np.asarray(mask[row0:row1, col0:col1], dtype=bool), factor)
    return np.where(masked > 0.5, 1.0, np.nan).astype(np.float32)


def color_limits(values, symmetric=False, percentile=0.5):
    """Colour limits of an image: its ``percentile`` and ``100 - percentile`` percentiles of
    the finite values (``±`` the larger magnitude if ``symmetric``); ``(0, 1)`` without any."""
    finite = values[np.isfinite(values)]
    if finite.size > 1 << 18:  # a sample is enough for limits
        finite = finite[:: finite.size >> 18]
    if not finite.size:
        return 0.0, 1.0
    low, high = np.percentile(finite, [percentile, 100 - percentile])
    if symmetric:
        high = max(abs(low), abs(high)) or 1.0
        return -float(high), float(high)
    return float(low), float(high if high > low else low + 1)


def region_from_box(kind, x0, x1, y0, y1, center, shape=None):
    """A region of :meth:`ReducedAccessor.time_series` from a box dragged on the pattern.

    Parameters
    ----------
    kind : {"rect", "disk", "ring"}
        ``rect``: the pixels inside the box; ``disk``: the disk inscribed in the box;
        ``ring``: about the pattern's ``center``, every radius that the box covers (from the
        box's nearest point to its farthest corner: drag a narrow box across the ring).
    x0, x1, y0, y1 : float
        The box's corners in plot coordinates, where the pixel ``(row, col)`` covers
        ``row <= y < row + 1`` and ``col <= x < col + 1``.
    center : tuple of float
        ``(row, col)``, pixels.
    shape : tuple of int, optional
        The frame's ``(rows, cols)``: a rectangle is cut to it (a box dragged beyond the
        frame, e.g. after a pan, keeps only its pixels).

    Returns
    -------
    dict or None
        ``{"rect": (row0, row1, col0, col1)}``, ``{"disk": ((row, col), radius)}`` or
        ``{"ring": ((row, col), r1, r2)}`` (pixels; positions and radii rounded to 0.1 px,
        rectangles to whole pixels), or None for a box too small to hold one.

    Examples
    --------
    >>> region_from_box("rect", 10.2, 20.4, 5.0, 8.9, (16, 16))
    {'rect': (5, 9, 10, 20)}
    >>> region_from_box("rect", -3.2, 20.4, 5.0, 40.3, (16, 16), shape=(32, 32))
    {'rect': (5, 32, 0, 20)}
    >>> region_from_box("disk", 10, 20, 10, 20, (16, 16))
    {'disk': ((14.5, 14.5), 5.0)}
    >>> region_from_box("ring", 26.5, 32.5, 15.5, 17.5, (16, 16))
    {'ring': ((16.0, 16.0), 10.0, 16.0)}
    """
    if kind == "ring":
        row, col = (round(float(v), 2) for v in center)
        rows = sorted((y0 - 0.5, y1 - 0.5))  # in pixel coordinates: the pixels' middles
        cols = sorted((x0 - 0.5, x1 - 0.5))
        near = np.hypot(np.clip(row, *rows) - row, np.clip(col, *cols) - col)
        far = max(np.hypot(r - row, c - col) for r in rows for c in cols)
        r1, r2 = round(float(near), 1), round(float(far), 1)
        return {"ring": ((row, col), r1, r2)} if r2 - r1 >= 0.5 else None
    (y0, y1), (x0, x1) = sorted((y0, y1)), sorted((x0, x1))
    if kind == "rect":
        rect = (max(round(y0), 0), round(y1), max(round(x0), 0), round(x1))
        if shape is not None:
            rect = (rect[0], min(rect[1], shape[0]), rect[2], min(rect[3], shape[1]))
        return {"rect": rect} if rect[1] > rect[0] and rect[3] > rect[2] else None
    if kind == "disk":
        radius = round(min(y1 - y0, x1 - x0) / 2, 1)
        middle = (round((y0 + y1) / 2 - 0.5, 1), round((x0 + x1) / 2 - 0.5, 1))
        return {"disk": (middle, radius)} if radius >= 0.5 else None
    raise ValueError(f"kind must be rect, disk or ring, got {kind!r}")


def region_label(region):
    """A short description of a region of :func:`region_from_box` (or ``{"radii": (r1,
    r2)}``), e.g. ``rect 10:20, 30:40``."""
    (kind, value), = region.items()
    if kind == "rect":
        return f"rect rows {value[0]}:{value[1]}, cols {value[2]}:{value[3]}"
    if kind == "disk":
        (row, col), radius = value
        return f"disk ({row:g}, {col:g}) r {radius:g}"
    if kind == "ring":
        (row, col), r1, r2 = value
        return f"ring ({row:g}, {col:g}) r {r1:g} to {r2:g}"
    return f"radii {value[0]:g} to {value[1]:g}"


def _bounds(region, shape):
    """The bounding box ``(row0, row1, col0, col1)`` of a region, within ``shape``."""
    (kind, value), = region.items()
    if kind == "rect":
        row0, row1, col0, col1 = value
    else:
        (row, col), *radii = value
        outer = radii[-1]
        row0, row1 = int(np.floor(row - outer)), int(np.ceil(row + outer)) + 1
        col0, col1 = int(np.floor(col - outer)), int(np.ceil(col + outer)) + 1
    return (max(0, row0), min(shape[0], row1), max(0, col0), min(shape[1], col1))


def _shifted(region, row0, col0):
    (kind, value), = region.items()
    if kind == "rect":
        return {"rect": (value[0] - row0, value[1] - row0, value[2] - col0, value[3] - col0)}
    (row, col), *radii = value
    return {kind: ((row - row0, col - col0), *radii)}


def region_trace(ds, region):
    """The trace of a region: :meth:`ReducedAccessor.time_series` with ``change=True``, of the
    region's bounding box only, computed.

    Parameters
    ----------
    ds : xarray.Dataset
        A reduced Dataset.
    region : dict
        One keyword of ``time_series`` (``rect``, ``disk`` or ``ring``), as
        :func:`region_from_box` gives it.

    Returns
    -------
    xarray.Dataset
        ``intensity``, ``intensity_error`` (the mean counts: ``diffraction`` and
        ``diffraction_error`` of ``time_series``), ``change`` and ``change_error`` against
        ``delay``: the same pixels and numbers (up to the order of the sums) as
        ``ds.ued.time_series(**region, change=True)``, reading only the chunks of the box.
    """
    shape = ds.sizes["y"], ds.sizes["x"]
    row0, row1, col0, col1 = _bounds(region, shape)
    if row1 <= row0 or col1 <= col0:
        raise ValueError(f"the region {region_label(region)} is outside the frame {shape}")
    box = ds.isel(y=slice(row0, row1), x=slice(col0, col1))
    trace = box.ued.time_series(**_shifted(region, row0, col0), change=True).compute()
    trace = trace.rename({"diffraction": "intensity", "diffraction_error": "intensity_error"})
    trace.attrs["region"] = region_label(region)
    return trace


def radius_trace(ds, r1, r2):
    """The radial profiles and their ΔI/I averaged over the radii ``r1 <= radius <= r2``,
    against delay, with their standard errors (the radii's errors taken as independent; NaN
    at a delay where the error of a radius with a finite value is unknown).

    Returns
    -------
    xarray.Dataset
        ``intensity`` (of ``radial``), ``change`` (of ``radial_change``) and their
        ``_error``, computed.
    """
    out = xr.Dataset()
    for var, name in (("intensity", "radial"), ("change", "radial_change")):
        values = ds[name].sel(radius=slice(r1, r2))
        if values.sizes["radius"] == 0:
            raise ValueError(f"no radius between {r1:g} and {r2:g} px")
        finite = np.isfinite(values)
        error = ds[f"{name}_error"].sel(radius=slice(r1, r2))
        squares = (error**2).where(finite, 0.0).sum("radius", skipna=False)  # NaN if unknown
        out[var] = values.mean("radius")
        out[f"{var}_error"] = np.sqrt(squares) / finite.sum("radius")
        what = "radial profile" if var == "intensity" else "relative change of the profile"
        units = ds[name].attrs.get("units", "counts" if var == "intensity" else "1")
        out[var].attrs.update(units=units, long_name=f"mean {what}")
        out[f"{var}_error"].attrs.update(units=units, long_name=f"standard error of the {what}")
    out["delay"].attrs.update(ds["delay"].attrs)
    return out.compute().assign_attrs(region=region_label({"radii": (r1, r2)}))


def traces_csv(traces, var="change"):
    """CSV text of the traces (:func:`uedflow.pipeline.export.to_csv` of ``var`` and its
    error, one column each per region).

    Parameters
    ----------
    traces : dict
        ``{name: trace}``, each trace a Dataset of :func:`region_trace` or
        :func:`radius_trace` with the same delays.
    var : str, optional
        The variable to export (``change`` or ``intensity``).
    """
    names = list(traces)
    if not names:
        raise ValueError("no region to export: draw one on the pattern first")
    table = xr.concat([traces[n][[var, f"{var}_error"]] for n in names], dim="region",
                      coords="minimal", compat="override", combine_attrs="drop_conflicts")
    table = table.assign_coords(region=names, description=(
        "region", [traces[n].attrs.get("region", "") for n in names]))
    with tempfile.TemporaryDirectory() as folder:
        path = to_csv(table, Path(folder) / "traces.csv", rows="delay")
        return path.read_text(encoding="utf-8")


def lattice_overlay(ds):
    """The Bragg peaks of the equilibrium pattern and their Brillouin zones, to draw.

    Parameters
    ----------
    ds : xarray.Dataset
        A reduced Dataset (its ``equilibrium``, ``mask`` and ``center`` are read).

    Returns
    -------
    peaks : ndarray, shape (K, 2)
        ``(row, col)`` of the peaks of :meth:`ReducedAccessor.peak_traces` (found in the
        equilibrium, refined, those with a fully valid disk).
    zones : list of ndarray, shape (M, 2)
        The corners ``(row, col)`` of every visible zone
        (:meth:`uedflow.image.brillouin_zones.getVisibleBZs`).

    Raises
    ------
    ValueError
        If fewer than two peaks are found (e.g. a polycrystalline pattern).
    """
    table = ds.ued.peak_traces()
    peaks = np.column_stack([table["row"].values, table["col"].values])
    image = np.nan_to_num(np.asarray(ds["equilibrium"].values, dtype=float))
    valid = ds["mask"].values.astype(bool) if "mask" in ds else np.ones(image.shape, bool)
    zones = brillouin_zones(image, valid, peaks, center=ds["center"].values.astype(float))
    return peaks, [np.asarray(z.visible_vertices, dtype=float) for z in zones.getVisibleBZs()]


def _spans(numbers):
    """``"1–4, 6"`` for ``[1, 2, 3, 4, 6]``: runs of consecutive numbers as ranges."""
    spans, numbers = [], sorted(int(n) for n in numbers)
    for n in numbers:
        if spans and n == spans[-1][1] + 1:
            spans[-1][1] = n
        else:
            spans.append([n, n])
    return ", ".join(f"{a}" if a == b else f"{a}\N{EN DASH}{b}" for a, b in spans)


def live_info(ds):
    """The ``uedflow_live`` attribute of a version of a live store, as a dict (empty for a
    store ``uedflow reduce --follow`` did not write)."""
    return json.loads(ds.attrs.get("uedflow_live") or "{}")


def live_label(ds, version):
    """What a version of a live store (``uedflow reduce --follow``) holds, for the page.

    Parameters
    ----------
    ds : xarray.Dataset
        The version, opened; its ``attrs["uedflow_live"]`` (JSON) gives the ``scans`` in it
        and whether the run is ``complete``.
    version : path-like
        Its folder (``OUT.live/vNNNNNN``), named when the attribute does not name it.

    Returns
    -------
    str

    Examples
    --------
    >>> import xarray as xr
    >>> ds = xr.Dataset(attrs={"uedflow_live": '{"scans": [1, 2, 3, 4], "complete": false, '
    ...                                         '"version": "v000004"}'})
    >>> live_label(ds, "out.zarr.live/v000004")
    'live: version v000004, scans 1–4 (run in progress)'
    """
    info = live_info(ds)
    text = f"live: version {info.get('version') or Path(version).name}"
    if info.get("scans"):
        text += f", scan{'s' if len(info['scans']) > 1 else ''} {_spans(info['scans'])}"
    if "complete" in info:
        text += " (run complete)" if info["complete"] else " (run in progress)"
    return text
