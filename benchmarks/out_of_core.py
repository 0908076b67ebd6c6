"""Out-of-core: stream stacks much larger than the memory used through the ``ued`` pipeline.

A synthetic run (``uedflow.datasets.make_run``) is generated once; runs 2x, 4x, 8x as large
are made from it by hard-linking its frame files into more scans (no new pixels are written,
so only generation of the base run is slow). For every size, a child process on dask's
threaded scheduler runs::

    stack = open_stack(run)
    profiles = stack.ued.align(mask=mask, max_shift=8).ued.azimuthal_average(center, mask)
    bad = stack.ued.mask_from_collection(std_thresh=...)
    compute_passes(bad.to_zarr(store, compute=False),       # one pass over the frames each
                   profiles.to_zarr(store, mode="a", compute=False))

(computed in one graph, the two results would share the reads of the chunks, and dask's
ordering keeps every chunk read until the other result has used it: memory would grow with
the stack, see ``uedflow.stack.passes``), and reports the growth of its resident memory over
the baseline after imports and opening (peak of a 10 ms psutil sampler and of ``ru_maxrss``),
the time and frames/s. Memory should stay flat as the stack grows, the time linear in it.
Each child then checks its result: the profile of the last frame against ``uedflow.align`` +
``uedflow.azimuthal_average`` on that frame, and (1x) the bad-pixel mask against a
frame-by-frame float64 reference. (Not against ``skued.mask_from_collection``: it bounds the
running std after every frame, a different criterion, and on uint16 frames it misses almost
all of them, its running std being wrong.)

Usage: ``python benchmarks/out_of_core.py [--size 1024] [--delays 16] [--scans 16]
[--multiples 1 2 4 8] [--dir /tmp/uedflow-ooc]``.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

STD_THRESH = 200.0
MAX_SHIFT = 8


def base_run(root, size, n_delays, n_scans):
    """The base run in ``root``, generated once and reused."""
    from uedflow.datasets import load_run_metadata, make_run

    path = root / f"base-{size}-{n_delays}x{n_scans}"
    try:
        return path, load_run_metadata(path)
    except FileNotFoundError:
        pass
    print(f"generating {n_delays * n_scans} frames of {size}x{size} in {path} ...", flush=True)
    delays = [float(t) for t in np.round(np.linspace(-2.0, 20.0, n_delays), 3)]
    start = time.perf_counter()
    meta = make_run(path, shape=(size, size), delays=delays, n_scans=n_scans, seed=1,
                    overwrite=True)
    print(f"  {time.perf_counter() - start:.0f} s", flush=True)
    return path, meta


def linked_run(base, meta, multiple):
    """A run ``multiple`` times as large as ``base``: its scans repeated, by hard links."""
    if multiple == 1:
        return base
    path = base.with_name(f"{base.name}-x{multiple}")
    n_scans = len(meta["scans"]) * multiple
    if (path / "run.json").exists():
        return path
    path.mkdir(exist_ok=True)
    files = []
    for s in range(n_scans):
        source = meta["files"][s % len(meta["scans"])]
        row = [f"scan_{s:03d}_{name.split('_', 2)[2]}" for name in source]
        for src, dst in zip(source, row, strict=True):
            if not (path / dst).exists():
                os.link(base / src, path / dst)
        files.append(row)
    if not (path / meta["mask_file"]).exists():
        os.link(base / meta["mask_file"], path / meta["mask_file"])
    truth = dict(meta["truth"])
    for key in ("centers", "shifts"):
        truth[key] = truth[key] * multiple
    manifest = {**meta, "scans": list(range(n_scans)), "files": files, "truth": truth}
    (path / "run.json").write_text(json.dumps(manifest))
    return path


def rss_sampler(process, interval=0.01):
    """Start a thread that records the peak RSS of ``process``; returns (peak, stop)."""
    peak = [process.memory_info().rss]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            stop.wait(interval)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()

    def finish():
        stop.set()
        thread.join()
        return peak[0]

    return finish


def bad_pixels(stack, px_thresh=(0, 3e4)):
    """Reference bad-pixel mask, frame by frame in float64 (std over all frames, ddof=0)."""
    total = squares = 0.0
    bad = False
    for index in np.ndindex(stack.shape[:-2]):
        frame = stack[index].values.astype(float)
        total, squares = total + frame, squares + frame**2
        bad = bad | (frame < px_thresh[0]) | (frame > px_thresh[1])
    n = int(np.prod(stack.shape[:-2]))
    std = np.sqrt(np.maximum(squares / n - (total / n) ** 2, 0))
    return bad | (std > STD_THRESH)


def child(run, store, check_mask):
    """Run the pipeline on ``run`` into ``store``; print a JSON line of measurements."""
    import dask
    import psutil
    import xarray as xr

    import uedflow
    from uedflow.datasets import load_run_metadata
    from uedflow.stack import compute_passes

    meta = load_run_metadata(run)
    row, col = meta["truth"]["center"]
    mask = uedflow.diffread(Path(run) / meta["mask_file"]).astype(bool)
    stack = uedflow.open_stack(run)
    aligned = stack.ued.align(mask=mask, max_shift=MAX_SHIFT)
    profiles = aligned.ued.azimuthal_average(center=(row, col), mask=mask)
    bad = stack.ued.mask_from_collection(std_thresh=STD_THRESH)
    nframes = int(np.prod(stack.shape[:-2]))
    tasks = len(profiles.data.__dask_graph__()) + len(bad.data.__dask_graph__())
    options = {"zarr_format": 3, "consolidated": False, "compute": False}

    process = psutil.Process()
    baseline = process.memory_info().rss
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    finish = rss_sampler(process)
    start = time.perf_counter()
    with dask.config.set(scheduler="threads"):
        compute_passes(bad.to_dataset(name="bad").to_zarr(store, mode="w", **options),
                       profiles.to_dataset(name="profiles").to_zarr(store, mode="a",
                                                                     **options))
    seconds = time.perf_counter() - start
    peak = finish()
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if maxrss > maxrss_before:
        peak = max(peak, maxrss)

    written = xr.open_zarr(store, consolidated=False, zarr_format=3)
    frame = stack[-1, -1].values
    reference = stack[0, 0].values
    aligned_frame = uedflow.align(frame, reference, mask, max_shift=MAX_SHIFT)
    radius, expected = uedflow.azimuthal_average(aligned_frame, (col, row), mask)
    got = written["profiles"][-1, -1].values
    start_radius = int(written["radius"][0])
    profile_ok = bool(np.allclose(got[radius - start_radius], expected, rtol=1e-6, atol=1e-6))
    mask_ok = None
    if check_mask:
        mask_ok = bool(np.array_equal(written["bad"].values, bad_pixels(stack)))
    print(json.dumps({
        "frames": nframes, "nbytes": stack.nbytes,
        "chunk": stack.data.nbytes / stack.data.npartitions, "tasks": tasks,
        "seconds": seconds, "growth": peak - baseline,
        "baseline": baseline, "profile_ok": profile_ok, "mask_ok": mask_ok,
        "bad_pixels": int(written["bad"].sum()),
    }))


def measure(run, store, check_mask):
    out = subprocess.run([sys.executable, __file__, "--child", str(run), str(store),
                          str(int(check_mask))], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"child failed on {run}:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--delays", type=int, default=16)
    parser.add_argument("--scans", type=int, default=16)
    parser.add_argument("--multiples", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--dir", default=os.path.join(tempfile.gettempdir(), "uedflow-ooc"))
    args = parser.parse_args()

    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    base, meta = base_run(root, args.size, args.delays, args.scans)
    rows = []
    for multiple in args.multiples:
        run = linked_run(base, meta, multiple)
        result = measure(run, root / f"result-x{multiple}.zarr", check_mask=multiple == 1)
        rows.append((multiple, result))
        print(f"  {multiple}x done in {result['seconds']:.1f} s", flush=True)

    first = rows[0][1]
    print(f"\n{args.size}x{args.size} uint16 frames, {first['chunk'] / 2**20:.0f} MiB chunks, "
          f"dask threaded scheduler, {os.cpu_count()} cores; align(max_shift={MAX_SHIFT}) -> "
          f"azimuthal_average, mask_from_collection(std_thresh={STD_THRESH:g}) -> zarr")
    print(f"{'size':>5s} {'frames':>7s} {'stack MiB':>10s} {'peak RSS growth MiB':>20s} "
          f"{'stack/peak':>11s} {'time s':>7s} {'frames/s':>9s} {'time/frame vs 1x':>17s} "
          f"{'tasks/frame':>12s} {'check':>6s}")
    for multiple, r in rows:
        per_frame = r["seconds"] / r["frames"]
        ok = r["profile_ok"] and r["mask_ok"] is not False
        print(f"{multiple:4d}x {r['frames']:7d} {r['nbytes'] / 2**20:10.0f} "
              f"{r['growth'] / 2**20:20.0f} {r['nbytes'] / r['growth']:10.1f}x "
              f"{r['seconds']:7.1f} {r['frames'] / r['seconds']:9.1f} "
              f"{per_frame / (first['seconds'] / first['frames']):16.2f}x "
              f"{r['tasks'] / r['frames']:12.2f} {'ok' if ok else 'FAIL':>6s}")
    budget = max(r["growth"] for _, r in rows)
    largest = rows[-1][1]
    print(f"\nmemory allowed = the largest peak growth measured, {budget / 2**20:.0f} MiB; "
          f"the largest stack is {largest['nbytes'] / budget:.1f}x that; "
          f"bad pixels: {first['bad_pixels']}; baseline RSS {first['baseline'] / 2**20:.0f} MiB")
    if not all(r["profile_ok"] and r["mask_ok"] is not False for _, r in rows):
        sys.exit("a result differs from the frame-by-frame reference")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        child(sys.argv[2], sys.argv[3], bool(int(sys.argv[4])))
    else:
        main()
