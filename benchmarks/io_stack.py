"""Stack I/O: open_stack streaming throughput and zarr ingest, against plain loops.

For a directory of 2048x2048 uint16 TIFF frames (a synthetic run from uedflow.datasets), every
contender reads every frame and sums it (the same light reduction, so no read is optimised
away):

* ``tifffile loop``   -- ``for f in files: tifffile.imread(f).sum()``
* ``skued loop``      -- ``for f in files: skued.diffread(f).sum()``
* ``uedflow stack``   -- ``open_stack(run).sum(("y", "x")).compute()`` (threads, the default)
* ``uedflow stack, 1 thread`` -- the same on dask's synchronous scheduler

Each is warmed up once, then timed (best of ``--repeat``) with the files in the page cache
("warm") and, when the page cache can be dropped (root on Linux), after dropping it ("cold").
Then ``to_zarr`` ingests the run (Blosc zstd + bit-shuffle) in a child process, reporting the
compression ratio, the ingest rate and how far the child's peak memory grew while writing, in
chunks and as a fraction of the stack (it stays at a few chunks whatever the stack's size).

Usage: ``python benchmarks/io_stack.py [--frames 64] [--size 2048] [--dir /tmp/uedflow-bench]``
(``pip install -e '.[bench]'`` first). Ratios are what to quote; MB/s depend on the machine.
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dask
import numpy as np
import tifffile

from uedflow import open_stack
from uedflow.datasets import load_run_metadata, make_run


def drop_page_cache():
    """Drop the OS page cache; False where that is not permitted."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def best_time(fn, repeat, cold):
    fn()  # warm-up: imports, allocator, page cache
    times = []
    for _ in range(repeat):
        if cold and not drop_page_cache():
            return float("nan")
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def ensure_run(path, frames, size):
    n_scans = 2
    delays = list(np.round(np.linspace(-2.0, 20.0, frames // n_scans), 3))
    try:
        meta = load_run_metadata(path)
        if meta["shape"] == [size, size] and len(meta["delays"]) * len(meta["scans"]) == frames:
            return meta
    except FileNotFoundError:
        pass
    print(f"generating {frames} frames of {size}x{size} in {path} ...", flush=True)
    return make_run(path, shape=(size, size), delays=delays, n_scans=n_scans, overwrite=True)


INGEST = """
import json, resource, sys, time
from uedflow import open_stack, to_zarr
stack = open_stack(sys.argv[1])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
start = time.perf_counter()
report = to_zarr(stack, sys.argv[2], clevel=int(sys.argv[3]), overwrite=True)
elapsed = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
chunk = stack.data.nbytes / stack.data.npartitions
print(json.dumps({"seconds": elapsed, "ratio": report.ratio, "nbytes": report.nbytes,
                  "growth": peak - before, "chunk": chunk}))
"""


def ingest(run, store, clevel):
    out = subprocess.run([sys.executable, "-c", INGEST, str(run), str(store), str(clevel)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "uedflow-bench"))
    args = parser.parse_args()

    import skued  # benchmark extra

    run = Path(args.dir) / f"run-{args.size}-{args.frames}"
    meta = ensure_run(run, args.frames, args.size)
    files = [run / name for row in meta["files"] for name in row]
    nbytes = len(files) * args.size * args.size * 2
    stack = open_stack(run)
    expected = sum(int(tifffile.imread(f).sum(dtype=np.int64)) for f in files)

    def check(total):
        assert int(total) == expected, "contenders disagree"

    contenders = {
        "tifffile loop": lambda: check(sum(tifffile.imread(f).sum(dtype=np.int64)
                                           for f in files)),
        "skued loop": lambda: check(sum(skued.diffread(f).sum(dtype=np.int64) for f in files)),
        "uedflow stack": lambda: check(stack.sum(("y", "x"), dtype=np.int64).sum().compute()),
        "uedflow stack, 1 thread": lambda: check(
            stack.sum(("y", "x"), dtype=np.int64).sum().compute(scheduler="sync")),
    }
    print(f"\n{len(files)} frames of {args.size}x{args.size} uint16 ({nbytes / 1e6:.0f} MB), "
          f"{int(np.prod(stack.data.chunksize[:-2]))} frames per chunk, {os.cpu_count()} cores, "
          f"dask {dask.__version__}")
    print(f"{'read + sum every frame':28s} {'warm MB/s':>10s} {'vs tifffile':>12s} "
          f"{'vs skued':>9s} {'cold MB/s':>10s} {'vs tifffile':>12s} {'vs skued':>9s}")
    results = {name: (best_time(fn, args.repeat, cold=False), best_time(fn, args.repeat, True))
               for name, fn in contenders.items()}
    for name, (warm, cold) in results.items():
        row = f"{name:28s}"
        for i, seconds in enumerate((warm, cold)):
            ref_tiff, ref_skued = results["tifffile loop"][i], results["skued loop"][i]
            row += (f" {nbytes / seconds / 1e6:10.0f} {ref_tiff / seconds:11.2f}x "
                    f"{ref_skued / seconds:8.2f}x")
        print(row)

    print(f"\n{'ingest to zarr (child process)':32s} {'ratio':>6s} {'MB/s':>7s} "
          f"{'peak memory growth':>19s}")
    for clevel in (1, 3, 5):
        result = ingest(run, Path(args.dir) / f"ingest-{clevel}.zarr", clevel)
        print(f"{'Blosc zstd bitshuffle, clevel ' + str(clevel):32s} {result['ratio']:6.2f} "
              f"{result['nbytes'] / result['seconds'] / 1e6:7.0f} "
              f"{result['growth'] / 1e6:7.0f} MB = {result['growth'] / result['chunk']:4.1f} "
              f"chunks = {result['growth'] / result['nbytes']:4.2f}x the stack")


if __name__ == "__main__":
    main()
