"""Reduction of a time-resolved run ``(delay, scan, y, x)`` into a diffraction movie with
error bars.

:func:`reduce` reads as its steps, each a function configured by one section of
:class:`~uedflow.pipeline.config.ReduceConfig` (``docs/pipeline.md``):

1. :func:`dark_and_gain` (``[dark]``, ``[flat]``);
2. :func:`detector_mask` (``[mask]``) and the reference frame, from the mean of a sample of
   frames spread over the run;
3. the centre (``[center]``);
4. :func:`frame_statistics` (``[align]``, ``[reject]``): one read of the run, one task per
   delay: every frame's shift, total and correlation; then the frame rejections;
5. the averages (``[normalize]``, ``[reject] pixel_z``, ``[average]``): a second read, lazy,
   one task per delay, each returning the partial results of its frames (mean, squared
   deviations and counts per pixel, one radial profile per frame), from which the averages
   and their standard errors follow;
6. the pump-off average, the equilibrium and ΔI/I with their errors (``[dynamics]``,
   ``[radial]``, ``[baseline]``).

The small results (mask, centre, shifts, frame statistics, rejections, equilibrium) are
computed at once, in the analysis pass; the image-sized ones stay lazy, to be written chunk
by chunk.
"""

import hashlib
import json
import os
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage as ndi

from ..errors import FrameMismatchError
from ..image.alignment import AlignPlan, translate
from ..image.center import autocenter
from ..image.masks import find_beam_block, find_dead_pixels
from ..image.powder import refine_center
from ..io.lazy import open_stack
from ..io.readers import diffread
from ..io.zarrstore import compute
from ..stack.accessor import ROW_COL
from ..stack.lift import Plans, as_stack, frame_labels, named_error
from .config import ReduceConfig

__all__ = ["dark_and_gain", "detector_mask", "file_digest", "frame_statistics", "reduce"]

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
#: Frames of the sample whose mean locates the beam block and dead pixels.
SAMPLE = 32
#: Packages whose versions are recorded with every reduction.
DEPENDENCIES = ("uedflow", "numpy", "scipy", "dask", "xarray", "zarr", "tifffile")
#: Units and long names of the variables and coordinates of a reduced Dataset.
ATTRS = {
    "delay": ("ps", "pump-probe delay"),
    "scan": ("1", "scan number"),
    "coord": ("1", "(row, col)"),
    "radius": ("px", "radius"),
    "y": ("px", "row"),
    "x": ("px", "column"),
    "diffraction": ("counts", "diffracted intensity"),
    "diffraction_error": ("counts", "standard error of the diffracted intensity"),
    "error_correlation": ("1", "variance of a regional sum over the sum of pixel variances"),
    "equilibrium": ("counts", "equilibrium intensity"),
    "equilibrium_error": ("counts", "standard error of the equilibrium intensity"),
    "pump_off": ("counts", "pump-off intensity"),
    "pump_off_error": ("counts", "standard error of the pump-off intensity"),
    "radial": ("counts", "azimuthal average"),
    "radial_error": ("counts", "standard error of the azimuthal average"),
    "radial_change": ("1", "ΔI/I of the azimuthal average"),
    "radial_change_error": ("1", "standard error of ΔI/I"),
    "baseline": ("counts", "baseline of the azimuthal average"),
    "mask": ("1", "valid pixel"),
    "center": ("px", "pattern centre"),
    "shifts": ("px", "shift onto the reference"),
    "delay_shifts": ("px", "shift of the average onto the reference"),
    "rejected": ("1", "frame rejected"),
    "rejected_pixels": ("1", "pixels cut"),
    "total": ("counts", "total intensity of the aligned frame"),
    "correlation": ("1", "correlation with the median frame of its delay"),
    "scale": ("1", "normalisation factor"),
}


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
    return run


def _labels(run):
    """Name of every frame, with its file where the run has one."""
    labels = frame_labels(run)
    if "file" in run.coords and run.coords["file"].dims == ("delay", "scan"):
        for index, file in np.ndenumerate(run.coords["file"].values):
            if file:
                labels[index] = f"{labels[index]} ({file})"
    return labels


def _open_frames(files, shape, what):
    """The frames ``files`` (darks, flats, pump-off) as a lazy stack of the run's shape."""
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


def dark_and_gain(run, config):
    """Step ``[dark]``, ``[flat]``: the dark frame and the gain (flat field) of a run.

    Parameters
    ----------
    run : xarray.DataArray
        Run with ``attrs["darks"]`` and ``attrs["flats"]`` (file lists), as ``open_run``
        returns it.
    config : ReduceConfig
        Configuration.

    Returns
    -------
    dark, gain : ndarray of float32 or None
        Mean of the dark frames (None without darks or with ``[dark] subtract = false``);
        flat field normalised to a mean of 1 over its positive pixels, inf elsewhere (None:
        no correction).
    """
    shape = run.shape[-2:]
    darks = _open_frames(run.attrs.get("darks"), shape, "dark")
    dark = None
    if config.dark.subtract and darks is not None:
        dark = darks.ued.mean().values.astype(np.float32)
    if not config.flat.divide:
        return dark, None
    if config.flat.file is not None:
        flat = _read_image(config.flat.file, shape, "[flat] file").astype(float)
    else:
        flats = _open_frames(run.attrs.get("flats"), shape, "flat")
        if flats is None:
            return dark, None
        flat = flats.ued.mean().values - (0 if dark is None else dark)
    positive = flat > 0
    if not positive.any():
        raise ValueError("the flat field has no positive pixel")
    return dark, np.where(positive, flat / flat[positive].mean(), np.inf).astype(np.float32)


def mask_file(run, config):
    """The mask file of ``[mask] file``: "auto" finds the run's own (``attrs["mask_file"]``,
    or ``mask.tif`` in the run directory); None if there is none."""
    file = config.mask.file
    if file != "auto":
        return file
    file = run.attrs.get("mask_file")
    if file:
        return file
    source = run.attrs.get("source")
    if isinstance(source, str) and Path(source).is_dir() and (Path(source) / "mask.tif").is_file():
        return str(Path(source) / "mask.tif")
    return None


def _sample(present, n=SAMPLE):
    """Up to ``n`` present frames ``(delay, scan)`` spread evenly over the run, the first
    present frame first."""
    index = np.argwhere(present)
    if index.size == 0:
        raise ValueError("run has no present frame: every frame is missing or bad")
    picks = np.unique(np.linspace(0, len(index) - 1, min(n, len(index))).round().astype(int))
    return [tuple(index[k]) for k in picks]


def _sample_moments(frames):
    """Per-pixel count of finite values, mean and variance over the lazy ``frames``
    (n, y, x), as dask arrays (a streaming reduction: a few frames in memory at once)."""
    finite = da.isfinite(frames)
    values = da.where(finite, frames, 0).astype(np.float64)
    count = finite.sum(axis=0)
    n = da.maximum(count, 1)
    mean = values.sum(axis=0) / n
    variance = da.maximum((values**2).sum(axis=0) / n - mean**2, 0) * n / da.maximum(count - 1, 1)
    return count, mean, variance


def _fraction(pixels):
    return round(float(np.count_nonzero(pixels)) / pixels.size, 6)


def detector_mask(run, config, dark, gain, present, *, progress=False):
    """Step ``[mask]``: the valid pixels of the detector, and the reference frame.

    In order, each part removing pixels: the mask file (``[mask] file``; by default the run's
    own ``mask.tif``), the flat field's non-positive pixels, the bad pixels of a collection
    (``from_collection``: the darks, or the run), pixels not finite in most frames of a
    sample, dead pixels (:func:`~uedflow.image.masks.find_dead_pixels` of the sample's mean)
    and the beam block (:func:`~uedflow.image.masks.find_beam_block` of the sample's mean,
    ``[mask] beam_block``). The sample is :data:`SAMPLE` frames spread over the run,
    dark-subtracted: a per-pixel threshold of one frame would take every low-count pixel for
    beam block.

    Returns
    -------
    valid : ndarray of bool
        True on valid detector pixels.
    parts : dict
        Fraction of the frame removed by each part (``file``, ``flat``, ``collection``,
        ``nonfinite``, ``dead``, ``beam_block``).
    reference : ndarray of float32
        The first present frame (dark-subtracted) that has finite values and a positive total
        on the valid pixels.
    reference_label : str
        Its name.
    noise : ndarray of float32
        Standard deviation of a frame's pixels over the sample, smoothed over 2 px: the noise
        that the pixel cut needs at least (the spread of 3 or 4 frames alone says little).
    """
    shape = run.shape[-2:]
    labels = _labels(run)
    valid = np.ones(shape, dtype=bool)
    parts = {}

    def remove(name, bad):
        nonlocal valid
        parts[name] = _fraction(bad & valid)
        valid = valid & ~bad

    file = mask_file(run, config)
    if file is not None:
        remove("file", _read_image(file, shape, "[mask] file") == 0)
    if gain is not None:
        remove("flat", ~np.isfinite(gain))
    source = config.mask.from_collection
    if source == "auto":
        source = "run" if not run.attrs.get("darks") else "darks"
    if source == "darks" and not run.attrs.get("darks"):
        raise ValueError("[mask] from_collection = 'darks', but the run has no dark frames")
    bad = None
    if source != "none":
        stack = _open_frames(run.attrs["darks"], shape, "dark") if source == "darks" else run
        bounds = config.mask.px_thresh or (-np.inf, np.inf)
        bad = stack.ued.mask_from_collection(bounds, config.mask.std_thresh).data
    sample = _sample(present)
    frames = [da.blockwise(_correct, "yx", run.data[i, s], "yx", _shared(dark), None,
                           _shared(gain), None, dtype=np.float32) for i, s in sample]
    count, mean, variance, first, bad = _compute(
        *_sample_moments(da.stack(frames)), frames[0], bad, step="mask and reference",
        progress=progress)
    if bad is not None:
        remove("collection", bad)
    remove("nonfinite", 2 * count < len(sample))
    if len(sample) >= 4:
        remove("dead", find_dead_pixels(mean, np.sqrt(variance / np.maximum(count, 1))) &
               np.isfinite(mean))
    if config.mask.beam_block:
        # a block that stops every electron, then (about the pattern's centre) one that lets
        # a few % through or crosses bright rings
        remove("beam_block", find_beam_block(mean, valid, "auto"))
    if not valid.any():
        raise ValueError(f"the mask leaves no valid pixel (removed: {parts})")
    for k, (i, s) in enumerate(sample):
        frame = first if k == 0 else frames[k].compute()
        values = frame[valid]
        if np.isfinite(values).all() and values.sum(dtype=np.float64) > 0:
            noise = np.sqrt(ndi.gaussian_filter(np.where(np.isfinite(variance), variance, 0),
                                                2.0)).astype(np.float32)
            return valid, parts, frame, labels[i, s], noise
    raise ValueError(f"no frame of the sample ({labels[sample[0]]}, ...) has finite values and "
                     "a positive total on the valid pixels: is the run empty or the dark wrong?")


def _shared(obj):
    """``obj`` as one key of a graph, given to every task that uses it (None stays None)."""
    return None if obj is None else dask.delayed(obj, pure=True)


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
    return frozenset((a, b) for a in per_axis[0] for b in per_axis[1])


def _aligned_mask(valid, shifts):
    """Pixels of the aligned frames that only valid detector pixels reach, for all
    ``shifts``."""
    return _shifted_and(valid, set().union(*(_offsets(s) for s in shifts)))


def _movie_mask(valid, shifts, kept):
    """Pixels of the movie: reached from valid detector pixels by at least 2 kept frames
    of every delay (1 where a delay keeps one frame), so that every valid pixel has a
    standard error; and ``common``, the pixels reached by every kept frame.

    Each frame's valid pixels are ``valid`` seen through the integer offsets its bilinear
    shift reads from: a bad pixel costs the output pixels that read it in that frame only,
    not a band as wide as the drift."""
    cache = {}

    def reached(offsets):
        if offsets not in cache:
            cache[offsets] = _shifted_and(valid, offsets)
        return cache[offsets]

    mask = np.ones(valid.shape, dtype=bool)
    common = valid.copy()
    for i in range(kept.shape[0]):
        groups = {}
        for s in np.flatnonzero(kept[i]):
            offsets = _offsets(shifts[i, s])
            groups[offsets] = groups.get(offsets, 0) + 1
        count = np.zeros(valid.shape, np.int32)
        for offsets, n in groups.items():
            count += n * reached(offsets)
            common &= reached(offsets)
        mask &= count >= min(2, sum(groups.values()))
    return mask, common


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


#: Smoothing (px) of the frames that registration compares: every dark-subtracted frame shares
#: the dark's estimation noise (and, without darks, the detector's fixed pattern), a peak at
#: zero shift that pins the registration of low-count frames; smoothing suppresses it while
#: keeping the pattern's structure.
REGISTRATION_SIGMA = 2.0


def _registration_image(frame, valid, weight):
    """``frame`` smoothed over its ``valid`` pixels (normalised convolution; ``weight`` is
    the smoothed ``valid``), for registration."""
    out = ndi.gaussian_filter(np.where(valid, frame, 0).astype(np.float32), REGISTRATION_SIGMA,
                              truncate=3.0)
    out /= weight
    return out


def _registration_weight(valid):
    return np.maximum(ndi.gaussian_filter(valid.astype(np.float32), REGISTRATION_SIGMA,
                                          truncate=3.0), np.float32(1e-3))


def _median(frames, rows=slice(None)):
    """Median over the ``rows`` of ``frames`` (frames, pixels), strip by strip of pixels."""
    out = np.empty(frames.shape[1], frames.dtype)
    for j in range(0, frames.shape[1], STRIP):
        out[j:j + STRIP] = np.median(frames[rows, j:j + STRIP], axis=0)
    return out


def _delay_stats(block, labels, present, counted, dark, gain, valid, weight, plans, region,
                 pixels):
    """Registration and statistics of every present frame of one delay, in one read:
    ``(1, scans, 5)`` = shift (row, col) onto the reference (``plans``; None: no
    registration), total in ``region`` of the aligned frame, correlation over ``pixels``
    to the median of the ``counted`` frames (1 with fewer than 3: no majority to compare
    with), and 1 for a frame with a NaN or infinite value on a ``valid`` pixel (its other
    values NaN). NaN for frames not present. Also the sum (float64) of the finite frames,
    aligned, their invalid pixels 0: a partial of the run's aligned mean. Both in a 1-element
    object array."""
    out = np.full((*present.shape, 5), np.nan)
    aligned_sum = np.zeros(block.shape[-2:])
    scans = np.flatnonzero(present[0])
    frame = np.empty(block.shape[-2:], np.float32)
    values = np.empty((scans.size, int(pixels.sum())), np.float32)
    finite = np.ones(scans.size, dtype=bool)
    for k, s in enumerate(scans):
        _correct(block[0, s], dark, gain, out=frame)
        out[0, s, 4] = 0.0
        if not np.isfinite(frame).all() and not np.isfinite(frame[valid]).all():
            out[0, s, 4] = 1.0
            finite[k] = False
            continue
        try:
            shift = np.zeros(2) if plans is None else plans.get().shift(
                _registration_image(frame, valid, weight))
        except Exception as exc:
            raise named_error(exc, labels[0, s]) from exc
        frame[~valid] = 0
        aligned = frame if plans is None else translate(frame, shift, 0.0)
        aligned_sum += aligned
        total = aligned[region].sum(dtype=np.float64)
        out[0, s, :3] = (*shift, total)
        values[k] = aligned[pixels]
        values[k] *= np.float32(1 / total) if total else 1
    result = np.empty(1, dtype=object)
    result[0] = (out, aligned_sum)
    rows = counted[0, scans] & finite
    if rows.sum() < 3:
        out[0, scans[finite], 3] = 1.0
        return result
    values = values[finite]
    rows = rows[finite]
    values -= values.mean(axis=1, keepdims=True)
    median = _median(values, rows)
    median -= median.mean()
    # einsum, not BLAS: the same sums in the same order on any scheduler and thread count
    norm = np.sqrt(np.einsum("ij,ij->i", values, values) * np.einsum("i,i", median, median))
    out[0, scans[finite], 3] = np.einsum("ij,j->i", values, median) / np.where(norm > 0,
                                                                               norm, 1)
    return result


def frame_statistics(run, config, present, excluded, dark, gain, valid, reference, center,
                     *, progress=False):
    """Step ``[align]`` + statistics: every frame's shift onto the reference, total and
    correlation to the median of its delay, in one read of the run (one task per delay).

    Before any shift is known, a frame's statistics are taken on it aligned by its own
    shift, over the pixels ``steady`` that every shift the registration can return (at most
    ``max_shift`` along each axis) fills from valid detector pixels only (totals: those
    inside the normalisation region): one set of pixels for all frames, so totals and
    correlations compare like with like whichever frames are kept. ``steady`` serves the
    rejection criteria only (robust z-scores). The median that correlations compare to is
    of the present frames of unexcluded scans.

    Returns
    -------
    stats : ndarray, shape (delay, scan, 5)
        Shift (row, col), total, correlation, non-finite flag (see :func:`_delay_stats`).
    inside : ndarray of bool
        The pixels of the totals.
    aligned_mean : ndarray, shape (y, x)
        Mean of the frames with finite values, aligned onto the reference (invalid pixels as
        0): merged from one partial sum per delay, it locates the centre far better than one
        frame at a few counts per pixel.
    """
    shape = run.shape[-2:]
    reach, plans, weight = 0, None, None
    if config.align.enabled:
        reach = int(config.align.max_shift)
        weight = _registration_weight(valid)
        plans = Plans(AlignPlan, (_registration_image(reference, valid, weight), valid),
                      _align_options(config.align))
    steady = _eroded(valid, reach)
    inside = _region(config.normalize, center, shape) & steady
    if not inside.any():
        raise ValueError(f"[normalize] the region {config.normalize} has no valid pixel at "
                         f"least [align] max_shift = {reach} px from the masked pixels and the "
                         "frame's edges; choose a larger region or a smaller max_shift")
    chunks = run.chunks[:2]
    parts = da.blockwise(
        _delay_stats, "d", run.data, "dsyx", da.from_array(_labels(run), chunks=chunks), "ds",
        da.from_array(present, chunks=chunks), "ds",
        da.from_array(present & ~excluded, chunks=chunks), "ds", _shared(dark), None,
        _shared(gain), None, _shared(valid), None, _shared(weight), None, _shared(plans), None,
        _shared(inside), None, _shared(steady), None, concatenate=True, dtype=object,
        meta=np.empty((0,), object))
    stats = da.map_blocks(_first, parts, 0, new_axis=[1, 2],
                          chunks=(parts.chunks[0], (run.shape[1],), (5,)), dtype=float,
                          meta=np.empty((0, 0, 0)))
    sums = da.map_blocks(_first, parts, 1, new_axis=[1, 2],
                         chunks=(parts.chunks[0], (shape[0],), (shape[1],)), dtype=float,
                         meta=np.empty((0, 0, 0))).sum(axis=0)
    stats, sums = _compute(stats, sums, step="registration + frame statistics",
                           progress=progress)
    n = np.count_nonzero(stats[..., 4] == 0)
    return stats, inside, sums / max(n, 1)


def _first(parts, k):
    """Item ``k`` of the one result in ``parts`` (an object array of 1), with a leading axis
    of 1 for an image."""
    item = parts[0][k]
    return item if item.ndim == 3 else item[None]


def _align_options(config):
    return {"upsample_factor": config.upsample_factor, "max_shift": config.max_shift}


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


#: With fewer than 3 usable frames a delay has no majority: its frames are rejected for their
#: total only if it is this far (relative) from the run's median (the beam lost, say).
GROSS_INTENSITY = 0.5


def _intensity_outliers(total, usable, z):
    """Frames whose total is an outlier among the usable frames of its delay: robust
    z-scores of the total relative to the delay's median, with the spread of all such
    relative totals of the run; a real change of the total intensity between delays is
    physics, not a bad frame. Delays with fewer than 3 usable frames: see
    :data:`GROSS_INTENSITY`."""
    relative = np.zeros(total.shape)
    judged = np.zeros(total.shape, bool)
    for i, use in enumerate(usable):
        if use.sum() >= 3:
            relative[i] = total[i] / np.median(total[i, use]) - 1
            judged[i] = use
    out = usable & ~judged & (np.abs(total / np.median(total[usable]) - 1) > GROSS_INTENSITY)
    if judged.any():
        out |= judged & (np.abs(_robust_z(relative, judged, INTENSITY_FLOOR)) > z)
    return out


def _shift_deviation(shifts, usable):
    """Distance of every frame's shift ``(delay, scan, 2)`` from the median shift of its scan
    (of the run, for a scan of fewer than 3 usable frames): a scan's frames are close in time,
    so the slow drift of the pattern over a run is not taken for a jump."""
    reference = np.broadcast_to(np.median(shifts[usable], axis=0), shifts.shape).copy()
    for s in range(shifts.shape[1]):
        use = usable[:, s]
        if use.sum() >= 3:
            reference[:, s] = np.median(shifts[use, s], axis=0)
    return np.hypot(*np.moveaxis(shifts - reference, -1, 0))


def _frame_rejections(config, reasons, shifts, total, correlation, max_shift,
                      upsample_factor):
    """``reasons`` with those of the frames' registration (shift) and statistics
    (intensity, correlation), each over the frames that no reason before left out."""
    if not config.enabled:
        return reasons
    usable = ~np.logical_or.reduce(list(reasons.values()))
    if not usable.any():
        return reasons
    bad = _robust_z(_shift_deviation(shifts, usable), usable, 1 / upsample_factor) \
        > config.shift_z
    bad |= (np.abs(shifts) >= int(max_shift)).any(axis=-1)  # at the edge of the search window
    reasons["shift"] = bad & usable
    usable &= ~bad
    reasons["intensity"] = _intensity_outliers(total, usable, config.intensity_z)
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


def _radial_bins(center, pixels, start, size):
    """Geometry of radial profiles over ``pixels`` about ``center`` (row, col), computed once:
    the flat indices of the pixels, their bin (radius rounded, minus ``start``) and the pixels
    per bin; pixels outside ``start .. start + size - 1`` are left out."""
    yy, xx = np.nonzero(pixels)
    bins = np.rint(np.hypot(yy - center[0], xx - center[1])).astype(np.intp) - start
    keep = (bins >= 0) & (bins < size)
    index = np.ravel_multi_index((yy[keep], xx[keep]), pixels.shape)
    return index, bins[keep], np.bincount(bins[keep], minlength=size)


def _profiles(frames, radial):
    """Radial profiles ``(n, size)`` of flat frames ``(n, pixels)`` over the ``radial`` bins,
    each over its finite values (cut or unreached pixels are NaN); NaN in empty bins."""
    index, bins, _ = radial
    size = radial[2].size
    out = np.empty((frames.shape[0], size))
    for k, frame in enumerate(frames):
        values = frame[index]
        finite = np.isfinite(values)
        counts = np.bincount(bins[finite], minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[k] = np.bincount(bins[finite], values[finite], minlength=size) / np.where(
                counts > 0, counts, np.nan)
    return out


def _interpolation_gain(shifts):
    """Variance of a large-region sum of bilinearly shifted frames over the sum of their
    pixel variances: ``1 / mean(q)``, ``q = prod((1 - f)**2 + f**2)`` for the fractional
    parts ``f`` of each frame's shift (1 for whole-pixel shifts, up to 4)."""
    f = np.asarray(shifts, float) % 1.0
    q = np.prod((1 - f) ** 2 + f**2, axis=-1)
    return float(1 / q.mean()) if q.size else 1.0


def _aligned_frames(raws, labels, shifts, dark, gain, valid, region):
    """Frames corrected, invalid pixels set to NaN and moved by their ``shifts`` (NaN spreads
    to the output pixels that read them), as rows ``(n, pixels)`` of float32, and their totals
    over ``region``."""
    frames = np.empty((len(raws), valid.size), np.float32)
    totals = np.empty(len(raws))
    frame = np.empty(valid.shape, np.float32)
    for k, (raw, shift) in enumerate(zip(raws, shifts, strict=True)):
        _correct(raw, dark, gain, out=frame)
        frame[~valid] = np.nan
        aligned = translate(frame, shift, np.nan)
        totals[k] = np.nansum(aligned[region], dtype=np.float64)
        if not totals[k] > 0:
            raise ValueError(f"frame {labels[k]}: its total in the normalisation region is "
                             f"{totals[k]}; reject it or choose another region")
        frames[k] = aligned.ravel()
    return frames, totals


def _scales(totals, level):
    """Normalisation factors: to the mean of ``totals`` (``level == "delay"``), to ``level``
    (a number) or none (None)."""
    if level is None:
        return np.ones_like(totals)
    return (totals.mean() if level == "delay" else level) / totals


def _combine(frames, pixel_z, floor):
    """Mean, standard error and count of contributions per pixel of ``frames`` ``(n,
    pixels)`` (NaN: no contribution), after a MAD cut of the pixels more than ``pixel_z``
    robust deviations (at least the shot noise in counts, and the ``floor`` of each pixel) from
    the median of 3 or more contributions
    (None: no cut); cut values become NaN in ``frames``. Returns ``(mean, error, cuts per
    frame)``; strip by strip of pixels (temporaries of n x STRIP values)."""
    n, size = frames.shape
    mean = np.empty(size)
    error = np.empty(size)
    cuts = np.zeros(n, np.int64)
    for j in range(0, size, STRIP):
        part = frames[:, j:j + STRIP]
        finite = np.isfinite(part)
        if pixel_z is not None and n >= 3:
            median = _nan_median(part, finite)
            deviation = np.abs(part - median)
            noise = _nan_median(deviation, finite)
            noise *= MAD_SIGMA
            np.maximum(noise, np.sqrt(np.maximum(median, 1)), out=noise)  # shot-noise floor
            np.maximum(noise, floor[j:j + STRIP], out=noise)  # the sample's noise
            with np.errstate(invalid="ignore"):
                cut = deviation > pixel_z * noise
            cut &= finite.sum(axis=0) >= 3
            cuts += cut.sum(axis=1)
            part[cut] = np.nan
            finite &= ~cut
        count = finite.sum(axis=0)
        values = np.where(finite, part, 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean[j:j + STRIP] = values.sum(axis=0, dtype=np.float64) / count
            values -= np.where(finite, mean[j:j + STRIP], 0).astype(np.float32)
            variance = np.einsum("ij,ij->j", values, values, dtype=np.float64) / (count - 1)
            error[j:j + STRIP] = np.where(count >= 2, np.sqrt(variance / count), np.nan)
    return mean, error, cuts


def _nan_median(part, finite):
    """Median over axis 0 of ``part``, ignoring NaN (where ``finite`` is False); NaN for
    columns without a finite value. ``numpy.median`` where a column is all finite (fast)."""
    median = np.median(part, axis=0)
    redo = np.flatnonzero(np.isnan(median) & finite.any(axis=0))
    if redo.size:
        median[redo] = np.nanmedian(part[:, redo], axis=0)
    return median


def _translate_valid(image, valid, shift):
    """``image`` moved by ``shift`` (bilinear) interpolating from its ``valid`` pixels only
    (normalised weights), so that a masked pixel does not spread."""
    weight = valid.astype(np.float32)
    num = translate(np.where(valid, image, 0).astype(np.float32), shift, 0.0)
    den = translate(weight, shift, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-3, num / den, image)


def _average(raws, labels, shifts, dark, gain, valid, region, level, mask, pixel_z, noise,
             radial):
    """Average of aligned frames with its standard error and the per-frame radial profiles:
    ``(image, error, scales, cuts per frame, radial error, error correlation)``; NaN on the
    pixels of ``mask`` that no frame reaches (none for the frames of a delay: the mask is
    made of the pixels they reach; a few for pump-off frames, registered on their own)."""
    frames, totals = _aligned_frames(raws, labels, shifts, dark, gain, valid, region)
    scales = _scales(totals, level)
    frames *= scales.astype(np.float32)[:, None]
    mean, error, cuts = _combine(frames, pixel_z, noise.ravel())
    profiles = _profiles(frames, radial)
    n = np.isfinite(profiles).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = np.nansum(profiles, axis=0) / n
        spread = np.nansum((profiles - centre) ** 2, axis=0) / (n - 1)
        radial_error = np.where(n >= 2, np.sqrt(spread / n), np.nan)
    image = np.where(mask.ravel(), mean, 0).astype(np.float32).reshape(mask.shape)
    error = np.where(mask.ravel(), error, np.nan).astype(np.float32).reshape(mask.shape)
    return image, error, scales, cuts, radial_error, _interpolation_gain(shifts)


def _average_delay(block, labels, shifts, kept, dark, gain, valid, region, level, mask,
                   pixel_z, noise, plans, weight, radial):
    """The average over scans of the ``kept`` frames of one delay (:func:`_average`), then
    aligned onto the reference (``plans``; None: not). Returns, in a 1-element object array,
    ``(image, error, delay shift, scale per scan, pixels cut per scan, radial error, error
    correlation)``.

    Holds the delay's raw frames (``block``) and its aligned frames as float32."""
    used = np.flatnonzero(kept[0])
    image, error, scales, cuts, radial_error, gain_ = _average(
        block[0, used], labels[0, used], shifts[0, used], dark, gain, valid, region, level,
        mask, pixel_z, noise, radial)
    delta = np.zeros(2)
    if plans is not None:
        delta = plans.get().shift(_registration_image(image, mask, weight))
        image = _translate_valid(image, mask, delta).astype(np.float32)
        known = mask & np.isfinite(error)
        error = np.sqrt(_translate_valid(np.where(known, error, 0) ** 2, known, delta)).astype(
            np.float32)
        image[~mask] = 0
        error[~mask] = np.nan
    all_scales = np.zeros(kept.shape[1])
    all_cuts = np.zeros(kept.shape[1], np.int64)
    all_scales[used], all_cuts[used] = scales, cuts
    out = np.empty(1, dtype=object)
    out[0] = (image, error, delta, all_scales, all_cuts, radial_error, gain_)
    return out


def _pump_off(frames, labels, dark, gain, valid, reference, options, region, level, mask,
              pixel_z, noise, radial):
    """Average of the pump-off ``frames`` ``(n, y, x)``, each registered onto the
    ``reference`` first (``options``; None: not registered). Frames with non-finite values on
    valid pixels are left out. Returns ``(image, error, radial error, left-out labels)``."""
    plan = None
    if options is not None:
        weight = _registration_weight(valid)
        plan = AlignPlan(_registration_image(reference, valid, weight), valid, **options)
    kept, shifts, left_out = [], [], []
    frame = np.empty(valid.shape, np.float32)
    for k, raw in enumerate(frames):
        _correct(raw, dark, gain, out=frame)
        if not np.isfinite(frame[valid]).all():
            left_out.append(labels[k])
            continue
        try:
            shifts.append(np.zeros(2) if plan is None else plan.shift(
                _registration_image(frame, valid, weight)))
        except Exception as exc:
            raise named_error(exc, labels[k]) from exc
        kept.append(k)
    if not kept:
        raise ValueError(f"every pump-off frame has non-finite values: {left_out}")
    image, error, _, _, radial_error, _ = _average(
        frames[kept], [labels[k] for k in kept], shifts, dark, gain, valid, region, level, mask,
        pixel_z, noise, radial)
    return image, error, radial_error, left_out


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


def _inputs(run, config, mask_path):
    """Digest of every input file (frames, darks, flats, pump-off, mask and flat files);
    files that could not be read (``attrs["bad_files"]``) are listed, not digested."""
    bad = {str(path) for path, *_ in run.attrs.get("bad_files", [])}
    files = []
    if "file" in run.coords:
        files += [f for f in np.ravel(run.coords["file"].values) if f]
    for key in ("darks", "flats", "pump_off"):
        files += list(run.attrs.get(key) or [])
    files += [f for f in (mask_path, config.flat.file) if f is not None]
    return {"method": f"sha256 of size, mtime_ns and the first and last {DIGEST_BYTES} bytes",
            "files": {str(f): file_digest(f) for f in files if str(f) not in bad}}


def _early_reference(corrected, present, first, valid, config, progress):
    """Mean of the present frames of the earliest delays, each aligned onto ``first``, and
    the pixels of it that only valid detector pixels reach."""
    early = corrected.isel(delay=slice(0, config.early_delays))
    weight = xr.DataArray(present[: config.early_delays].astype(np.float32),
                          dims=("delay", "scan"))
    if not weight.values.any():
        raise ValueError(f"[align] reference 'early': no present frame in the first "
                         f"{config.early_delays} delays")
    options = _align_options(config)
    aligned = early.ued.align(first, valid, **options)
    mean = (aligned * weight).sum(("delay", "scan")) / weight.sum()
    shifts, mean = _compute(early.ued.shifts(first, valid, **options).data, mean.data,
                            step="early reference", progress=progress)
    return mean, valid & _aligned_mask(valid, shifts[weight.values > 0])


def _change_error(radial, radial_error, equilibrium, equilibrium_error, covariance):
    """Standard error of ``radial / equilibrium - 1`` (first order), with the ``covariance``
    of ``radial`` and ``equilibrium`` (a delay that is part of the equilibrium)."""
    e2 = equilibrium**2
    variance = (radial_error**2 / e2 + radial**2 * equilibrium_error**2 / e2**2
                - 2 * radial / (e2 * equilibrium) * covariance)
    return np.sqrt(np.maximum(variance, 0))


def _units(ds):
    for name in (*ds.data_vars, *ds.coords):
        if name in ATTRS:
            units, long_name = ATTRS[name]
            ds[name].attrs.update(units=units, long_name=long_name)
    return ds


def reduce(run, config=None, *, progress=False):
    """Reduce a time-resolved run into a diffraction movie, its radial profiles, their
    standard errors and their provenance.

    The steps, in order (each configured by a section of ``config``, see
    ``docs/pipeline.md``): dark subtraction (mean of ``run.attrs["darks"]``) and flat-field
    correction → detector mask (the run's mask file, bad pixels of a collection, dead pixels
    and the beam block from the mean of a sample of frames) → reference (the first present
    frame, or the mean of the earliest delays) and centre (``autocenter``, or given) →
    sub-pixel masked registration of every frame onto the reference, with its total and its
    correlation to its delay's median frame → rejection of whole frames (non-finite values on
    valid pixels; robust z-scores of the shift, of the total against its delay's frames and
    of the correlation) → normalisation (``[normalize] mode``: within each delay by default,
    so that a real change of the total intensity between delays is kept) and a MAD cut of
    pixels across scans → average over scans with the standard error of every pixel and of
    every radial bin → registration of the averages onto the reference → optional n-fold
    symmetrisation → equilibrium (the delays before time zero, or the pump-off frames) and
    ΔI/I with its error → optional baseline of the profiles.

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
        Every variable and coordinate with ``units`` and ``long_name`` attrs; centres are
        ``(row, col)``. Lazy, one chunk per delay: ``diffraction (delay, y, x)`` float32, the
        aligned, normalised average over scans, and ``diffraction_error``, its standard error
        over the kept scans (NaN outside the mask); ``radial (delay, radius)`` and
        ``radial_error`` (from the spread of the frames' own profiles); ``radial_change``
        (ΔI/I) and ``radial_change_error``; ``baseline (delay, radius)`` with a baseline
        method; ``delay_shifts (delay, coord)``; ``scale``, ``rejected_pixels (delay,
        scan)``; ``error_correlation (delay)``: the variance of a sum over a large region over
        the sum of its pixel variances (bilinear interpolation correlates neighbours). In
        memory: ``equilibrium (y, x)`` and ``equilibrium_error``; ``pump_off (y, x)`` and
        ``pump_off_error`` when the run has pump-off frames; ``mask (y, x)`` (True on valid
        pixels of the movie); ``center (coord)``; ``shifts (delay, scan, coord)`` (NaN for
        frames not registered); ``rejected``, ``total`` and ``correlation (delay, scan)``.
        ``attrs["uedflow"]``: JSON with the config, versions, input digests
        (:func:`file_digest`), the mask's digest and its parts (fraction of the frame removed
        by each), the reference frame, rejected frames and their reasons, excluded scans,
        missing and bad files, and the timing of each step.

    Raises
    ------
    ValueError
        For a run of other dims, an empty run, a bad configuration (checked against the run
        before any pixel is read), mask or flat file, a delay whose frames are all left out,
        or a frame whose registration fails (named).
    uedflow.errors.FrameMismatchError
        If dark, flat or pump-off frames differ in shape from the run's frames.

    Notes
    -----
    The analysis pass reads the darks and a sample of :data:`SAMPLE` frames (mask and
    reference), then the run once (every frame's shift, total, correlation; one task per
    delay), then the averages of the delays before time zero (equilibrium). The lazy outputs
    read the run a second time, one task per delay; whether a frame enters an average
    depends on the statistics of all frames, so that read cannot join the first.
    Everything that combines frames runs inside one task per delay, in a fixed order and
    without BLAS, so the results are bit-identical on any scheduler.

    The errors are standard errors over the kept scans: with ``n`` scans,
    ``(estimate - truth) / error`` follows Student's t with ``n - 1`` degrees of freedom.
    """
    timer = _Timer()
    if config is None:
        config = ReduceConfig()
    elif isinstance(config, dict):
        config = ReduceConfig.from_dict(config)
    run = _check_run(run)
    shape = run.shape[-2:]
    delays, scans = run["delay"].values, run["scan"].values
    pump_off_files = list(run.attrs.get("pump_off") or [])
    config.check(shape, delays, scans, pump_off=bool(pump_off_files))
    present = (run.coords["present"].values.astype(bool) if "present" in run.coords
               else np.ones(run.shape[:2], dtype=bool))
    reasons = _known_rejections(config.reject, present, scans[None, :])
    _rejected(reasons, delays)  # a delay with no frame fails before the run is read

    dark, gain = dark_and_gain(run, config)
    timer("dark_flat")

    valid, parts, reference, reference_label, noise = detector_mask(
        run, config, dark, gain, present, progress=progress)
    run = run.chunk({"delay": 1, "scan": -1})
    if config.align.reference == "early":
        corrected = run.copy(data=da.blockwise(_correct, "dsyx", run.data, "dsyx",
                                               _shared(dark), None, _shared(gain), None,
                                               dtype=np.float32))
        reference, valid = _early_reference(corrected, present, reference, valid,
                                            config.align, progress)
    timer("mask_reference")

    given = config.center.value is not None
    center = None  # only a ring normalisation needs it before the registration
    if given or config.normalize.ring is not None:
        center = np.asarray(config.center.value if given else autocenter(reference, valid),
                            dtype=float)
    stats, inside, aligned_mean = frame_statistics(run, config, present, reasons["excluded"],
                                                   dark, gain, valid, reference, center,
                                                   progress=progress)
    shifts, total, correlation = stats[..., :2], stats[..., 2], stats[..., 3]
    reasons["nonfinite"] = present & (stats[..., 4] == 1)
    reasons = _frame_rejections(config.reject, reasons, shifts, total, correlation,
                                config.align.max_shift, config.align.upsample_factor)
    rejected = _rejected(reasons, delays)
    mask, common = _movie_mask(valid, shifts, ~rejected)
    parts["margin"] = _fraction(valid & ~mask)
    parts["total"] = _fraction(~mask)
    if not given:  # the aligned mean, at many frames' counts; rings sharpest about it
        center = refine_center(aligned_mean, autocenter(aligned_mean, common), common)
    timer("registration_statistics")
    region = _region(config.normalize, center, shape) & common
    if not region.any():
        raise ValueError(f"[normalize] the region {config.normalize} has no pixel that every "
                         "kept frame reaches")
    level = {"none": None, "delay": "delay"}.get(config.normalize.mode)
    if config.normalize.mode == "run":
        # every frame to one level: the median total of the kept frames in `region`,
        # estimated from their totals over `inside` and the reference's
        ratio = reference[region].sum(dtype=np.float64) / reference[inside].sum(
            dtype=np.float64)
        if not (np.isfinite(ratio) and ratio > 0):
            raise ValueError("[normalize] the reference has no positive total in the region "
                             f"{config.normalize}")
        level = ratio * np.median(total[~rejected])

    # The averages over scans, lazy: a second read of the run (see Notes)
    filled = np.flatnonzero(np.bincount(
        np.rint(np.hypot(*(np.nonzero(mask) - center[:, None]))).astype(np.intp)))
    start, size = int(filled[0]), int(filled[-1] - filled[0] + 1)
    radial_bins = _radial_bins(center, common, start, size)
    plans = weight = None
    if config.average.align:
        weight = _registration_weight(mask)
        plans = Plans(AlignPlan, (_registration_image(reference, mask, weight), mask),
                      {**_align_options(config.align), "max_shift": 1})
    pixel_z = config.reject.pixel_z if config.reject.enabled else None
    chunks = run.chunks[:2]
    shared = [_shared(x) for x in (dark, gain, valid, region)]
    parts_ = da.blockwise(
        _average_delay, "d", run.data, "dsyx", da.from_array(_labels(run), chunks=chunks), "ds",
        da.from_array(shifts, chunks=(*chunks, 2)), "dsc",
        da.from_array(~rejected, chunks=chunks), "ds", *(x for k in shared for x in (k, None)),
        _shared(level), None, _shared(mask), None, pixel_z, None, _shared(noise), None,
        _shared(plans), None, _shared(weight), None, _shared(radial_bins), None,
        concatenate=True, dtype=object, meta=np.empty((0,), object))

    def pick(k, extra, dtype):
        return da.map_blocks(_pick, parts_, k, new_axis=list(range(1, 1 + len(extra))),
                             chunks=(parts_.chunks[0], *((n,) for n in extra)), dtype=dtype,
                             meta=np.empty((0,) * (1 + len(extra)), dtype))

    radius = xr.DataArray(np.arange(start, start + size), dims="radius")
    coords = {"delay": run["delay"], "scan": run["scan"], "coord": ROW_COL}
    diffraction = xr.DataArray(pick(0, shape, np.float32), dims=("delay", "y", "x"),
                               coords={"delay": run["delay"]}, name="diffraction")
    if config.symmetrize.mod is not None:
        diffraction = diffraction.ued.nfold(config.symmetrize.mod, center=center,
                                            mask=mask).astype(np.float32)
    ds = xr.Dataset(coords=coords)
    ds["diffraction"] = diffraction
    ds["diffraction_error"] = (("delay", "y", "x"), pick(1, shape, np.float32))
    ds["delay_shifts"] = (("delay", "coord"), pick(2, (2,), float))
    ds["scale"] = (("delay", "scan"), pick(3, (run.sizes["scan"],), float))
    ds["rejected_pixels"] = (("delay", "scan"), pick(4, (run.sizes["scan"],), np.int64))
    radial_error = xr.DataArray(pick(5, (size,), float), dims=("delay", "radius"),
                                coords={"radius": radius})
    ds["error_correlation"] = ("delay", pick(6, (), float))

    # pump-off frames, equilibrium and ΔI/I
    pending = {}
    pump_off_left_out = []
    if pump_off_files:
        frames = _open_frames(pump_off_files, shape, "pump-off")
        options = _align_options(config.align) if config.align.enabled else None
        pending["pump_off"] = dask.delayed(_pump_off)(
            frames.data, [str(f) for f in pump_off_files], dark, gain, valid, reference,
            options, region, level, mask, pixel_z, noise, radial_bins)
    before = delays < config.dynamics.t0
    by_pump_off = config.dynamics.reference == "pump_off"
    if not by_pump_off:
        pending["diffraction"] = diffraction[before].data
        pending["diffraction_error"] = ds["diffraction_error"][before].data
    if config.radial.enabled:
        radial = diffraction.ued.azimuthal_average(center=center, mask=mask)
        if not by_pump_off:
            pending["radial"] = radial[before].data
            pending["radial_error"] = radial_error[before].data
    done = dict(zip(pending, _compute(*pending.values(), step="equilibrium",
                                      progress=progress), strict=True))
    if pump_off_files:
        image, error, pump_off_radial_error, pump_off_left_out = done["pump_off"]
        ds["pump_off"] = (("y", "x"), image)
        ds["pump_off_error"] = (("y", "x"), error)
    if by_pump_off:
        ds["equilibrium"], ds["equilibrium_error"] = ds["pump_off"], ds["pump_off_error"]
    else:
        n = int(before.sum())
        ds["equilibrium"] = (("y", "x"), done["diffraction"].mean(axis=0).astype(np.float32))
        ds["equilibrium_error"] = (("y", "x"), (np.sqrt((done["diffraction_error"].astype(
            float) ** 2).sum(axis=0)) / n).astype(np.float32))
    if config.radial.enabled:
        ds["radial"] = radial.rename(None)
        ds["radial_error"] = radial_error
        if by_pump_off:
            image = ds["pump_off"].values.astype(np.float64).reshape(1, -1)
            reached = mask & np.isfinite(ds["pump_off"].values)  # by the pump-off frames
            profile = _profiles(image, _radial_bins(center, reached, start, size))[0]
            equilibrium, equilibrium_error = profile, pump_off_radial_error
            covariance = 0.0
        else:
            n = int(before.sum())
            equilibrium = done["radial"].mean(axis=0)
            equilibrium_error = np.sqrt((done["radial_error"] ** 2).sum(axis=0)) / n
            covariance = xr.DataArray(before, dims="delay") * radial_error**2 / n
        equilibrium = xr.DataArray(np.where(equilibrium != 0, equilibrium, np.nan),
                                   dims="radius")
        ds["radial_change"] = radial / equilibrium - 1
        ds["radial_change_error"] = _change_error(radial, radial_error, equilibrium,
                                                  xr.DataArray(equilibrium_error,
                                                               dims="radius"), covariance)
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
    labels = _labels(run)
    provenance = {
        "config": config.to_dict(),
        "versions": _versions(),
        "source": run.attrs.get("source"),
        "inputs": _inputs(run, config, mask_file(run, config)),
        "mask": parts,
        "mask_digest": "sha256:" + hashlib.sha256(np.packbits(mask).tobytes()).hexdigest(),
        "reference_frame": reference_label,
        "rejected": [[float(delays[i]), int(scans[s]),
                      [name for name, flags in reasons.items() if flags[i, s]]]
                     for i, s in np.argwhere(rejected)],
        "rejected_files": {labels[i, s]: [name for name, flags in reasons.items()
                                          if flags[i, s]]
                           for i, s in np.argwhere(rejected & present)},
        "pump_off_left_out": pump_off_left_out,
        "excluded_scans": config.reject.exclude_scans,
        "missing": run.attrs.get("missing", []),
        "bad_files": run.attrs.get("bad_files", []),
        "timing": timer.times,
    }
    ds.attrs["uedflow"] = json.dumps(provenance)
    return _units(ds)


def _pick(parts, k):
    return np.stack([part[k] for part in parts])
