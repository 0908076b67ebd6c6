"""The ``uedflow`` command line: a thin layer over the library."""

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np

from . import __version__
from .errors import UedflowError
from .io import open_run, open_stack, to_zarr
from .io.runs import is_run

#: Exit status of a bad command line or bad input (a one-line message, no traceback).
BAD_INPUT = 2

#: Frame size of the synthetic run of ``uedflow reduce --demo``.
DEMO_SIZE = 512


def describe(stack):
    """A few lines that summarise a lazily opened stack."""
    frame_bytes = stack.dtype.itemsize * stack.shape[-1] * stack.shape[-2]
    nframes = stack.size // (stack.shape[-1] * stack.shape[-2])
    chunk = stack.data.chunksize[:-2]
    per_chunk = " x ".join(f"{n} {d}" for d, n in zip(stack.dims, chunk, strict=False))
    lines = [
        f"source : {stack.attrs.get('source')} ({stack.attrs.get('format')})",
        "dims   : " + ", ".join(f"{d}={n}" for d, n in zip(stack.dims, stack.shape, strict=True)),
        f"frames : {nframes} x {stack.shape[-2]}x{stack.shape[-1]} {stack.dtype} "
        f"({nframes * frame_bytes / 2**20:.1f} MiB)",
        f"chunks : {int(np.prod(chunk))} frames per chunk ({per_chunk}), "
        f"{stack.data.npartitions} chunks (lazy: no pixel data read yet)",
    ]
    for name, coord in stack.coords.items():
        if coord.ndim == 1 and coord.dtype.kind in "iuf":
            units = coord.attrs.get("units", "")
            lines.append(f"{name:7s}: {coord.values.min():g} .. {coord.values.max():g} {units}"
                         .rstrip())
    return "\n".join(lines)


def describe_run(run):
    """``describe`` of a raw run, with its frames present, missing and bad, and other files."""
    present = run.coords["present"].values if "present" in run.coords else None
    lines = [describe(run)]
    if present is not None:
        missing, bad = run.attrs.get("missing", []), run.attrs.get("bad_files", [])
        lines.append(f"present: {int(present.sum())} of {present.size} frames "
                     f"({len(missing)} missing, {len(bad)} bad)")
        lines += [f"missing: {d:g} ps, scan {s}" for d, s in missing[:10]]
        lines += [f"bad    : {path}: {reason}" for path, reason in bad[:10]]
        lines.append(", ".join(f"{len(run.attrs.get(role, []))} {role.replace('_', '-')}"
                               for role in ("darks", "flats", "pump_off")) + " frames")
    return "\n".join(lines)


def describe_reduced(store, state):
    """A few lines that summarise a reduced store (complete or not)."""
    from .pipeline.store import open_reduced

    lines = [f"store  : {store} (reduced run, {state['state']}: {state['chunks_written']} of "
             f"{state['chunks_total']} chunks written)"]
    width = max(map(len, state["layout"]), default=0)
    for name, var in state["layout"].items():
        lines.append(f"{name:{width}s} ({', '.join(var['dims'])}) "
                     f"{' x '.join(map(str, var['shape']))} {var['dtype']}")
    if state["state"] != "complete":
        lines.append(f"incomplete: resume it with uedflow reduce RAW -o {store}")
        return "\n".join(lines)
    ds = open_reduced(store)
    if "center" in ds:
        lines.append("centre : ({:.2f}, {:.2f}) px".format(*ds["center"].values))
    if "rejected" in ds:
        rejected = ds["rejected"].values
        lines.append(f"rejected: {int(np.count_nonzero(rejected))} of {rejected.size} frames")
    if "uedflow" in ds.attrs:
        provenance = json.loads(ds.attrs["uedflow"])
        lines.append(f"bad files: {len(provenance.get('bad_files', []))}")
    return "\n".join(lines)


def _info(args):
    from .pipeline.store import read_state

    state = read_state(args.source)
    if state is not None:
        print(describe_reduced(args.source, state))
    elif Path(args.source).is_dir() and not (Path(args.source) / "zarr.json").exists():
        print(describe_run(_open_run_or_stack(args.source)))
    else:
        print(describe(open_stack(args.source)))


def _open_run_or_stack(path):
    """A run directory through ``open_run`` (problems listed, not raised); a plain folder of
    frames through ``open_stack``."""
    try:
        return open_run(path, missing="exclude", skip_bad=True)
    except (OSError, ValueError) as exc:
        try:
            return open_stack(path)
        except (OSError, ValueError):
            raise exc from None


def _open_raw(path, skip_bad):
    """A raw run: a run directory, or a zarr store that ``uedflow ingest`` wrote."""
    if (Path(path) / "zarr.json").exists():
        return open_stack(path)
    return open_run(path, skip_bad=skip_bad)


def _scheduler(args):
    """Where the reduction runs: threads, local workers, a scheduler or a SLURM cluster."""
    from .cluster import connect

    if args.cluster_option and args.cluster is None:
        raise ValueError("--cluster-option needs --cluster")
    if args.scheduler is not None and (args.workers is not None or args.cluster is not None):
        raise ValueError("--scheduler does not go with --workers or --cluster")
    with contextlib.ExitStack() as stack:
        if args.scheduler is not None:
            stack.enter_context(connect(args.scheduler))
        elif args.cluster == "slurm":
            try:
                from dask_jobqueue import SLURMCluster
            except ImportError:
                raise ValueError("--cluster slurm needs dask-jobqueue: "
                                 "python -m pip install 'uedflow[slurm]'") from None
            cluster = stack.enter_context(SLURMCluster(**_cluster_options(args.cluster_option)))
            cluster.scale(args.workers or 1)
            stack.enter_context(connect(cluster=cluster))
        elif args.workers is not None:
            stack.enter_context(connect(n_workers=args.workers))
        return stack.pop_all()


def _cluster_options(options):
    """``KEY=VALUE`` strings as keyword arguments (values parsed as JSON where they are)."""
    kwargs = {}
    for option in options:
        key, sep, value = option.partition("=")
        if not sep or not key:
            raise ValueError(f"--cluster-option {option!r}: expected KEY=VALUE")
        try:
            kwargs[key] = json.loads(value)
        except ValueError:
            kwargs[key] = value
    return kwargs


def _reduce(args):
    from .pipeline.config import ReduceConfig
    from .pipeline.quicklook import quicklook
    from .pipeline.reduce import reduce
    from .pipeline.store import existing_state, read_state, write_reduced

    if args.demo == (args.raw is not None):
        raise ValueError("give either RAW or --demo")
    config = ReduceConfig.from_toml(args.config) if args.config else ReduceConfig()
    output = Path(args.output).absolute()
    existing_state(output)  # refuse a path that is not a reduced store before any work
    raw = _demo_raw(output) if args.demo else args.raw
    with _scheduler(args):
        run = _open_raw(raw, args.skip_bad)
        print(describe_run(run))
        reduced = reduce(run, config, progress=not args.quiet)
        report = write_reduced(reduced, output, overwrite=args.overwrite,
                               progress=not args.quiet)
    print(report)
    print(describe_reduced(output, read_state(output)))
    if args.demo:
        print(_demo_comparison(output, raw))
    if args.quicklook:
        for path in quicklook(output, _quicklook_dir(output)):
            print(f"wrote {path}")


def _demo_raw(output):
    """The synthetic demo run beside ``output`` (generated unless it is there)."""
    from .datasets import demo_run

    run = output.with_name(output.stem + "-run")
    if (run / "run.json").exists():
        print(f"Using the demo run in {run}")
    else:
        print(f"Generating the synthetic demo run in {run}")
        demo_run(run, size=DEMO_SIZE)
    return run


def _demo_comparison(store, run):
    """Recovered centre and shifts next to the ground truth of the demo run."""
    from .datasets import load_run_metadata
    from .pipeline.store import open_reduced

    truth = load_run_metadata(run)["truth"]
    ds = open_reduced(store)
    kept = ~ds["rejected"].values
    shifts = ds["shifts"].transpose("delay", "scan", "coord").values[kept]
    true_shifts = np.swapaxes(truth["shifts"], 0, 1)[kept]
    # frames are registered onto a reference frame: shifts are known up to a common offset,
    # and the centre of the aligned movie is the true centres moved by the shifts
    center = ds["center"].values
    true_center = np.mean(np.swapaxes(truth["centers"], 0, 1)[kept] + shifts, axis=0)
    error = shifts - true_shifts
    rms = np.sqrt(np.mean(np.sum((error - error.mean(axis=0)) ** 2, axis=-1)))
    return "\n".join([
        "recovered vs ground truth:",
        f"  centre : ({center[0]:.2f}, {center[1]:.2f}) px vs ({true_center[0]:.2f}, "
        f"{true_center[1]:.2f}) px: error {np.hypot(*(center - true_center)):.3f} px",
        f"  shifts : RMS error {rms:.3f} px over {len(shifts)} frames (true shifts: RMS "
        f"{np.sqrt(np.mean(np.sum(true_shifts**2, axis=-1))):.2f} px)",
    ])


def _quicklook_dir(store):
    return store.with_name(store.stem + "-quicklook")


def _quicklook(args):
    from .pipeline.quicklook import quicklook

    store = Path(args.store).absolute()
    for path in quicklook(store, args.output or _quicklook_dir(store)):
        print(f"wrote {path}")


def _ingest(args):
    if is_run(args.source):
        stack = open_run(args.source, chunks=args.chunk_frames)
    else:
        stack = open_stack(args.source, chunks=args.chunk_frames)
    print(describe(stack))
    report = to_zarr(stack, args.output, clevel=args.clevel, overwrite=args.overwrite,
                     progress=not args.quiet)
    print(report)


def _demo(args):
    from .datasets import demo_run

    root = Path(args.dir)
    run = root / "run"
    if (run / "run.json").exists():
        print(f"Using the demo run in {run}")
    else:
        print(f"Generating the synthetic demo run in {run} ({args.size}x{args.size} frames)")
        demo_run(run, size=args.size)
    stack = open_stack(run)
    print(describe(stack))
    report = to_zarr(stack, root / "run.zarr", overwrite=True, progress=True)
    print(report)
    reopened = open_stack(root / "run.zarr")
    same = bool((reopened == stack).all().compute())
    print(f"re-opened from zarr: dims {reopened.dims}, identical to the raw run: {same}")
    if not same:
        raise SystemExit("the zarr store differs from the raw run")


def build_parser():
    parser = argparse.ArgumentParser(prog="uedflow", description=__doc__)
    parser.add_argument("--version", action="version", version=f"uedflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="generate the synthetic demo run, open it, ingest it")
    p.add_argument("--dir", default="uedflow-demo", help="where to put it (default: %(default)s)")
    p.add_argument("--size", type=int, default=512, help="frame size in pixels")
    p.set_defaults(func=_demo)

    p = sub.add_parser("info", help="summarise a raw run, a source of frames or a reduced store")
    p.add_argument("source", help="run directory, reduced store, file, directory, glob "
                   "pattern or zarr store")
    p.set_defaults(func=_info)

    p = sub.add_parser("ingest", help="stream a raw stack into a compressed zarr store")
    p.add_argument("source", help="file, directory, glob pattern, run directory or zarr store")
    p.add_argument("-o", "--output", required=True, help="the zarr store to write")
    p.add_argument("--clevel", type=int, default=5, help="zstd level, 1-9 (default 5)")
    p.add_argument("--chunk-frames", type=int, default=None, help="frames per dask chunk")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_ingest)

    p = sub.add_parser("reduce", help="reduce a raw run into a zarr store (resumable)")
    p.add_argument("raw", nargs="?", help="run directory, or a zarr store from uedflow ingest")
    p.add_argument("-o", "--output", required=True, help="the reduced zarr store to write")
    p.add_argument("--config", help="reduction configuration (TOML)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="address of a dask scheduler")
    p.add_argument("--workers", type=int, metavar="N",
                   help="local worker processes (with --cluster: workers to request)")
    p.add_argument("--cluster", choices=["slurm"], help="start a cluster (dask-jobqueue)")
    p.add_argument("--cluster-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the cluster, e.g. cores=8 (repeatable)")
    p.add_argument("--skip-bad", action="store_true",
                   help="exclude unreadable or truncated frames instead of stopping")
    p.add_argument("--quicklook", action="store_true", help="also write quick-look PNGs")
    p.add_argument("--overwrite", action="store_true", help="replace an existing reduced store")
    p.add_argument("--demo", action="store_true",
                   help="reduce the synthetic demo run (generated beside the output)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_reduce)

    p = sub.add_parser("quicklook", help="write quick-look PNGs of a reduced store")
    p.add_argument("store", help="a reduced store")
    p.add_argument("-o", "--output", help="directory of the PNGs (default: STORE-quicklook)")
    p.set_defaults(func=_quicklook)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (OSError, ValueError, UedflowError) as exc:
        print(f"uedflow {args.command}: error: {exc}", file=sys.stderr)
        return BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
