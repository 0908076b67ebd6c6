"""Throughput of the stack path: a plain loop, threads, and 1 and 2 local worker processes.

The same work four ways, on a folder of uint16 TIFF frames (in the page cache): read every
frame, align it onto the first (masked, ``max_shift=8``) and take its azimuthal average.

* plain loop: ``AlignPlan`` and ``AzimuthalPlan`` built once, then a Python loop of
  ``tifffile.imread`` -> ``plan.align`` -> ``plan(...)`` over the files, one core;
* the stack path, ``open_stack(folder).ued.align(...).ued.azimuthal_average(...)``, computed
  on dask's threaded scheduler (the default), on ``connect(n_workers=1)`` and on
  ``connect(n_workers=2)`` (one thread per worker).

Each way is run once to warm up (worker start-up, imports), then timed, the four taking
turns (best of ``--repeat``); every result is checked against the loop's. Every compute
builds the plans again (once per worker), as the loop does once: enough frames make that a
small part. Printed: frames/s of each, the stack path on threads against the loop (target: >= 1x per
frame) and 2 workers against 1 (target: >= 1.6x). Other work on the machine lowers both
ratios: look at ``uptime``.

Usage: ``python benchmarks/schedulers.py [--frames 256] [--size 1024] [--chunk 8]
[--repeat 3]``
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from uedflow import AlignPlan, AzimuthalPlan, open_stack
from uedflow.cluster import connect
from uedflow.datasets import beam_block_mask, make_frame

MAX_SHIFT = 8


def write_frames(folder, n, size):
    """``n`` TIFF frames (4 realisations, their centres a few pixels apart, repeated) of
    ``size`` x ``size``; returns the valid-pixel mask and the centre ``(row, col)``."""
    center = (size / 2 - 10.3, size / 2 + 7.6)
    frames = [make_frame((size, size), (center[0] + seed, center[1] - seed / 2), seed=seed)
              for seed in range(4)]
    for i in range(n):
        tifffile.imwrite(folder / f"frame_{i:04d}.tif", frames[i % 4])
    return beam_block_mask((size, size), center), center


def plain_loop(files, mask, center):
    """Profiles of every file: the frame-kernel plans, built once, in a Python loop."""
    reference = tifffile.imread(files[0])
    align = AlignPlan(reference, mask, max_shift=MAX_SHIFT)
    azimuthal = AzimuthalPlan(reference.shape, center[::-1], mask, trim=False)
    return np.stack([azimuthal(align.align(tifffile.imread(f)))[1] for f in files])


def stack_path(folder, chunk, mask, center):
    """The same profiles, lazily: the ``ued`` accessor over the stack of the folder."""
    stack = open_stack(folder, chunks=chunk)
    aligned = stack.ued.align(mask=mask, max_shift=MAX_SHIFT)
    return aligned.ued.azimuthal_average(center, mask, trim=False)


def best_times(runs, repeat):
    """Best wall time of each of ``runs`` (name: callable), after a warm-up call of each.
    The runs take turns, so that other work on the machine weighs on all of them alike."""
    for fn in runs.values():
        fn()
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=256)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--chunk", type=int, default=8, help="frames per chunk")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    with (tempfile.TemporaryDirectory() as tmp, connect(n_workers=1) as one,
          connect(n_workers=2) as two):
        folder = Path(tmp)
        mask, center = write_frames(folder, args.frames, args.size)
        files = sorted(folder.glob("*.tif"))
        expected = plain_loop(files, mask, center)

        def run_stack(scheduler):
            result = stack_path(folder, args.chunk, mask, center).compute(scheduler=scheduler)
            np.testing.assert_array_equal(result.values, expected)

        runs = {"plain loop": lambda: plain_loop(files, mask, center),
                "stack, threads": lambda: run_stack("threads"),
                "stack, 1 worker": lambda: run_stack(one),
                "stack, 2 workers": lambda: run_stack(two)}
        rates = {name: args.frames / t for name, t in best_times(runs, args.repeat).items()}

    print(f"align(max_shift={MAX_SHIFT}) -> azimuthal_average of {args.frames} frames of "
          f"{args.size}x{args.size} uint16 TIFF, chunks of {args.chunk} frames, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")
    for name, rate in rates.items():
        print(f"  {name:<18} {rate:8.1f} frames/s")
    loop = rates["plain loop"]
    print(f"  stack on threads / plain loop: {rates['stack, threads'] / loop:.2f}x per frame "
          "(target >= 1x)")
    ratio = rates["stack, 2 workers"] / rates["stack, 1 worker"]
    print(f"  2 workers / 1 worker:          {ratio:.2f}x (target >= 1.6x)")


if __name__ == "__main__":
    main()
