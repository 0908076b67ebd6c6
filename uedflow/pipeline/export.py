"""Export reduced runs and their traces: CSV tables and HDF5/NeXus files.

* :func:`to_csv`: traces (``(delay,)``, ``(peak, delay)``, ...) and radial profiles as a
  table with ``#`` header lines (units, long names, the coordinates of the columns, the
  provenance's source and version); ``pandas.read_csv(path, comment="#")`` reads it back.
* :func:`to_hdf5`: a whole reduced Dataset as a NeXus file (``NXroot/NXentry/NXdata``), every
  variable and coordinate a dataset with its ``units``, ``long_name`` and dims, the errors
  linked as NeXus ``{name}_errors``, the provenance as an ``NXnote``; image-sized variables
  are written one chunk of delays at a time (bounded memory). :func:`open_hdf5` reads it
  back. Needs the optional ``h5py`` (``pip install 'uedflow[hdf5]'``).
* :func:`export`: either, by the file's suffix, from a Dataset or a reduced store.

Files are written to a temporary name beside the target and renamed into place when
complete; an existing file is replaced only with ``overwrite``. :func:`peaks_figure` and
:func:`fit_figure` draw the results of ``uedflow peaks`` and ``uedflow fit`` (matplotlib's
Agg renderer, no pyplot state).
"""

import csv
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import xarray as xr

from .. import __version__

__all__ = ["CSV_SUFFIXES", "HDF5_SUFFIXES", "export", "fit_figure", "open_hdf5", "peaks_figure",
           "to_csv", "to_hdf5"]

CSV_SUFFIXES = (".csv",)
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5")
#: The variables of a reduced Dataset that :func:`export` writes to CSV by default.
PROFILES = ("radial", "radial_error", "radial_change", "radial_change_error")


def _target(path, overwrite):
    """The absolute target path, checked: its folder exists, it is not there (or may be
    replaced), and the temporary name beside it."""
    path = Path(path).absolute()
    if not path.parent.is_dir():
        raise FileNotFoundError(f"the folder of '{path}' does not exist")
    if path.exists() and not overwrite:
        raise FileExistsError(f"'{path}' exists; pass overwrite=True (--overwrite) to "
                              "replace it")
    if path.is_dir():
        raise IsADirectoryError(f"'{path}' is a folder, not a file")
    return path, path.with_name(f".{path.name}.uedflow-partial")


def _commit(partial, path):
    os.replace(partial, path)
    return path


def _label(value):
    if isinstance(value, float | np.floating):
        return f"{value:g}"
    return str(value.item() if hasattr(value, "item") else value)


def _cell(value):
    """A table cell: floats in their shortest round-trip form (float32 as float32)."""
    if isinstance(value, np.floating):
        return str(value)
    return repr(value) if isinstance(value, float) else _label(value)


def _describe(da):
    units = da.attrs.get("units")
    parts = [da.attrs.get("long_name", ""), f"({units})" if units else ""]
    return " ".join(part for part in parts if part)


def _source_line(ds):
    text = ds.attrs.get("uedflow")
    try:
        record = json.loads(text) if text else {}
    except ValueError:
        record = {}
    source = record.get("source")
    return f"# uedflow {__version__} export" + (f" of {source}" if source else "")


def to_csv(data, path, *, rows=None, overwrite=False):
    """Write traces or profiles as a CSV table.

    Parameters
    ----------
    data : xarray.Dataset or xarray.DataArray
        Variables of one or two dims (computed if lazy): e.g. :meth:`ReducedAccessor.\
time_series`, :meth:`~ReducedAccessor.peak_traces` or the ``radial*`` variables of a
        reduced Dataset. Image-sized variables (dims ``y``, ``x``) are refused (write HDF5).
    path : path-like
        The CSV file.
    rows : str, optional
        The dim along the rows. Default ``radius`` when a variable has it (profiles: one
        column per delay), else ``delay`` (traces: one column per peak), else the first dim.
    overwrite : bool, optional
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        If no variable has the ``rows`` dim, or one has more than two dims or image dims.
    FileExistsError
        If ``path`` exists and not ``overwrite``.

    Notes
    -----
    Columns: the ``rows`` coordinate and the other coordinates along it (e.g. ``q``), then
    each variable: one column if it has the ``rows`` dim only, else one per entry of its
    other dim, named ``name[label]`` (``label`` that dim's coordinate, e.g.
    ``radial_change[-2]`` or ``change[17]``). Header lines (``#``) give the units and long
    names, the coordinates along the columns (the peak table of peak traces), and the
    variables left out (those without the ``rows`` dim).

    Examples
    --------
    >>> import tempfile, pathlib, numpy as np, xarray as xr, pandas as pd
    >>> ts = xr.Dataset({"change": ("delay", [0.0, -0.1]),
    ...                  "change_error": ("delay", [0.01, 0.01])},
    ...                 coords={"delay": ("delay", [-1.0, 2.0], {"units": "ps"})})
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "trace.csv"
    >>> _ = to_csv(ts, path)
    >>> pd.read_csv(path, comment="#")
       delay  change  change_error
    0   -1.0     0.0          0.01
    1    2.0    -0.1          0.01
    """
    ds = data.to_dataset(name=data.name or "value") if isinstance(data, xr.DataArray) else data
    for name, var in ds.data_vars.items():
        if {"y", "x"} & set(var.dims) or var.ndim > 2:
            raise ValueError(f"CSV holds traces and profiles; {name!r} has dims {var.dims}: "
                             "export the whole Dataset to HDF5 instead")
    dims = [d for var in ds.data_vars.values() for d in var.dims]
    if rows is None:
        rows = next((d for d in ("radius", "delay") if d in dims), dims[0] if dims else None)
    along = {name: var for name, var in ds.data_vars.items() if rows in var.dims}
    if not along:
        raise ValueError(f"rows: no variable has the dim {rows!r}; the variables have "
                         f"{sorted(set(dims))}")
    path, partial = _target(path, overwrite)
    ds = ds[list(along)].compute()
    index = ds[rows].values if rows in ds.coords else np.arange(ds.sizes[rows])
    columns, header = [(rows, index)], [_source_line(data if isinstance(data, xr.Dataset)
                                                     else ds)]
    if rows in ds.coords and _describe(ds[rows]):
        header.append(f"# {rows}: {_describe(ds[rows])}")
    for name, coord in ds.coords.items():
        if name != rows and coord.dims == (rows,):
            columns.append((name, coord.values))
            header.append(f"# {name}: {_describe(coord)}")
    described = set()
    for name, var in ds.data_vars.items():
        header.append(f"# {name}: {_describe(var)}")
        var = var.transpose(rows, ...)
        if var.ndim == 1:
            columns.append((name, var.values))
            continue
        other = var.dims[1]
        labels = ds[other].values if other in ds.coords else np.arange(var.shape[1])
        columns += [(f"{name}[{_label(v)}]", var.values[:, k]) for k, v in enumerate(labels)]
        if other not in described:
            described.add(other)
            for cname, coord in ds.coords.items():
                if coord.dims == (other,):
                    values = ", ".join(_label(v) for v in coord.values)
                    header.append(f"# {cname} per {other} ({coord.attrs.get('units', '')}): "
                                  f"{values}")
    left_out = [f"{n} {tuple(v.dims)}" for n, v in
                (data.data_vars.items() if isinstance(data, xr.Dataset) else [])
                if n not in along]
    if left_out:
        header.append(f"# not in this table (no {rows} dim): {', '.join(left_out)}")
    try:
        with open(partial, "w", newline="", encoding="utf-8") as file:
            file.write("\n".join(header) + "\n")
            writer = csv.writer(file)
            writer.writerow([name for name, _ in columns])
            for i in range(len(index)):
                writer.writerow([_cell(values[i]) for _, values in columns])
        return _commit(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _h5py():
    try:
        import h5py
    except ImportError:
        raise ImportError("HDF5 export needs h5py: pip install 'uedflow[hdf5]'") from None
    return h5py


def _storable(values, h5py):
    """``values`` as an array h5py stores (strings as UTF-8)."""
    values = np.asarray(values)
    if values.dtype.kind in "UOT":
        return values.astype(object), h5py.string_dtype()
    return values, values.dtype


def _write_variable(group, name, var, is_coord, compression, h5py):
    """One variable as a dataset, written a chunk of its first dim at a time."""
    options = {}
    if var.ndim >= 2 and var.dtype.kind in "fiub" and compression:
        options = {"compression": compression, "shuffle": True,
                   "chunks": (1, *var.shape[1:]) if var.ndim >= 3 else True}
    if var.chunks is None or var.ndim == 0:
        values, dtype = _storable(var.values, h5py)
        dataset = group.create_dataset(name, data=values, dtype=dtype, **options)
    else:
        dataset = group.create_dataset(name, shape=var.shape, dtype=var.dtype, **options)
        start = 0
        for size in var.chunks[0]:
            dataset[start:start + size] = var[start:start + size].values
            start += size
    for key, value in var.attrs.items():
        dataset.attrs[key] = value if isinstance(value, str | int | float) else json.dumps(
            value, default=str)
    dataset.attrs["xarray_dims"] = json.dumps(list(var.dims))
    dataset.attrs["xarray_coordinate"] = is_coord
    return dataset


def to_hdf5(ds, path, *, overwrite=False, compression="gzip"):
    """Write a reduced Dataset (or any Dataset) as an HDF5/NeXus file.

    Parameters
    ----------
    ds : xarray.Dataset
        E.g. a reduced store opened with :func:`uedflow.pipeline.open_reduced`; lazy
        variables are computed and written one chunk of their first dim at a time.
    path : path-like
        The file (``.nxs``, ``.h5``, ...).
    overwrite : bool, optional
        Replace an existing file.
    compression : str or None, optional
        HDF5 filter of the arrays of two dims or more (``"gzip"``, level 4, with shuffle;
        None for none).

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ImportError
        Without h5py.
    FileExistsError
        If ``path`` exists and not ``overwrite``.

    Notes
    -----
    Layout: ``/entry`` (``NXentry``, with ``program_name`` and ``start_time``) holds
    ``/entry/data`` (``NXdata``): every variable and coordinate as a dataset with its
    attrs, ``xarray_dims`` (JSON) and ``xarray_coordinate``; its ``signal`` is
    ``diffraction`` (or the first variable), with ``axes`` and ``AXISNAME_indices`` for its
    dims that have coordinates; ``{name}_errors`` is a hard link to ``{name}_error``, as
    NeXus names uncertainties. ``/entry/notes`` (``NXnote``, ``application/json``) holds
    the provenance, ``attrs["uedflow"]``.
    """
    h5py = _h5py()
    path, partial = _target(path, overwrite)
    names = list(ds.data_vars)
    signal = "diffraction" if "diffraction" in names else (names[0] if names else None)
    try:
        with h5py.File(partial, "w") as file:
            file.attrs.update(NX_class="NXroot", default="entry", creator=f"uedflow "
                              f"{__version__}", file_name=path.name,
                              file_time=datetime.now(UTC).isoformat())
            entry = file.create_group("entry")
            entry.attrs.update(NX_class="NXentry", default="data")
            program = entry.create_dataset("program_name", data="uedflow")
            program.attrs["version"] = __version__
            entry.create_dataset("start_time", data=datetime.now(UTC).isoformat())
            data = entry.create_group("data")
            data.attrs["NX_class"] = "NXdata"
            for name, coord in ds.coords.items():
                _write_variable(data, name, coord.variable, True, compression, h5py)
            for name in names:
                _write_variable(data, name, ds[name].variable, False, compression, h5py)
            for name in names:
                if f"{name}_error" in names and f"{name}_errors" not in data:
                    data[f"{name}_errors"] = data[f"{name}_error"]
            if signal is not None:
                data.attrs["signal"] = signal
                data.attrs["axes"] = [d if d in ds.coords else "." for d in ds[signal].dims]
                for k, dim in enumerate(ds[signal].dims):
                    if dim in ds.coords:
                        data.attrs[f"{dim}_indices"] = k
            for key, value in ds.attrs.items():
                if key != "uedflow":
                    data.attrs[key] = value if isinstance(value, str | int | float) else \
                        json.dumps(value, default=str)
            notes = entry.create_group("notes")
            notes.attrs["NX_class"] = "NXnote"
            notes.create_dataset("type", data="application/json")
            notes.create_dataset("description", data="uedflow provenance (attrs['uedflow'])")
            notes.create_dataset("data", data=ds.attrs.get("uedflow", "{}"))
        return _commit(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _attr(value):
    return value.decode() if isinstance(value, bytes) else value


def open_hdf5(path):
    """Read a file written by :func:`to_hdf5` back into an :class:`xarray.Dataset` (in
    memory).

    Raises
    ------
    ValueError
        If the file has no ``/entry/data`` written by uedflow; the message names it.
    """
    h5py = _h5py()
    path = Path(path)
    with h5py.File(path, "r") as file:
        if "entry/data" not in file:
            raise ValueError(f"'{path}' has no /entry/data: not a file written by uedflow")
        group = file["entry/data"]
        coords, variables = {}, {}
        for name, dataset in group.items():
            if "xarray_dims" not in dataset.attrs or (
                    name.endswith("_errors") and name[:-1] in group
                    and group[name[:-1]] == dataset):
                continue
            values = dataset[()]
            if dataset.dtype.kind == "O" or h5py.check_string_dtype(dataset.dtype):
                values = dataset.asstr()[()]
            dims = json.loads(_attr(dataset.attrs["xarray_dims"]))
            attrs = {k: _attr(v) for k, v in dataset.attrs.items()
                     if k not in ("xarray_dims", "xarray_coordinate")}
            target = coords if dataset.attrs["xarray_coordinate"] else variables
            target[name] = xr.Variable(dims, values, attrs)
        attrs = {k: _attr(v) for k, v in group.attrs.items()
                 if k not in ("NX_class", "signal", "axes") and not k.endswith("_indices")}
        if "entry/notes/data" in file:
            attrs["uedflow"] = file["entry/notes/data"].asstr()[()]
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def export(source, path, *, variables=None, rows=None, overwrite=False):
    """Export a reduced Dataset or store to CSV or HDF5/NeXus, by the suffix of ``path``.

    Parameters
    ----------
    source : xarray.Dataset or path-like
        A Dataset, or a reduced store (opened with :func:`open_reduced`, lazily).
    path : path-like
        ``.csv``: a table (:func:`to_csv`) of ``variables``, by default the radial
        profiles and their change with errors; ``.nxs``, ``.h5``, ``.hdf5``, ``.hdf``,
        ``.nx5``: a NeXus file (:func:`to_hdf5`) of ``variables``, by default all.
    variables : list of str, optional
        The variables to write.
    rows : str, optional
        For CSV, see :func:`to_csv`.
    overwrite : bool, optional
        Replace an existing file.

    Returns
    -------
    pathlib.Path
        The file written.

    Raises
    ------
    ValueError
        For another suffix, or a variable that the Dataset does not have.
    """
    from .store import open_reduced

    ds = source if isinstance(source, xr.Dataset) else open_reduced(source)
    suffix = Path(path).suffix.lower()
    if suffix not in CSV_SUFFIXES + HDF5_SUFFIXES:
        raise ValueError(f"'{path}': unknown file type {suffix!r}; use .csv or one of "
                         f"{', '.join(HDF5_SUFFIXES)}")
    if variables is None and suffix in CSV_SUFFIXES:
        variables = [name for name in PROFILES if name in ds.data_vars]
        if not variables:
            raise ValueError(f"the Dataset has none of {list(PROFILES)}; name the variables "
                             "to write to CSV")
    if variables is not None:
        missing = [name for name in variables if name not in ds.data_vars]
        if missing:
            raise ValueError(f"variables {missing} are not in the Dataset; it has "
                             f"{sorted(ds.data_vars)}")
        ds = ds[list(variables)]
    if suffix in CSV_SUFFIXES:
        return to_csv(ds, path, rows=rows, overwrite=overwrite)
    return to_hdf5(ds, path, overwrite=overwrite)


def _delay_axis(ax, delays):
    span = np.ptp(delays) if len(delays) else 0
    if span and np.min(delays) < 0 < np.max(delays) and np.max(np.abs(delays)) > 20 * np.min(
            np.diff(np.unique(delays))):
        ax.set_xscale("symlog", linthresh=max(1.0, float(np.min(np.abs(delays[delays != 0])))))
    ax.set_xlabel("delay (ps)")


def peaks_figure(ds, traces, families=None, max_families=8):
    """The equilibrium pattern with the integration disks of the peaks, and ΔI/I of the
    peak families against delay.

    Parameters
    ----------
    ds : xarray.Dataset
        The reduced Dataset (its ``equilibrium``).
    traces : xarray.Dataset
        :meth:`ReducedAccessor.peak_traces` (per peak), computed.
    families : xarray.Dataset, optional
        :meth:`ReducedAccessor.average_peaks` of ``traces``; drawn on the right.
    max_families : int, optional
        The families of lowest ``q`` drawn.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Circle

    fig = Figure(figsize=(12, 5), layout="constrained")
    image_ax, trace_ax = fig.subplots(1, 2, width_ratios=(1, 1.2))
    image = np.asarray(ds["equilibrium"].values, dtype=float)
    shown = np.log10(np.clip(np.nan_to_num(image), 1, None))
    image_ax.imshow(shown, cmap="inferno", vmin=np.percentile(shown, 5))
    radius = float(traces.attrs.get("radius", 3))
    for k, (row, col) in enumerate(zip(traces["row"].values, traces["col"].values,
                                       strict=True)):
        image_ax.add_patch(Circle((col, row), radius, fill=False, color="cyan", lw=0.7))
        image_ax.annotate(str(traces["peak"].values[k]), (col + radius, row - radius),
                          color="cyan", fontsize=6)
    image_ax.set(title=f"equilibrium: {traces.sizes['peak']} Bragg peaks", xlabel="column (px)",
                 ylabel="row (px)")
    if families is not None:
        delays = families["delay"].values
        for f in families["family"].values[:max_families]:
            one = families.sel(family=f)
            label = (f"{{{one['hkl'].item()}}}" if "hkl" in families.coords else
                     f"r = {float(one['radius']):.1f} px")
            if "q" in families.coords:
                label += f", q = {float(one['q']):.2f} 1/Å"
            trace_ax.errorbar(delays, one["change"], one["change_error"], marker="o", ms=3,
                              capsize=2, label=f"{label} ({int(one['members'])})")
        trace_ax.axhline(0, color="gray", lw=0.7)
        _delay_axis(trace_ax, delays)
        trace_ax.set(ylabel="ΔI/I", title="families of equivalent peaks")
        trace_ax.legend(fontsize=7)
    return fig


def fit_figure(trace, fit, var):
    """A trace with its error bars and a fitted model (:class:`uedflow.analysis.FitResult`).

    Parameters
    ----------
    trace : xarray.Dataset
        Holds ``var`` and ``{var}_error`` against ``delay``.
    fit : uedflow.analysis.FitResult
    var : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    delays = trace["delay"].values
    error = trace[f"{var}_error"] if f"{var}_error" in trace else None
    ax.errorbar(delays, trace[var], error, fmt="o", ms=4, capsize=2, label="data")
    fine = np.linspace(delays.min(), delays.max(), 800)
    text = ", ".join(f"{name} = {fit[name]:.3g} ± {fit.errors[name]:.2g}"
                     for name in ("t0", "tau", "tau2") if name in fit.values)
    ax.plot(fine, fit(fine), label=f"fit: {text}")
    _delay_axis(ax, delays)
    ax.set(ylabel=trace[var].attrs.get("long_name", var), title=trace.attrs.get("region", ""))
    ax.legend(fontsize=8)
    return fig
