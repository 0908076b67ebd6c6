"""Reduction of a time-resolved run ``(delay, scan, y, x)`` into a diffraction movie with
error bars.

:func:`reduce` reads as its steps, each a function configured by one section of
:class:`~uedflow.pipeline.config.ReduceConfig` (``docs/pipeline.md``):

1. :func:`dark_and_gain` (``[dark]``, ``[flat]``);
2. :func:`detector_mask` (``[mask]``) and the reference frame, from the mean of a sample of
   frames spread over the run;
3. the centre (``[center]``);
4. :func:`frame_statistics` (``[align]``, ``[reject]``): one read of the run, in tasks of
   a group of scans of a delay: every frame's shift, total and correlation; then the frame
   rejections;
5. :func:`averages` (``[normalize]``, ``[reject] pixel_z``, ``[average]``): a second read,
   lazy, in tasks of a group of scans adding its frames into mergeable partial sums
   (:class:`~uedflow.pipeline.partials.PixelSums`: per pixel the count, sum, sum of squares
   and extremes; the sums of the frames' radial profiles), from which the averages, their
   standard errors and the pixel cut follow;
6. the pump-off average, the equilibrium and ΔI/I with their errors (``[dynamics]``,
   ``[radial]``, ``[baseline]``).

The small results (mask, centre, shifts, frame statistics, rejections, equilibrium) are
computed at once, in the analysis pass; the image-sized ones stay lazy, to be written chunk
by chunk.
"""

import hashlib
import json
import math
import operator
import os
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr
from scipy import ndimage as ndi
from scipy import sparse

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
from .partials import PixelSums

__all__ = ["averages", "dark_and_gain", "detector_mask", "file_digest", "frame_statistics",
           "reduce"]

DIMS = ("delay", "scan", "y", "x")
#: Bytes hashed at the start and at the end of every input file (see :func:`file_digest`).
DIGEST_BYTES = 2**16
#: Scale of a normal distribution from its median absolute deviation.
MAD_SIGMA = 1.4826
#: Smallest robust spread of the frame criteria: relative total intensity, 1 - correlation.
INTENSITY_FLOOR = 0.01
CORRELATION_FLOOR = 1e-3
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
    "correlation": ("1", "correlation with the reference frame"),
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


def _block_moments(raws, dark, gain, keep_first, partial=None):
    """Count of finite values, their sum and their sum of squares ``(3, y, x)`` over the
    corrected frames ``raws`` ``(n, y, x)``, added to those of ``partial`` (in place) if
    given; and the first corrected frame (``keep_first``; else that of ``partial``)."""
    out, first = partial if partial is not None else (np.zeros((3, *raws.shape[1:])), None)
    frame = np.empty(raws.shape[1:], np.float32)
    finite = np.empty(raws.shape[1:], bool)
    if keep_first:
        first = _correct(raws[0], dark, gain)
    for raw in raws:
        _correct(raw, dark, gain, out=frame)
        np.isfinite(frame, out=finite)
        np.copyto(frame, 0, where=~finite)
        out[0] += finite
        out[1] += frame
        out[2] += np.square(frame, dtype=np.float64)
    return out, first


def _add_moments(a, b):
    return a[0] + b[0], a[1] if a[1] is not None else b[1]


def _sample_moments(frames, dark, gain):
    """Per-pixel count of finite values, sum and sum of squares ``(3, y, x)`` over the
    corrected frames of the lazy ``frames`` ``(n, y, x)``, and the first of them corrected,
    delayed: :data:`CHAINS` chains of tasks of :data:`GROUP` frames (see
    :func:`_statistics`), merged."""
    dark, gain = _shared(dark), _shared(gain)
    step = dask.delayed(_block_moments, pure=True)
    partial = [None] * CHAINS
    for k, block in enumerate(frames.rechunk((GROUP, -1, -1)).to_delayed().ravel()):
        partial[k % CHAINS] = step(block, dark, gain, k == 0, partial[k % CHAINS])
    return _tree([p for p in partial if p is not None], _add_moments)


def _moments(sums):
    """Count, mean and variance from the sums of :func:`_sample_moments`."""
    count, total, squares = sums
    n = np.maximum(count, 1)
    mean = total / n
    variance = np.maximum(squares / n - mean**2, 0) * n / np.maximum(count - 1, 1)
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
    frames = da.stack([run.data[i, s] for i, s in sample])
    (sums, first), bad = _compute(_sample_moments(frames, dark, gain), bad,
                                  step="mask and reference", progress=progress)
    count, mean, variance = _moments(sums)
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
        frame = first if k == 0 else _correct(frames[k].compute(), dark, gain)
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
    done = {}  # the mask of each delay, by its groups of offsets (most delays share one)
    for i in range(kept.shape[0]):
        groups = {}
        for s in np.flatnonzero(kept[i]):
            offsets = _offsets(shifts[i, s])
            groups[offsets] = min(groups.get(offsets, 0) + 1, 2)  # 2 is enough
        key = frozenset(groups.items())
        if key not in done:
            count = np.zeros(valid.shape, np.uint16)
            for offsets, n in groups.items():
                count += reached(offsets) * np.uint16(n)
            done[key] = True
            mask &= count >= min(2, sum(groups.values()))
    common = np.logical_and.reduce([valid, *cache.values()])
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


#: Registration compares frames binned REGISTRATION_BIN x REGISTRATION_BIN and smoothed by
#: REGISTRATION_SIGMA (binned px, 2 px of the frame): every dark-subtracted frame shares the
#: dark's estimation noise (and, without darks, the detector's fixed pattern), a peak at zero
#: shift that pins the registration of low-count frames; smoothing suppresses it, keeping the
#: pattern's structure, and binning makes the transforms 4 times smaller at the same precision
#: (``benchmarks/scaling.py``).
REGISTRATION_BIN = 2
REGISTRATION_SIGMA = 1.0
#: Most frames of one task (a group of scans of one delay); fewer when ``[compute]
#: task_memory`` asks for it.
GROUP = 8


def _binned(image):
    """Sum over 2 x 2 blocks (REGISTRATION_BIN; a last odd row/column is left out), as
    float32."""
    n, m = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    out = np.add(image[0:n:2, 0:m:2], image[1:n:2, 0:m:2], dtype=np.float32)
    out += image[0:n:2, 1:m:2]
    out += image[1:n:2, 1:m:2]
    return out


class _Registration:
    """Registration of frames onto a reference, set up once: blocks of REGISTRATION_BIN x
    REGISTRATION_BIN valid pixels, smoothed (normalised convolution over the valid blocks),
    compared by masked normalized cross-correlation (:class:`~uedflow.image.AlignPlan`).
    Called on a frame, returns its shift (frame px) and its correlation with the reference
    at that shift."""

    def __init__(self, reference, valid, upsample_factor, max_shift):
        self.valid = _binned(valid.astype(np.float32)) == REGISTRATION_BIN**2
        if not self.valid.any():
            raise ValueError(f"the mask leaves no {REGISTRATION_BIN} x {REGISTRATION_BIN} "
                             "block of valid pixels to register frames on")
        self.weight = np.maximum(ndi.gaussian_filter(self.valid.astype(np.float32),
                                                     REGISTRATION_SIGMA, truncate=3.0), 1e-3)
        self.plans = Plans(AlignPlan, (self.image(reference), self.valid), {
            "upsample_factor": upsample_factor * REGISTRATION_BIN,
            "max_shift": max(1, math.ceil(max_shift / REGISTRATION_BIN))})

    def image(self, frame):
        """The frame as registration compares it (non-finite values off the valid blocks
        are dropped)."""
        with np.errstate(invalid="ignore"):
            out = np.where(self.valid, _binned(frame), np.float32(0))
        out = ndi.gaussian_filter(out, REGISTRATION_SIGMA, truncate=3.0)
        out /= self.weight
        return out

    def __call__(self, frame):
        shift, correlation = self.plans.get().register(self.image(frame))
        return shift * REGISTRATION_BIN, correlation

    def __dask_tokenize__(self):
        return ("uedflow._Registration", dask.base.tokenize(self.plans))


def _integer_slices(shape, shift):
    """Slices ``(destination, source)`` that move an image by ``shift`` rounded to whole
    pixels."""
    out = []
    for n, s in zip(shape, np.rint(shift).astype(int), strict=True):
        s = int(np.clip(s, -n, n))
        out.append((slice(max(s, 0), n + min(s, 0)), slice(max(-s, 0), n - max(s, 0))))
    (dy, sy), (dx, sx) = out
    return (dy, dx), (sy, sx)


def _group_stats(block, labels, present, dark, gain, valid, registration, inside,
                 aligned_sum=None):
    """Registration and statistics of the present frames of one group of scans of one
    delay, in one read: ``(scans, 5)`` = shift (row, col) onto the reference (no
    ``registration``: 0), total over ``inside`` of the frame aligned by its shift (to the
    nearest pixel), correlation with the reference (at the shift), and 1 for a frame with a NaN
    or infinite value on a ``valid`` pixel (its other values NaN); NaN for frames not
    present. Also the sum of the finite frames aligned to the nearest pixel (invalid pixels 0),
    a partial of the run's aligned mean, added to ``aligned_sum`` (in place) if given.
    Returns ``(statistics, aligned_sum)``."""
    block = block[0]
    out = np.full((present.size, 5), np.nan)
    if aligned_sum is None:
        aligned_sum = np.zeros(block.shape[-2:], np.float32)
    frame = np.empty(block.shape[-2:], np.float32)
    for s in np.flatnonzero(present):
        _correct(block[s], dark, gain, out=frame)
        out[s, 4] = 0.0
        if not np.isfinite(frame).all() and not np.isfinite(frame[valid]).all():
            out[s, 4] = 1.0
            continue
        try:
            shift, correlation = registration(frame)
        except Exception as exc:
            raise named_error(exc, labels[s]) from exc
        frame[~valid] = 0
        target, source = _integer_slices(frame.shape, shift)
        aligned_sum[target] += frame[source]
        out[s, :4] = (*shift, np.sum(frame[source], where=inside[target], dtype=np.float64),
                      correlation)
    return out, aligned_sum


class _Unaligned:
    """Stands for registration when ``[align] enabled = false``: no shift, and the
    correlation with the reference as registration would compare them."""

    def __init__(self, reference, valid):
        self.registration = _Registration(reference, valid, 1, 1)
        self.reference = self._centred(self.registration.image(reference))

    def _centred(self, image):
        values = image[self.registration.valid].astype(np.float64)
        values -= values.mean()
        return values / max(np.sqrt(np.einsum("i,i", values, values)), 1e-300)

    def __call__(self, frame):
        image = self._centred(self.registration.image(frame))
        return np.zeros(2), float(np.einsum("i,i", image, self.reference))


def _groups(run, config):
    """Scans per task: GROUP, or fewer so that a task's frames (raw, and as float32 work
    copies) and its partial sums fit ``[compute] task_memory``."""
    pixels = run.shape[-2] * run.shape[-1]
    partial = 48 * pixels  # PixelSums (~32 B/px) and the work frames
    per_frame = run.dtype.itemsize * pixels
    fit = (config.compute.task_memory - partial) // per_frame
    if fit < 1:
        raise ValueError(f"[compute] task_memory: {config.compute.task_memory} bytes do not "
                         f"hold one task of {run.shape[-2]} x {run.shape[-1]} frames (at least "
                         f"{partial + per_frame} bytes)")
    return int(min(GROUP, fit, run.sizes["scan"]))


#: Chains of tasks per delay (see :func:`_statistics`, :func:`averages`).
CHAINS = 2


def _statistics(data, labels, present, dark, gain, valid, registration, inside):
    """The frame statistics of ``data`` (``(delay, scan, y, x)``, chunked by groups of
    scans) and the sum of its frames aligned to the nearest pixel, delayed: per delay,
    :data:`CHAINS` interleaved chains of tasks of one group each (:func:`_group_stats`),
    each adding into the sum of the task before it, so that a chain holds one sum whatever
    the number of scans. Returns every task's statistics (by delay, then scan) and the sum."""
    args = [_shared(x) for x in (dark, gain, valid, registration, inside)]
    step = dask.delayed(_group_stats, pure=True, nout=2)
    bounds = np.cumsum((0, *data.chunks[1]))
    stats, ends = [], []
    for i, row in enumerate(data.to_delayed()[:, :, 0, 0]):
        partial = [None] * CHAINS
        for g, block in enumerate(row):
            scans = slice(bounds[g], bounds[g + 1])
            stat, partial[g % CHAINS] = step(block, labels[i, scans], present[i, scans], *args,
                                             partial[g % CHAINS])
            stats.append(stat)
        ends += [p for p in partial if p is not None]
    return stats, _tree(ends, operator.add)


def _registration(config, reference, valid):
    """The registration of ``[align]`` (:class:`_Registration`), or :class:`_Unaligned`."""
    if not config.enabled:
        return _Unaligned(reference, valid)
    return _Registration(reference, valid, config.upsample_factor, config.max_shift)


def _frame_setup(config, reference, valid, center):
    """The registration of the frames and the pixels of their totals (see
    :func:`frame_statistics`)."""
    reach = int(config.align.max_shift) if config.align.enabled else 0
    registration = _registration(config.align, reference, valid)
    steady = _eroded(valid, reach)
    inside = _region(config.normalize, center, valid.shape) & steady
    if not inside.any():
        raise ValueError(f"[normalize] the region {config.normalize} has no valid pixel at "
                         f"least [align] max_shift = {reach} px from the masked pixels and the "
                         "frame's edges; choose a larger region or a smaller max_shift")
    return registration, inside


def frame_statistics(run, config, present, dark, gain, valid, reference, center,
                     *, progress=False):
    """Step ``[align]`` + statistics: every frame's shift onto the reference, total and
    correlation with the reference, in one read of the run (one task per group of scans of
    a delay, see :func:`_groups`).

    A frame's total is taken on it aligned by its own shift, over the pixels ``steady``
    that every shift the registration can return (at most ``max_shift`` along each axis)
    fills from valid detector pixels only (and inside the normalisation region): one set of
    pixels for all frames, so totals compare like with like whichever frames are kept.

    Returns
    -------
    stats : ndarray, shape (delay, scan, 5)
        Shift (row, col), total, correlation, non-finite flag (see :func:`_group_stats`).
    inside : ndarray of bool
        The pixels of the totals.
    aligned_mean : ndarray, shape (y, x)
        Mean of the frames with finite values, aligned onto the reference to the nearest
        pixel (invalid pixels as 0): merged from one partial sum per task, it locates the
        centre far better than one frame at a few counts per pixel.
    """
    registration, inside = _frame_setup(config, reference, valid, center)
    stats, sums = _statistics(run.data, _labels(run), present, dark, gain, valid,
                              registration, inside)
    *stats, sums = _compute(*stats, sums, step="registration + frame statistics",
                            progress=progress)
    stats = np.concatenate(stats).reshape(*run.shape[:2], 5)
    n = np.count_nonzero(stats[..., 4] == 0)
    return stats, inside, sums / max(n, 1)


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


def _delay_deviation(values, usable, relative):
    """Deviation of every frame's value from the median of the usable frames of its delay
    (``relative``: their ratio - 1), and where that median is of at least 3 frames; for a
    delay of fewer, the deviation from the run's median."""
    reference = np.full(values.shape[0], np.median(values[usable]))
    within = np.zeros(values.shape, bool)
    for i, use in enumerate(usable):
        if use.sum() >= 3:
            reference[i] = np.median(values[i, use])
            within[i] = use
    deviation = values / reference[:, None] - 1 if relative else values - reference[:, None]
    return deviation, within


def _intensity_outliers(total, usable, z):
    """Frames whose total is an outlier among the usable frames of its delay: robust
    z-scores of the total relative to the delay's median, with the spread of all such
    relative totals of the run; a real change of the total intensity between delays is
    physics, not a bad frame. Delays with fewer than 3 usable frames: see
    :data:`GROSS_INTENSITY`."""
    deviation, within = _delay_deviation(total, usable, relative=True)
    out = usable & ~within & (np.abs(deviation) > GROSS_INTENSITY)
    if within.any():
        out |= within & (np.abs(_robust_z(deviation, within, INTENSITY_FLOOR)) > z)
    return out


#: Frames on either side of a frame, in its scan, whose median shift it is compared with.
SHIFT_WINDOW = 2


def _shift_deviation(shifts, usable):
    """Distance of every frame's shift ``(delay, scan, 2)`` from the median shift of the
    usable frames about it in its scan (:data:`SHIFT_WINDOW` delays either side; the run's
    median where fewer than 3): frames close in time, so that the drift of the pattern
    during a scan is not taken for a jump."""
    reference = np.broadcast_to(np.median(shifts[usable], axis=0), shifts.shape).copy()
    n = shifts.shape[0]
    window = min(n, 2 * SHIFT_WINDOW + 1)
    for s in range(shifts.shape[1]):
        for i in range(n):
            start = min(max(i - SHIFT_WINDOW, 0), n - window)
            use = np.flatnonzero(usable[start:start + window, s]) + start
            if use.size >= 3:
                reference[i, s] = np.median(shifts[use, s], axis=0)
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
    # at the edge of the search window: the registration found no peak inside it
    bad = (np.abs(shifts) >= int(max_shift)).any(axis=-1)
    if config.shift_z is not None:
        bad |= _robust_z(_shift_deviation(shifts, usable), usable, 1 / upsample_factor) \
            > config.shift_z
    reasons["shift"] = bad & usable
    usable &= ~bad
    reasons["intensity"] = np.zeros_like(usable) if config.intensity_z is None else \
        _intensity_outliers(total, usable, config.intensity_z)
    # against the frames of the same delay (the pattern changes with delay); a delay of
    # fewer than 3 usable frames has no majority to compare with
    deviation, within = _delay_deviation(correlation, usable, relative=False)
    if config.correlation_z is None or not within.any():
        reasons["correlation"] = np.zeros_like(usable)
    else:
        reasons["correlation"] = within & (-_robust_z(deviation, within, CORRELATION_FLOOR)
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


def _radial_geometry(center, pixels):
    """``(start, size)``: the radial bins (radius rounded) that ``pixels`` fill about
    ``center``, from the first to the last."""
    filled = np.flatnonzero(np.bincount(
        np.rint(np.hypot(*(np.nonzero(pixels) - center[:, None]))).astype(np.intp)))
    return int(filled[0]), int(filled[-1] - filled[0] + 1)


def _radial_bins(center, pixels, start, size):
    """Geometry of radial profiles over ``pixels`` about ``center`` (row, col), computed once:
    the flat indices of the pixels, their bin (radius rounded, minus ``start``) and the pixels
    per bin; pixels outside ``start .. start + size - 1`` are left out."""
    yy, xx = np.nonzero(pixels)
    bins = np.rint(np.hypot(yy - center[0], xx - center[1])).astype(np.intp) - start
    keep = (bins >= 0) & (bins < size)
    index = np.ravel_multi_index((yy[keep], xx[keep]), pixels.shape)
    return index, bins[keep], np.bincount(bins[keep], minlength=size)


#: Radial profile matrices kept per process (see :class:`RadialProfile`), by token.
_PROFILES = {}
PROFILES_KEPT = 4


class RadialProfile:
    """The radial profiles of flat frames over ``pixels`` about ``center`` (row, col), in
    the bins ``start .. start + size - 1`` (:func:`_radial_bins`), as a sparse matrix
    ``(size, pixels)``: ``profile @ frame.ravel()``.

    The matrix (12 bytes a pixel) is built once per process, on first use, and pickles as
    its geometry (the pixels packed to bits): a graph, or a partial sum moved between
    workers, carries a 2048² detector's profile in 0.5 MiB instead of 48 MiB."""

    def __init__(self, center, pixels, start, size):
        self.center = np.asarray(center, dtype=float)
        self.pixels_shape = pixels.shape
        self.packed = np.packbits(pixels)
        self.start, self.size = int(start), int(size)
        self.shape = (self.size, int(pixels.size))
        self.token = hashlib.sha256(b"".join([self.center.tobytes(), self.packed.tobytes(),
                                              np.array([start, size, *pixels.shape]).tobytes()])
                                    ).hexdigest()

    @property
    def matrix(self):
        """The sparse matrix (CSC), built on first use in this process."""
        matrix = _PROFILES.get(self.token)
        if matrix is None:
            pixels = np.unpackbits(self.packed, count=self.shape[1]).reshape(
                self.pixels_shape).astype(bool)
            index, bins, per_bin = _radial_bins(self.center, pixels, self.start, self.size)
            matrix = sparse.csc_matrix(((1 / per_bin[bins]).astype(np.float32), (bins, index)),
                                       shape=self.shape)
            while len(_PROFILES) >= PROFILES_KEPT:
                _PROFILES.pop(next(iter(_PROFILES)), None)
            _PROFILES[self.token] = matrix
        return matrix

    def __matmul__(self, flat):
        return self.matrix @ flat

    def __dask_tokenize__(self):
        return ("uedflow.RadialProfile", self.token)


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


def _scales(totals, kept, level):
    """Normalisation factors of every frame ``(delay, scan)`` (0 where not ``kept``): to the
    mean total of the kept frames of its delay (``level == "delay"``), to ``level`` (a
    number) or none (None)."""
    scales = np.zeros(totals.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        if level is None:
            scales[kept] = 1.0
        elif level == "delay":
            means = np.nansum(np.where(kept, totals, 0), axis=1) / kept.sum(axis=1)
            scales = np.where(kept, means[:, None] / totals, 0.0)
        else:
            scales = np.where(kept, level / totals, 0.0)
    bad = kept & ~(np.isfinite(scales) & (scales > 0))
    if bad.any():
        i, s = np.argwhere(bad)[0]
        raise ValueError(f"frame (delay index {i}, scan index {s}): its total in the "
                         f"normalisation region is {totals[i, s]}; reject it or choose another "
                         "region")
    return scales


def _group_sums(block, kept, shifts, scales, index, dark, gain, valid, profile, sums=None):
    """The ``kept`` frames of one group of scans of one delay added into partial sums
    (:class:`~uedflow.pipeline.partials.PixelSums`; new if ``sums`` is None, else ``sums``,
    in place): corrected, invalid pixels NaN (spreading exactly to the output pixels that
    read them), moved by their ``shifts``, multiplied by their ``scales``. ``index``: the
    scans' indices in the run."""
    block = block[0]
    shape = block.shape[-2:]
    if sums is None:
        sums = PixelSums(shape, profile)
    frame = np.empty(shape, np.float32)
    work = np.empty(shape, np.float32)
    flag = np.empty(shape, bool)
    invalid = ~valid
    for s in np.flatnonzero(kept):
        _correct(block[s], dark, gain, out=frame)
        np.copyto(frame, np.nan, where=invalid)
        aligned = translate(frame, shifts[s], np.nan)
        aligned *= np.float32(scales[s])
        sums.add(aligned, index[s], work, flag)
    return sums


def _merge(a, b):
    """Merge the partial sums ``b`` into ``a`` (in place: ``a`` has no other use)."""
    return a.merge(b)


def _translate_valid(image, valid, shift):
    """``image`` moved by ``shift`` (bilinear) interpolating from its ``valid`` pixels only
    (normalised weights), so that a masked pixel does not spread."""
    weight = valid.astype(np.float32)
    num = translate(np.where(valid, image, 0).astype(np.float32), shift, 0.0)
    den = translate(weight, shift, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-3, num / den, image)


def _finish(parts, pixel_z, noise, mask, registration, n_scans):
    """A delay's average from its merged partial sums: ``(image, error, delay shift, pixels
    cut per scan, radial error)``; the image registered onto the reference (``registration``;
    None: not) and 0 off the ``mask``, the error NaN there (and on pixels no frame reaches)."""
    mean, error, cuts, radial_error = parts.result(pixel_z, noise, n_scans)
    parts.release()
    image = np.where(mask, mean, 0).astype(np.float32)
    error = np.where(mask, error, np.nan).astype(np.float32)
    delta = np.zeros(2)
    if registration is not None:
        delta = registration(image)[0]
        image = _translate_valid(image, mask, delta).astype(np.float32)
        known = mask & np.isfinite(error)  # an unknown error stays unknown (NaN), not 0
        error = np.sqrt(_translate_valid(np.where(known, error, np.nan) ** 2, known,
                                         delta)).astype(np.float32)
        image[~mask] = 0
        error[~mask] = np.nan
    return image, error, delta, cuts, radial_error


def _tree(parts, merge=None):
    """Merge a list of delayed partial results pairwise (by default partial sums, in
    place: :func:`_merge`), in a fixed order."""
    merge = dask.delayed(merge or _merge, pure=True)
    while len(parts) > 1:
        parts = [merge(*parts[k:k + 2]) if k + 1 < len(parts) else parts[k]
                 for k in range(0, len(parts), 2)]
    return parts[0]


def averages(data, kept, shifts, scales, dark, gain, valid, profile, pixel_z, noise, mask,
             registration):
    """Step ``[average]``: the average over scans of the ``kept`` frames of every row of
    ``data`` (``(delay, scan, y, x)``, chunked by groups of scans), delayed: per delay,
    :data:`CHAINS` interleaved chains of tasks of one group each adding its frames into the
    partial sums of the task before it (:func:`_group_sums`), the chains merged, then
    :func:`_finish`. Returns one delayed ``(image, error, delay shift, cuts per scan, radial
    error)`` per delay."""
    args = [_shared(x) for x in (dark, gain, valid, profile)]
    shared = [_shared(x) for x in (noise, mask, registration)]
    step = dask.delayed(_group_sums, pure=True)
    finish = dask.delayed(_finish, pure=True)
    bounds = np.cumsum((0, *data.chunks[1]))
    out = []
    for i, row in enumerate(data.to_delayed()[:, :, 0, 0]):
        partial = [None] * CHAINS
        for g, block in enumerate(row):
            scans = slice(bounds[g], bounds[g + 1])
            if kept[i, scans].any():
                partial[g % CHAINS] = step(block, kept[i, scans], shifts[i, scans],
                                           scales[i, scans], np.arange(bounds[g], bounds[g + 1]),
                                           *args, partial[g % CHAINS])
        out.append(finish(_tree([p for p in partial if p is not None]), pixel_z, *shared,
                          data.shape[1]))
    return out


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


def _equilibrium_error(errors, counts):
    """Standard error of the mean of the averages of the delays before time zero, from
    their standard errors ``errors`` ``(delay, ...)``, each an average of ``counts`` frames.

    An average of a single frame has no error of its own (NaN): its frame's variance is the
    pooled variance of the other delays' frames (the same equilibrium state, the same noise)
    instead of making the equilibrium's error, and every ΔI/I error, unknown."""
    errors = np.asarray(errors, dtype=float)
    counts = np.asarray(counts, dtype=float).reshape(-1, *(1,) * (errors.ndim - 1))
    known = np.isfinite(errors)
    dof = np.where(known, counts - 1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        frame_variance = (np.where(known, errors**2 * counts, 0) * dof).sum(axis=0) / dof.sum(
            axis=0)  # NaN where no delay has an error (off the mask)
        variance = np.where(known, errors**2, frame_variance / counts)
    return np.sqrt(variance.sum(axis=0)) / len(errors)


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
    correlation with the reference → rejection of whole frames (non-finite values on
    valid pixels; robust z-scores of the shift, of the total against its delay's frames and
    of the correlation) → normalisation (``[normalize] mode``: within each delay by default,
    so that a real change of the total intensity between delays is kept) and a cut of each
    pixel's extreme values across scans → average over scans with the standard error of
    every pixel and of every radial bin → registration of the averages onto the reference →
    optional n-fold symmetrisation → equilibrium (the delays before time zero, or the
    pump-off frames) and ΔI/I with its error → optional baseline of the profiles.

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
    reference), then the run once (every frame's shift, total, correlation; tasks of up to
    :data:`GROUP` scans of a delay, ``[compute] task_memory``), then the averages of the
    delays before time zero (equilibrium, computed once). The lazy outputs of the other
    delays read the run a second time, in tasks of the same groups adding into mergeable
    partial sums; whether a frame enters an average depends on the statistics of all
    frames, so that read cannot join the first. Memory per task does not grow with the
    number of scans or delays. Partials are merged in a fixed order and nothing that combines
    frames uses BLAS, so the results are bit-identical on any scheduler.

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
    group = _groups(run, config)

    dark, gain = dark_and_gain(run, config)
    timer("dark_flat")

    valid, parts, reference, reference_label, noise = detector_mask(
        run, config, dark, gain, present, progress=progress)
    run = run.chunk({"delay": 1, "scan": group})
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
    stats, inside, aligned_mean = frame_statistics(run, config, present, dark, gain, valid,
                                                   reference, center, progress=progress)
    shifts, total, correlation = stats[..., :2], stats[..., 2], stats[..., 3]
    reasons["nonfinite"] = present & (stats[..., 4] == 1)
    reasons = _frame_rejections(config.reject, reasons, shifts, total, correlation,
                                config.align.max_shift, config.align.upsample_factor)
    rejected = _rejected(reasons, delays)
    kept = ~rejected
    mask, common = _movie_mask(valid, shifts, kept)
    parts["margin"] = _fraction(valid & ~mask)
    parts["total"] = _fraction(~mask)
    if not given:  # the aligned mean, at many frames' counts; rings sharpest about it
        center = refine_center(aligned_mean, autocenter(aligned_mean, common), common)
        # its frames were moved by their shifts rounded: its centre is off the reference's
        # by the mean of (rounded - shift), to first order
        summed = stats[..., 4] == 0
        center -= np.mean(np.rint(shifts[summed]) - shifts[summed], axis=0)
    timer("registration_statistics")
    level = {"none": None, "delay": "delay", "run": float(np.median(total[kept]))}[
        config.normalize.mode]
    scales = _scales(total, kept, level)

    # The averages over scans, lazy: a second read of the run (see Notes)
    start, size = _radial_geometry(center, mask)
    profile = RadialProfile(center, common, start, size)
    pixel_z = config.reject.pixel_z if config.reject.enabled else None
    registration = (_Registration(reference, mask, config.align.upsample_factor, 1)
                    if config.average.align else None)
    common_args = (dark, gain, valid, profile, pixel_z, noise, mask)
    finished = averages(run.data, kept, shifts, scales, *common_args, registration)

    # pump-off frames, equilibrium and ΔI/I: the averages of the delays before time zero
    # are computed now, once, and kept for the outputs
    before = delays < config.dynamics.t0
    by_pump_off = config.dynamics.reference == "pump_off"
    pending = {} if by_pump_off else {int(i): finished[i] for i in np.flatnonzero(before)}
    pump_off_left_out = []
    if pump_off_files:
        frames = _open_frames(pump_off_files, shape, "pump-off")
        off_data = frames.data[None].rechunk((1, group, -1, -1))
        off_labels = np.array([str(f) for f in pump_off_files])[None]
        off_stats = _statistics(off_data, off_labels, np.ones(off_labels.shape, bool), dark,
                                gain, valid, _registration(config.align, reference, valid),
                                inside)[0]
        off_stats = np.concatenate(_compute(*off_stats, step="pump-off frames",
                                            progress=progress))[None]
        off_kept = off_stats[..., 4] == 0
        if not off_kept.any():
            raise ValueError(f"every pump-off frame has non-finite values on valid pixels: "
                             f"{pump_off_files[0]}, ...")
        pump_off_left_out = list(off_labels[~off_kept])
        pending["pump_off"] = averages(
            off_data, off_kept, off_stats[..., :2], _scales(off_stats[..., 2], off_kept, level),
            *common_args, None)[0]
    done = dict(zip(pending, _compute(*pending.values(), step="equilibrium",
                                      progress=progress), strict=True))
    return _dataset(run, config, [done.get(i, f) for i, f in enumerate(finished)],
                    done.get("pump_off"), center=center, mask=mask, radial_range=(start, size),
                    shifts=shifts, kept=kept, scales=scales, rejected=rejected, reasons=reasons,
                    total=total, correlation=correlation, present=present, parts=parts,
                    reference_label=reference_label, pump_off_left_out=pump_off_left_out,
                    timer=timer)


def _dataset(run, config, results, pump_off, *, center, mask, radial_range, shifts, kept,
             scales, rejected, reasons, total, correlation, present, parts, reference_label,
             pump_off_left_out, timer):
    """The reduced Dataset from every delay's average ``results`` (each a delayed or a
    computed ``(image, error, delay shift, cuts, radial error)``; those of the delays before
    time zero computed) and the pump-off average ``pump_off`` (computed, or None), with the
    frame statistics and decisions: the last step of :func:`reduce`, shared by the live
    reduction (:mod:`uedflow.pipeline.live`)."""
    shape = run.shape[-2:]
    delays, scans = run["delay"].values, run["scan"].values
    start, size = radial_range
    pump_off_files = pump_off is not None
    by_pump_off = config.dynamics.reference == "pump_off"
    before = delays < config.dynamics.t0
    done = {i: r for i, r in enumerate(results) if isinstance(r, tuple)}
    done["pump_off"] = pump_off
    # in the graph as literals: scattered data would be lost with a worker that holds it
    results = [dask.delayed(r, pure=True) if isinstance(r, tuple) else r for r in results]

    def pick(k, extra, dtype):
        return da.stack([da.from_delayed(dask.delayed(operator.getitem, pure=True)(r, k),
                                         extra, dtype=dtype) for r in results])

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
    ds["scale"] = (("delay", "scan"), scales)
    ds["rejected_pixels"] = (("delay", "scan"), pick(3, (run.sizes["scan"],), np.int64))
    radial_error = xr.DataArray(pick(4, (size,), float), dims=("delay", "radius"),
                                coords={"radius": radius})
    ds["error_correlation"] = ("delay", [_interpolation_gain(shifts[i, kept[i]])
                                         for i in range(len(delays))])
    if pump_off_files:
        image, error, _, _, pump_off_radial_error = done["pump_off"]
        ds["pump_off"] = (("y", "x"), image)
        ds["pump_off_error"] = (("y", "x"), error)
    if by_pump_off:
        ds["equilibrium"], ds["equilibrium_error"] = ds["pump_off"], ds["pump_off_error"]
    else:
        images = np.stack([done[i][0] for i in np.flatnonzero(before)])
        errors = np.stack([done[i][1] for i in np.flatnonzero(before)])
        ds["equilibrium"] = (("y", "x"), images.mean(axis=0).astype(np.float32))
        ds["equilibrium_error"] = (("y", "x"), _equilibrium_error(
            errors, kept[before].sum(axis=1)).astype(np.float32))
    if config.radial.enabled:
        radial = diffraction.ued.azimuthal_average(center=center, mask=mask)
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
            equilibrium = radial[before].values.mean(axis=0)
            equilibrium_error = _equilibrium_error(radial_error[before].values,
                                                   kept[before].sum(axis=1))
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
