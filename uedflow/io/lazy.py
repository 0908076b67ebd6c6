"""Open raw data lazily as labelled, chunked stacks: :func:`open_stack`.

Opening reads headers only. Pixel data is read when (and only where) the stack is computed,
one chunk of a few whole frames per dask task. Every task graph holds absolute file names and
offsets, never open file handles or memory maps, so stacks can be computed on distributed
workers (whatever their working directory).
"""

import functools
import glob
import itertools
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask.array as da
import numpy as np
import xarray as xr

from ..errors import (
    CorruptFileError,
    DamagedStoreError,
    FrameMismatchError,
    IncompleteStoreError,
    UedflowError,
)
from . import plugins, readers
from .readers import (
    DM_SUFFIXES,
    HDF5_SUFFIXES,
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
RUN_ATTRS = ("pattern", "darks", "flats", "pump_off", "missing", "bad_files", "mask_file")


def frames_per_chunk(frame_nbytes, nframes, target=CHUNK_BYTES):
    """How many whole frames make a chunk of about ``target`` bytes (at least 1)."""
    return int(max(1, min(nframes, target // max(frame_nbytes, 1))))


def open_stack(source, *, chunks=None, dataset=None):
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
          multi-page TIFF, a ``.npy`` file, an HDF5 or NeXus file (``.h5``, ``.nxs``, ...;
          an EIGER master file reads its data files through their external links), or a
          file of a reader plug-in (:mod:`uedflow.io.plugins`) that opens whole files;
        * a zarr store (written by :func:`uedflow.to_zarr`, or any zarr array);
        * an in-memory or dask array (``(y, x)``, ``(frame, y, x)`` or more leading dims).
    chunks : int or dict, optional
        An int is the number of whole frames per chunk (frames are never split), filled
        along the last leading dim first. A dict maps dim names to chunk sizes,
        as :meth:`xarray.DataArray.chunk` takes them. The default makes chunks of whole
        frames of about 64 MiB.
    dataset : str, optional
        HDF5 only: the dataset of frames, or a group whose datasets are concatenated along
        their first axis (``"/entry/data"`` of an EIGER master file). Default: the NeXus
        default plot, else ``/entry/data/data`` or ``/entry/data``, else the file's only
        dataset of 3 or more dims.

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
    if dataset is not None and not (isinstance(source, str | os.PathLike)
                                    and Path(source).suffix.lower() in HDF5_SUFFIXES):
        raise ValueError(f"open_stack: dataset= is for an HDF5 file; {source!r} is not one")
    if isinstance(source, xr.DataArray):
        data = da.asarray(source.data)
        stack = source.copy(data=data.rechunk(_leading_chunks(data.shape, nframes_chunk,
                                                              data.dtype.itemsize)))
    elif isinstance(source, np.ndarray | da.Array):
        stack = _from_array(source, nframes_chunk)
    elif isinstance(source, str | os.PathLike):
        stack = _from_path(source, nframes_chunk, dataset)
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


def _from_path(source, nframes_chunk, dataset=None):
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
        if is_zarr(path):
            return _from_zarr(path, nframes_chunk)
        from .runs import is_run, open_run  # runs builds on this module

        if is_run(path):  # a run without a manifest: its layout gives delays and scans
            return open_run(path, chunks=nframes_chunk)
        files = [p for p in _natural_sorted(path.iterdir()) if _is_image_file(p)]
        if not files:
            raise FileNotFoundError(f"No image files in the directory '{path}'")
        return _from_files(files, nframes_chunk, source=str(path))
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        from . import hdf5

        frames = hdf5.open_frames(path, dataset)
        stack = _from_lazy_file(frames, nframes_chunk, "hdf5")
        stack.attrs["datasets"] = frames.names
        return stack
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
    plugin = plugins.reader_for(path)
    if plugin is not None and plugin.open_frames is not None:
        return _from_plugin(plugin, path, nframes_chunk)
    if _is_image_file(path):
        return _from_files([path], nframes_chunk, source=str(path))
    raise unsupported_format_error(path)


def _from_plugin(plugin, path, nframes_chunk):
    """The frames of ``path`` from the lazy opener of a plug-in :class:`~.plugins.Reader`."""
    try:
        frames = plugin.open_frames(os.fspath(path))
        shape, dtype = tuple(frames.shape), np.dtype(frames.dtype)
    except (FileNotFoundError, CorruptFileError):
        raise
    except Exception as exc:  # a plug-in may raise anything
        raise CorruptFileError(path, f"the reader plug-in '{plugin.name}' cannot open it "
                               f"({exc!r})") from exc
    if len(shape) < 2:
        raise CorruptFileError(path, f"the reader plug-in '{plugin.name}' opened it as "
                               f"shape {shape}, not frames (..., y, x)")
    if not isinstance(frames, da.Array):
        frames = da.from_array(frames, chunks=_leading_chunks(shape, nframes_chunk,
                                                              dtype.itemsize),
                               asarray=False, fancy=False, meta=np.empty((0,) * len(shape),
                                                                         dtype))
    return _from_array(frames, nframes_chunk, source=str(path), fmt=plugin.name)


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
        grid = np.array([[_inside(path, f, manifest_path) for f in row]
                         for row in manifest["files"]], dtype=object)
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


def _inside(root, name, manifest_path):
    """Absolute path of the file ``name`` of a manifest, which must lie inside ``root``."""
    if not isinstance(name, str) or not name:
        raise CorruptFileError(manifest_path, f"lists {name!r} as a frame file; expected a "
                               "file name relative to the run directory")
    path = os.path.normpath(os.path.join(root, name))
    if os.path.commonpath([path, os.fspath(root)]) != os.fspath(root):
        raise CorruptFileError(manifest_path, f"lists the frame file {name!r}, which is outside "
                               f"the run directory '{root}'; a manifest names files inside it")
    return path


def run_stack(frames, nframes_chunk, source, coords):
    """The lazy ``("delay", "scan", "y", "x")`` stack of a :class:`FrameFiles` grid."""
    chunks = _leading_chunks(frames.shape, nframes_chunk, frames.dtype.itemsize)
    data = da.from_array(frames, chunks=chunks, asarray=False, fancy=False,
                         meta=np.empty((0,) * 4, frames.dtype))
    return _labelled(data, source, "run", dims=("delay", "scan", "y", "x"), coords=coords)


def is_zarr(path):
    """Whether the directory ``path`` is a zarr store (v3 or v2: it has zarr metadata)."""
    path = Path(path)
    return any((path / name).exists() for name in ("zarr.json", ".zarray", ".zgroup"))


#: Metadata files of zarr stores (v3, v2).
ZARR_METADATA = ("zarr.json", ".zarray", ".zgroup", ".zattrs")


def _check_zarr_metadata(path):
    """Raise :class:`CorruptFileError` naming the first metadata file of the store (its root
    and its arrays) that is not a JSON object."""
    for folder in [path, *sorted(p for p in path.iterdir() if p.is_dir())]:
        for name in ZARR_METADATA:
            meta = folder / name
            if not meta.is_file():
                continue
            try:
                if not isinstance(json.loads(meta.read_bytes()), dict):
                    raise ValueError("not a JSON object")
            except (ValueError, UnicodeDecodeError) as exc:
                raise CorruptFileError(meta, f"not valid zarr metadata ({exc})") from exc


def _from_zarr(path, nframes_chunk):
    import zarr

    _check_zarr_metadata(path)
    try:
        node = zarr.open(path, mode="r")
    except Exception as exc:  # zarr raises many types on bad metadata
        raise CorruptFileError(path, f"cannot be opened as a zarr store ({exc})") from exc
    coords, info, name, records = {}, None, "", None
    if isinstance(node, zarr.Group):
        if "uedflow_reduced" in node.attrs:
            raise ValueError(f"'{path}' is a reduced uedflow store, not a stack of frames: "
                             "open it with uedflow.open_reduced")
        info = node.attrs.get("uedflow")
        if info is not None and not info.get("complete", False):
            raise IncompleteStoreError(
                f"The zarr store '{path}' was not completed (an interrupted write?); "
                "write it again")
        if isinstance(info, dict) and info.get("format", 1) >= 2:  # chunks with checksums
            records = _verified_store(os.fspath(path), _stamp(path)).records
        try:
            names = [name for name, _ in node.arrays()]
            if not names:
                raise ValueError(f"The zarr group '{path}' holds no array")
            name = VARIABLE if VARIABLE in names else names[0]
            array = node[name]
            source = path if records is None else _verified_store(os.fspath(path),
                                                                  _stamp(path))
            ds = xr.open_zarr(source, chunks=None, consolidated=False)
            coords = {k: v.variable.load() for k, v in ds[name].coords.items()}
        except UedflowError:
            raise
        except Exception as exc:  # xarray and zarr raise many types on bad metadata
            raise CorruptFileError(path, f"cannot be read as a zarr store of frames ({exc})") \
                from exc
    else:
        array = node
    dims = getattr(array.metadata, "dimension_names", None)
    if not dims or not all(dims):
        dims = array.attrs.get("_ARRAY_DIMENSIONS") or _frame_dims(array.ndim)
    dims = tuple(dims)
    frames = ZarrFrames(path, name, array, [(d, coords[d].values if d in coords else None)
                                            for d in dims[:-2]], verified=records is not None)
    run_attrs = dict((info or {}).get("run", {}))
    readable = np.ones(frames.shape[:-2], bool)
    if info is not None:
        coords["present"], frames.lost = _present_frames(frames, coords.get("present"), dims,
                                                         records)
        run_attrs["bad_files"] = [*run_attrs.get("bad_files", []),
                                  *([os.fspath(frames.chunk_path(i)), why]
                                    for i, why in frames.lost.items())]
        readable = coords["present"][1]
    if readable.any():  # decode one frame: does the metadata (dtype, shape) fit the data?
        frames.read(tuple(slice(i, i + 1) for i in np.argwhere(readable)[0]),
                    (slice(None), slice(None)))
    data = da.from_array(frames, chunks=_leading_chunks(frames.shape, nframes_chunk,
                                                        frames.dtype.itemsize),
                         asarray=False, fancy=False, meta=np.empty((0,) * frames.ndim,
                                                                   frames.dtype))
    stack = _labelled(data, str(path), "zarr", dims=dims, coords=coords or None)
    stack.attrs.update(run_attrs)
    return stack


def _stamp(path):
    """What changes when the checksums of a store do (their file's modification time)."""
    try:
        return os.stat(Path(path, ".uedflow", "checksums.json")).st_mtime_ns
    except OSError:
        return None


@functools.lru_cache(maxsize=16)
def _verified_store(path, stamp):
    """A read-only store that checks every chunk it reads against the checksums recorded when
    it was written (one per process and store, reused by every read)."""
    from .safety import VerifiedStore, chunk_records

    hint = f"ingest the run again: uedflow ingest RAW -o {path} --overwrite"
    return VerifiedStore(path, chunk_records(path), hint)


#: Why a frame of a uedflow zarr store without a chunk file is not present, in a store that
#: records its chunks (every chunk written), and in an older store (all-zero chunks left out).
LOST_CHUNK = "its chunk file is missing from the zarr store (deleted?)"
LOST_CHUNK_UNRECORDED = ("no chunk file in the zarr store (deleted, or never written: zarr "
                         "does not store the chunk of an all-zero frame)")


def _present_frames(frames, present, dims, records):
    """``(present, lost)`` of a uedflow store: the frames present in its run (all, if it has
    no ``present`` coordinate) whose chunk file exists (with its recorded size, if
    ``records``), and ``{index: reason}`` of the present frames whose chunk file does not.
    """
    lead = dims[:-2]
    known = (np.ones(frames.shape[:-2], bool) if present is None
             else np.asarray(present.values, bool))
    if not frames.one_frame_per_chunk():
        return (lead, known), {}
    lost = {}
    for index in map(tuple, np.argwhere(known)):
        path = frames.chunk_path(index)
        try:
            size = path.stat().st_size
        except OSError:
            lost[index] = LOST_CHUNK if records is not None else LOST_CHUNK_UNRECORDED
            continue
        key = path.relative_to(frames.store).as_posix()
        sizes = {n for n, _ in (records or {}).get(key, ())}
        if sizes and size not in sizes:
            written = " or ".join(map(str, sorted(sizes)))
            lost[index] = (f"its chunk file has {size} bytes, {written} were written "
                           "(truncated or replaced?)")
    for index in lost:
        known[index] = False
    return (lead, known), lost


def _natural_sorted(paths):
    import tifffile

    return [Path(p) for p in tifffile.natural_sorted([os.fspath(p) for p in paths])]


def _frame_suffixes():
    """Suffixes of single-frame image files (a MIB or HDF5 file holds a stack of its own)."""
    return _single_frame_suffixes(plugins.suffixes())


@functools.cache
def _single_frame_suffixes(plugin_suffixes):
    return frozenset(readers.supported_formats()) - MIB_SUFFIXES - HDF5_SUFFIXES


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
        Treat a file that cannot be read or decoded as a frame without a file (listed in
        ``bad``) instead of raising :class:`~uedflow.errors.CorruptFileError`. To find them
        all at open, every frame whose data is compressed (a compressed TIFF, or any other
        format but an uncompressed TIFF) is decoded once when the stack is opened: opening
        then costs a read of those frames. Uncompressed TIFF frames are only checked to be
        as long as their header says.

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
        check = functools.partial(_frame_header_or_error, tiff=self.format == "tiff")
        # other formats have no header to read: the first file is decoded, the others too
        # with skip_bad
        decode = [skip_bad or (self.format != "tiff" and k == 0) for k in range(present.size)]
        # headers are read concurrently (network file systems), checked in file order
        with ThreadPoolExecutor(HEADER_THREADS) as pool:
            shape = None
            for i, header in zip(present, pool.map(check, flat[present], decode),
                                 strict=True):
                if isinstance(header, CorruptFileError) and skip_bad:
                    self.bad.append((header.path, header.reason))
                    flat[i] = ""
                elif isinstance(header, Exception):
                    raise header
                elif header is None:
                    continue  # not decoded: checked when read
                elif shape is None:
                    first, (shape, dtype) = flat[i], header
                else:
                    _check_frame(flat[i], *header, shape, dtype, first)
        if shape is None:
            raise ValueError(f"None of the {present.size} frame files is readable; the "
                             f"first, {self.bad[0][0]}: {self.bad[0][1]}")
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


def _tiff_header(path, decode=False):
    """``(shape, dtype)`` of the first series of a TIFF file, reading its header only (and its
    pixels too if ``decode`` and they are compressed)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            readers.check_tiff(path, tif)
            series = tif.series[0]
            if decode and series.keyframe.compression != 1:
                series.asarray()
            return series.shape, series.dtype
    except (CorruptFileError, FileNotFoundError):
        raise
    except OSError as exc:
        raise CorruptFileError(path, f"cannot be read ({exc.strerror or exc})") from exc
    except Exception as exc:
        raise CorruptFileError(path, f"cannot be read as TIFF ({exc})") from exc


def _frame_header_or_error(path, decode, *, tiff):
    """``(shape, dtype)`` of a frame file, or the exception that reading it raised (returned,
    to be raised by the caller in file order). A TIFF header is read (and its compressed
    pixels decoded if ``decode``); a file of another format is decoded if ``decode``,
    otherwise only checked to exist (None)."""
    try:
        check_file(path)
        if tiff:
            return _tiff_header(path, decode)
        if not decode:
            return None
        image = readers.diffread(path)
        return image.shape, image.dtype
    except Exception as exc:  # raised by the caller, in file order
        return exc


def read_tiff_frame(path, out, first):
    """Read a one-frame TIFF file into ``out``, checking shape and dtype first."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            readers.check_tiff(path, tif)
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


class ZarrFrames(_LazyArray):
    """A zarr array of frames, read where it is indexed.

    Reading a chunk that cannot be decoded, or (``verified``) whose bytes differ from those
    recorded when uedflow wrote it, raises :class:`~uedflow.errors.CorruptFileError` naming the
    store, the chunk file and its frame, instead of the codec's own message.

    Parameters
    ----------
    store : path-like
        The zarr store (a group, or an array).
    name : str
        Path of the array in the group (``""`` for an array store).
    array : zarr.Array
        The array, opened.
    labels : list of (str, ndarray or None)
        Name and coordinate values of each leading dim (None where it has none), to name
        frames.
    verified : bool, optional
        Check every chunk read against the size and CRC-32 recorded in the store (a store that
        :func:`uedflow.to_zarr` wrote; see :mod:`uedflow.io.safety`).

    Attributes
    ----------
    lost : dict
        Leading index -> reason of the frames whose chunk is missing or damaged, found at
        open: they read as zeros (not present), without reading their chunk.
    """

    def __init__(self, store, name, array, labels, *, verified=False):
        self.store, self.name, self.verified = os.fspath(store), name, verified
        self.shape, self.dtype = tuple(array.shape), np.dtype(array.dtype)
        self.chunks = tuple(array.chunks)
        self.metadata = array.metadata
        self.labels = labels
        self.lost = {}
        meta = Path(self.store, name, "zarr.json")
        self.token = (self.store, name, os.path.getmtime(meta) if meta.exists() else None,
                      _stamp(self.store) if verified else None)

    def __dask_tokenize__(self):
        return (type(self).__name__, self.token, sorted(self.lost))

    def _open(self):
        import zarr

        store = (_verified_store(self.store, _stamp(self.store)) if self.verified
                 else self.store)
        return zarr.open_array(store, path=self.name, mode="r")

    def chunk_path(self, index):
        """Path of the chunk file of the chunk at grid position ``index`` (leading dims
        only: the rest is 0)."""
        index = tuple(index) + (0,) * (len(self.shape) - len(index))
        encode = getattr(self.metadata, "encode_chunk_key", None)
        key = encode(index) if encode else ".".join(map(str, index))
        return Path(self.store, self.name, key)

    def one_frame_per_chunk(self):
        """Whether every chunk holds one whole frame (as in the stores uedflow writes)."""
        nlead = len(self.shape) - 2
        return self.chunks == (1,) * nlead + self.shape[-2:]

    def read(self, lead_key, frame_key):
        array = self._open()
        key = (*lead_key, *frame_key)
        try:
            if not self.lost:
                return array[key]
            # frame by frame, zeros for the lost ones
            starts = [k.indices(n)[0] for k, n in zip(lead_key, self.shape, strict=False)]
            lead = np.empty([len(range(*k.indices(n))) for k, n in
                             zip(lead_key, self.shape, strict=False)])
            out = np.zeros(lead.shape + self.shape[-2:], self.dtype)[(Ellipsis, *frame_key)]
            for index in np.ndindex(lead.shape):
                frame = tuple(s + i for s, i in zip(starts, index, strict=True))
                if frame not in self.lost:
                    out[index] = array[(*frame, *frame_key)]
            return out
        except Exception as exc:  # codecs raise RuntimeError, ValueError...
            raise self._chunk_error(array, key, exc) from exc

    def _chunk_error(self, array, key, exc):
        """The error naming the first chunk of ``array[key]`` that cannot be read."""
        ranges = []
        for k, n, c in zip(key, self.shape, self.chunks, strict=True):
            start, stop, _ = k.indices(n)
            ranges.append(range(start // c, -(-stop // c)))
        for index in itertools.product(*ranges):
            try:
                array.get_block_selection(index)
            except Exception as chunk_exc:
                reason = (chunk_exc.problems[0].problem
                          if isinstance(chunk_exc, DamagedStoreError) else str(chunk_exc))
                return CorruptFileError(
                    self.chunk_path(index),
                    f"chunk {index} ({self._frame(index)}) of the zarr store '{self.store}' "
                    f"cannot be read: {reason}")
        return CorruptFileError(self.store, f"cannot read {key} ({exc})")

    def _frame(self, index):
        nlead = len(self.shape) - 2
        parts = []
        for i, ((dim, values), c) in enumerate(zip(self.labels, self.chunks[:nlead],
                                                    strict=True)):
            start = index[i] * c
            parts.append(f"{dim}={start if values is None else values[start]}")
        return "frame " + ", ".join(parts)
