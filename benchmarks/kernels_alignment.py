"""Alignment kernels against scikit-ued: ``align``, ``ialign`` per frame, ``itrack_peak``; then
the accuracy of the registration on a synthetic run with known sub-pixel drifts.

``ialign`` per frame is :meth:`AlignPlan.align` (the plan is built once per stream); scikit-ued's
``ialign`` calls ``align`` on every frame, so its per-frame cost is one ``align``.

Usage: ``python benchmarks/kernels_alignment.py [--sizes 1024 2048] [--repeat 3]``.
"""

import tempfile
import time

import numpy as np
import skued
import tifffile
from _harness import Case, main_for
from skimage.registration import phase_cross_correlation

from uedflow.datasets import (
    beam_block_mask,
    default_center,
    hot_pixel_positions,
    make_frame,
    make_run,
)
from uedflow.image.alignment import AlignPlan, align, itrack_peak

WINDOW = 64


def frames(size):
    """Reference, a frame drifted by a sub-pixel shift, and the detector mask."""
    shape = (size, size)
    center = default_center(shape)
    reference = make_frame(shape, center, seed=1)
    image = make_frame(shape, (center[0] + 1.3, center[1] - 2.6), block_center=center, seed=2)
    mask = beam_block_mask(shape, center)
    hot = hot_pixel_positions(shape)
    mask[hot[:, 0], hot[:, 1]] = False
    return reference, image, mask


def cases(size):
    reference, image, mask = frames(size)
    out = []

    def skued_align(m):
        return lambda: skued.align(image, reference, mask=m)

    out.append(Case("align", lambda: align(image, reference), skued_align(None)))
    out.append(Case("align mask", lambda: align(image, reference, mask), skued_align(mask)))
    for m, label in ((None, ""), (mask, " mask")):
        for max_shift in (None, WINDOW):
            start = time.perf_counter()
            plan = AlignPlan(reference, m, max_shift=max_shift)
            build = time.perf_counter() - start
            name = f"ialign/frame{label}" + (f" max_shift={max_shift}" if max_shift else "")
            out.append(Case(name, lambda plan=plan: plan.align(image), skued_align(m),
                            note=f"(plan once: {build * 1e3:.0f} ms)"))
    region = {"row_slice": np.s_[size // 4 : size // 2], "col_slice": np.s_[size // 4 : size // 2]}
    pair = [reference, image]
    out.append(Case("itrack_peak (2 frames)", lambda: list(itrack_peak(pair, **region)),
                    lambda: list(skued.itrack_peak(pair, **region)),
                    note=f"region {size // 4}^2"))
    return out


def accuracy(size=1024, n_scans=2, n_delays=5):
    """Residual RMS of the shifts found on a ``make_run`` run (drift walk, beam block, hot
    pixels, Debye-Waller drop), frames aligned onto the first one."""
    with tempfile.TemporaryDirectory() as tmp:
        meta = make_run(tmp, shape=(size, size), n_scans=n_scans, drift=1.0,
                        delays=[-1.0, 0.5, 1.0, 4.0, 16.0][:n_delays])
        files = [f"{tmp}/{name}" for row in meta["files"] for name in row]
        stack = [tifffile.imread(f) for f in files]
        mask = tifffile.imread(f"{tmp}/{meta['mask_file']}").astype(bool)
    truth = np.reshape(meta["truth"]["shifts"], (-1, 2))
    truth = truth - truth[0]
    reference, images, truth = stack[0], stack[1:], truth[1:]

    def rms(found):
        return np.sqrt(np.mean(np.sum((np.asarray(found) - truth) ** 2, axis=1)))

    # skued.align registers with this call (integer shifts), then applies the shift.
    rows = {"scikit-ued (skued.align's registration)": [
        phase_cross_correlation(reference, im, reference_mask=mask)[0] for im in images
    ]}
    for factor in (1, 20, 100):
        for max_shift in (None, 16):
            plan = AlignPlan(reference, mask, upsample_factor=factor, max_shift=max_shift)
            rows[f"uedflow upsample_factor={factor} max_shift={max_shift}"] = [
                plan.shift(im) for im in images
            ]
    print(f"\nregistration residual on {len(images)} frames of {size}^2 (make_run, drift 1 px/step,"
          f" |shift| <= {np.abs(truth).max():.1f} px, mask: beam block + hot pixels)")
    for name, found in rows.items():
        err = np.abs(np.asarray(found) - truth)
        print(f"  {name:44s} RMS {rms(found):.4f} px  max |error| {err.max():.4f} px")


if __name__ == "__main__":
    main_for(cases)
    accuracy()
