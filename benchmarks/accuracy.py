"""Accuracy against ground truth: centre-finding and alignment, uedflow beside scikit-ued.

Synthetic frames from :mod:`uedflow.datasets` have a known centre, known per-frame sub-pixel
shifts, saturated hot pixels and a dim beam block (masked, as on a real detector):

* ``autocenter``: error of the centre found, px, for each pattern kind and several centres
  (the default slightly off-centre one and two far off-centre ones);
* ``align``: residual of the registration, px RMS, over a drifting run aligned onto its first
  frame with the beam-block + hot-pixel mask. scikit-ued's shift is the one its ``align``
  applies (``skimage.registration.phase_cross_correlation`` with the mask).

Usage: ``python benchmarks/accuracy.py [--sizes 512 1024] [--skued-centre-max 1024]``
"""

import argparse

import numpy as np
import skued
from skimage.registration import phase_cross_correlation

import uedflow
from uedflow.datasets import beam_block_mask, hot_pixel_positions, make_frame, make_run


def detector_mask(shape, block_center):
    mask = beam_block_mask(shape, block_center)
    hot = hot_pixel_positions(shape)
    mask[hot[:, 0], hot[:, 1]] = False
    return mask


def centre_errors(size, with_skued):
    shape = (size, size)
    centres = [None, (0.3 * size + 0.4, 0.62 * size - 0.3), (0.7 * size - 0.2, 0.28 * size + 0.6)]
    rows = []
    for kind in ("polycrystalline", "single_crystal", "mixed"):
        for i, centre in enumerate(centres):
            truth = np.array(centre if centre is not None else
                             uedflow.datasets.default_center(shape))
            frame = make_frame(shape, tuple(truth), kind=kind, seed=i)
            mask = detector_mask(shape, tuple(truth))
            ours = np.hypot(*(np.asarray(uedflow.autocenter(frame, mask=mask)) - truth))
            theirs = (np.hypot(*(np.asarray(skued.autocenter(frame, mask=mask)) - truth))
                      if with_skued else float("nan"))
            rows.append((kind, i, ours, theirs))
    return rows


def alignment_residuals(size, tmp):
    meta = make_run(tmp / f"align-{size}", shape=(size, size), delays=[0.0] * 9, n_scans=1,
                    drift=1.0, kind="mixed", seed=3, overwrite=True)
    frames = uedflow.open_stack(tmp / f"align-{size}").values[:, 0].astype(np.float64)
    centers = np.asarray(meta["truth"]["centers"])[0]
    mask = uedflow.diffread(tmp / f"align-{size}" / meta["mask_file"]).astype(bool)
    plan = uedflow.AlignPlan(frames[0], mask)
    truth = centers[0] - centers[1:]  # shift that moves frame k onto frame 0
    ours = np.array([plan.shift(f) for f in frames[1:]])
    theirs = np.array([phase_cross_correlation(frames[0], f, reference_mask=mask)[0]
                       for f in frames[1:]])

    def rms(estimate):
        return float(np.sqrt(np.mean(np.sum((estimate - truth) ** 2, axis=1))))

    return rms(ours), rms(theirs), float(np.abs(truth).max())


def main():
    import tempfile
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--skued-centre-max", type=int, default=1024,
                        help="largest size at which scikit-ued's autocenter is also run")
    args = parser.parse_args()

    print("autocenter: centre error (px), uedflow vs scikit-ued, hot pixels + dim beam block,"
          " masked")
    for size in args.sizes:
        rows = centre_errors(size, size <= args.skued_centre_max)
        for kind, i, ours, theirs in rows:
            print(f"  {size:5d}  {kind:16s} centre {i}   uedflow {ours:8.3f}   skued {theirs:8.2f}")
        ours = np.array([r[2] for r in rows])
        theirs = np.array([r[3] for r in rows])
        summary = (f"  {size:5d}  all {len(rows)} cases: uedflow max {ours.max():.3f} px "
                   f"(≤ 1 px: {int((ours <= 1).sum())}/{len(rows)})")
        if np.isfinite(theirs).all():
            summary += (f", skued max {theirs.max():.1f} px "
                        f"(≤ 1 px: {int((theirs <= 1).sum())}/{len(rows)})")
        print(summary + ("" if np.isfinite(theirs).all() else ", skued not run"))

    print("\nalign: registration residual (px RMS) over 8 drifting frames, Poisson counts, masked")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            ours, theirs, largest = alignment_residuals(size, Path(tmp))
            print(f"  {size:5d}  uedflow {ours:.4f}   skued {theirs:.4f}   "
                  f"(shifts up to {largest:.2f} px)")


if __name__ == "__main__":
    main()
