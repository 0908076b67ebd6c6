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
from importlib.metadata import PackageNotFoundError, version

import dask
import dask.array as da
import numpy as np
import xarray as xr

from ..errors import FrameMismatchError
from ..image.alignment import AlignPlan, _translate
from ..image.center import auto_masking, autocenter
from ..io.lazy import open_stack
from ..io.readers import diffread
from ..io.zarrstore import compute
from ..stack.accessor import ROW_COL
from ..stack.lift import Plans, _named, as_stack, frame_labels
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
#: Pixels per strip of the statistics over scans: their temporaries are scans x STRIP values.
STRIP = 2**16
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
                            step="early reference", progress=progress)
    return mean, valid & _aligned_mask(valid, shifts[weight.values > 0], margin=False)


def _correct(raw, dark, gain, out=None):
    """Frames ``raw`` minus the ``dark`` frame, divided by the ``gain``, as float32 (into
    ``out``); either may be None."""
    if out is None:
        out = np.empty(raw.shape, np.float32)
    if dark is None:
        out[...] = raw
    else:
        np.subtract(raw, dark, out=out)
    if gain is not None:
        np.divide(out, gain, out=out)
    return out


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


def _eroded(valid, reach):
    """Pixels ``i`` where ``valid[i + o]`` for every offset ``o`` of at most ``reach`` px along
    each axis (a square: along rows, then along columns)."""
    span = range(-reach, reach + 1)
    return _shifted_and(_shifted_and(valid, {(d, 0) for d in span}), {(0, d) for d in span})


def _offsets(shift):
    """Integer source offsets that a bilinear shift by ``shift`` reads from."""
    per_axis = []
    for s in shift:
        low = int(np.floor(-s))
        per_axis.append((low, low + 1) if -s != low else (low,))
    return {(a, b) for a in per_axis[0] for b in per_axis[1]}


def _aligned_mask(valid, shifts, margin):
    """Pixels of the aligned frames that only valid detector pixels reach."""
    out = _shifted_and(valid, set().union(*(_offsets(s) for s in shifts)))
    return _eroded(out, 1) if margin else out


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


def _median(frames, rows=slice(None)):
    """Median over the ``rows`` of ``frames`` (frames, pixels), strip by strip of pixels."""
    out = np.empty(frames.shape[1], frames.dtype)
    for j in range(0, frames.shape[1], STRIP):
        out[j:j + STRIP] = np.median(frames[rows, j:j + STRIP], axis=0)
    return out


def _delay_stats(block, labels, present, counted, dark, gain, plans, region, pixels):
    """Registration and statistics of every present frame of one delay, in one read:
    ``(1, scans, 4)`` = shift (row, col) onto the reference (``plans``; None: no
    registration), total in ``region`` of the aligned frame, and correlation over ``pixels``
    to the median of the ``counted`` frames (1 with fewer than 3: no majority to compare
    with). NaN for frames not present."""
    out = np.full((*present.shape, 4), np.nan)
    scans = np.flatnonzero(present[0])
    frame = np.empty(block.shape[-2:], np.float32)
    values = np.empty((scans.size, int(pixels.sum())), np.float32)
    for k, s in enumerate(scans):
        try:
            _correct(block[0, s], dark, gain, out=frame)
            shift = np.zeros(2) if plans is None else plans.get().shift(frame)
        except Exception as exc:
            raise _named(exc, labels[0, s]) from exc
        aligned = frame if plans is None else _translate(frame, shift, 0.0)
        total = aligned[region].sum(dtype=np.float64)
        out[0, s, :3] = (*shift, total)
        values[k] = aligned[pixels]
        values[k] *= np.float32(1 / total) if total else 1
    rows = counted[0, scans]
    if rows.sum() < 3:
        out[0, scans, 3] = 1.0
        return out
    values -= values.mean(axis=1, keepdims=True)
    median = _median(values, rows)
    median -= median.mean()
    norm = np.sqrt(np.einsum("ij,ij->i", values, values)) * np.linalg.norm(median)
    out[0, scans, 3] = values @ median / np.where(norm > 0, norm, 1)
    return out


def _average_delay(block, labels, shifts, kept, dark, gain, region, level, mask, pixel_z,
                   plans):
    """Average over scans of the ``kept`` frames of one delay, aligned by their ``shifts``
    and scaled so that their total in ``region`` is ``level`` (None: not scaled), with the
    pixel MAD cut, then aligned onto the reference (``plans``). Returns ``(image, delay
    shift, scale per scan, pixels cut per scan)``.

    Holds the delay's raw frames (``block``) and its aligned frames as float32; the
    statistics over scans run strip by strip of pixels (temporaries of scans x STRIP)."""
    used = np.flatnonzero(kept[0])
    scales = np.zeros(kept.shape[1])
    counts = np.zeros(kept.shape[1], np.int64)
    frame = np.empty(mask.shape, np.float32)
    frames = np.empty((used.size, mask.size), np.float32)
    for k, s in enumerate(used):
        aligned = _translate(_correct(block[0, s], dark, gain, out=frame), shifts[0, s], 0.0)
        scales[s] = 1.0
        if level is not None:
            total = aligned[region].sum(dtype=np.float64)
            if not total > 0:
                raise ValueError(f"frame {labels[0, s]}: its total in the normalisation "
                                 f"region is {total}; reject it or choose another region")
            scales[s] = level / total
        frames[k] = aligned.ravel()
        frames[k] *= np.float32(scales[s])
    if pixel_z is None or used.size < 3:
        image = frames.mean(axis=0, dtype=np.float64)
    else:
        image = np.empty(mask.size)
        valid = mask.ravel()
        for j in range(0, mask.size, STRIP):
            part = frames[:, j:j + STRIP]
            median = np.median(part, axis=0)
            dev = np.abs(part - median)
            noise = np.median(dev, axis=0)
            noise *= MAD_SIGMA
            np.maximum(noise, np.sqrt(np.maximum(median, 1)), out=noise)  # shot-noise floor
            cut = dev > pixel_z * noise
            cut &= valid[j:j + STRIP]
            counts[used] += cut.sum(axis=1)
            part[cut] = 0
            image[j:j + STRIP] = part.sum(axis=0, dtype=np.float64)
            image[j:j + STRIP] /= used.size - cut.sum(axis=0)
    image = image.astype(np.float32).reshape(mask.shape)
    image[~mask] = 0
    delta = np.zeros(2)
    if plans is not None:
        delta = plans.get().shift(image)
        image = _translate(image, delta, 0.0)
        image[~mask] = 0
    out = np.empty(1, dtype=object)
    out[0] = (image, delta, scales, counts)
    return out


def _shared(obj):
    """``obj`` as one key of a graph, given to every task that uses it (None stays None)."""
    return None if obj is None else dask.delayed(obj, pure=True)


def _pick(parts, k):
    return np.stack([part[k] for part in parts])


def _robust_z(values, use, floor):
    """(values - median) / (1.4826 MAD) over the ``use`` values; the MAD at least ``floor``."""
    median = np.median(values[use])
    mad = max(np.median(np.abs(values[use] - median)), floor)
    return (values - median) / (MAD_SIGMA * mad)


def _known_rejections(config, present, scans):
    """Reasons, by name, as boolean ``(delay, scan)`` arrays, known before any frame is read:
    missing frames, excluded scans."""
    reasons = {"missing": ~present,
               "excluded": np.broadcast_to(np.isin(scans, config.exclude_scans), present.shape)}
    if not (present & ~reasons["excluded"]).any():
        raise ValueError("no frame left to reduce: every frame is missing, bad or in an "
                         f"excluded scan {config.exclude_scans}")
    return reasons


def _frame_rejections(config, reasons, shifts, total, correlation, max_shift,
                      upsample_factor):
    """``reasons`` with those of the frames' registration (shift) and statistics
    (intensity, correlation), each over the frames that no reason before left out."""
    if not config.enabled:
        return reasons
    usable = ~np.logical_or.reduce(list(reasons.values()))
    deviation = np.hypot(*np.moveaxis(shifts - np.median(shifts[usable], axis=0), -1, 0))
    bad = _robust_z(deviation, usable, 1 / upsample_factor) > config.shift_z
    bad |= (np.abs(shifts) >= int(max_shift)).any(axis=-1)  # at the edge of the search window
    reasons["shift"] = bad & usable
    usable &= ~bad
    relative = total / np.median(total[usable]) - 1
    reasons["intensity"] = usable & (np.abs(_robust_z(relative, usable, INTENSITY_FLOOR))
                                     > config.intensity_z)
    reasons["correlation"] = usable & (-_robust_z(correlation, usable, CORRELATION_FLOOR)
                                       > config.correlation_z)
    return reasons


def _rejected(reasons, delays):
    """Frames rejected for any of the ``reasons``; ValueError if a delay has none left."""
    rejected = np.logical_or.reduce(list(reasons.values()))
    empty = [f"{d:g}" for d, row in zip(delays, rejected, strict=True) if row.all()]
    if empty:
        raise ValueError(f"every frame of the delays {empty} ps is missing or rejected; select "
                         "the other delays (run.sel(delay=...)) to reduce them")
    return rejected


def _compute(*arrays, step, progress):
    """``dask.compute(*arrays)``; with ``progress``, the name of the analysis ``step`` and a
    progress bar."""
    if progress:
        print(f"reduce: {step}", flush=True)
    return compute(*arrays, progress=progress)


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
        Print the name of each step of the analysis pass and a progress bar (dask's, or
        distributed's with a ``distributed`` client).

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
        ``total (delay, scan)`` and ``correlation (delay, scan)`` of every present frame
        (over the pixels that every shift within ``max_shift`` keeps valid) and its
        ``scale (delay, scan)``, lazy (0 for frames left out). ``attrs["uedflow"]``: JSON
        with the config, versions, input digests (:func:`file_digest`), mask digest,
        rejected frames and their reasons, excluded scans, missing and bad files, and the
        timing of each step.

    Raises
    ------
    ValueError
        For a run of other dims, an empty run, a bad configuration, mask or flat file,
        no delay before time zero, a delay whose
        frames are all left out, or a frame whose registration fails (named).
    uedflow.errors.FrameMismatchError
        If dark or flat frames differ in shape from the run's frames.

    Notes
    -----
    The analysis pass computes, in turn: the darks' mean and the mask, the reference, then
    in one read of the run every frame's shift, total and correlation (one task per delay),
    and finally the equilibrium (the averages of the delays before time zero). The lazy
    outputs read the run a second time, one task per delay; whether a frame enters an
    average depends on the statistics of all frames, so that read cannot join the first.
    Everything that combines frames runs inside one task per delay, in a fixed order, so
    the results are bit-identical on any scheduler. Pixels of the aligned movie that an
    invalid detector pixel reaches through any kept frame's shift are masked (0 in
    ``diffraction``).
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
    dark_key, gain_key = _shared(dark), _shared(gain)
    corrected = run.copy(data=da.blockwise(_correct, "dsyx", run.data, "dsyx", dark_key, None,
                                           gain_key, None, dtype=np.float32))
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
    reference, bad = _compute(corrected.data[_first_present(present)], bad,
                              step="mask and reference", progress=progress)
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

    # Registration and frame statistics, in one read of the run. Before any shift is known,
    # a frame's statistics are taken on it aligned by its own shift, over the pixels `steady`
    # that every shift the registration can return (at most `max_shift` along each axis)
    # fills from valid detector pixels only (totals: those `inside` the normalisation
    # region): one set of pixels for all frames, so totals and correlations compare like
    # with like whichever frames are kept. A frame shifted further is rejected anyway (at
    # the edge of the search window). `steady` loses a band of `max_shift` px about every
    # masked pixel, so it serves the rejection criteria only
    # (robust z-scores); the normalisation uses the region of the output mask, known after
    # all shifts, in the second read. The median over scans that correlations compare to is
    # of the present frames of unexcluded scans: a frame rejected for its shift takes part,
    # which a median over 3 or more frames tolerates (aligned, it is a diffraction pattern
    # like the others); each criterion is then judged over the frames no other reason left
    # out.
    reasons = _known_rejections(config.reject, present, scans[None, :])
    _rejected(reasons, delays)  # a delay with no frame fails before the run is read
    reach = 0
    plans = None
    if config.align.enabled:
        reach = int(config.align.max_shift)
        plans = Plans(AlignPlan, (reference, valid), options)
    steady = _eroded(valid, reach)
    region = _region(config.normalize, center, shape)
    inside = region & steady
    if not inside.any():
        raise ValueError(f"[normalize] the region {config.normalize} has no valid pixel at "
                         f"least [align] max_shift = {reach} px from the masked pixels and the "
                         "frame's edges; choose a larger region or a smaller max_shift")
    chunks = run.chunks[:2]
    labels = da.from_array(frame_labels(run), chunks=chunks)
    stats = da.blockwise(
        _delay_stats, "dsk", run.data, "dsyx", labels, "ds",
        da.from_array(present, chunks=chunks), "ds",
        da.from_array(present & ~reasons["excluded"], chunks=chunks), "ds", dark_key, None,
        gain_key, None, _shared(plans), None, _shared(inside), None, _shared(steady), None,
        new_axes={"k": 4}, concatenate=True, dtype=float, meta=np.empty((0, 0, 0)))
    (stats,) = _compute(stats, step="registration + frame statistics", progress=progress)
    shifts, total, correlation = stats[..., :2], stats[..., 2], stats[..., 3]
    reasons = _frame_rejections(config.reject, reasons, shifts, total, correlation,
                                config.align.max_shift, config.align.upsample_factor)
    rejected = _rejected(reasons, delays)
    mask = _aligned_mask(valid, shifts[~rejected], config.average.align)
    level = None
    if config.normalize.enabled:
        region &= mask
        if not region.any():
            raise ValueError(f"[normalize] the region {config.normalize} has no valid pixel")
        # Frames are scaled to a total `level` in `region`: the median total of the kept
        # frames there, estimated from their totals over `inside` and the reference's.
        ratio = reference[region].sum(dtype=np.float64) / reference[inside].sum(
            dtype=np.float64)
        if not (np.isfinite(ratio) and ratio > 0):
            raise ValueError("[normalize] the reference has no positive total in the region "
                             f"{config.normalize}")
        level = ratio * np.median(total[~rejected])
    timer("registration_statistics")

    # Lazy averages over scans: a second read of the run. It cannot join the first: whether a
    # frame enters its delay's average depends on the statistics of every frame of the run
    # (medians and robust z-scores over all of them), and so does the output mask, so the
    # aligned frames of all delays would have to be held (or written) until the first read
    # ends.
    plans = None
    if config.average.align:
        plans = Plans(AlignPlan, (reference, mask), {**options, "max_shift": 1})
    pixel_z = config.reject.pixel_z if config.reject.enabled else None
    parts = da.blockwise(
        _average_delay, "d", run.data, "dsyx", labels, "ds",
        da.from_array(shifts, chunks=(*chunks, 2)), "dsc",
        da.from_array(~rejected, chunks=chunks), "ds", dark_key, None, gain_key, None,
        _shared(region), None, level, None, _shared(mask), None, pixel_z, None,
        _shared(plans), None, concatenate=True, dtype=object, meta=np.empty((0,), object))

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
    ds["scale"] = (("delay", "scan"), pick(2, (run.sizes["scan"],), float))
    ds["rejected_pixels"] = (("delay", "scan"), pick(3, (run.sizes["scan"],), np.int64))

    # equilibrium and radial profiles
    before = delays < config.dynamics.t0
    if not before.any():
        raise ValueError(f"[dynamics] t0 = {config.dynamics.t0} ps: no delay before time zero "
                         f"(delays {delays.min():g} to {delays.max():g} ps) for the equilibrium")
    pending = [diffraction[before].data]
    if config.radial.enabled:
        radial = diffraction.ued.azimuthal_average(center=center[::-1], mask=mask)
        pending.append(radial[before].data)
    means = [np.mean(a, axis=0) for a in _compute(*pending, step="equilibrium",
                                                  progress=progress)]
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
