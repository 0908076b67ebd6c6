"""Quick-look plots of a reduced run: :func:`quicklook`.

Three PNG files, drawn with matplotlib's Agg renderer (no display, no pyplot state):

* ``pattern.png``: the equilibrium pattern on a log scale, with the centre and the mask;
* ``radial.png``: the relative change ΔI/I of the radial profiles, radius against delay;
* ``peaks.png``: ΔI/I of the strongest peaks (or rings) of the radial profile against delay.
"""

from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["quicklook"]

#: Number of peaks of the radial profile whose intensity change is plotted.
NPEAKS = 4


def quicklook(ds_or_store, outdir):
    """Write quick-look PNGs of a reduced run.

    Parameters
    ----------
    ds_or_store : xarray.Dataset or path-like
        A reduced Dataset, or a complete store written by
        :func:`uedflow.pipeline.store.write_reduced`. It needs ``radial (delay, radius)``
        and ``equilibrium (y, x)`` or ``diffraction (delay, y, x)``; ``mask``, ``center``
        and ``baseline`` are drawn or used where present.
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
    from matplotlib.figure import Figure

    from .store import open_reduced

    ds = ds_or_store if isinstance(ds_or_store, xr.Dataset) else open_reduced(ds_or_store)
    missing = [name for name in ("radial",) if name not in ds]
    if "equilibrium" not in ds and "diffraction" not in ds:
        missing.append("equilibrium or diffraction")
    if missing:
        raise ValueError(f"quicklook needs the variable(s) {', '.join(missing)}; the Dataset "
                         f"has {', '.join(map(str, ds.data_vars))}")
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)

    image = ds["equilibrium"] if "equilibrium" in ds else ds["diffraction"].mean("delay")
    image = np.asarray(image, dtype=float)
    radial = ds["radial"].transpose("delay", ...)
    profiles = np.asarray(radial, dtype=float)
    if "baseline" in ds:
        profiles = profiles - np.asarray(ds["baseline"].transpose(*radial.dims), dtype=float)
    delays = np.asarray(ds["delay"], dtype=float)
    radius = np.asarray(radial.coords[radial.dims[1]] if radial.dims[1] in radial.coords
                        else np.arange(profiles.shape[1]), dtype=float)
    before = delays < 0 if (delays < 0).any() else delays == delays.min()
    reference = np.nanmean(profiles[before], axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.where(np.abs(reference) > 0, (profiles - reference) / reference, np.nan)

    paths = []

    def save(fig, name):
        fig.savefig(outdir / name, dpi=100)
        paths.append(outdir / name)

    fig = Figure(figsize=(6, 5), layout="constrained")
    ax = fig.add_subplot()
    positive = image[np.isfinite(image) & (image > 0)]
    floor = np.percentile(positive, 1) if positive.size else 1.0
    shown = ax.imshow(np.log10(np.clip(np.nan_to_num(image, nan=floor), floor, None)),
                      cmap="inferno")
    fig.colorbar(shown, ax=ax, label="log10 intensity")
    if "mask" in ds:
        invalid = ~np.asarray(ds["mask"], dtype=bool)
        ax.imshow(np.ma.masked_where(~invalid, invalid), cmap="cool", alpha=0.5,
                  vmin=0, vmax=1, interpolation="nearest")
    if "center" in ds:
        row, col = np.asarray(ds["center"], dtype=float)
        ax.plot(col, row, "+", color="cyan", markersize=14, markeredgewidth=2,
                label=f"centre ({row:.2f}, {col:.2f})")
        ax.legend(loc="upper right")
    ax.set_title("equilibrium pattern" + (" (mask in magenta)" if "mask" in ds else ""))
    save(fig, "pattern.png")

    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.add_subplot()
    finite = np.abs(change[np.isfinite(change)])
    limit = np.percentile(finite, 99) if finite.size else 1.0
    mesh = ax.pcolormesh(radius, np.arange(delays.size), change, shading="nearest",
                         cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_yticks(np.arange(delays.size), [f"{t:g}" for t in delays])
    fig.colorbar(mesh, ax=ax, label="ΔI/I")
    ax.set(xlabel="radius (px)", ylabel="delay (ps)", title="radial profiles: ΔI/I")
    save(fig, "radial.png")

    fig = Figure(figsize=(7, 5), layout="constrained")
    ax = fig.add_subplot()
    for i in _strongest_peaks(reference):
        ax.plot(delays, change[:, i], "o-", label=f"r = {radius[i]:.1f} px")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set(xlabel="delay (ps)", ylabel="ΔI/I", title="intensity change of the strongest peaks")
    ax.legend()
    save(fig, "peaks.png")
    return paths


def _strongest_peaks(profile, n=NPEAKS):
    """Indices of the ``n`` most prominent peaks of ``profile`` (its maximum if it has none)."""
    from scipy.signal import find_peaks

    profile = np.nan_to_num(profile, nan=np.nanmin(profile))
    peaks, props = find_peaks(profile, prominence=0)
    if peaks.size == 0:
        return [int(np.argmax(profile))]
    return sorted(peaks[np.argsort(props["prominences"])[::-1][:n]])
