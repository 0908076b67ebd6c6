"""Stream stacks into compressed zarr v3 stores: :func:`to_zarr`.

A store written by uedflow is an xarray-compatible zarr v3 group holding one variable,
``intensity``, chunked one frame per zarr chunk and compressed with Blosc (zstd, bit-shuffle),
with the stack's coordinates beside it. The group attribute ``uedflow`` records the source and
whether the write completed: :func:`uedflow.open_stack` refuses a store whose write was
interrupted, so an incomplete store never passes for a complete one.
"""

import os
from dataclasses import dataclass

import dask
import dask.array as da
import xarray as xr

from .lazy import RUN_ATTRS, VARIABLE, open_stack


@dataclass(frozen=True)
class ZarrReport:
    """What :func:`to_zarr` wrote."""

    store: str
    shape: tuple
    dtype: str
    nbytes: int
    stored_bytes: int

    @property
    def ratio(self):
        """Compression ratio: raw bytes over stored bytes."""
        return self.nbytes / self.stored_bytes if self.stored_bytes else float("inf")

    def __str__(self):
        return (f"{self.store}: {self.shape} {self.dtype}, {self.nbytes / 2**20:.1f} MiB "
                f"raw -> {self.stored_bytes / 2**20:.1f} MiB stored "
                f"(compression ratio {self.ratio:.2f})")


def blosc_zstd(clevel=5):
    """The default codec: Blosc with zstd at ``clevel`` and bit-shuffle (good for counts)."""
    from zarr.codecs import BloscCodec, BloscShuffle

    return BloscCodec(cname="zstd", clevel=clevel, shuffle=BloscShuffle.bitshuffle)


def to_zarr(stack, store, *, clevel=5, overwrite=False, progress=False):
    """Write a stack into a compressed zarr v3 store, streaming chunk by chunk.

    Parameters
    ----------
    stack : xarray.DataArray or anything :func:`uedflow.open_stack` opens
        Frames with dims ``(..., "y", "x")``. Dask-backed stacks are streamed: each task reads
        one chunk of frames and writes it, so memory holds a few chunks at a time.
    store : path-like
        Directory of the new zarr store.
    clevel : int, optional
        zstd compression level (1 fastest, 9 smallest).
    overwrite : bool, optional
        Replace an existing store. By default an existing store is an error.
    progress : bool, optional
        Show a progress bar (dask's threaded or process schedulers).

    Returns
    -------
    report : ZarrReport
        Sizes and compression ratio of what was written.

    Raises
    ------
    FileExistsError
        If ``store`` exists and ``overwrite`` is False.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from uedflow import open_stack, to_zarr
    >>> stack = open_stack(np.zeros((6, 64, 64), dtype=np.uint16))
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     report = to_zarr(stack, Path(folder) / "zeros.zarr")
    ...     back = open_stack(Path(folder) / "zeros.zarr").values
    >>> report.shape, report.ratio > 10, back.shape
    ((6, 64, 64), True, (6, 64, 64))
    """
    import zarr

    store = os.path.abspath(os.fspath(store))
    if os.path.exists(store) and not overwrite:
        raise FileExistsError(f"The zarr store '{store}' already exists (use overwrite=True)")
    if not isinstance(stack, xr.DataArray):
        stack = open_stack(stack)
    # whole frames per dask chunk, so that every dask chunk covers whole zarr chunks
    stack = stack.copy(data=da.asarray(stack.data).rechunk({-2: -1, -1: -1}))
    frame_chunks = (1,) * (stack.ndim - 2) + stack.shape[-2:]
    info = {"complete": False, "source": str(stack.attrs.get("source", "")),
            "variable": VARIABLE,
            "run": {key: stack.attrs[key] for key in RUN_ATTRS if key in stack.attrs}}
    ds = stack.rename(VARIABLE).to_dataset()
    ds.attrs = {"uedflow": info}
    encoding = {VARIABLE: {"chunks": frame_chunks, "compressors": (blosc_zstd(clevel),)}}
    writer = ds.to_zarr(store, mode="w", zarr_format=3, consolidated=False, compute=False,
                        encoding=encoding)
    compute(writer, progress=progress)
    group = zarr.open_group(store, mode="r+")
    group.attrs["uedflow"] = {**info, "complete": True}
    array = group[VARIABLE]
    return ZarrReport(store=store, shape=tuple(array.shape), dtype=str(array.dtype),
                      nbytes=int(array.nbytes), stored_bytes=int(array.nbytes_stored()))


def compute(*collections, progress=False):
    """``dask.compute(*collections)`` on the active scheduler, with a progress bar if asked:
    dask's on its local schedulers, ``distributed``'s on a client."""
    client = _distributed_client()
    if client is not None:
        futures = client.compute(list(collections))
        if progress:
            from distributed import progress as distributed_progress

            distributed_progress(futures)
        return tuple(client.gather(futures))
    if not progress:
        return dask.compute(*collections)
    from dask.diagnostics import ProgressBar

    with ProgressBar(dt=0.5):
        return dask.compute(*collections)


def _distributed_client():
    """The active ``distributed.Client``, or None (threads and processes schedulers)."""
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        return None
