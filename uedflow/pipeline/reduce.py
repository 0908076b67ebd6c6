"""Reduction of a time-resolved run ``(delay, scan, y, x)`` into a clean diffraction movie.

:func:`reduce` composes the stack operations of the ``.ued`` accessor into the steps of a
UED reduction (see ``docs/pipeline.md``). Its small results (mask, centre, shifts, frame
statistics, rejections, equilibrium) are computed at once, in an analysis pass; the
image-sized results stay lazy, one task per delay, so that they can be written chunk by chunk.
"""

import hashlib
import json
import os
import time
from contextlib import nullcontext
from importlib.metadata import PackageNotFoundError, version

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.diagnostics import ProgressBar

from ..errors import FrameMismatchError
from ..image.alignment import AlignPlan, _translate
from ..image.center import auto_masking, autocenter
from ..io.lazy import open_stack
from ..io.readers import diffread
from ..stack.accessor import ROW_COL
from ..stack.lift import Plans, as_stack
from .config import ReduceConfig

__all__ = ["file_digest", "reduce"]

DIMS = ("delay", "scan", "y", "x")
#: Bytes hashed at the start and at the end of every input file (see :func:`file_digest`).
DIGEST_BYTES = 2**16
#: Scale of a normal distribution from its median absolute deviation.
MAD_SIGMA = 1.4826
#: Smallest robust spread of the frame criteria: relative total intensity, 1 - correlation.
INTENSITY_FLOOR = 0.01
CORRELATION_FLOOR = 1e-3
#: Packages whose versions are recorded with every reduction.
DEPENDENCIES = ("uedflow", "numpy", "scipy", "dask", "xarray", "zarr", "tifffile")


def file_digest(path):
    """Digest of a file that is cheap on terabytes of raw data.

    SHA-256 of the file's size, modification time (ns) and its first and last
    :data:`DIGEST_BYTES` (64 KiB) bytes: pixel data is not read again in full, yet a file
    that is replaced, truncated or rewritten changes its digest.

    Parameters
    ----------
    path : path-like
        File.

    Returns
    -------
    str
        ``"sha256:<hex>"``.
    """
    stat = os.stat(path)
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}:".encode())
    with open(path, "rb") as file:
        digest.update(file.read(DIGEST_BYTES))
        file.seek(max(stat.st_size - DIGEST_BYTES, 0))
        digest.update(file.read(DIGEST_BYTES))
    return f"sha256:{digest.hexdigest()}"


def _versions():
    versions = {}
    for name in DEPENDENCIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def _check_run(run):
    if not isinstance(run, xr.DataArray) or set(run.dims) != set(DIMS):
        dims = run.dims if isinstance(run, xr.DataArray) else type(run).__name__
        raise ValueError(f"run must be an xarray.DataArray with dims {DIMS}, as "
                         f"uedflow.io.runs.open_run returns; got {dims}")
    run = as_stack(run.transpose(*DIMS))
    if run.sizes["delay"] == 0 or run.sizes["scan"] == 0:
        raise ValueError(f"run is empty: sizes {dict(run.sizes)}")
    return run.chunk({"delay": 1, "scan": -1})


def _open_frames(files, shape, what):
    """The frames ``files`` (darks, flats) as a lazy stack of the run's frame shape."""
    if not files:
        return None
    frames = open_stack([str(f) for f in files])
    if frames.shape[-2:] != shape:
        raise FrameMismatchError(f"{what} frame {files[0]} has shape {frames.shape[-2:]}, the "
                                 f"run's frames {shape}")
    return frames


def _read_image(path, shape, key):
    image = diffread(path)
    if image.shape != shape:
        raise ValueError(f"{key}: {path} has shape {image.shape}, the run's frames {shape}")
    return image


def _gain(config, flats, dark, shape):
    """Flat field normalised to a mean of 1 over its positive pixels (None: no correction)."""
    if not config.flat.divide:
        return None
    if config.flat.file is not None:
        flat = _read_image(config.flat.file, shape, "[flat] file").astype(float)
    elif flats is not None:
        flat = flats.ued.mean().values - (0 if dark is None else dark)
    else:
        return None
    positive = flat > 0
    if not positive.any():
        raise ValueError("the flat field has no positive pixel")
    return np.where(positive, flat / flat[positive].mean(), np.inf).astype(np.float32)


def _first_present(present):
    index = np.argwhere(present)
    if index.size == 0:
        raise ValueError("run has no present frame: every frame is missing or bad")
    return tuple(index[0])


def _early_reference(corrected, present, first, valid, config, options, progress):
    """Mean of the present frames of the earliest delays, each aligned onto ``first``, and
    the pixels of it that only valid detector pixels reach."""
    early = corrected.isel(delay=slice(0, config.early_delays))
    weight = xr.DataArray(present[: config.early_delays].astype(np.float32),
                          dims=("delay", "scan"))
    if not weight.values.any():
        raise ValueError(f"[align] reference 'early': no present frame in the first "
                         f"{config.early_delays} delays")
    aligned = early.ued.align(first, valid, **options)
    mean = (aligned * weight).sum(("delay", "scan")) / weight.sum()
    shifts, mean = _compute(early.ued.shifts(first, valid, **options).data, mean.data,
                            progress=progress)
    return mean, valid & _aligned_mask(valid, shifts[weight.values > 0], margin=False)


def _shifted_and(valid, offsets):
    """Pixels ``i`` where ``valid[i + o]`` for every integer offset ``o`` (False outside)."""
    out = valid.copy()
    ny, nx = valid.shape
    for dy, dx in offsets:
        moved = np.zeros_like(valid)
        moved[max(0, -dy):ny - max(0, dy), max(0, -dx):nx - max(0, dx)] = valid[
            max(0, dy):ny - max(0, -dy), max(0, dx):nx - max(0, -dx)]
        out &= moved
    return out


def _offsets(shift):
    """Integer source offsets that a bilinear shift by ``shift`` reads from."""
    per_axis = []
    for s in shift:
        low = int(np.floor(-s))
        per_axis.append((low, low + 1) if -s != low else (low,))
    return {(a, b) for a in per_axis[0] for b in per_axis[1]}


def _aligned_mask(valid, shifts, margin):
    """Pixels of the aligned frames that only valid detector pixels reach."""
    offsets = set().union(*(_offsets(s) for s in shifts))
    out = _shifted_and(valid, offsets)
    if margin:
        out = _shifted_and(out, {(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)})
    return out


def _region(config, center, shape):
    """Pixels whose total intensity normalises a frame."""
    if config.ring is not None:
        yy, xx = np.indices(shape)
        r = np.hypot(yy - center[0], xx - center[1])
        return (r >= config.ring[0]) & (r <= config.ring[1])
    region = np.ones(shape, dtype=bool)
    if config.rect is not None:
        r0, r1, c0, c1 = (int(v) for v in config.rect)
        region[:] = False
        region[r0:r1, c0:c1] = True
    return region


def _delay_stats(block, shifts, use, region, mask):
    """Total in ``region`` and correlation to the median over scans of every aligned frame
    of one delay: ``(1, scans, 2)``, NaN for frames not used."""
    out = np.full((*use.shape, 2), np.nan)
    used = np.flatnonzero(use[0])
    frames = np.empty((used.size, int(mask.sum())), np.float32)
    for k, s in enumerate(used):
        aligned = _translate(block[0, s], shifts[0, s], 0.0)
        out[0, s, 0] = aligned[region].sum(dtype=np.float64)
        frames[k] = aligned[mask]
        frames[k] *= np.float32(1 / out[0, s, 0]) if out[0, s, 0] else 1
    if used.size < 3:  # no majority to compare with
        out[0, used, 1] = 1.0
        return out
    frames -= frames.mean(axis=1, keepdims=True)
    median = np.median(frames, axis=0)
    median -= median.mean()
    norm = np.linalg.norm(frames, axis=1) * np.linalg.norm(median)
    out[0, used, 1] = frames @ median / np.where(norm > 0, norm, 1)
    return out


def _average_delay(block, shifts, weights, mask, pixel_z, plans):
    """Average over scans of the aligned, normalised frames of one delay (``weights``: the
    normalisation factors, 0 for frames left out), with the pixel MAD cut, then aligned
    onto the reference (``plans``). Returns ``(image, delay shift, pixels cut per scan)``."""
    used = np.flatnonzero(weights[0] > 0)
    counts = np.zeros(weights.shape[1], np.int64)
    frames = np.empty((used.size, *mask.shape), np.float32)
    for k, s in enumerate(used):
        frames[k] = _translate(block[0, s], shifts[0, s], 0.0)
        frames[k] *= np.float32(weights[0, s])
    if pixel_z is not None and used.size >= 3:
        median = np.median(frames, axis=0)
        dev = np.abs(frames - median)
        noise = np.median(dev, axis=0)
        noise *= MAD_SIGMA
        np.maximum(noise, np.sqrt(np.maximum(median, 1)), out=noise)  # shot-noise floor
        cut = dev > pixel_z * noise
        cut &= mask
        counts[used] = cut.sum(axis=(1, 2))
        frames[cut] = 0
        image = frames.sum(axis=0, dtype=np.float64) / (used.size - cut.sum(axis=0))
    else:
        image = frames.mean(axis=0, dtype=np.float64)
    image = image.astype(np.float32)
    image[~mask] = 0
    delta = np.zeros(2)
    if plans is not None:
        delta = plans.get().shift(image)
        image = _translate(image, delta, 0.0)
        image[~mask] = 0
    out = np.empty(1, dtype=object)
    out[0] = (image, delta, counts)
    return out


def _pick(parts, k):
    return np.stack([part[k] for part in parts])


def _robust_z(values, use, floor):
    """(values - median) / (1.4826 MAD) over the ``use`` values; the MAD at least ``floor``."""
    median = np.median(values[use])
    mad = max(np.median(np.abs(values[use] - median)), floor)
    return (values - median) / (MAD_SIGMA * mad)


def _frame_rejections(config, present, scans, shifts, max_shift, upsample_factor):
    """Reasons, by name, as boolean ``(delay, scan)`` arrays: those known before the frames'
    statistics (missing, excluded scans, registration)."""
    reasons = {"missing": ~present,
               "excluded": np.broadcast_to(np.isin(scans, config.exclude_scans), present.shape)}
    usable = present & ~reasons["excluded"]
    if not usable.any():
        raise ValueError("no frame left to reduce: every frame is missing, bad or in an "
                         f"excluded scan {config.exclude_scans}")
    if config.enabled:
        deviation = np.hypot(*np.moveaxis(shifts - np.median(shifts[usable], axis=0), -1, 0))
        bad = _robust_z(deviation, usable, 1 / upsample_factor) > config.shift_z
        if max_shift is not None:  # the registration hit the edge of its search window
            bad |= (np.abs(shifts) >= int(max_shift)).any(axis=-1)
        reasons["shift"] = bad & usable
    return reasons


def _compute(*arrays, progress):
    with ProgressBar() if progress else nullcontext():
        return dask.compute(*arrays)


class _Timer:
    def __init__(self):
        self.times = {}
        self._last = time.perf_counter()

    def __call__(self, step):
        now = time.perf_counter()
        self.times[step] = round(now - self._last, 3)
        self._last = now


def _inputs(run, config):
    """Digest of every input file (frames, darks, flats, mask and flat files)."""
    files = []
    if "file" in run.coords:
        files += [f for f in np.ravel(run.coords["file"].values) if f]
    for key in ("darks", "flats"):
        files += list(run.attrs.get(key) or [])
    files += [f for f in (config.mask.file, config.flat.file) if f is not None]
    return {"method": f"sha256 of size, mtime_ns and the first and last {DIGEST_BYTES} bytes",
            "files": {str(f): file_digest(f) for f in files}}


def reduce(run, config=None, *, progress=False):
    """Reduce a time-resolved run into a diffraction movie, its radial profiles and their
    provenance.

    The steps, in order (each configured by a section of ``config``, see
    ``docs/pipeline.md``): dark subtraction (mean of ``run.attrs["darks"]``) and flat-field
    correction → pixel mask (a given file, bad pixels by ``mask_from_collection`` over the
    darks or the run, and the beam block by ``auto_masking`` of the reference) → centre
    (``autocenter`` of the reference, or given) → sub-pixel masked registration of every
    frame onto the reference (the first frame, or the mean of the earliest delays) →
    normalisation to the total intensity in a region → rejection of whole frames (robust
    z-scores of total intensity, of the shift and of the correlation to the median over
    scans) and of pixels (a MAD cut across scans) → average over scans → registration of
    the averages onto the reference → optional n-fold symmetrisation → equilibrium (mean of
    the delays before time zero) and relative change → azimuthal averages → optional
    baseline of the profiles.

    Parameters
    ----------
    run : xarray.DataArray
        Run ``(delay, scan, y, x)``, as :func:`uedflow.io.runs.open_run` (or
        :func:`uedflow.open_stack` of a run directory or zarr store) returns it. Frames with
        the coordinate ``present`` False are left out (reason ``"missing"``).
    config : ReduceConfig or dict, optional
        Configuration; default: every default.
    progress : bool, optional
        Show progress bars of the analysis pass.

    Returns
    -------
    xarray.Dataset
        ``diffraction (delay, y, x)`` float32, lazy, one chunk per delay: the aligned,
        normalised average over scans; ``equilibrium (y, x)``; ``radial (delay, radius)``
        and ``radial_change (delay, radius)`` = ΔI/I of the profiles, lazy; ``baseline
        (delay, radius)`` (with a baseline method), lazy; ``mask (y, x)`` (True on valid
        pixels of the aligned movie); ``center (coord)`` ``(row, col)`` of the aligned
        movie; ``shifts (delay, scan, coord)`` that moved each frame onto the reference
        (NaN for missing frames); ``delay_shifts (delay, coord)`` of the averages, lazy;
        ``rejected (delay, scan)``; ``rejected_pixels (delay, scan)`` pixels cut, lazy;
        ``total (delay, scan)``, ``correlation (delay, scan)`` and ``scale (delay,
        scan)`` of every frame. ``attrs["uedflow"]``: JSON with the config, versions,
        input digests (:func:`file_digest`), mask digest, rejected frames and their
        reasons, excluded scans, missing and bad files, and the timing of each step.

    Raises
    ------
    ValueError
        For a run of other dims, an empty run, a bad configuration, mask or flat file,
        no delay before time zero, or a delay whose frames are all left out.
    uedflow.errors.FrameMismatchError
        If dark or flat frames differ in shape from the run's frames.

    Notes
    -----
    The analysis pass computes, in turn: the darks' mean and the mask, the reference, the
    shifts (one registration per frame), then every frame's total and correlation, and
    finally the equilibrium (the averages of the delays before time zero). Everything that
    combines frames runs inside one task per delay, in a fixed order, so the results are
    bit-identical on any scheduler. Pixels of the aligned movie that an invalid detector
    pixel reaches through any kept frame's shift are masked (0 in ``diffraction``).
    """
    timer = _Timer()
    if config is None:
        config = ReduceConfig()
    elif isinstance(config, dict):
        config = ReduceConfig.from_dict(config)
    run = _check_run(run)
    shape = run.shape[-2:]
    delays, scans = run["delay"].values, run["scan"].values
    present = (run.coords["present"].values.astype(bool) if "present" in run.coords
               else np.ones(run.shape[:2], dtype=bool))

    # dark and flat field
    darks = _open_frames(run.attrs.get("darks"), shape, "dark")
    flats = _open_frames(run.attrs.get("flats"), shape, "flat")
    dark = None
    if config.dark.subtract and darks is not None:
        dark = darks.ued.mean().values.astype(np.float32)
    gain = _gain(config, flats, dark, shape)
    corrected = run.astype(np.float32)
    if dark is not None:
        corrected = corrected - xr.DataArray(dark, dims=("y", "x"))
    if gain is not None:
        corrected = corrected / xr.DataArray(gain, dims=("y", "x"))
    timer("dark_flat")

    # mask and reference
    valid = np.ones(shape, dtype=bool) if gain is None else np.isfinite(gain)
    if config.mask.file is not None:
        valid &= _read_image(config.mask.file, shape, "[mask] file") != 0
    source = config.mask.from_collection
    if source == "auto":
        source = "run" if darks is None else "darks"
    if source == "darks" and darks is None:
        raise ValueError("[mask] from_collection = 'darks', but the run has no dark frames")
    bad = None
    if source != "none":
        bad = (darks if source == "darks" else run).ued.mask_from_collection(
            config.mask.px_thresh, config.mask.std_thresh).data
    reference, bad = _compute(corrected.data[_first_present(present)], bad, progress=progress)
    if bad is not None:
        valid &= ~bad
    if config.mask.beam_block_threshold is not None:
        valid &= auto_masking(reference, config.mask.beam_block_threshold)
    if not valid.any():
        raise ValueError("the mask leaves no valid pixel")
    options = {"upsample_factor": config.align.upsample_factor,
               "max_shift": config.align.max_shift}
    if config.align.reference == "early":
        reference, valid = _early_reference(corrected, present, reference, valid, config.align,
                                            options, progress)
    timer("mask_reference")

    center = np.asarray(config.center.value if config.center.value is not None
                        else autocenter(reference, valid), dtype=float)
    timer("center")

    # registration and frame statistics
    shifts = np.zeros((*run.shape[:2], 2))
    if config.align.enabled:
        shifts = corrected.ued.shifts(reference, valid, **options).values
    shifts[~present] = np.nan
    reasons = _frame_rejections(config.reject, present, scans[None, :], shifts,
                                config.align.max_shift, config.align.upsample_factor)
    usable = ~np.logical_or.reduce(list(reasons.values()))
    mask = _aligned_mask(valid, shifts[usable], config.average.align)
    timer("align")

    region = _region(config.normalize, center, shape) & mask
    if not region.any():
        raise ValueError(f"[normalize] the region {config.normalize} has no valid pixel")
    chunks = corrected.chunks[:2]
    shift_data = da.from_array(shifts, chunks=(*chunks, 2))
    stats = da.blockwise(
        _delay_stats, "dsk", corrected.data, "dsyx", shift_data, "dsc",
        da.from_array(usable, chunks=chunks), "ds", dask.delayed(region), None,
        dask.delayed(mask), None, new_axes={"k": 2}, concatenate=True, dtype=float,
        meta=np.empty((0, 0, 0)))
    (stats,) = _compute(stats, progress=progress)
    total, correlation = stats[..., 0], stats[..., 1]
    if config.reject.enabled:
        relative = total / np.median(total[usable]) - 1
        reasons["intensity"] = usable & (np.abs(_robust_z(relative, usable, INTENSITY_FLOOR))
                                         > config.reject.intensity_z)
        reasons["correlation"] = usable & (-_robust_z(correlation, usable, CORRELATION_FLOOR)
                                           > config.reject.correlation_z)
    rejected = np.logical_or.reduce(list(reasons.values()))
    empty = [f"{d:g}" for d, row in zip(delays, rejected, strict=True) if row.all()]
    if empty:
        raise ValueError(f"every frame of the delays {empty} ps is missing or rejected; select "
                         "the other delays (run.sel(delay=...)) to reduce them")
    scale = np.where(rejected, 0.0, 1.0)
    if config.normalize.enabled:
        scale[~rejected] = np.median(total[~rejected]) / total[~rejected]
    timer("frame_statistics")

    # lazy averages over scans
    plans = None
    if config.average.align:
        plans = Plans(AlignPlan, (reference, mask), {**options, "max_shift": 1})
    pixel_z = config.reject.pixel_z if config.reject.enabled else None
    parts = da.blockwise(
        _average_delay, "d", corrected.data, "dsyx", shift_data, "dsc",
        da.from_array(scale, chunks=chunks), "ds", dask.delayed(mask), None, pixel_z, None,
        None if plans is None else dask.delayed(plans, pure=True), None,
        concatenate=True, dtype=object, meta=np.empty((0,), object))

    def pick(k, extra, dtype):
        return da.map_blocks(_pick, parts, k, new_axis=list(range(1, 1 + len(extra))),
                             chunks=(parts.chunks[0], *((n,) for n in extra)), dtype=dtype,
                             meta=np.empty((0,) * (1 + len(extra)), dtype))

    coords = {"delay": run["delay"], "scan": run["scan"], "coord": ROW_COL}
    diffraction = xr.DataArray(pick(0, shape, np.float32), dims=("delay", "y", "x"),
                               coords={"delay": run["delay"]}, name="diffraction")
    if config.symmetrize.mod is not None:
        diffraction = diffraction.ued.nfold(config.symmetrize.mod, center=center[::-1],
                                            mask=mask).astype(np.float32)
    ds = xr.Dataset(coords=coords)
    ds["diffraction"] = diffraction
    ds["delay_shifts"] = (("delay", "coord"), pick(1, (2,), float))
    ds["rejected_pixels"] = (("delay", "scan"), pick(2, (run.sizes["scan"],), np.int64))

    # equilibrium and radial profiles
    before = delays < config.dynamics.t0
    if not before.any():
        raise ValueError(f"[dynamics] t0 = {config.dynamics.t0} ps: no delay before time zero "
                         f"(delays {delays.min():g} to {delays.max():g} ps) for the equilibrium")
    pending = [diffraction[before].data]
    if config.radial.enabled:
        radial = diffraction.ued.azimuthal_average(center=center[::-1], mask=mask)
        pending.append(radial[before].data)
    means = [np.mean(a, axis=0) for a in _compute(*pending, progress=progress)]
    ds["equilibrium"] = (("y", "x"), means[0].astype(np.float32))
    if config.radial.enabled:
        ds["radial"] = radial.rename(None)
        equilibrium = xr.DataArray(np.where(means[1] != 0, means[1], np.nan), dims="radius")
        ds["radial_change"] = radial / equilibrium - 1
        if config.baseline.method is not None:
            method = radial.ued.baseline_dwt if config.baseline.method == "dwt" else \
                radial.ued.baseline_dt
            ds["baseline"] = method(config.baseline.max_iter, level=config.baseline.level)
    timer("equilibrium")

    ds["mask"] = (("y", "x"), mask)
    ds["center"] = ("coord", center)
    ds["shifts"] = (("delay", "scan", "coord"), shifts)
    ds["rejected"] = (("delay", "scan"), rejected)
    ds["total"] = (("delay", "scan"), total)
    ds["correlation"] = (("delay", "scan"), correlation)
    ds["scale"] = (("delay", "scan"), scale)
    ds["delay"].attrs["units"] = "ps"
    provenance = {
        "config": config.to_dict(),
        "versions": _versions(),
        "source": run.attrs.get("source"),
        "inputs": _inputs(run, config),
        "mask_digest": "sha256:" + hashlib.sha256(np.packbits(mask).tobytes()).hexdigest(),
        "rejected": [[float(delays[i]), int(scans[s]),
                      [name for name, flags in reasons.items() if flags[i, s]]]
                     for i, s in np.argwhere(rejected)],
        "excluded_scans": config.reject.exclude_scans,
        "missing": run.attrs.get("missing", []),
        "bad_files": run.attrs.get("bad_files", []),
        "timing": timer.times,
    }
    ds.attrs["uedflow"] = json.dumps(provenance)
    return ds
