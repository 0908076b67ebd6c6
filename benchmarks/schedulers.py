"""One streaming computation on threads, 1 and 2 local worker processes.

The azimuthal average of every frame of a directory of 2048x2048 uint16 TIFF frames: the
stack is opened with ``open_stack`` and an ``AzimuthalPlan``, built once, is applied to each
chunk of frames with ``dask.array.map_blocks``. On a cluster the plan (64 MiB at 2048x2048)
is scattered to the workers once, ``client.scatter(plan, broadcast=True)``, rather than sent
with every graph.

Each scheduler is warmed up once (worker start-up, imports, the plan's transfer), then timed
(best of ``--repeat``), files in the page cache. Printed: frames/s for threads (dask's default),
``connect(n_workers=1)`` and ``connect(n_workers=2)``, and the ratio 2 workers / 1 worker.

Usage: ``python benchmarks/schedulers.py [--frames 64] [--size 2048] [--repeat 5]``
"""

import argparse
import tempfile
import time
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import tifffile

from uedflow import AzimuthalPlan, open_stack
from uedflow.cluster import connect
from uedflow.datasets import default_center, make_frame


def write_frames(folder, n, size):
    """``n`` TIFF frames (4 distinct noise realisations, repeated) of ``size`` x ``size``."""
    frames = [make_frame((size, size), seed=seed) for seed in range(4)]
    for i in range(n):
        tifffile.imwrite(folder / f"frame_{i:04d}.tif", frames[i % 4])


def azimuthal_profiles(stack, plan, plan_arg):
    """Azimuthal averages of every frame; ``plan_arg`` is the plan or a future of it."""
    shape, nbins = plan.shape, plan(np.zeros(plan.shape))[1].size

    def batch(block, plan):
        return plan(block.reshape(-1, *shape))[1].reshape(*block.shape[:-2], nbins)

    data = stack.data
    return da.map_blocks(batch, data, plan_arg, drop_axis=data.ndim - 1,
                         chunks=(*data.chunks[:-2], (nbins,)), dtype=float)


def best_time(fn, repeat):
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_frames(folder, args.frames, args.size)
        stack = open_stack(folder, chunks=4)
        shape = (args.size, args.size)
        plan = AzimuthalPlan(shape, default_center(shape), trim=False)
        reference = azimuthal_profiles(stack, plan, plan).compute(scheduler="threads")

        def rate(plan_arg):
            def run():
                result = azimuthal_profiles(stack, plan, plan_arg).compute()
                np.testing.assert_array_equal(result, reference)

            return args.frames / best_time(run, args.repeat)

        rates = {}
        with dask.config.set(scheduler="threads"):
            rates["threads"] = rate(plan)
        for n in (1, 2):
            with connect(n_workers=n) as client:
                name = f"{n} worker process{'es' if n > 1 else ''}"
                rates[name] = rate(client.scatter(plan, broadcast=True))

    print(f"azimuthal averages of {args.frames} frames of {args.size}x{args.size} uint16, "
          f"chunks of 4 frames")
    for name, rate in rates.items():
        print(f"  {name:<20} {rate:8.1f} frames/s")
    ratio = rates["2 worker processes"] / rates["1 worker process"]
    print(f"  2 workers / 1 worker: {ratio:.2f}x (target >= 1.6x)")


if __name__ == "__main__":
    main()
