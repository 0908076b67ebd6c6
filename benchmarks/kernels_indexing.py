"""Bragg-peak kernels: uedflow against scikit-ued.

Cases: ``bragg_peaks`` without and with the beam-block mask, and
``bragg_peaks_persistence``, on single-crystal frames with a known centre (so that
``autocenter`` is not timed). scikit-ued's persistence is a pure-Python union-find over every
pixel (about 45 s per 2048² frame): it is run once, and its later calls of the harness wait
as long as that run took (see the note of the row).
"""

import time
import warnings

import skued
from _harness import Case, main_for

from uedflow.datasets import beam_block_mask, default_center, make_frame
from uedflow.image.indexing import bragg_peaks, bragg_peaks_persistence


def _timed_once(fn):
    """``fn`` run on the first call only; later calls sleep for the time that run took."""
    elapsed = []

    def call():
        if elapsed:
            time.sleep(elapsed[0])
            return
        start = time.perf_counter()
        fn()
        elapsed.append(time.perf_counter() - start)

    return call


def _quiet(fn):
    """scikit-ued's ``bragg_peaks`` warns of a deprecated scikit-image call on every frame."""
    def call():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()
    return call


def cases(size):
    shape = (size, size)
    center = default_center(shape)
    frame = make_frame(shape, center, kind="single_crystal", hot_pixels=[], seed=0)
    mask = beam_block_mask(shape, center)
    prominence = 0.1 * frame.max()
    return [
        Case("bragg_peaks", uedflow=lambda: bragg_peaks(frame, center=center),
             skued=_quiet(lambda: skued.bragg_peaks(frame, center=center))),
        Case("bragg_peaks masked", uedflow=lambda: bragg_peaks(frame, mask, center=center),
             skued=_quiet(lambda: skued.bragg_peaks(frame, mask, center=center))),
        Case("bragg_peaks_persistence",
             uedflow=lambda: bragg_peaks_persistence(frame, center=center, prominence=prominence),
             skued=_timed_once(lambda: skued.bragg_peaks_persistence(
                 frame, center=center, prominence=prominence)),
             note="(skued run once)"),
    ]


if __name__ == "__main__":
    main_for(cases)
