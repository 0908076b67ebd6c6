"""Open raw data lazily as labelled, chunked stacks: :func:`open_stack`.

Opening reads headers only. Pixel data is read when (and only where) the stack is computed,
one chunk of a few whole frames per dask task. Every task graph holds absolute file names and
offsets, never open file handles or memory maps, so stacks can be computed on distributed
workers (whatever their working directory).
"""

import functools
import glob
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import CorruptFileError, FrameMismatchError, IncompleteStoreError
from . import readers
from .readers import (
    DM_SUFFIXES,
    MIB_SUFFIXES,
    NPY_SUFFIXES,
    TIFF_SUFFIXES,
    check_file,
    unsupported_format_error,
)

#: Default size of one chunk of a stack, in bytes: whole frames, as many as fit.
CHUNK_BYTES = 64 * 2**20

#: Threads that read file headers when a stack is opened.
HEADER_THREADS = 8

#: Name of the run manifest in a run directory (see :func:`uedflow.datasets.make_run`).
RUN_MANIFEST = "run.json"

#: Name of the intensity variable in zarr stores written by uedflow.
VARIABLE = "intensity"
#: Attributes of a run (see :func:`uedflow.io.runs.open_run`) that a zarr store keeps.
RUN_ATTRS = ("pattern", "darks", "flats", "pump_off", "missing", "bad_files")


def frames_per_chunk(frame_nbytes, nframes, target=CHUNK_BYTES):
    """How many whole frames make a chunk of about ``target`` bytes (at least 1)."""
    return int(max(1, min(nframes, target // max(frame_nbytes, 1))))


def open_stack(source, *, chunks=None):
    """Open frames lazily as a dask-backed :class:`xarray.DataArray`.

    Parameters
    ----------
    source : path-like, str, sequence of path-like, ndarray, dask array or DataArray
        What to open:

        * a run directory (one holding a ``run.json`` manifest, as written by
          :func:`uedflow.datasets.make_run`): dims ``("delay", "scan", "y", "x")`` with the
          delays (ps) and scans as coordinates;
        * a directory, a glob pattern or a list of image files, one frame each (TIFF, or any
          format :func:`uedflow.diffread` reads): dims ``("frame", "y", "x")``, files in
          natural sort order, with a ``file`` coordinate;
        * a multi-frame file: Merlin ``.mib``, DigitalMicrograph ``.dm3``/``.dm4``, a
          multi-page TIFF or a ``.npy`` file;
        * a zarr store (written by :func:`uedflow.to_zarr`, or any zarr array);
        * an in-memory or dask array (``(y, x)``, ``(frame, y, x)`` or more leading dims).
    chunks : int or dict, optional
        An int is the number of whole frames per chunk (frames are never split), filled
        along the last leading dim first. A dict maps dim names to chunk sizes,
        as :meth:`xarray.DataArray.chunk` takes them. The default makes chunks of whole
        frames of about 64 MiB.

    Returns
    -------
    stack : xarray.DataArray
        Lazy stack named ``"intensity"``, with ``attrs["source"]`` naming what was opened.

    Raises
    ------
    FileNotFoundError
        If a file, directory or pattern names nothing.
    ValueError
        If a format is not supported.
    uedflow.errors.CorruptFileError
        If a file is truncated or cannot be decoded (at open where the header shows it,
        otherwise when the frame is computed).
    uedflow.errors.FrameMismatchError
        If frames differ in shape or dtype; the message names the first file that differs.
    """
    nframes_chunk = chunks if isinstance(chunks, int) else None
    if isinstance(source, xr.DataArray):
        data = da.asarray(source.data)
        stack = source.copy(data=data.rechunk(_leading_chunks(data.shape, nframes_chunk,
                                                              data.dtype.itemsize)))
    elif isinstance(source, np.ndarray | da.Array):
        stack = _from_array(source, nframes_chunk)
    elif isinstance(source, str | os.PathLike):
        stack = _from_path(source, nframes_chunk)
    else:
        stack = _from_files(list(source), nframes_chunk)
    if isinstance(chunks, dict):
        stack = stack.chunk(chunks)
    return stack


def _frame_dims(ndim):
    if ndim < 2:
        raise ValueError(f"A stack needs at least 2 dimensions (y, x); got {ndim}")
    lead = [f"dim_{i}" for i in range(ndim - 3)] + ["frame"]
    return (*lead[: ndim - 2], "y", "x")


def _leading_chunks(shape, nframes_chunk, itemsize):
    """Chunks of whole frames, ``nframes_chunk`` of them (default: about 64 MiB).

    The leading dims are filled from the last: a chunk spans the whole last leading dim before
    it spans more than one index of the dim before it.
    """
    lead, frame = shape[:-2], shape[-2:]
    if nframes_chunk is None:
        nframes_chunk = frames_per_chunk(int(np.prod(frame)) * itemsize, int(np.prod(lead)))
    chunks = []
    budget = max(int(nframes_chunk), 1)
    for n in reversed(lead):
        chunks.append(max(min(n, budget), 1))
        budget //= max(n, 1)
    return (*reversed(chunks), *frame)


def _from_array(array, nframes_chunk, source="<array>", fmt="array"):
    if array.ndim == 2:
        array = array[None]
    chunks = _leading_chunks(array.shape, nframes_chunk, array.dtype.itemsize)
    return _labelled(da.asarray(array).rechunk(chunks), source, fmt)


def _from_path(source, nframes_chunk):
    # absolute paths: tasks may run on workers whose working directory differs
    text = os.path.abspath(os.fspath(source))
    if glob.has_magic(text) and not os.path.exists(text):
        files = _natural_sorted(glob.glob(text))
        if not files:
            raise FileNotFoundError(f"No files match the pattern '{text}'")
        return _from_files(files, nframes_chunk, source=text)
    path = Path(text)
    if not path.exists():
        raise FileNotFoundError(f"No such file or directory: '{path}'")
    if path.is_dir():
        if (path / RUN_MANIFEST).exists():
            return _from_run(path, nframes_chunk)
        if _is_zarr(path):
            return _from_zarr(path, nframes_chunk)
        files = [p for p in _natural_sorted(path.iterdir()) if _is_image_file(p)]
        if not files:
            raise FileNotFoundError(f"No image files in the directory '{path}'")
        return _from_files(files, nframes_chunk, source=str(path))
    suffix = path.suffix.lower()
    if suffix in MIB_SUFFIXES:
        mib = readers.MIBFile(path)
        k = nframes_chunk or frames_per_chunk(_nbytes(mib.frame_shape, mib.dtype), mib.nframes)
        data = mib.lazy(k)
        return _labelled(data, str(path), "mib")
    if suffix in DM_SUFFIXES:
        data = readers._dm_image(path, lazy=True)["data"]
        return _from_array(data, nframes_chunk, source=str(path), fmt="dm")
    if suffix in NPY_SUFFIXES:
        return _from_lazy_file(NpyFile(path), nframes_chunk, "npy")
    if suffix in TIFF_SUFFIXES:
        return _from_lazy_file(TiffPages(path), nframes_chunk, "tiff")
    if _is_image_file(path):
        return _from_files([path], nframes_chunk, source=str(path))
    raise unsupported_format_error(path)


def _labelled(data, source, fmt, dims=None, coords=None):
    return xr.DataArray(data, dims=dims or _frame_dims(data.ndim), coords=coords,
                        name=VARIABLE, attrs={"source": source, "format": fmt})


def _from_lazy_file(array_like, nframes_chunk, fmt):
    chunks = _leading_chunks(array_like.shape, nframes_chunk, array_like.dtype.itemsize)
    data = da.from_array(array_like, chunks=chunks, asarray=False, fancy=False,
                         meta=np.empty((0,) * array_like.ndim, array_like.dtype))
    if data.ndim == 2:
        data = data[None]
    return _labelled(data, str(array_like.path), fmt)


def _from_files(files, nframes_chunk, source=None):
    if not files:
        raise ValueError("open_stack needs at least one file")
    paths = np.array([os.path.abspath(f) for f in files], dtype=object)
    frames = FrameFiles(paths)
    data = da.from_array(frames, chunks=_leading_chunks(frames.shape, nframes_chunk,
                                                        frames.dtype.itemsize),
                         asarray=False, fancy=False, meta=np.empty((0, 0, 0), frames.dtype))
    coords = {"file": ("frame", np.array([os.path.basename(p) for p in paths], dtype=object))}
    return _labelled(data, source or f"{len(paths)} files", frames.format, coords=coords)


def _from_run(path, nframes_chunk):
    manifest_path = path / RUN_MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        grid = np.array([[os.fspath(path / f) for f in row] for row in manifest["files"]],
                        dtype=object)
        delays = np.asarray(manifest["delays"], dtype=float)
        scans = np.asarray(manifest["scans"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptFileError(manifest_path, f"not a valid run manifest ({exc})") from exc
    if grid.shape != (len(scans), len(delays)):
        raise CorruptFileError(manifest_path, f"'files' has shape {grid.shape}, expected "
                               f"(scans, delays) = {(len(scans), len(delays))}")
    coords = {
        "scan": scans,
        "delay": ("delay", delays, {"units": manifest.get("delay_units", "ps")}),
    }
    return run_stack(FrameFiles(grid.T), nframes_chunk, str(path), coords)


def run_stack(frames, nframes_chunk, source, coords):
    """The lazy ``("delay", "scan", "y", "x")`` stack of a :class:`FrameFiles` grid."""
    chunks = _leading_chunks(frames.shape, nframes_chunk, frames.dtype.itemsize)
    data = da.from_array(frames, chunks=chunks, asarray=False, fancy=False,
                         meta=np.empty((0,) * 4, frames.dtype))
    return _labelled(data, source, "run", dims=("delay", "scan", "y", "x"), coords=coords)


def _is_zarr(path):
    return any((path / name).exists() for name in ("zarr.json", ".zarray", ".zgroup"))


def _from_zarr(path, nframes_chunk):
    import zarr

    node = zarr.open(path, mode="r")
    coords = None
    if isinstance(node, zarr.Group):
        if "uedflow_reduced" in node.attrs:
            raise ValueError(f"'{path}' is a reduced uedflow store, not a stack of frames: "
                             "open it with uedflow.open_reduced")
        info = node.attrs.get("uedflow")
        if info is not None and not info.get("complete", False):
            raise IncompleteStoreError(
                f"The zarr store '{path}' was not completed (an interrupted write?); "
                "write it again")
        names = [name for name, _ in node.arrays()]
        if not names:
            raise ValueError(f"The zarr group '{path}' holds no array")
        name = VARIABLE if VARIABLE in names else names[0]
        array = node[name]
        ds = xr.open_zarr(path, chunks=None, consolidated=False)
        coords = {k: v.variable.load() for k, v in ds[name].coords.items()}
        run_attrs = (info or {}).get("run", {})
    else:
        array = node
        run_attrs = {}
    dims = getattr(array.metadata, "dimension_names", None)
    if not dims or not all(dims):
        dims = array.attrs.get("_ARRAY_DIMENSIONS") or _frame_dims(array.ndim)
    data = da.from_zarr(array, chunks=_leading_chunks(array.shape, nframes_chunk,
                                                      array.dtype.itemsize))
    stack = _labelled(data, str(path), "zarr", dims=tuple(dims), coords=coords)
    stack.attrs.update(run_attrs)
    return stack


def _natural_sorted(paths):
    import tifffile

    return [Path(p) for p in tifffile.natural_sorted([os.fspath(p) for p in paths])]


@functools.cache
def _frame_suffixes():
    """Suffixes of single-frame image files (a MIB file holds a stack of its own)."""
    return frozenset(readers.supported_formats()) - MIB_SUFFIXES


def _is_image_file(path):
    return path.suffix.lower() in _frame_suffixes() and path.is_file()


def _nbytes(shape, dtype):
    return int(np.prod(shape)) * np.dtype(dtype).itemsize


class _LazyArray:
    """Base of the array-likes that dask reads from: pickles as paths, reads on indexing."""

    ndim = property(lambda self: len(self.shape))

    def __dask_tokenize__(self):
        return (type(self).__name__, self.token)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        nlead = self.ndim - 2
        key = key + (slice(None),) * (self.ndim - len(key))
        return self.read(key[:nlead], key[nlead:])


class FrameFiles(_LazyArray):
    """A grid of image files, one frame each, seen as one array.

    Opening reads the header of every TIFF file: it checks that all frames have the shape and
    dtype of the first and that no file is shorter than its header says.

    Parameters
    ----------
    paths : ndarray of str
        File names, in the layout of the leading dims of the stack. An empty string is a
        frame without a file: it reads as zeros.
    skip_bad : bool, optional
        Treat a TIFF file whose header shows it unreadable or truncated as a frame without a
        file (listed in ``bad``) instead of raising :class:`~uedflow.errors.CorruptFileError`.

    Attributes
    ----------
    paths : ndarray of str
        The files read, ``""`` where there is none (missing, or bad and skipped).
    bad : list of (str, str)
        ``(path, reason)`` of every skipped file, in file order.
    """

    def __init__(self, paths, *, skip_bad=False):
        self.paths = paths.copy()
        self.bad = []
        flat = self.paths.reshape(-1)
        present = np.flatnonzero(flat != "")
        if not present.size:
            raise ValueError("A stack needs at least one frame file")
        first = check_file(flat[present[0]])
        self.format = "tiff" if first.suffix.lower() in TIFF_SUFFIXES else "image"
        if self.format == "tiff":
            # headers are read concurrently (network file systems), checked in file order
            with ThreadPoolExecutor(HEADER_THREADS) as pool:
                headers = pool.map(_tiff_header_or_error, flat[present])
                shape = None
                for i, header in zip(present, headers, strict=True):
                    if isinstance(header, CorruptFileError) and skip_bad:
                        self.bad.append((header.path, header.reason))
                        flat[i] = ""
                    elif isinstance(header, Exception):
                        raise header
                    elif shape is None:
                        first, (shape, dtype) = flat[i], header
                    else:
                        _check_frame(flat[i], *header, shape, dtype, first)
            if shape is None:
                raise ValueError(f"None of the {present.size} frame files is readable; the "
                                 f"first, {self.bad[0][0]}: {self.bad[0][1]}")
        else:
            image = readers.diffread(first)
            shape, dtype = image.shape, image.dtype
            for path in flat[present[1:]]:
                check_file(path)
        if len(shape) != 2:
            raise FrameMismatchError(
                f"'{first}' holds an image of shape {shape}; one 2D frame per file is needed")
        self.first = first
        self.frame_shape, self.dtype = shape, np.dtype(dtype)
        self.shape = paths.shape + shape
        self.token = (self.paths.tolist(), shape, str(self.dtype))

    def read(self, lead_key, frame_key):
        paths = self.paths[lead_key]
        out = np.empty(np.shape(paths) + self.frame_shape, self.dtype)
        for index, path in np.ndenumerate(paths):
            if path:
                self._read_frame(path, out[index])
            else:
                out[index] = 0
        return out[(Ellipsis, *frame_key)]

    def _read_frame(self, path, out):
        if self.format == "tiff":
            return read_tiff_frame(path, out, self.first)
        image = readers.diffread(path)
        _check_frame(path, image.shape, image.dtype, self.frame_shape, self.dtype, self.first)
        out[...] = image


def _check_frame(path, shape, dtype, expected_shape, expected_dtype, first):
    if tuple(shape) != tuple(expected_shape) or np.dtype(dtype) != np.dtype(expected_dtype):
        raise FrameMismatchError(
            f"'{path}' holds a frame of shape {tuple(shape)} and dtype {np.dtype(dtype)}, "
            f"but '{first}' (the first frame) has shape {tuple(expected_shape)} and dtype "
            f"{np.dtype(expected_dtype)}")


def _tiff_header(path):
    """``(shape, dtype)`` of the first series of a TIFF file, reading its header only."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            page = series.keyframe
            end = max((o + n for o, n in zip(page.dataoffsets, page.databytecounts,
                                             strict=True)), default=0)
            if end > tif.filehandle.size:
                raise CorruptFileError(path, f"truncated: image data ends at byte {end}, "
                                       f"the file has {tif.filehandle.size} bytes")
            return series.shape, series.dtype
    except CorruptFileError:
        raise
    except Exception as exc:
        raise CorruptFileError(path, f"cannot be read as TIFF ({exc})") from exc


def _tiff_header_or_error(path):
    """:func:`_tiff_header`, returning the exception instead of raising it."""
    try:
        return _tiff_header(check_file(path))
    except Exception as exc:  # raised by the caller, in file order
        return exc


def read_tiff_frame(path, out, first):
    """Read a one-frame TIFF file into ``out``, checking shape and dtype first."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            _check_frame(path, series.shape, series.dtype, out.shape, out.dtype, first)
            series.asarray(out=out)
    except (FrameMismatchError, FileNotFoundError):
        raise
    except Exception as exc:
        raise CorruptFileError(path, f"cannot be read as TIFF ({exc})") from exc


class TiffPages(_LazyArray):
    """The first series of a (multi-page) TIFF file as an array, read page by page."""

    def __init__(self, path):
        self.path = check_file(path)
        shape, self.dtype = _tiff_header(self.path)
        self.shape = tuple(shape) if len(shape) > 2 else (1, *shape)
        self.token = (os.fspath(self.path), os.path.getmtime(self.path))

    def read(self, lead_key, frame_key):
        import tifffile

        pages = np.arange(int(np.prod(self.shape[:-2]))).reshape(self.shape[:-2])[lead_key]
        try:
            data = tifffile.imread(self.path, key=pages.ravel().tolist())
        except Exception as exc:
            raise CorruptFileError(self.path, f"cannot be read as TIFF ({exc})") from exc
        return data.reshape(pages.shape + self.shape[-2:])[(Ellipsis, *frame_key)]


class NpyFile(_LazyArray):
    """A ``.npy`` file, memory-mapped anew by each read (so it pickles as its path)."""

    def __init__(self, path):
        self.path = check_file(path)
        array = self._open()
        self.shape, self.dtype = array.shape, array.dtype
        if array.ndim < 2:
            raise CorruptFileError(self.path, f"holds a {array.ndim}D array, not frames")
        self.token = (os.fspath(self.path), os.path.getmtime(self.path))

    def _open(self):
        try:
            return np.load(self.path, mmap_mode="r")
        except (ValueError, OSError, EOFError) as exc:
            raise CorruptFileError(self.path, f"not a readable .npy file ({exc})") from exc

    def read(self, lead_key, frame_key):
        return np.array(self._open()[(*lead_key, *frame_key)])
