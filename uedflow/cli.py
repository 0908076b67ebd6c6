"""The ``uedflow`` command line: a thin layer over the library."""

import argparse
import sys
from pathlib import Path

import numpy as np

from . import __version__
from .errors import UedflowError
from .io import open_stack, to_zarr


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


def _info(args):
    print(describe(open_stack(args.source)))


def _ingest(args):
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

    p = sub.add_parser("info", help="open a source lazily and summarise it")
    p.add_argument("source", help="file, directory, glob pattern, run directory or zarr store")
    p.set_defaults(func=_info)

    p = sub.add_parser("ingest", help="stream a raw stack into a compressed zarr store")
    p.add_argument("source", help="file, directory, glob pattern, run directory or zarr store")
    p.add_argument("-o", "--output", required=True, help="the zarr store to write")
    p.add_argument("--clevel", type=int, default=5, help="zstd level, 1-9 (default 5)")
    p.add_argument("--chunk-frames", type=int, default=None, help="frames per dask chunk")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_ingest)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (OSError, ValueError, UedflowError) as exc:
        print(f"uedflow {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
