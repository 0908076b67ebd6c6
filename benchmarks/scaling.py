"""Scaling of ``uedflow reduce`` at 2048²: against the machine's floor, memory per worker
against the number of scans, and a run of more than 10 GB on a ``LocalCluster``.

Side by side in one run (each measurement in its own process, after a warm-up run):

1. **floor**: ``benchmarks/floor.py`` (a hand-written single-process loop: read, dark,
   masked cross-correlation against the reference's FFT, bilinear shift, accumulate, one
   radial profile per delay) against ``uedflow reduce RUN -o OUT`` (threads, the default:
   the whole command, including the mask, the statistics, the centre and the write), on
   12 delays x 6 scans + 5 darks; time per frame and their ratio.
2. **memory per worker against scans**: 2 delays of 4 to 128 scans, reduced and written on a
   ``LocalCluster`` of one worker process of one thread (``memory_limit="4GB"``); the
   worker's peak resident memory (``ru_maxrss``), and its ratio to the smallest run's.
3. **a run of more than 10 GB** (8 delays x 160 scans = 1280 frames of 8 MiB) on a
   ``LocalCluster`` of 2 workers of 1 thread with ``memory_limit="4GB"``: time per frame,
   each worker's peak memory, and whether any worker log mentions pausing, spilling or a
   restart.

Usage: ``python benchmarks/scaling.py [--dir /tmp/scaling] [--only floor,memory,big]``
(``pip install -e '.[bench]'`` first; the runs are generated once in ``--dir`` and kept).
"""

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
WORRIES = ("paus", "spill", "restart", "memory use is high", "exceed", "kill")


def make(path, delays, scans):
    """A 2048² ``make_run`` run (5 darks) at ``path``, generated once."""
    if (path / "run.json").exists():
        return
    from uedflow.datasets import make_run

    make_run(path, shape=(2048, 2048), delays=np.round(np.linspace(-2, 12, delays), 3),
             n_scans=scans, n_darks=5, seed=0)


def child_reduce(run, out, workers):
    """Reduce ``run`` into ``out``: on threads (``workers`` 0) or a LocalCluster of
    ``workers`` one-thread workers with 4 GB each. Prints JSON: seconds, peak memory of this
    process and of each worker, and the worker log lines that mention memory trouble."""
    from uedflow.io.runs import open_run
    from uedflow.pipeline import reduce
    from uedflow.pipeline.store import write_reduced

    def once():
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        write_reduced(reduce(open_run(run)), out)
        return time.perf_counter() - start

    result = {}
    if workers:
        from uedflow.cluster import connect

        with connect(n_workers=workers, threads_per_worker=1, memory_limit="4GB") as client:
            result["seconds"] = once()
            peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            result["workers"] = [kib * 1024 for kib in peaks.values()]
            logs = client.get_worker_logs()
            result["worries"] = [line for lines in logs.values() for _, line in lines
                                 if any(w in line.lower() for w in WORRIES)]
    else:
        once()  # warm-up: imports, page cache
        result["seconds"] = once()
    result["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps(result))


def run_child(*args):
    out = subprocess.run([sys.executable, __file__, "--child", *map(str, args)], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def floor_table(root):
    run = root / "floor"
    make(run, 12, 6)
    out = subprocess.run([sys.executable, HERE / "floor.py", run], check=True,
                         capture_output=True, text=True).stdout
    floor = float(out.split(" ms/frame")[0].split()[-1]) / 1e3
    ours = run_child(run, root / "floor.zarr", 0)["seconds"] / 72
    print("\n1. 2048², 12 delays x 6 scans, 5 darks: time per frame")
    print(f"{'':28s} {'floor':>10s} {'uedflow':>10s} {'ratio':>8s}")
    print(f"{'ms per frame':28s} {floor * 1e3:10.0f} {ours * 1e3:10.0f} {ours / floor:7.2f}x")
    print(f"({out.strip()})")


def memory_table(root, scans=(4, 16, 32, 64, 128)):
    print("\n2. 2048², 2 delays: peak memory of one worker process (1 thread, 4 GB)")
    print(f"{'scans':>6s} {'frames':>7s} {'worker peak [MiB]':>18s} {'ratio':>7s} "
          f"{'s/frame':>8s} {'worries':>8s}")
    first = None
    for n in scans:
        run = root / f"memory-{n}"
        make(run, 2, n)
        result = run_child(run, root / "memory.zarr", 1)
        peak = max(result["workers"])
        first = first or peak
        print(f"{n:6d} {2 * n:7d} {peak / 2**20:18.0f} {peak / first:6.2f}x "
              f"{result['seconds'] / (2 * n):8.3f} {len(result['worries']):8d}")


def big_table(root):
    run = root / "big"
    make(run, 8, 160)
    size = sum(f.stat().st_size for f in run.glob("*.tif")) / 1e9
    result = run_child(run, root / "big.zarr", 2)
    print(f"\n3. 2048², 8 delays x 160 scans ({size:.1f} GB): LocalCluster, 2 workers x 1 "
          "thread, memory_limit 4GB")
    print(f"time per frame: {result['seconds'] / 1280 * 1e3:.0f} ms ({result['seconds']:.0f} s); "
          f"worker peaks: {', '.join(f'{p / 2**20:.0f} MiB' for p in result['workers'])}; "
          f"log lines about pausing, spilling or restarts: {len(result['worries'])}")
    for line in result["worries"][:5]:
        print("   ", line)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/uedflow-scaling"))
    parser.add_argument("--only", default="floor,memory,big")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        run, out, workers = args.child
        return child_reduce(Path(run), Path(out), int(workers))
    args.dir.mkdir(parents=True, exist_ok=True)
    tables = {"floor": floor_table, "memory": memory_table, "big": big_table}
    for name in args.only.split(","):
        tables[name](args.dir)


if __name__ == "__main__":
    main()
