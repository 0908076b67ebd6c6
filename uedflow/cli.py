"""The ``uedflow`` command line: each command calls the library, and says what it does in
its ``--help`` (:data:`HELP`).

Every command ends with one line on standard error when it fails: exit status 2 for bad input
(a file, an argument, a store), 3 for an internal error (``--debug`` shows its traceback),
130 when interrupted (Ctrl-C) and 143 when terminated (SIGTERM), with the command that resumes
or redoes the work.
"""

import argparse
import contextlib
import errno
import glob
import json
import logging
import os
import re
import shlex
import shutil
import signal
import sys
import textwrap
import time
import traceback
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import __version__
from .errors import UedflowError
from .io import open_run, open_stack, supported_formats, to_zarr
from .io.lazy import is_zarr
from .io.readers import HDF5_SUFFIXES
from .io.runs import MASK_FILE, SKIP_BAD_HINT, is_run, scan_run

#: Exit status of a bad command line or bad input (a one-line message, no traceback).
BAD_INPUT = 2
#: Exit status of an unexpected error (a bug): one line, the traceback with ``--debug``.
INTERNAL_ERROR = 3
#: Exit status of ``uedflow verify`` when the store is damaged.
DAMAGED = 1
#: Exit statuses when interrupted (SIGINT, Ctrl-C) or terminated (SIGTERM): 128 + signal.
INTERRUPTED = 128 + signal.SIGINT
TERMINATED = 128 + signal.SIGTERM

#: Exceptions that mean bad input: their message names the file, argument or store.
INPUT_ERRORS = (OSError, ValueError, UedflowError)

#: Frame size of the synthetic run of ``uedflow reduce --demo``.
DEMO_SIZE = 512

#: Seconds that ``--scheduler`` waits for a worker to join before giving up.
WAIT_WORKERS = 30.0

#: Expected compression of a store (stored bytes over raw bytes), to estimate its size.
COMPRESSION = 0.5

#: Flags of the run's discovery (:func:`_run_options`): the keys of the config's ``[run]``.
RUN_FLAGS = ("pattern", "darks", "flats", "pump_off", "ignore", "preset", "delays", "missing")

#: Lines that name a step of a command, shown with its progress (:class:`StepProgress`).
STEP_PREFIXES = ("reduce: ", "ingest: ")

#: Loggers of libraries whose warnings are noise on the command line (shown with --debug).
QUIET_LOGGERS = ("tifffile", "asyncio", "distributed", "rsciio")


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
        f"{stack.data.npartitions} chunks (lazy: pixels are read when computed)",
    ]
    for name, coord in stack.coords.items():
        if coord.ndim == 1 and coord.dtype.kind in "iuf":
            units = coord.attrs.get("units", "")
            lines.append(f"{name:7s}: {coord.values.min():g} .. {coord.values.max():g} {units}"
                         .rstrip())
    return "\n".join(lines)


def _listed(label, items, n=10):
    """``label: item`` lines of the first ``n`` items, and how many more there are."""
    lines = [f"{label:7s}: {item}" for item in items[:n]]
    if len(items) > n:
        lines.append(f"{'':7s}  ... and {len(items) - n} more")
    return lines


def _values(values, unit="", n=16):
    """``N: v1, v2, ... unit``, at most ``n`` values shown (the first and last ones)."""
    shown = [f"{v:g}" for v in values]
    if len(shown) > n:
        shown = [*shown[:n // 2], "...", *shown[-n // 2:]]
    return f"{len(values)}: {', '.join(shown)}" + (f" {unit}" if unit else "")


def _naming(preset, patterns, delays, scans):
    """Lines on how a run's files were found: the preset or pattern, delays, scans."""
    how = f"preset {preset!r}" if preset else "the given pattern"
    lines = [f"found  : {how}; frames {patterns['frames']!r}"]
    lines += [f"{'':7s}  {role.replace('_', '-')} {text!r}" for role, text in patterns.items()
              if role not in ("frames", "ignore")]
    return [*lines, f"delays : {_values(delays, 'ps')}", f"scans  : {_values(scans)}"]


def describe_run(run):
    """``describe`` of a raw run, with how its files were found (preset or pattern), its
    delays and scans, its frames present, missing and bad, and other files."""
    lines = [describe(run)]
    if "present" in run.coords:
        if "patterns" in run.attrs:
            lines += _naming(run.attrs.get("preset"), run.attrs["patterns"],
                             run["delay"].values, run["scan"].values)
        present = run.coords["present"].values
        missing, bad = run.attrs.get("missing", []), run.attrs.get("bad_files", [])
        lines.append(f"present: {int(present.sum())} of {present.size} frames "
                     f"({len(missing)} missing, {len(bad)} bad)")
        lines += _listed("missing", [f"{d:g} ps, scan {s}" for d, s in missing])
        lines += _listed("bad", [f"{path}: {reason}" for path, reason in bad])
        lines.append(", ".join(f"{len(run.attrs.get(role, []))} {role.replace('_', '-')}"
                               for role in ("darks", "flats", "pump_off")) + " frames")
    return "\n".join(lines)


def describe_mask(parts):
    """One line: the fraction of the frame masked, and of each part of the mask."""
    total = parts.get("total")
    others = ", ".join(f"{name.replace('_', ' ')} {100 * value:.2f}%"
                       for name, value in parts.items()
                       if name != "total" and isinstance(value, int | float))
    head = f"{100 * total:.2f}% of the frame" if isinstance(total, int | float) else "?"
    return f"masked : {head}" + (f" ({others})" if others else "")


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
        alone = np.count_nonzero((~rejected).sum(axis=1) < 2)
        if alone:  # the spread over scans gives the errors: say where there is none
            lines.append(f"errors : unknown (NaN) at {alone} of {len(rejected)} delays, which "
                         "kept fewer than 2 frames (errors come from the spread over scans)")
    if "uedflow" in ds.attrs:
        provenance = json.loads(ds.attrs["uedflow"])
        if isinstance(provenance.get("mask"), dict):
            lines.append(describe_mask(provenance["mask"]))
        lines.append(f"bad files: {len(provenance.get('bad_files', []))}")
    return "\n".join(lines)


def open_source(path, *, chunks=None, run=None):
    """What the commands read: a run directory through ``open_run``, anything else (a zarr
    store, a folder of frames, a file, a glob pattern) through ``open_stack``.

    Parameters
    ----------
    path : path-like
        Run directory, zarr store, file, directory or glob pattern.
    chunks : int, optional
        Whole frames per chunk.
    run : RunConfig, optional
        How to open a run (:func:`run_settings`); a directory is a run when it fits a preset
        or when this gives a pattern, preset or delay table.

    Returns
    -------
    stack : xarray.DataArray
    """
    from .pipeline.config import RunConfig

    run = RunConfig() if run is None else run
    if _opens_as_run(Path(path), run):
        return open_run(path, chunks=chunks, **run.open_kwargs())
    return open_stack(_without_masks(path), chunks=chunks)


def _without_masks(source):
    """A glob pattern as its files, without the mask files of runs (``mask.tif``) that it
    catches beside the frames; any other source as it is."""
    text = os.fspath(source)
    if not glob.has_magic(text) or os.path.exists(text):
        return source
    # natural order, as open_stack orders a glob's files: frame_2 before frame_10
    files = sorted(glob.glob(text), key=lambda f: [int(t) if t.isdigit() else t
                                                   for t in re.split(r"(\d+)", f)])
    frames = [f for f in files if Path(f).name != MASK_FILE]
    if not frames or len(frames) == len(files):
        return source
    print(f"left out: {len(files) - len(frames)} mask files ({MASK_FILE}) that {text!r} "
          "matches beside the frames")
    return frames


def _names_a_run(run):
    """Whether ``run`` (a RunConfig) says how the run's files are named."""
    return run.pattern is not None or run.preset != "auto" or run.delays is not None


def run_settings(args, config):
    """The ``[run]`` section of ``config`` (a ReduceConfig) overridden by the flags of
    :func:`_run_options`, as a new RunConfig."""
    flags = {key: getattr(args, key) for key in RUN_FLAGS if getattr(args, key, None) is not None}
    if getattr(args, "skip_bad", False):
        flags["skip_bad"] = True
    try:
        return replace(config.run, **flags)
    except ValueError as exc:  # "[run] KEY: ..." of a flag's value: name the flag
        key = str(exc).partition("] ")[2].partition(":")[0]
        if key not in flags:
            raise
        raise ValueError(f"--{key.replace('_', '-')} {flags[key]!r}: "
                         f"{str(exc).partition(': ')[2]}") from None


def _config(args):
    """The configuration of ``--config`` (a TOML file), or the default one."""
    from .pipeline.config import ReduceConfig

    return ReduceConfig.from_toml(args.config) if args.config else ReduceConfig()


def _info(args):
    from .pipeline.store import read_state

    state = read_state(args.source)
    if state is not None:
        print(describe_reduced(args.source, state))
        return
    config = _config(args)
    config.run = settings = run_settings(args, config)
    path = Path(args.source)
    if not _opens_as_run(path, settings):
        print(describe_run(open_source(args.source)))
        return
    if path.is_file():  # an HDF5 run: its frames are datasets, there are no files to list
        print(describe_run(open_run(path, **replace(settings, missing="exclude").open_kwargs())))
        return
    files = scan_run(path, **_scan_kwargs(settings))
    if files.duplicates:  # open_run refuses them: list the files, and why reduce stops
        print("\n".join([f"source : {files.root}", *_naming(
            files.preset, files.patterns, files.delays, files.scans)]))
        print("\n".join(_listed("duplicate", [f"delay {d:g} ps, scan {s}: '{a}' and '{b}'"
                                              for d, s, a, b in files.duplicates])))
        print(verdict(path, None, config))
        return
    stack = open_run(path, **replace(settings, missing="exclude", skip_bad=True).open_kwargs())
    print(describe_run(stack))
    print(verdict(path, stack, config))


def _opens_as_run(path, settings):
    """Whether ``open_source`` opens ``path`` as a run: a folder (not a zarr store) that fits
    a preset, whose naming ``settings`` give, or whose frames are all in subfolders (a run
    whose naming must be given: ``open_run`` says how)."""
    if path.is_file() and path.suffix.lower() in HDF5_SUFFIXES:  # a run when named as one
        return _names_a_run(settings)
    if not path.is_dir() or is_zarr(path):
        return False
    suffixes = supported_formats()
    flat = any(p.suffix.lower() in suffixes and p.is_file() for p in path.iterdir())
    return _names_a_run(settings) or is_run(path) or not flat


def _scan_kwargs(settings):
    kwargs = settings.open_kwargs()
    return {key: kwargs[key] for key in ("pattern", "preset", "delays")}


def verdict(path, listed, config):
    """One line: what ``uedflow reduce`` would do with the run at ``path`` and ``config``
    (its ``[run]`` section as the flags set it): stop, and why, or reduce which frames.

    Parameters
    ----------
    path : path-like
        The run directory.
    listed : xarray.DataArray or None
        The run opened with ``missing="exclude", skip_bad=True`` (reused when ``config``
        says the same), or None.
    config : ReduceConfig
    """
    run = config.run
    try:
        # opened again as reduce opens it when that may differ: the same error, word for word
        gaps = listed is None or listed.attrs["missing"] or listed.attrs["bad_files"]
        opened = listed
        if gaps and (run.missing, run.skip_bad) != ("exclude", True):
            with warnings.catch_warnings():  # already shown when listing
                warnings.simplefilter("ignore")
                opened = open_run(path, **run.open_kwargs())
        config.check(opened.shape[-2:], opened["delay"].values, opened["scan"].values,
                     pump_off=bool(opened.attrs.get("pump_off")))
    except INPUT_ERRORS as exc:
        return f"verdict: reduce would stop: {_one_line(exc)}"
    if listed is not None and listed.attrs["bad_files"] and not run.skip_bad:
        # a compressed frame that does not decode passes at open without --skip-bad
        path, reason = listed.attrs["bad_files"][0]
        return (f"verdict: reduce would stop when it reads '{path}': {reason}; "
                f"{SKIP_BAD_HINT}")
    present = opened["present"].values
    left = present.size - int(present.sum())
    return (f"verdict: reduce would run on {int(present.sum())} of {present.size} frames"
            + (f" ({left} missing or bad left out)" if left else ""))


def _existing_parent(path):
    """The nearest ancestor of ``path`` (or ``path``) that exists."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return path


def check_writable(output):
    """Raise unless ``output`` (a store to write, which may exist) can be written.

    Raises
    ------
    NotADirectoryError, PermissionError
        Naming the output and the folder that is in the way.
    """
    output = Path(output).absolute()
    parent = _existing_parent(output)
    if not parent.is_dir() and parent != output:
        raise NotADirectoryError(f"Cannot write '{output}': '{parent}' is a file, not a folder")
    folder = parent if parent.is_dir() else parent.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise PermissionError(f"Cannot write '{output}': the folder '{folder}' is not writable")


def check_free_space(output, nbytes):
    """Raise unless the file system of ``output`` has ``nbytes`` free.

    Raises
    ------
    OSError
        ``ENOSPC``, naming the output, the bytes to write and the bytes free.
    """
    output = Path(output).absolute()
    free = shutil.disk_usage(_existing_parent(output)).free
    if free < nbytes:
        raise OSError(errno.ENOSPC, f"Not enough free space for '{output}': about "
                      f"{_size(nbytes)} to write, {_size(free)} free on its file system")


def _size(nbytes):
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return None


def _writer_lock(store, argv):
    """The writer lock of ``store``, held by the command ``argv`` (see
    :func:`uedflow.io.safety.writer_lock`)."""
    from .io.safety import writer_lock

    return writer_lock(store, command=shlex.join(["uedflow", *argv]))


def _scheduler(args):
    """Where the reduction runs: threads, local workers, a scheduler or a SLURM cluster."""
    from .cluster import connect, slurm_cluster

    if args.cluster_option and args.cluster is None:
        raise ValueError("--cluster-option needs --cluster")
    if args.scheduler is not None and (args.workers is not None or args.cluster is not None):
        raise ValueError("--scheduler does not go with --workers or --cluster")
    if args.wait_workers is not None and args.scheduler is None and args.cluster is None:
        raise ValueError("--wait-workers needs --scheduler or --cluster")
    with contextlib.ExitStack() as stack:
        if args.scheduler is not None:
            wait = WAIT_WORKERS if args.wait_workers is None else args.wait_workers
            stack.enter_context(connect(args.scheduler, wait_workers=wait))
        elif args.cluster == "slurm":
            try:  # workers as fast as threads; a job script that sbatch refuses fails here
                cluster = slurm_cluster(**_cluster_options(args.cluster_option))
            except ImportError as exc:
                raise ValueError(f"--cluster slurm: {exc}") from None
            except ValueError as exc:
                raise ValueError(f"--cluster slurm: {_one_line(exc)} (SLURMCluster's arguments "
                                 "are given as --cluster-option KEY=VALUE)") from None
            stack.enter_context(cluster)
            cluster.scale(args.workers or 1)
            stack.enter_context(connect(cluster=cluster, wait_workers=args.wait_workers))
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


def _reduced_nbytes(run, output):
    """Bytes that a reduction of ``run`` still has to write into ``output``: its two
    image-sized float32 variables per delay (diffraction and its error), compressed."""
    from .pipeline.store import read_state

    nbytes = 2 * 4 * run.sizes["delay"] * run.shape[-2] * run.shape[-1] * COMPRESSION
    state = read_state(output)
    if state is not None and state["chunks_total"]:
        nbytes *= 1 - state["chunks_written"] / state["chunks_total"]
    return int(nbytes)


def _reduce(args):
    from .pipeline.quicklook import quicklook
    from .pipeline.reduce import reduce
    from .pipeline.store import existing_state, read_state, write_reduced

    if args.demo == (args.raw is not None):
        raise ValueError("give either RAW or --demo")
    config = _config(args)
    config.run = run_settings(args, config)
    if args.follow:
        return _follow(args, config)
    output = Path(args.output).absolute()
    existing_state(output)  # refuse a path that is not a reduced store before any work
    if args.quicklook:
        _check_pngs(_quicklook_dir(output), args.overwrite)
    check_writable(output)
    raw = _demo_raw(output) if args.demo else args.raw
    # the store is locked, its space checked, before the analysis pass: no other process
    # writes it, and a full disk or an unwritable folder stops the command before any work
    with _scheduler(args), _writer_lock(output, args.argv):
        run = _open_raw(raw, config.run)
        print(describe_run(run))
        check_free_space(output, _reduced_nbytes(run, output))
        reduced = reduce(run, config, progress=not args.quiet)
        state = read_state(output)
        if not args.quiet and (args.overwrite or state is None or state["state"] != "complete"):
            print("reduce: writing the store", flush=True)
        report = write_reduced(reduced, output, overwrite=args.overwrite,
                               progress=not args.quiet)
    print(report)
    print(describe_reduced(output, read_state(output)))
    if args.demo:
        print(_demo_comparison(output, raw))
    if args.quicklook:
        for path in quicklook(output, _quicklook_dir(output)):
            print(f"wrote {path}")


def _follow(args, config):
    """``reduce --follow``: :func:`uedflow.pipeline.live.follow`, quick-look PNGs refreshed
    after each update."""
    from .pipeline.live import follow
    from .pipeline.quicklook import quicklook

    if args.raw is None or args.demo:
        raise ValueError("--follow needs RAW, the run directory being written")
    if args.every <= 0 or (args.until_idle is not None and args.until_idle < 0):
        raise ValueError("--every must be > 0 and --until-idle >= 0 (seconds)")
    output = Path(args.output).absolute()

    def refresh(version):
        if args.quicklook:
            quicklook(version, _quicklook_dir(output))

    summary = follow(args.raw, output, config, open_kwargs=config.run.open_kwargs(),
                     every=args.every, until_idle=args.until_idle, overwrite=args.overwrite,
                     on_update=refresh,
                     log=(lambda line: None) if args.quiet else print)
    return INTERRUPTED if summary["interrupted"] else 0


def _print_config(args):
    print(_config(args).to_toml(comments=not args.no_comments), end="")


def _open_raw(path, settings):
    """A raw run: a run directory (opened as ``settings``, a RunConfig, says), or a zarr store
    that ``uedflow ingest`` wrote."""
    if Path(path).is_dir() and is_zarr(Path(path)):
        return open_stack(path)
    return open_run(path, **settings.open_kwargs())


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


def _check_pngs(folder, overwrite):
    """Refuse a folder that already holds PNG files, unless ``overwrite``."""
    folder = Path(folder)
    pngs = sorted(p.name for p in folder.glob("*.png")) if folder.is_dir() else []
    if pngs and not overwrite:
        raise FileExistsError(f"'{folder}' already holds PNG files ({', '.join(pngs[:5])}); "
                              "pass --overwrite to replace them, or write elsewhere (-o)")


def _quicklook(args):
    from .pipeline.quicklook import quicklook

    store = Path(args.store).absolute()
    folder = Path(args.output) if args.output else _quicklook_dir(store)
    _check_pngs(folder, args.overwrite)
    for path in quicklook(store, folder):
        print(f"wrote {path}")


def _ingest(args):
    output = Path(args.output).absolute()
    check_writable(output)
    with _writer_lock(output, args.argv):
        stack = open_source(args.source, chunks=args.chunk_frames,
                            run=run_settings(args, _config(args)))
        print(describe(stack))
        check_free_space(output, int(stack.nbytes * COMPRESSION))
        if not args.quiet:
            print("ingest: writing the store", flush=True)
        report = to_zarr(stack, output, clevel=args.clevel, overwrite=args.overwrite,
                         progress=not args.quiet)
    print(report)


def _demo(args):
    """The main job on the synthetic demo run: make it (or reuse it), show what is in it,
    reduce it, write quick-look PNGs, and compare what was recovered with the truth."""
    from .datasets import demo_run
    from .pipeline.quicklook import quicklook
    from .pipeline.store import read_state

    root = Path(args.dir).absolute()
    run, store = root / "run", root / "reduced.zarr"
    if (run / "run.json").exists():
        print(f"Using the demo run in {run}")
    else:
        print(f"Generating the synthetic demo run in {run} ({args.size}x{args.size} frames)")
        demo_run(run, size=args.size)
    state = read_state(store)
    if state is None or state["state"] != "complete" or args.overwrite:
        argv = ["reduce", str(run), "-o", str(store), *(["--overwrite"] * args.overwrite),
                *(["-q"] * args.quiet)]
        reduce_args = build_parser().parse_args(argv)
        reduce_args.argv = args.argv
        _reduce(reduce_args)
    else:
        print(f"Using the reduced store {store}")
        print(describe_reduced(store, state))
    folder = _quicklook_dir(store)
    if args.overwrite or not (folder.is_dir() and any(folder.glob("*.png"))):
        for path in quicklook(store, folder):
            print(f"wrote {path}")
    print(_demo_comparison(store, run))
    store = shlex.quote(str(store))
    print(f"next: uedflow info {store}; uedflow view {store}; uedflow fit {store} --region "
          "ring:R1,R2 (px)")


def _verify(args):
    from .io.safety import verify_store

    check = verify_store(args.store)
    print(check)
    return 0 if check.ok else DAMAGED


# ---------------------------------------------------------------- analysis (issue 14)

def _q_calibration(args):
    """The q calibration of ``--energy``, ``--camera-length`` and ``--pixel-size``, or None."""
    from .analysis import QCalibration

    given = (args.energy, args.camera_length, args.pixel_size)
    if all(value is None for value in given):
        return None
    if any(value is None for value in given):
        raise ValueError("--energy, --camera-length and --pixel-size go together")
    return QCalibration.from_geometry(*given)


def _lattice(args):
    from .analysis import Lattice

    if args.cif and args.lattice:
        raise ValueError("give either --lattice or --cif")
    if args.cif:
        return Lattice.from_cif(args.cif)
    return Lattice(*args.lattice) if args.lattice else None


def _fresh(paths, overwrite):
    """Refuse files that exist, unless ``overwrite``."""
    there = [str(path) for path in paths if Path(path).exists()]
    if there and not overwrite:
        raise FileExistsError(f"{', '.join(there)} exist; pass --overwrite to replace them")


def _peaks(args):
    from .analysis import QCalibration
    from .pipeline.export import peaks_figure, to_csv
    from .pipeline.store import open_reduced

    store = Path(args.store).absolute()
    folder = Path(args.output) if args.output else store.with_name(store.stem + "-peaks")
    files = [folder / name for name in ("peaks.csv", "peak_traces.csv", "peaks.png")]
    calibration, lattice = _q_calibration(args), _lattice(args)
    _fresh(files, args.overwrite)
    ds = open_reduced(store)
    if calibration is not None:
        ds = ds.ued.calibrate_q(calibration)
    traces = ds.ued.peak_traces(radius=args.radius, background=args.background,
                                lattice=lattice, zone_axis=tuple(args.zone)).compute()
    families = ds.ued.average_peaks(traces).compute()
    print(f"{traces.sizes['peak']} Bragg peaks in {families.sizes['family']} families of "
          f"equivalent peaks; disk {traces.attrs['radius']:.2f} px, background "
          f"{traces.attrs['background'][0]:.2f}-{traces.attrs['background'][1]:.2f} px")
    if lattice is not None:
        found = QCalibration.from_reflections(traces["radius"].values, q=traces["q"].values)
        print(f"q scale from the indexed peaks: {found.scale:.6g} ± {found.scale_error:.2g} "
              "1/Å per px")
    last = families["delay"].values[-1]
    for f in families["family"].values:
        one = families.sel(family=f)
        name = f"{{{one['hkl'].item()}}} " if "hkl" in families.coords else ""
        q = f", q {float(one['q']):.3f} 1/Å" if "q" in families.coords else ""
        print(f"  {name}r {float(one['radius']):.1f} px{q}, {int(one['members'])} peaks: ΔI/I "
              f"at {last:g} ps {float(one['change'][-1]):+.4f} ± "
              f"{float(one['change_error'][-1]):.4f}")
    folder.mkdir(parents=True, exist_ok=True)
    table = ["equilibrium", "equilibrium_error"]
    for data, path, rows in ((traces[table], files[0], "peak"),
                             (traces.drop_vars(table), files[1], "delay")):
        print(f"wrote {to_csv(data, path, rows=rows, overwrite=args.overwrite)}")
    peaks_figure(ds, traces, families).savefig(files[2], dpi=100)
    print(f"wrote {files[2]}")


def _region(text, center):
    """``ring:R1,R2`` (about ``center``), ``ring:ROW,COL,R1,R2``, ``disk:ROW,COL,R`` or
    ``rect:ROW0,ROW1,COL0,COL1`` as a keyword of ``time_series``."""
    kind, _, numbers = text.partition(":")
    try:
        values = [float(v) for v in numbers.split(",")]
    except ValueError:
        values = []
    forms = {("ring", 2): lambda v: (tuple(center), *v), ("ring", 4): lambda v: (v[:2], *v[2:]),
             ("disk", 3): lambda v: (v[:2], v[2]), ("rect", 4): lambda v: tuple(v)}
    if (kind, len(values)) not in forms:
        raise ValueError(f"--region {text!r}: expected ring:R1,R2, ring:ROW,COL,R1,R2, "
                         "disk:ROW,COL,R or rect:ROW0,ROW1,COL0,COL1 (px)")
    return {kind: forms[kind, len(values)](values)}


def _fit(args):
    from .pipeline.export import fit_figure
    from .pipeline.store import open_reduced

    if args.output:
        _fresh([args.output], args.overwrite)
    ds = open_reduced(args.store)
    region = _region(args.region, ds["center"].values)
    trace = ds.ued.time_series(**region, change=True).compute()
    fit = ds.ued.fit(trace, var="change", n=args.exponentials, irf=args.irf, t0=args.t0)
    print(f"region: {trace.attrs['region']}, {trace.attrs['pixels']} pixels; ΔI/I of its mean "
          "against the equilibrium")
    print(fit)
    if args.output:
        fit_figure(trace, fit, "change").savefig(args.output, dpi=100)
        print(f"wrote {args.output}")


def _export(args):
    from .pipeline.export import export

    path = export(args.store, args.output, variables=args.var, rows=args.rows,
                  overwrite=args.overwrite)
    print(f"wrote {path}")


def _view(args):
    from .viewer.server import run

    return run(args.store, port=args.port, show=not args.no_browser,
               q_calibration=_q_calibration(args))


def _common():
    """Options that every command takes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error, and library warnings")
    return common


def _run_options():
    """Options of the commands that open a raw run (info, ingest, reduce): how its files are
    found and what to do about missing and bad frames (the ``[run]`` section of --config)."""
    from .io.runs import PRESETS

    options = argparse.ArgumentParser(add_help=False)
    group = options.add_argument_group(
        "finding the run's files (flags override the [run] section of --config)")
    group.add_argument("--pattern", metavar="PATTERN",
                       help="the frame files, relative to the run folder, with the fields "
                       "{delay} (ps), {delay:fs}, {delay:ns}, {position} or {delay_index} "
                       "(through --delays), {scan}, and * for any characters; e.g. "
                       "'run{scan}/img_*_{delay:fs}fs.tif'")
    for role, default in (("darks", "dark_image/*.tif"), ("flats", "flat*/*.tif"),
                          ("pump-off", "pump_off/*.tif"), ("ignore", "mask.tif")):
        group.add_argument(f"--{role}", dest=role.replace("-", "_"), metavar="PATTERN",
                           help=f"the {role} files (default: the preset's, {default})"
                           if role != "ignore" else "image files to leave out silently "
                           "(default: mask.tif)")
    group.add_argument("--preset", choices=["auto", *PRESETS],
                       help="patterns to start from (default: auto, the first that fits)")
    group.add_argument("--delays", metavar="FILE",
                       help="delay table of {delay_index} (one delay per line, ps) or "
                       "{position} (a stage position and its delay in ps per line)")
    group.add_argument("--missing", choices=["raise", "exclude"],
                       help="a (delay, scan) without a frame file: stop (raise, the default) "
                       "or go on without it (exclude)")
    group.add_argument("--skip-bad", action="store_true", default=None,
                       help="go on without unreadable, truncated or undecodable frames, frames "
                       "that are folders, and folders that cannot be listed, instead of "
                       "stopping; they are listed in the provenance. Compressed frames are "
                       "decoded once at open to find them")
    return options


#: What ``uedflow --help`` says above the list of commands (plain text).
DESCRIPTION = """\
uedflow reduces ultrafast electron diffraction runs (thousands of detector frames, one per
delay and scan) to a zarr store of averaged patterns, radial profiles and their change with
delay, with error bars, on a laptop or a cluster. A reduction killed at any point resumes
where it stopped.

Start with 'uedflow demo' to see the main job on a synthetic run, then 'uedflow info RUN'
on your own run. 'uedflow COMMAND --help' explains each command, with examples."""

#: What ''uedflow --help'' says below the list of commands.
EPILOG = """\
a session:
  uedflow info raw/                       what is there: delays, scans, darks, gaps, verdict
  uedflow config > reduce.toml            the whole configuration, commented, to edit
  uedflow reduce raw/ -o reduced.zarr --config reduce.toml --quicklook
  uedflow view reduced.zarr               look at it in the browser

Runs named otherwise: --pattern 'run{scan}/img_*_{delay:fs}fs.tif' (see uedflow reduce --help).
A failing command prints one line on standard error and exits with 2 for bad input (a file,
a flag, a store), 3 for an internal error (--debug shows its traceback), 130 when interrupted
(Ctrl-C) and 143 when terminated, naming the command that resumes or redoes the work."""

#: Of every command: what it does (one paragraph) and examples, shown by ''--help''.
HELP = {
    "demo": (
        "Generate a synthetic time-resolved run with a known centre, drift, hot pixels and "
        "a Debye-Waller drop after time zero (2 scans x 12 delays), then do the main job on "
        "it: show what is in it, reduce it to DIR/reduced.zarr, write quick-look PNGs, and "
        "print the centre and shifts recovered next to the ground truth. Run again, it "
        "reuses what is there.",
        ["uedflow demo", "uedflow demo --size 128 --dir /tmp/quick",
         "uedflow demo --size 2048        # at detector size"]),
    "info": (
        "Summarise what SOURCE holds without reading pixels (except to find bad compressed "
        "frames). For a raw run: how its files were found (the preset or pattern of every "
        "role), its delays and scans, darks, flat fields and pump-off frames, the frames "
        "missing, bad or given twice, and the verdict 'uedflow reduce' would reach with the "
        "same flags and --config: run on which frames, or stop and why. For a reduced store: "
        "its variables, centre, rejections and masked fraction.",
        ["uedflow info raw/",
         "uedflow info raw/ --pattern 'run{scan}/img_*_{delay:fs}fs.tif' --missing exclude",
         "uedflow info reduced.zarr"]),
    "ingest": (
        "Stream a raw stack (a run, a folder or glob of frames, a multi-frame file) into one "
        "compressed zarr store, chunk by chunk, never holding it in memory: reading it back "
        "is faster than thousands of small files. 'uedflow reduce' reads the store as it "
        "reads the run.",
        ["uedflow ingest raw/ -o raw.zarr",
         "uedflow ingest 'frames/*.tif' -o frames.zarr --clevel 3",
         "uedflow ingest raw/ -o raw.zarr --pattern 'run{scan}/img_*_{delay:fs}fs.tif'"]),
    "reduce": (
        "Reduce a raw run to a zarr store: dark and flat-field correction, pixel mask, "
        "centre, registration of every frame, normalisation, outlier rejection, averages "
        "over scans with their errors, radial profiles and their change ΔI/I. Every step is "
        "set in the TOML of --config ('uedflow config' prints it all); how the run's files "
        "are named is set by the flags below or its [run] section. The store is written "
        "chunk by chunk: killed, the same command resumes it.",
        ["uedflow reduce raw/ -o reduced.zarr --quicklook --workers 8",
         "uedflow reduce lab/ -o r.zarr --pattern 'scan{scan}_{position}mm.tif' "
         "--delays stage.csv --skip-bad",
         "uedflow reduce raw/ -o live.zarr --config reduce.toml --follow --until-idle 600"]),
    "config": (
        "Print the whole reduction configuration as TOML, every section and key with a "
        "comment: the defaults, or the configuration a TOML file gives (the keys it leaves "
        "out at their defaults, its relative paths made absolute). The output reads back "
        "to the same configuration; 'false' switches an optional step or key off.",
        ["uedflow config > reduce.toml", "uedflow config reduce.toml",
         "uedflow config --no-comments"]),
    "quicklook": (
        "Write PNGs of a reduced store: the pattern, the radial profiles and their change "
        "with delay, and the Bragg peaks found.",
        ["uedflow quicklook reduced.zarr", "uedflow quicklook reduced.zarr -o pngs/ --overwrite"]),
    "verify": (
        "Check every chunk of a store that uedflow wrote against the checksums recorded "
        "when it was written, and list the damaged ones (exit status 1 if any).",
        ["uedflow verify reduced.zarr", "uedflow verify raw.zarr && echo intact"]),
    "peaks": (
        "Find the Bragg peaks of a reduced store, integrate each in a disk minus a "
        "background annulus at every delay, average the equivalent peaks, and write the "
        "table, the traces and a PNG; with a lattice (or CIF) the peaks are indexed, and with "
        "the geometry given in q.",
        ["uedflow peaks reduced.zarr",
         "uedflow peaks reduced.zarr --lattice 4.05 4.05 4.05 90 90 90 --zone 0 0 1",
         "uedflow peaks reduced.zarr --energy 90 --camera-length 0.3 --pixel-size 14e-6"]),
    "fit": (
        "Fit ΔI/I of a region of a reduced store (a ring about the centre, a disk or a "
        "rectangle) to one or two exponentials convolved with the instrument response, and "
        "print the fitted parameters with their errors.",
        ["uedflow fit reduced.zarr --region ring:40,60",
         "uedflow fit reduced.zarr --region disk:120,135,6 --exponentials 2 -o fit.png",
         "uedflow fit reduced.zarr --region ring:40,60 --irf 0.3 --t0 0"]),
    "export": (
        "Export a reduced store for other programs: CSV of the radial profiles and their "
        "change with errors (or of the variables named), or everything as HDF5/NeXus.",
        ["uedflow export reduced.zarr -o profiles.csv",
         "uedflow export reduced.zarr -o run.nxs",
         "uedflow export reduced.zarr -o change.csv --var radial_change --rows delay"]),
    "view": (
        "Open a reduced store in the browser: the pattern at each delay, the radial change "
        "map, and the traces of regions drawn on the pattern.",
        ["uedflow view reduced.zarr", "uedflow view reduced.zarr --port 8765 --no-browser"]),
}


def _teach(sub):
    """Give every command of ``sub`` its description and examples (:data:`HELP`, the one
    place of the help texts: a command's own are replaced)."""
    for name, parser in sub.choices.items():
        if name not in HELP:
            continue
        text, examples = HELP[name]
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.description = "\n".join(textwrap.wrap(text, 92, break_on_hyphens=False))
        parser.epilog = "examples:\n" + "\n".join(f"  {example}" for example in examples)


def build_parser():
    parser = argparse.ArgumentParser(prog="uedflow", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"uedflow {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an error, and library warnings")
    sub = parser.add_subparsers(dest="command", required=True)
    common = [_common()]

    p = sub.add_parser("demo", parents=common,
                       help="the main job on a synthetic run: make it, reduce it, plot it")
    p.add_argument("--dir", default="uedflow-demo",
                   help="where to put the run, the reduced store and the PNGs "
                   "(default: %(default)s)")
    p.add_argument("--size", type=int, default=DEMO_SIZE,
                   help="frame side in pixels (default: %(default)s)")
    p.add_argument("--overwrite", action="store_true",
                   help="reduce again into DIR/reduced.zarr and replace its PNGs")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_demo)

    run = [*common, _run_options()]
    p = sub.add_parser("info", parents=run,
                       help="summarise a raw run, a source of frames or a reduced store")
    p.add_argument("source", help="run directory, reduced store, file, directory, glob "
                   "pattern or zarr store (every bad or unreadable file of a run is listed: "
                   "compressed frames are decoded to find them)")
    p.add_argument("--config", help="reduction configuration (TOML): its [run] section")
    p.set_defaults(func=_info)

    p = sub.add_parser("ingest", parents=run,
                       help="stream a raw stack into a compressed zarr store")
    p.add_argument("source", help="file, directory, glob pattern, run directory or zarr store")
    p.add_argument("--config", help="reduction configuration (TOML): its [run] section")
    p.add_argument("-o", "--output", required=True, help="the zarr store to write")
    p.add_argument("--clevel", type=int, default=5, help="zstd level, 1-9 (default 5)")
    p.add_argument("--chunk-frames", type=int, default=None, help="frames per dask chunk")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_ingest)

    p = sub.add_parser("reduce", parents=run,
                       help="reduce a raw run into a zarr store (resumable)")
    p.add_argument("raw", nargs="?", help="run directory, or a zarr store from uedflow ingest")
    p.add_argument("-o", "--output", required=True, help="the reduced zarr store to write")
    p.add_argument("--config", help="reduction configuration (TOML)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="address of a dask scheduler")
    p.add_argument("--wait-workers", type=float, metavar="SECONDS",
                   help="how long to wait for a worker of the scheduler or cluster to join "
                   f"(default with --scheduler: {WAIT_WORKERS:g} s; with --cluster: no wait)")
    p.add_argument("--workers", type=int, metavar="N",
                   help="local worker processes (with --cluster: workers to request)")
    p.add_argument("--cluster", choices=["slurm"], help="start a cluster (dask-jobqueue)")
    p.add_argument("--cluster-option", action="append", default=[], metavar="KEY=VALUE",
                   help="option of the cluster, e.g. cores=8 (repeatable)")
    p.add_argument("--quicklook", action="store_true", help="also write quick-look PNGs")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing reduced store (and quick-look PNGs)")
    p.add_argument("--demo", action="store_true", help=argparse.SUPPRESS)  # see uedflow demo
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.add_argument("--follow", action="store_true",
                   help="reduce while the run is acquired: OUTPUT is kept a valid store of the "
                   "scans complete so far, until the run's run.json appears, --until-idle or "
                   "Ctrl-C (see docs/live.md)")
    p.add_argument("--until-idle", type=float, metavar="SECONDS",
                   help="with --follow: stop once no file changed for SECONDS")
    p.add_argument("--every", type=float, default=2.0, metavar="SECONDS",
                   help="with --follow: seconds between looks at the run (default 2)")
    p.set_defaults(func=_reduce)

    p = sub.add_parser("config", parents=common,
                       help="print the whole reduction configuration as commented TOML")
    p.add_argument("config", nargs="?",
                   help="a TOML file: print every key it gives or leaves at its default, its "
                   "paths made absolute (default: print the default configuration)")
    p.add_argument("--no-comments", action="store_true", help="keys and values only")
    p.set_defaults(func=_print_config)

    p = sub.add_parser("quicklook", parents=common, help="write quick-look PNGs of a reduced store")
    p.add_argument("store", help="a reduced store")
    p.add_argument("-o", "--output", help="directory of the PNGs (default: STORE-quicklook)")
    p.add_argument("--overwrite", action="store_true", help="replace existing PNGs")
    p.set_defaults(func=_quicklook)

    p = sub.add_parser("verify", parents=common,
                       help="check every chunk of a store written by uedflow (exit 1 if damaged)")
    p.add_argument("store", help="a store written by uedflow ingest or reduce")
    p.set_defaults(func=_verify)

    # analysis of a reduced store (issue 14): peaks, fit, export
    p = sub.add_parser("peaks", parents=common,
                       help="Bragg-peak traces of a reduced store: table, traces and a PNG")
    p.add_argument("store", help="a reduced store")
    p.add_argument("-o", "--output", help="folder of peaks.csv, peak_traces.csv and peaks.png "
                   "(default: STORE-peaks)")
    p.add_argument("--radius", type=float, help="radius of the integration disk (px)")
    p.add_argument("--background", type=float, nargs=2, metavar=("R1", "R2"),
                   help="radii of the background annulus (px)")
    p.add_argument("--lattice", type=float, nargs=6, metavar=("A", "B", "C", "ALPHA", "BETA",
                                                                "GAMMA"),
                   help="lattice constants (Å, degrees): index the peaks (Miller indices, q)")
    p.add_argument("--cif", help="a CIF file whose cell is the lattice")
    p.add_argument("--zone", type=int, nargs=3, default=[0, 0, 1], metavar=("U", "V", "W"),
                   help="zone axis of the pattern (default: 0 0 1)")
    p.add_argument("--energy", type=float, help="electron energy (keV), for q")
    p.add_argument("--camera-length", type=float, help="camera length (m), for q")
    p.add_argument("--pixel-size", type=float, help="detector pixel size (m), for q")
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.set_defaults(func=_peaks)

    p = sub.add_parser("fit", parents=common,
                       help="fit ΔI/I of a region of a reduced store to exponentials")
    p.add_argument("store", help="a reduced store")
    p.add_argument("--region", required=True,
                   help="ring:R1,R2 (about the centre), ring:ROW,COL,R1,R2, disk:ROW,COL,R or "
                   "rect:ROW0,ROW1,COL0,COL1 (px)")
    p.add_argument("--exponentials", type=int, choices=[1, 2], default=1,
                   help="number of exponentials (default 1)")
    p.add_argument("--irf", type=float, help="FWHM of the instrument response (ps), fixed")
    p.add_argument("--t0", type=float, help="time zero (ps), fixed")
    p.add_argument("-o", "--output", help="a PNG of the trace and the fit")
    p.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    p.set_defaults(func=_fit)

    p = sub.add_parser("export", parents=common,
                       help="export a reduced store to CSV (profiles) or HDF5/NeXus (all)")
    p.add_argument("store", help="a reduced store")
    p.add_argument("-o", "--output", required=True,
                   help="the file: .csv, or .nxs/.h5/.hdf5 (needs h5py)")
    p.add_argument("--var", action="append", metavar="NAME",
                   help="a variable to write (repeatable; default: CSV the radial profiles "
                   "and their change with errors, HDF5 everything)")
    p.add_argument("--rows", help="CSV: the dim along the rows (default radius, else delay)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")
    p.set_defaults(func=_export)

    # the browser viewer (issue 15)
    p = sub.add_parser("view", parents=common,
                       help="view a reduced store in the browser (a local web app)")
    p.add_argument("store", help="a reduced store")
    p.add_argument("--port", type=int, default=0,
                   help="the port on 127.0.0.1 (default: a free one); from another machine, "
                   "tunnel it: ssh -L PORT:127.0.0.1:PORT HOST")
    p.add_argument("--no-browser", action="store_true", help="do not open a web browser")
    p.add_argument("--energy", type=float, help="electron energy (keV), for q")
    p.add_argument("--camera-length", type=float, help="camera length (m), for q")
    p.add_argument("--pixel-size", type=float, help="detector pixel size (m), for q")
    p.set_defaults(func=_view)
    _teach(sub)
    return parser


class StepProgress:
    """Standard output of a command, with its progress shown to fit where it goes.

    A step is a line that starts with one of :data:`STEP_PREFIXES` (the pipeline prints
    ``reduce: STEP`` before each computation; the commands ``reduce: writing the store``
    before the write); its bar is what dask or distributed draws (``\\r[###  ] | 45%
    Completed | 1.2s``). On a terminal, each step is one bar labelled with the step, fitted to
    the terminal's width; otherwise (a log file, a pipe), each step is one line with its
    duration, ``reduce: registration (12.3 s)``. Every other line passes through (a step is
    held until its bar: a line printed between them comes first).

    Parameters
    ----------
    out : file-like
        Where the output goes (standard output).
    tty : bool, optional
        Whether ``out`` is a terminal (default: ``out.isatty()``).
    """

    #: A bar of dask or distributed: its percentage.
    BAR = re.compile(r"\r\[[# ]*\] \| *(\d+)% Completed \|")

    def __init__(self, out, tty=None):
        self.out = out
        self.tty = bool(out.isatty()) if tty is None else tty
        self.label, self.start, self.partial, self.bar = None, None, "", False

    def write(self, text):
        """Write ``text``: steps held until their bar ends, bars redrawn or summed up."""
        match = self.BAR.match(text)
        if match:
            self._draw(int(match[1]))
        elif self.bar and text in ("\n", "\33[2K\r"):  # dask's, distributed's end of a bar
            self._end()
        else:
            self.partial += text
            while "\n" in self.partial:
                line, self.partial = self.partial.split("\n", 1)
                if line.startswith(STEP_PREFIXES):
                    self._release()
                    self.label, self.start = line, time.perf_counter()
                else:  # e.g. the dashboard's address, between a step and its bar
                    self.out.write(line + "\n")
        return len(text)

    def flush(self):
        self.out.flush()

    def close(self):
        """Write what is held: a step without a bar, a line without its end."""
        self._release()
        if self.partial:
            self.out.write(self.partial)
            self.partial = ""
        self.out.flush()

    def __getattr__(self, name):  # isatty, encoding, fileno... of the real output
        return getattr(self.out, name)

    def _release(self):
        """A step held that had no bar: its line as it is."""
        if self.label is not None and not self.bar:
            self.out.write(self.label + "\n")
        self.label = None

    def _draw(self, percent):
        if not self.bar and self.label is None:  # a bar without a step
            self.start = time.perf_counter()
        self.bar = True
        if not self.tty:
            return
        elapsed = f"{time.perf_counter() - self.start:.1f} s"
        columns = shutil.get_terminal_size().columns
        label = self.label or "working"
        width = max(10, min(40, columns - len(label) - len(elapsed) - 12))
        label = label[:max(10, columns - width - len(elapsed) - 12)]
        done = width * percent // 100
        self.out.write(f"\r{label} [{'#' * done}{' ' * (width - done)}] {percent:3d}% {elapsed}")
        self.out.flush()

    def _end(self):
        elapsed = time.perf_counter() - self.start
        if self.tty:
            self.out.write("\n")
        else:
            self.out.write(f"{self.label or 'working'} ({elapsed:.1f} s)\n")
        self.out.flush()
        self.label, self.start, self.bar = None, None, False


@contextlib.contextmanager
def _progress(args):
    """Standard output through :class:`StepProgress` while a command that shows progress
    runs (unless ``--quiet``)."""
    if args.command not in ("reduce", "ingest", "demo") or getattr(args, "quiet", False):
        yield
        return
    steps = StepProgress(sys.stdout)
    try:
        with contextlib.redirect_stdout(steps):
            yield
    finally:
        steps.close()


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM."""


def _terminate(signum, frame):
    raise Terminated


@contextlib.contextmanager
def _signals():
    """SIGTERM raises :class:`Terminated` (while in the main thread of the process)."""
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _quiet_libraries(name, debug):
    """Library log messages off (unless ``debug``), and warnings as one line each, ``NAME:
    warning: MESSAGE``; restored on leaving."""
    loggers = [logging.getLogger(logger) for logger in QUIET_LOGGERS]
    levels = [logger.level for logger in loggers]
    if not debug:
        for logger in loggers:
            logger.setLevel(logging.CRITICAL)

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"{name}: warning: {_one_line(message)}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.showwarning = show
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _quiet_exit():
    """After a failure: silence what asynchronous writes still pending (zarr's event loop,
    dask threads) report when the process ends ("Task was destroyed but it is pending",
    "Exception ignored in ..."): the error was reported already."""
    logging.getLogger("asyncio").disabled = True
    sys.unraisablehook = lambda unraisable: None


def _one_line(text):
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def _error_message(args, exc):
    """The one-line message of an input error (with the free space, when a disk is full)."""
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        output = getattr(args, "output", None) or getattr(args, "dir", None)
        if output is not None:
            free = shutil.disk_usage(_existing_parent(output)).free
            return (f"no space left on the device of '{Path(output).absolute()}' "
                    f"({_size(free)} free): {exc.strerror or exc}")
    message = _one_line(exc)
    if hasattr(args, "overwrite"):  # the library's keyword as this command's flag
        for keyword in ("overwrite=True (--overwrite)", "overwrite=True"):
            message = message.replace(keyword, "--overwrite")
    return message


def _redo_hint(args):
    """The command that resumes (reduce) or redoes the interrupted command."""
    argv = list(args.argv)
    if args.command == "ingest" and "--overwrite" not in argv:
        argv.append("--overwrite")
    verb = "resume" if args.command in ("reduce", "demo") else "run it again"
    return f"{verb} with: {shlex.join(['uedflow', *argv])}"


def main(argv=None):
    """Run the ``uedflow`` command line; return its exit status."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    args = build_parser().parse_args(argv)
    args.argv = argv
    name = f"uedflow {args.command}"
    with _quiet_libraries(name, args.debug), _signals():
        try:
            with _progress(args):
                status = args.func(args)
        except (KeyboardInterrupt, Terminated) as exc:
            _quiet_exit()
            signame, status = (("SIGTERM", TERMINATED) if isinstance(exc, Terminated)
                               else ("SIGINT", INTERRUPTED))
            print(f"{name}: interrupted ({signame}); {_redo_hint(args)}", file=sys.stderr)
            return status
        except INPUT_ERRORS as exc:
            if args.debug:
                traceback.print_exc()
            else:
                _quiet_exit()
            print(f"{name}: error: {_error_message(args, exc)}", file=sys.stderr)
            return BAD_INPUT
        except Exception as exc:
            if args.debug:
                traceback.print_exc()
            else:
                _quiet_exit()
            print(f"{name}: internal error: {type(exc).__name__}: {_one_line(exc)} (run again "
                  "with --debug for the traceback)", file=sys.stderr)
            return INTERNAL_ERROR
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
