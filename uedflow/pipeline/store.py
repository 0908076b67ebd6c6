"""Write reduced runs into zarr v3 stores, resumably: :func:`write_reduced`, :func:`open_reduced`.

A reduced store is an xarray-compatible zarr v3 group on the local file system (or a shared
one, for distributed workers). Its group attribute ``uedflow_reduced`` records the state of
the write and what it was made from:

* ``state``: ``"started"`` while the metadata, coordinates and small (in-memory) variables are
  written, ``"writing"`` while the chunks of the large (dask) variables are, ``"complete"``
  once every chunk is on disk. The complete mark is written last.
* ``config_digest``: SHA-256 of the ``config`` and ``inputs`` (file digests) parts of the
  Dataset's ``uedflow`` attribute, the JSON provenance that
  :func:`uedflow.pipeline.reduce.reduce` attaches.
* ``layout``: names, dims, shapes, dtypes and chunk shapes of the variables.

Each dask chunk of a large variable is one zarr chunk, stored as one file that zarr writes to a
temporary name and renames into place: a chunk file is either whole or absent, even when the
writing process is killed. The process that wrote it (the writer or a ``distributed`` worker)
then journals its size and CRC-32; once every chunk is written the journal becomes
``.uedflow/checksums.json`` (see :mod:`uedflow.io.safety`). On resume, every recorded chunk is
verified: the chunks whose files are whole and as recorded are skipped, missing, unrecorded or
damaged ones are computed again (a damaged small, in-memory variable is rewritten), so a write
killed at any moment and run again ends with the same store as an uninterrupted one. One
process writes a store at a time (:func:`uedflow.io.safety.writer_lock`).

:func:`open_reduced` checks that every chunk file is there with its recorded size (one
``stat`` each) and reads every chunk through :class:`~uedflow.io.safety.VerifiedStore`: a
chunk damaged later raises :class:`~uedflow.errors.DamagedStoreError` naming it.
"""

import hashlib
import json
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import IncompleteStoreError
from ..io.safety import (
    BOOKKEEPING,
    TIMING,
    RecordingStore,
    VerifiedStore,
    chunk_problem,
    chunk_records,
    clear_store,
    is_vacant,
    seal_records,
    verify_store,
    writer_lock,
)
from ..io.zarrstore import blosc_lz4, compute, distributed_client

__all__ = ["StoreReport", "existing_state", "open_reduced", "read_state", "write_reduced"]

#: Group attribute of a reduced store that records the state of its write.
MARKER = "uedflow_reduced"

#: Version of the reduced-store layout (2: chunk checksums).
FORMAT = 2


@dataclass(frozen=True)
class StoreReport:
    """What :func:`write_reduced` did: chunks written now and chunks found already written."""

    store: str
    written: int
    skipped: int

    def __str__(self):
        return (f"{self.store}: {self.written} chunks written, {self.skipped} already written "
                "(skipped)")


def write_reduced(ds, store, *, resume=True, overwrite=False, progress=False):
    """Write a reduced Dataset into a zarr v3 store, chunk by chunk, resumably.

    Coordinates and in-memory variables are written first, then every dask chunk of the lazy
    variables (each its own task, computed on the active scheduler); the store is marked
    complete only after its last chunk is written and every chunk's checksum is recorded. The
    whole write holds the store's writer lock (:func:`uedflow.io.writer_lock`).

    Parameters
    ----------
    ds : xarray.Dataset
        The reduction, as :func:`uedflow.pipeline.reduce.reduce` returns it: image-sized
        variables as dask arrays (one zarr chunk per dask chunk), small ones in memory.
    store : path-like
        Directory of the store (local or shared file system).
    resume : bool, optional
        Finish or repair a store written from the same configuration and input files: every
        recorded chunk is verified (size and CRC-32), and only the chunks that are missing or
        damaged are computed again (a damaged in-memory variable is rewritten); the store
        keeps the ``attrs`` of its first write. A complete, undamaged store is left as it is.
    overwrite : bool, optional
        Replace an existing reduced store (never anything else: a store holding files uedflow
        does not write is refused, see :mod:`uedflow.io.safety`).
    progress : bool, optional
        Show a progress bar (and, with a ``distributed`` client, the dashboard link).

    Returns
    -------
    report : StoreReport
        Numbers of chunks written and of chunks skipped because they were already written
        (and verified).

    Raises
    ------
    FileExistsError
        If ``store`` exists and is not a reduced uedflow store (nothing is changed), or if it
        is one and neither ``resume`` nor ``overwrite`` is given;
        :class:`~uedflow.errors.UnsafeDeleteError` if ``overwrite`` would delete a file
        uedflow does not write (named in the message; nothing is deleted).
    ValueError
        If ``store`` was started from a different configuration, different input files
        or a different data layout, and ``overwrite`` is False.
    uedflow.errors.StoreLockedError
        If another process is writing ``store``.

    Notes
    -----
    Resuming reads every chunk file once to check its CRC-32 (about 10 ms for a 24-delay
    512² store of 23 MiB from the page cache).
    """
    store = Path(store).absolute()
    ds = _prepare(ds)
    info = {"format": FORMAT, "config_digest": _config_digest(ds), "layout": _layout(ds)}
    existing_state(store)  # refuse what is not a reduced store before creating anything
    with writer_lock(store):
        state = existing_state(store)
        resuming = state is not None and state["state"] != "started" and not overwrite
        if resuming:
            _check_resumable(store, state, info, resume)
            verified, rewritten = _repair(ds, store, info, state)
        if not resuming or verified is None:
            verified, rewritten = set(), 0
            _start(ds, store, info)

        writes, skipped = [], 0
        for name, var in ds.data_vars.items():
            if not var.chunks:
                continue
            done = var.data.map_blocks(_write_chunk, str(store), name, dtype=bool,
                                       chunks=(1,) * var.ndim)
            for index in np.ndindex(*var.data.numblocks):
                if _chunk_key(name, index) in verified:
                    skipped += 1
                else:
                    writes.append(done.blocks[index].ravel())
        if writes:
            client = distributed_client()
            if progress and client is not None:
                print(f"dask dashboard: {client.dashboard_link}")
            start = time.perf_counter()
            compute(da.concatenate(writes), progress=progress)
            _record_timing(store, "write", time.perf_counter() - start)
        for partial in store.rglob("*.partial"):  # temporary files of killed chunk writes
            partial.unlink()

        problems = seal_records(store)
        if problems:
            raise IncompleteStoreError(
                f"The store '{store}' is missing {len(problems)} chunks after writing (e.g. "
                f"{problems[0]}); run the write again to resume it")
        _set_state(store, {**info, "state": "complete"})
    return StoreReport(str(store), written=len(writes) + rewritten, skipped=skipped)


def _check_resumable(store, state, info, resume):
    if state["config_digest"] != info["config_digest"]:
        raise ValueError(f"The store '{store}' was written with a different reduction "
                         "config or from different input files; use overwrite=True "
                         "(--overwrite) to replace it, or write to another path")
    if state["layout"] != info["layout"]:
        raise ValueError(f"The store '{store}' holds variables of other names, shapes, "
                         "dtypes or chunks than this reduction; use overwrite=True "
                         "(--overwrite) to replace it")
    if not resume:
        raise FileExistsError(f"The store '{store}' already exists; pass resume=True to "
                              "finish it or overwrite=True to replace it")


def _repair(ds, store, info, state):
    """Verify a store to resume: the chunk keys of its lazy variables that are whole and as
    recorded (None if its metadata is damaged: start again), and the number of chunks of
    damaged in-memory variables, rewritten here."""
    import zarr

    check = verify_store(store)
    if any(problem.key.endswith("zarr.json") for problem in check.problems):
        return None, 0
    bad = {problem.key for problem in check.problems}
    lazy = {name for name, var in ds.data_vars.items() if var.chunks}
    small = sorted({problem.variable for problem in check.problems} - lazy)
    if bad and state["state"] == "complete":
        _set_state(store, {**info, "state": "writing"})  # a repair killed midway: incomplete
    if small:
        attrs = dict(zarr.open_group(store, mode="r").attrs)
        for name in small:
            xr.Dataset({name: ds[name].variable}, attrs=attrs).to_zarr(
                RecordingStore(store), mode="a", zarr_format=3, consolidated=False,
                write_empty_chunks=True)
    verified = {_chunk_key(name, index) for name in lazy
                for index in np.ndindex(*ds[name].data.numblocks)} - bad
    return verified, sum(problem.variable in small for problem in check.problems)


def open_reduced(store):
    """Open a complete reduced store lazily, every chunk checked as it is read.

    Opening checks that every chunk file is there with the size recorded when it was written
    (one ``stat`` each); reading a chunk checks its CRC-32.

    Parameters
    ----------
    store : path-like
        A store written by :func:`write_reduced` (or ``uedflow reduce``).

    Returns
    -------
    ds : xarray.Dataset
        The reduced Dataset, dask-backed, with the ``attrs`` it was written with; the
        provenance's timing has the time of the write too (``"write"``: computing the lazy
        outputs and writing them).

    Raises
    ------
    FileNotFoundError
        If ``store`` does not exist.
    ValueError
        If ``store`` is not a reduced uedflow store.
    IncompleteStoreError
        If its write was interrupted: the message says how to resume it.
    uedflow.errors.DamagedStoreError
        If a chunk file is missing or not of its recorded size (when opening), or its bytes
        are corrupt (when it is read); the message names the variable and the chunk.
    """
    # a link (the -o path of reduce --follow) is resolved once: every read from one version
    store = Path(store).resolve()
    if not store.exists():
        raise FileNotFoundError(f"The store '{store}' does not exist")
    state = read_state(store)
    if state is None:
        raise ValueError(f"'{store}' is not a reduced uedflow store")
    if state["state"] != "complete":
        raise IncompleteStoreError(
            f"The reduced store '{store}' is incomplete ({state['chunks_written']} of "
            f"{state['chunks_total']} chunks written; an interrupted write?); resume it by "
            f"running the same reduction again: uedflow reduce RAW -o {store}")
    if state.get("format", 1) < 2:
        warnings.warn(f"The reduced store '{store}' was written by an older uedflow, without "
                      "chunk checksums: its chunks are not verified", stacklevel=2)
        source = store
    else:
        check = verify_store(store, checksums=False)
        check.raise_if_damaged()
        source = VerifiedStore(store, chunk_records(store), check.hint)
    ds = xr.open_zarr(source, consolidated=False, zarr_format=3)
    del ds.attrs[MARKER]
    return _with_timing(ds, store)


def read_state(store):
    """The state of a reduced store's write, or None if ``store`` is not a reduced store.

    Parameters
    ----------
    store : path-like
        Directory that may hold a reduced store.

    Returns
    -------
    state : dict or None
        ``state`` (``"started"``, ``"writing"`` or ``"complete"``), ``config_digest``,
        ``layout``, and ``chunks_written`` / ``chunks_total``: the chunks of the lazy
        variables written (recorded in the store's journal or checksums, and on disk with
        their recorded size) and expected.
    """
    store = Path(store)
    try:
        meta = json.loads((store / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    state = meta.get("attributes", {}).get(MARKER) if isinstance(meta, dict) else None
    if not isinstance(state, dict):
        return None
    records = chunk_records(store)
    written = total = 0
    for name, var in state["layout"].items():
        if var["lazy"]:
            grid = [range(-(-n // c)) for n, c in zip(var["shape"], var["chunks"], strict=True)]
            for index in np.ndindex(*map(len, grid)):
                key = _chunk_key(name, index)
                written += chunk_problem(store / key, records.get(key), checksums=False) is None
                total += 1
    return {**state, "chunks_written": written, "chunks_total": total}


def existing_state(store):
    """The state of the reduced store at ``store``, before writing there.

    Parameters
    ----------
    store : path-like
        Where a reduced store is to be written.

    Returns
    -------
    state : dict or None
        As :func:`read_state`; None if nothing (or an empty directory, or one that holds
        only uedflow's lock) is there.

    Raises
    ------
    FileExistsError
        If something else than a reduced store is there.
    """
    store = Path(store)
    if not store.exists() or is_vacant(store):
        return None
    state = read_state(store)
    if state is None:
        raise FileExistsError(f"'{store}' exists and is not a reduced uedflow store; refusing "
                              "to write there (nothing was changed)")
    return state


def _write_chunk(block, store, name, block_info=None):
    """Write one dask chunk (one zarr chunk) of variable ``name``; return a done flag."""
    import zarr

    # chunks equal to the fill value are stored too: every chunk has a file and a checksum
    array = zarr.open_array(RecordingStore(store), path=name, mode="r+").with_config(
        {"write_empty_chunks": True})
    array[tuple(slice(*loc) for loc in block_info[0]["array-location"])] = block
    return np.ones((1,) * block.ndim, dtype=bool)


def _chunk_key(name, index):
    """Key of a chunk's file (zarr v3's default chunk key encoding, ``c/i/j/...``)."""
    return "/".join([name, "c", *map(str, index)])


def _prepare(ds):
    """``ds`` with regular dask chunks (one zarr chunk each), no inherited encoding."""
    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"write_reduced needs an xarray.Dataset, got {type(ds).__name__}")
    ds = ds.drop_encoding()
    for name, var in ds.data_vars.items():
        if var.chunks and not all(_regular(c) for c in var.data.chunks):
            ds[name] = var.copy(data=var.data.rechunk(var.data.chunksize))
    ds = ds.assign_coords({name: coord.load() for name, coord in ds.coords.items()})
    # fixed-length unicode has no zarr v3 data type yet: store text as variable-length strings
    return ds.assign({name: var.astype(object) for name, var in ds.data_vars.items()
                      if var.dtype.kind == "U"}).assign_coords(
        {name: coord.astype(object) for name, coord in ds.coords.items()
         if coord.dtype.kind == "U"})


def _regular(chunks):
    return all(c == chunks[0] for c in chunks[:-1]) and chunks[-1] <= chunks[0]


def _config_digest(ds):
    """SHA-256 of the ``config`` and ``inputs`` parts of ``ds.attrs["uedflow"]``."""
    provenance = ds.attrs.get("uedflow", "{}")
    try:
        provenance = json.loads(provenance)
        made_from = {key: provenance.get(key) for key in ("config", "inputs")}
    except (TypeError, ValueError, AttributeError) as exc:
        raise ValueError("ds.attrs['uedflow'] must be a JSON object (the reduction's "
                         f"provenance), got {provenance!r:.80}") from exc
    return hashlib.sha256(json.dumps(made_from, sort_keys=True).encode()).hexdigest()


def _layout(ds):
    return {name: {"dims": list(var.dims), "shape": list(var.shape), "dtype": str(var.dtype),
                   "lazy": bool(var.chunks),
                   "chunks": list(var.data.chunksize) if var.chunks else list(var.shape)}
            for name, var in ds.data_vars.items()}


def _start(ds, store, info):
    """A new store: group, coordinates, in-memory variables, metadata of the lazy ones."""
    import zarr

    clear_store(store)  # an earlier store of uedflow's, exactly as uedflow writes them
    target = RecordingStore(store)
    started = {MARKER: {**info, "state": "started"}}
    zarr.open_group(target, mode="a", zarr_format=3, attributes=started)
    encoding = {name: {"compressors": (blosc_lz4(),)} for name in ds.variables}
    for name, var in ds.data_vars.items():
        if var.chunks:
            encoding[name]["chunks"] = var.data.chunksize
    ds.assign_attrs(started).to_zarr(target, mode="a", zarr_format=3, consolidated=False,
                                     compute=False, encoding=encoding, write_empty_chunks=True)
    _set_state(store, {**info, "state": "writing"})


def _record_timing(store, step, seconds):
    """Record ``step``'s time in ``.uedflow/timing.json``: :func:`open_reduced` adds it to
    the provenance's timing (the store's own files stay the same from run to run)."""
    path = store / BOOKKEEPING / TIMING
    try:
        timing = json.loads(path.read_text())
    except (OSError, ValueError):
        timing = {}
    path.write_text(json.dumps({**timing, step: round(seconds, 3)}))


def _with_timing(ds, store):
    """``ds`` with the times of ``.uedflow/timing.json`` in its provenance's timing."""
    try:
        timing = json.loads((store / BOOKKEEPING / TIMING).read_text())
        provenance = json.loads(ds.attrs["uedflow"])
    except (OSError, KeyError, TypeError, ValueError):
        return ds
    provenance["timing"] = {**provenance.get("timing", {}), **timing}
    ds.attrs["uedflow"] = json.dumps(provenance)
    return ds


def _set_state(store, state):
    import zarr

    zarr.open_group(store, mode="r+").attrs[MARKER] = state
