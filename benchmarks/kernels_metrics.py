"""Masks and collection metrics: uedflow.image.metrics against scikit-ued.

Collections are lists of 32 realistic uint16 frames (``uedflow.datasets.make_frame``, new
Poisson noise each); the note of a collection case gives its size, so MB/s = MB / time.
``std_thresh=20`` rejects the few % brightest pixels of these frames (a realistic setting);
``std_thresh=5`` rejects 90 % of them: the worst case of uedflow's running-std test, which
follows frame by frame every pixel whose range exceeds ``2 * std_thresh``. scikit-ued squares uint16
frames in uint16, so its std-based masks and SNR of these frames are wrong; only its time counts.
"""

import numpy as np
import skued
from _harness import Case, main_for

from uedflow import datasets as ds
from uedflow.image import metrics

N_FRAMES = 32


def cases(size):
    shape = (size, size)
    frames = [ds.make_frame(shape, seed=seed) for seed in range(N_FRAMES)]
    note = f"({N_FRAMES} frames, {N_FRAMES * frames[0].nbytes / 1e6:.0f} MB)"
    image = frames[0]
    valid = ds.beam_block_mask(shape, ds.default_center(shape))
    masks = [valid, np.ones(shape, bool), valid[::-1]]
    result = []
    for name, kwargs in [
        ("mask_from_collection px", {"px_thresh": (0, 6e4)}),
        ("mask_from_collection std=20", {"px_thresh": (0, 6e4), "std_thresh": 20}),
        ("mask_from_collection std=5", {"px_thresh": (0, 6e4), "std_thresh": 5}),
    ]:
        result.append(
            Case(
                name,
                uedflow=lambda kw=kwargs: metrics.mask_from_collection(frames, **kw),
                skued=lambda kw=kwargs: skued.mask_from_collection(frames, **kw),
                note=note,
            )
        )
    result += [
        Case(
            "snr_from_collection",
            uedflow=lambda: metrics.snr_from_collection(frames),
            skued=lambda: skued.snr_from_collection(frames),
            note=note,
        ),
        Case(
            "combine_masks (3)",
            uedflow=lambda: metrics.combine_masks(*masks),
            skued=lambda: skued.combine_masks(*masks),
        ),
        Case(
            "mask_image",
            uedflow=lambda: metrics.mask_image(image, valid),
            skued=lambda: skued.mask_image(image, valid),
        ),
        Case(
            "triml 10%",
            uedflow=lambda: metrics.triml(image, 10),
            skued=lambda: skued.triml(image, 10),
        ),
    ]
    return result


if __name__ == "__main__":
    main_for(cases)
