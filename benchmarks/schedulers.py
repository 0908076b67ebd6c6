"""Threads against worker processes, core for core, doing the same uedflow work.

Two comparisons, on 1 and 2 cores (``--cores``), of a thread and a one-thread worker process
per core. The worker processes are started two ways: with distributed's defaults (its nanny
sets ``MALLOC_TRIM_THRESHOLD_=65536`` for them: the workers before issue 12), and in
:func:`uedflow.cluster.worker_environment`, as ``connect()`` and ``slurm_cluster()`` start
theirs (no ``MALLOC_TRIM_THRESHOLD_``; single-threaded BLAS/OpenMP).

* ``--table whole`` (the environment's effect): each core does a whole reduction on its own,
  ``write_reduced(reduce(open_run(run)))`` on dask's synchronous scheduler, in a thread of
  this process or in a worker process (submitted to it): the same code and data, the only
  difference being the process it runs in. 2 cores: two reductions at once.
* ``--table spread`` (what users see): one reduction spread by dask over the cores, on the
  threaded scheduler or on the workers of a ``LocalCluster``: it also pays for moving the
  graphs (the arrays they hold) and the results between this process and the workers.

The run: ``make_run``, ``--delays`` delays x ``--scans`` scans and 4 darks of ``--size``²
uint16 TIFF frames (in the page cache); each reduction writes a new store.
``--work stack`` replaces the reduction by ``open_stack(folder).ued.align(...)
.ued.azimuthal_average(...)`` over ``--frames`` frames (and times it as a plain loop of the
same plans, one core).

Every way runs once to warm up (worker start-up, imports, plans), its result checked against
the threads' (equal value for value); then the ways take turns ``--repeat`` times (other work
on the machine weighs on all alike) and the best time is kept. Printed: time per frame of
each way (wall time over the frames one core reduced) and processes / threads (target: <= 1.1
with uedflow's environment), and the environment the workers had. Other jobs on the machine
add noise: look at the load average printed.

Usage: ``python benchmarks/schedulers.py [--table whole spread] [--size 2048] [--delays 4]
[--scans 3] [--repeat 3] [--cores 1 2]``, ``python benchmarks/schedulers.py --work stack
--size 1024 --frames 256``
"""

import argparse
import contextlib
import logging
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask
import numpy as np
import tifffile
from distributed import Client, LocalCluster

from uedflow import AlignPlan, AzimuthalPlan, open_stack
from uedflow.cluster import worker_environment
from uedflow.datasets import beam_block_mask, make_frame, make_run

MAX_SHIFT = 8
ENVS = ("distributed's env", "uedflow's env")


# ---------------------------------------------------------------- the work

def reduce_work(folder, size, delays, scans):
    """``(frames, work(store) -> result)``: the whole reduction of a synthetic run, written
    into ``store`` (then deleted); the result is the store's diffraction movie and profiles."""
    from uedflow.io.runs import open_run
    from uedflow.pipeline.reduce import reduce
    from uedflow.pipeline.store import open_reduced, write_reduced

    run_dir = folder / "run"
    make_run(run_dir, shape=(size, size), delays=np.linspace(-2, 8, delays).round(2),
             n_scans=scans, n_darks=4, seed=0)

    def work(store):
        write_reduced(reduce(open_run(run_dir), {}), store)
        with dask.config.set(scheduler="sync"):
            ds = open_reduced(store)
            result = ds.diffraction.values, ds.radial.values
        shutil.rmtree(store)
        return result

    return delays * scans, work


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


def stack_work(folder, size, frames, chunk):
    """``(frames, work(store) -> profiles, loop() -> profiles)``: align -> azimuthal average
    of a folder of frames through the ``ued`` accessor, and as a plain loop."""
    frames_dir = folder / "frames"
    frames_dir.mkdir()
    mask, center = write_frames(frames_dir, frames, size)
    files = sorted(frames_dir.glob("*.tif"))

    def work(store):
        stack = open_stack(frames_dir, chunks=chunk)
        aligned = stack.ued.align(mask=mask, max_shift=MAX_SHIFT)
        return (aligned.ued.azimuthal_average(center, mask, trim=False).compute().values,)

    return frames, work, lambda: plain_loop(files, mask, center)


# ---------------------------------------------------------------- the ways to run it

def local_cluster(cores, env):
    """A client of ``cores`` one-thread worker processes started with ``env`` (one of ENVS),
    not made the default client (see :func:`spread`)."""
    start = worker_environment() if env == "uedflow's env" else contextlib.nullcontext()
    with start:
        cluster = LocalCluster(n_workers=cores, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None,
                               silence_logs=logging.ERROR)
    return Client(cluster, set_as_default=False)


def whole(work, way, stores):
    """``work(store)`` for each of ``stores`` at once, each on the synchronous scheduler: in
    threads of this process (``way`` an int), or one per worker process of the client."""
    def alone(store):
        with dask.config.set(scheduler="sync"):
            return work(store)

    if isinstance(way, int):
        with dask.config.set(scheduler="sync"), ThreadPoolExecutor(way) as pool:
            return list(pool.map(work, stores))
    workers = sorted(way.scheduler_info()["workers"])
    return way.gather([way.submit(alone, store, workers=[worker], pure=False)
                       for store, worker in zip(stores, workers, strict=True)])


def spread(work, way, store):
    """``work(store)`` with its tasks spread over ``way``: threads (an int) or a client."""
    scheduler = (dask.config.set(scheduler="threads", num_workers=way) if isinstance(way, int)
                 else way.as_current())
    with scheduler:
        return [work(store)]


def worker_env(client):
    """The worker processes' settings that matter here, as seen inside them."""
    names = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")
    seen = client.run(lambda: tuple(os.environ.get(n, "unset") for n in names))
    return ", ".join(f"{n}={v}" for n, v in zip(names, next(iter(seen.values())), strict=True))


def best_times(runs, repeat):
    """Best wall time of each of ``runs`` (name: callable); the runs take turns."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeat):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def print_table(title, per_frame, cores_list):
    print(f"  {title}")
    head = " ".join(f"{'processes, ' + env:>28} {'/thread':>7}" for env in ENVS)
    print(f"  {'cores':>5} {'threads s/frame':>15} {head}")
    for cores in cores_list:
        thread = per_frame[(cores, "threads")]
        cells = " ".join(f"{per_frame[(cores, env)]:>28.3f} "
                         f"{per_frame[(cores, env)] / thread:>7.2f}" for env in ENVS)
        print(f"  {cores:>5} {thread:>15.3f} {cells}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", choices=["reduce", "stack"], default="reduce")
    parser.add_argument("--table", choices=["whole", "spread"], nargs="+",
                        default=["whole", "spread"])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--delays", type=int, default=4, help="reduce: delays of the run")
    parser.add_argument("--scans", type=int, default=3, help="reduce: scans of the run")
    parser.add_argument("--frames", type=int, default=256, help="stack: frames")
    parser.add_argument("--chunk", type=int, default=8, help="stack: frames per chunk")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        loop = None
        if args.work == "reduce":
            n_frames, work = reduce_work(folder, args.size, args.delays, args.scans)
            what = (f"write_reduced(reduce(open_run(run))) of {args.delays} delays x "
                    f"{args.scans} scans (+4 darks) of {args.size}² uint16 TIFF")
        else:
            n_frames, work, loop = stack_work(folder, args.size, args.frames, args.chunk)
            what = (f"align(max_shift={MAX_SHIFT}) -> azimuthal_average of {n_frames} frames "
                    f"of {args.size}² uint16 TIFF, chunks of {args.chunk} frames")
        ways = {}
        for cores in args.cores:
            ways[(cores, "threads")] = cores
            for env in ENVS:
                ways[(cores, env)] = stack.enter_context(local_cluster(cores, env))

        counter = iter(range(10**6))

        def run(table, cores, way):
            stores = [folder / f"out-{next(counter)}.zarr" for _ in range(cores)]
            if table == "whole":
                return whole(work, way, stores)
            return spread(work, way, stores[0])

        (expected,) = spread(work, 1, folder / "expected.zarr")
        runs = {}
        for table in args.table:
            for (cores, name), way in ways.items():  # warm-up; the same result everywhere
                for results in run(table, cores, way):
                    for got, want in zip(results, expected, strict=True):
                        np.testing.assert_array_equal(got, want, err_msg=f"{table} {name}")
                runs[(table, cores, name)] = (lambda t=table, c=cores, w=way: run(t, c, w))
        if loop is not None:
            runs[("loop", 1, "plain loop")] = loop
        times = best_times(runs, args.repeat)
        envs = {env: worker_env(ways[(args.cores[0], env)]) for env in ENVS}

    print(f"{what}: {n_frames} frames a reduction; best of {args.repeat}; {os.cpu_count()} "
          f"cores, load average {os.getloadavg()[0]:.1f} at the end")
    for env in ENVS:
        print(f"  workers with {env}: {envs[env]}")
    titles = {"whole": "a whole reduction per core (sync scheduler in a thread / a worker)",
              "spread": "one reduction spread over the cores (dask threads / LocalCluster)"}
    for table in args.table:
        # whole: every core reduced the whole run; spread: the cores shared one run, a core
        # did n_frames / cores of its frames in the wall time
        frames = {cores: n_frames if table == "whole" else n_frames / cores
                  for cores in args.cores}
        per_frame = {(cores, name): t / frames[cores]
                     for (tab, cores, name), t in times.items() if tab == table}
        print_table(f"{titles[table]}, time per frame per core:", per_frame, args.cores)
    if loop is not None:
        print(f"  plain loop, 1 core: {times[('loop', 1, 'plain loop')] / n_frames:.3f} "
              "s/frame")
    print("  target: processes (uedflow's env) / threads <= 1.1")


if __name__ == "__main__":
    main()
