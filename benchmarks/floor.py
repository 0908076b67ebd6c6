"""The machine's floor for a run reduction: a hand-written single-process loop.

It does only the essential work of a reduction, with every buffer allocated once: read a
frame (``tifffile``, into a reused buffer), subtract the dark, register it by a masked
cross-correlation against the reference's FFT computed once (float32; the peak within
``max_shift``, refined by a parabola), move it by a bilinear shift, accumulate it into its
delay's sum, and one radial profile (``bincount``) per delay. No rejection, no error bars, no
pixel statistics: what a reduction cannot go below.

``run_floor(path)`` returns the time per frame and the RMS error of the shifts against the
truth of a ``uedflow.datasets.make_run`` run; ``benchmarks/scaling.py`` sets it side by side
with ``uedflow reduce``.

Usage: ``python benchmarks/floor.py RUN_DIRECTORY``.
"""

import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.fft as sfft
import tifffile

MAX_SHIFT = 8


def _bilinear(image, shift, out):
    """``image`` moved by ``shift`` (as ``scipy.ndimage.shift``, order 1), 0 outside."""
    out[...] = 0
    (dy, dx) = (-s for s in shift)
    iy, ix = int(np.floor(dy)), int(np.floor(dx))
    ty, tx = np.float32(dy - iy), np.float32(dx - ix)
    n, m = image.shape
    y0, y1 = max(0, -iy), min(n, n - iy - 1)
    x0, x1 = max(0, -ix), min(m, m - ix - 1)
    a = image[y0 + iy:y1 + iy, x0 + ix:x1 + ix]
    b = image[y0 + iy:y1 + iy, x0 + ix + 1:x1 + ix + 1]
    c = image[y0 + iy + 1:y1 + iy + 1, x0 + ix:x1 + ix]
    d = image[y0 + iy + 1:y1 + iy + 1, x0 + ix + 1:x1 + ix + 1]
    top = a + tx * (b - a)
    bottom = c + tx * (d - c)
    out[y0:y1, x0:x1] = top + ty * (bottom - top)
    return out


def _peak(corr):
    """Sub-pixel maximum of a correlation map in FFT order, within +-MAX_SHIFT."""
    r = MAX_SHIFT
    window = np.concatenate([corr[-r:], corr[:r + 1]])
    window = np.concatenate([window[:, -r:], window[:, :r + 1]], axis=1)
    y, x = np.unravel_index(np.argmax(window), window.shape)
    shift = np.array([y - r, x - r], float)
    for axis, (k, n) in enumerate(zip((y, x), window.shape, strict=True)):
        if 0 < k < n - 1:
            line = window[k - 1:k + 2, x] if axis == 0 else window[y, k - 1:k + 2]
            curvature = line[0] - 2 * line[1] + line[2]
            if curvature < 0:
                shift[axis] += 0.5 * (line[0] - line[2]) / curvature
    return shift


def run_floor(path):
    """Reduce the run at ``path`` (a ``make_run`` directory); returns seconds per frame,
    frames, and the RMS shift error (px) against the truth (relative to the first frame)."""
    path = Path(path)
    meta = json.loads((path / "run.json").read_text())
    files = meta["files"]  # [scan][delay]
    n_scans, n_delays = len(files), len(files[0])
    darks = sorted((path / "dark_image").glob("*.tif"))
    dark = np.mean([tifffile.imread(f) for f in darks], axis=0).astype(np.float32)
    mask = tifffile.imread(path / meta["mask_file"]) != 0
    shape = dark.shape
    raw = np.empty(shape, np.uint16)
    frame = np.empty(shape, np.float32)
    moved = np.empty(shape, np.float32)
    total = np.empty(shape, np.float64)
    yy, xx = np.indices(shape)

    start = time.perf_counter()
    tifffile.imread(path / files[0][0], out=raw)
    np.subtract(raw, dark, out=frame)
    reference = np.where(mask, frame - frame[mask].mean(), 0).astype(np.float32)
    ref_fft = np.conj(sfft.rfft2(reference))
    center = np.array(shape) / 2
    bins = np.rint(np.hypot(yy - center[0], xx - center[1])).astype(np.intp)[mask]
    counts = np.bincount(bins)
    shifts = np.empty((n_delays, n_scans, 2))
    for i in range(n_delays):
        total[...] = 0
        for s in range(n_scans):
            tifffile.imread(path / files[s][i], out=raw)
            np.subtract(raw, dark, out=frame)
            frame[~mask] = 0
            spectrum = sfft.rfft2(frame)
            spectrum *= ref_fft
            shifts[i, s] = -_peak(sfft.irfft2(spectrum, s=shape))  # lag -> shift back
            total += _bilinear(frame, shifts[i, s], moved)
        np.bincount(bins, total[mask], minlength=counts.size) / np.maximum(counts, 1)
    seconds = (time.perf_counter() - start) / (n_delays * n_scans)

    truth = np.asarray(meta["truth"]["shifts"]).transpose(1, 0, 2)  # (delay, scan, 2)
    error = (shifts - shifts[0, 0]) - (truth - truth[0, 0])
    return seconds, n_delays * n_scans, float(np.sqrt(np.mean(error**2)))


if __name__ == "__main__":
    run_floor(sys.argv[1])  # warm-up: imports, page cache, FFT plans
    seconds, frames, rms = run_floor(sys.argv[1])
    print(f"floor: {frames} frames, {seconds * 1e3:.0f} ms/frame ({1 / seconds:.1f} frames/s), "
          f"shift RMS error {rms:.3f} px")
