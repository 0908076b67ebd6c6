"""Whole-run reduction: ``uedflow.pipeline.reduce`` against a serial scikit-ued + npstreams script.

Both reduce the same synthetic run (``make_run``: 4 scans, 8 dark frames, TIFF files in a
temporary directory) through the same steps: dark subtraction (mean of the darks), mask (the
run's mask file, ``mask_from_collection`` over the darks, ``auto_masking`` of the first frame),
centre (``autocenter`` of the first frame), registration of every frame onto the first frame,
normalisation to the total intensity, rejection of frames by robust z-scores of total intensity
and correlation to the median over scans, a MAD cut of pixels across scans, average over scans,
registration of the averages, equilibrium before time zero and azimuthal averages.

* ``uedflow``: ``reduce(open_run(run), config).compute()`` on dask's threads (the default).
* ``scikit-ued``: one loop over the frames with ``skued.diffread``, ``skued.align`` (its
  registration; no shift bound), ``skued.autocenter``, ``skued.azimuthal_average`` and
  ``npstreams.average``; it keeps the aligned frames in memory between their statistics and
  their average, as such scripts do (uedflow reads them again instead).

Each contender runs in its own process: once to warm up (imports, page cache), then timed;
the table shows frames/s, the peak resident memory of the process and the ratios.

``--task-memory`` measures instead the memory of uedflow's largest task: the run (2 delays of
``--scans`` scans) is reduced on the synchronous scheduler, one task at a time, under
``tracemalloc``; the peak of the traced (NumPy) memory, less what was allocated before, is
printed next to the bytes of one delay's frames as float32.

Usage: ``python benchmarks/pipeline.py [--frames 64] [--size 1024] [--scans 4] [--dir /tmp/...]``,
``python benchmarks/pipeline.py --task-memory --size 2048 --scans 20``
(``pip install -e '.[bench]'`` first).
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np


def make(path, size, frames, scans, n_delays=4):
    """A run of ``frames`` frames (at least ``n_delays`` delays) of ``scans`` scans."""
    from uedflow.datasets import make_run

    n_delays = max(frames // scans, n_delays)
    delays = np.round(np.linspace(-2, 12, n_delays), 3)
    make_run(path, shape=(size, size), delays=delays, n_scans=scans, n_darks=8, seed=0)
    return n_delays * scans


def reduce_uedflow(path):
    from uedflow.io.runs import open_run
    from uedflow.pipeline import reduce

    config = {"mask": {"file": str(path / "mask.tif")}}
    reduce(open_run(path), config).compute()


def _robust_z(values, floor):
    median = np.median(values)
    return (values - median) / (1.4826 * max(np.median(np.abs(values - median)), floor))


def reduce_skued(path):
    import npstreams
    from skued import (
        align,
        auto_masking,
        autocenter,
        azimuthal_average,
        diffread,
        mask_from_collection,
    )

    from uedflow.io.runs import scan_run

    run = scan_run(path)
    darks = [diffread(f) for f in run.darks]
    dark = npstreams.average(darks)
    mask = (diffread(path / "mask.tif") != 0) & ~mask_from_collection(darks)
    first = diffread(run.frames[run.delays[0], run.scans[0]]) - dark
    mask &= auto_masking(first)
    center = autocenter(first, mask)

    aligned, totals, correlations = [], [], []
    for delay in run.delays:
        frames = np.stack([align(diffread(run.frames[delay, scan]) - dark, first, mask)
                           for scan in run.scans])
        total = frames[:, mask].sum(axis=1)
        normalised = frames[:, mask] / total[:, None]
        median = np.median(normalised, axis=0)
        correlations.append([np.corrcoef(f, median)[0, 1] for f in normalised])
        totals.append(total)
        aligned.append(frames)
    totals, correlations = np.array(totals), np.array(correlations)
    keep = (np.abs(_robust_z(totals / np.median(totals) - 1, 0.01)) <= 5) & (
        -_robust_z(correlations, 1e-3) <= 5)
    scale = np.median(totals[keep]) / totals

    averages, profiles = [], []
    for frames, used, factors in zip(aligned, keep, scale, strict=True):
        frames = frames[used] * factors[used, None, None]
        median = np.median(frames, axis=0)
        deviation = np.abs(frames - median)
        noise = np.maximum(1.4826 * np.median(deviation, axis=0), np.sqrt(np.maximum(median, 1)))
        average = npstreams.average(list(frames), weights=list(deviation <= 5 * noise))
        average = align(average, first, mask)
        averages.append(average)
        profiles.append(azimuthal_average(average, center[::-1], mask)[1])
    npstreams.average(a for a, t in zip(averages, run.delays, strict=True) if t < 0)


def task_memory(path):
    """Peak traced memory of reduce(...).compute() on the synchronous scheduler, less the
    memory traced before."""
    import dask

    from uedflow.io.runs import open_run
    from uedflow.pipeline import reduce

    run = open_run(path)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    with dask.config.set(scheduler="synchronous"):
        reduce(run, {"mask": {"file": str(path / "mask.tif")}}).compute()
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    return peak, run.sizes["scan"] * run.shape[-1] * run.shape[-2] * 4


def child(which, path):
    func = reduce_uedflow if which == "uedflow" else reduce_skued
    func(path)  # warm-up
    start = time.perf_counter()
    func(path)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": seconds, "peak": peak}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--scans", type=int, default=4)
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--task-memory", action="store_true",
                        help="measure the memory of the largest task of 2 delays instead")
    parser.add_argument("--child", choices=["uedflow", "skued"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.dir)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "run"
        if args.task_memory:
            make(path, args.size, 0, args.scans, n_delays=2)
            peak, delay = task_memory(path)
            print(f"{args.scans} scans of {args.size}x{args.size}: largest task {peak / 2**20:.0f} "
                  f"MiB = {peak / delay:.2f} x one delay's frames as float32 "
                  f"({delay / 2**20:.0f} MiB)")
            return
        frames = make(path, args.size, args.frames, args.scans)
        print(f"run: {frames} frames of {args.size}x{args.size} ({args.scans} scans), 8 darks")
        results = {}
        for which in ("uedflow", "skued"):
            out = subprocess.run([sys.executable, __file__, "--child", which, "--dir", path],
                                 check=True, capture_output=True, text=True).stdout
            results[which] = json.loads(out.splitlines()[-1])
    ours, theirs = results["uedflow"], results["skued"]
    print(f"{'':24s} {'uedflow':>12s} {'scikit-ued':>12s} {'ratio':>8s}")
    print(f"{'time [s]':24s} {ours['seconds']:12.2f} {theirs['seconds']:12.2f} "
          f"{theirs['seconds'] / ours['seconds']:7.1f}x")
    print(f"{'frames/s':24s} {frames / ours['seconds']:12.1f} "
          f"{frames / theirs['seconds']:12.1f} {theirs['seconds'] / ours['seconds']:7.1f}x")
    print(f"{'peak memory [MiB]':24s} {ours['peak'] / 2**20:12.0f} {theirs['peak'] / 2**20:12.0f} "
          f"{ours['peak'] / theirs['peak']:7.2f}x")


if __name__ == "__main__":
    main()
