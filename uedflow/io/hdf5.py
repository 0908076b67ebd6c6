"""HDF5 and NeXus detector stacks: opened lazily, read one chunk of frames per dask task.

A stack is a dataset of frames ``(..., y, x)``, or a group of such datasets concatenated
along their first axis (the data of an EIGER master file, ``/entry/data/data_000001``,
``data_000002``, ..., each an external link to a data file). Compressed datasets are read with
the filters of `hdf5plugin <https://github.com/silx-kit/hdf5plugin>`_ (Bitshuffle, LZ4,
Blosc, Zstd, ...) when it is installed. h5py is imported when an HDF5 file is first opened,
not with uedflow.

A dask task holds the file's path and the datasets' names, never an open file: each task
opens the file itself, so stacks compute on threads, worker processes and clusters alike.
"""

import os
import re

import dask.array as da
import numpy as np

from ..errors import CorruptFileError, FrameMismatchError, UedflowError
from .lazy import _labelled, _leading_chunks
from .readers import HDF5_SUFFIXES, check_file

#: Dataset (or group) that holds the frames when a file says nothing else: NeXus and EIGER.
DEFAULT_DATA = ("entry/data/data", "entry/data")

#: Names of the delays beside the frames, when the caller names none (attributes of the
#: frame dataset or of its group, then datasets in its group and at the root).
DELAY_NAMES = ("delays", "delay")

#: How to read the compression filters that detectors use, in error messages.
FILTER_HINT = ("install hdf5plugin (pip install hdf5plugin, or 'uedflow[hdf5]'), on every "
               "worker that reads the file")

#: How to name the delays of a run, in error messages.
DELAYS_HINT = ("--delays on the command line, delays = in the [run] section of the config, or "
               "delays= in Python")

#: How to name the frames of a run, in error messages.
PATTERN_HINT = ("--pattern on the command line, pattern = in the [run] section of the config, "
                "or pattern= in Python; a pattern with {scan} names one dataset per scan")

#: Delay units (the ``units`` attribute of a delay dataset): factor to ps.
DELAY_UNITS = {"fs": 1e-3, "ps": 1.0, "ns": 1e3, "s": 1e12}


class MissingDatasetError(UedflowError, KeyError):
    """An HDF5 file has no dataset, group or attribute of the name asked for (the message
    names the file and lists what it holds)."""

    def __str__(self):
        return str(self.args[0])


def h5py():
    """The h5py module, with the filters of hdf5plugin registered when it is installed."""
    try:
        import h5py as module
    except ImportError:
        raise ImportError("Reading HDF5 files needs h5py: pip install 'uedflow[hdf5]'") \
            from None
    try:
        import hdf5plugin  # noqa: F401  (registers Bitshuffle, LZ4, Blosc, ... with HDF5)
    except ImportError:
        pass
    return module


def is_hdf5(path):
    """Whether ``path`` names an HDF5 file (by its suffix)."""
    return os.path.splitext(os.fspath(path))[1].lower() in HDF5_SUFFIXES


def open_file(path):
    """Open an HDF5 file read-only, with an error naming it if it is not one."""
    path = check_file(path)
    module = h5py()
    try:
        return module.File(path, "r")
    except OSError as exc:
        if "lock" in str(exc).lower():  # file systems without locks (some NFS, Lustre)
            raise OSError(f"{path}: HDF5 cannot lock the file ({exc}); on a file system "
                          "without file locks set HDF5_USE_FILE_LOCKING=FALSE in the "
                          "environment (of the workers too)") from exc
        raise CorruptFileError(path, f"cannot be opened as HDF5 ({exc})") from exc


def _node(file, name):
    """The object ``name`` of an open file; errors name the file, the object and, for a
    broken external link, the file it links to."""
    name = "/" + name.strip("/")
    parent, _, base = name.rpartition("/")
    try:
        return file[name]
    except KeyError as exc:
        link = None
        try:
            link = file[parent or "/"].get(base, getlink=True)
        except (KeyError, ValueError):
            pass
        if isinstance(link, h5py().ExternalLink):
            target = os.path.join(os.path.dirname(file.filename), link.filename)
            raise CorruptFileError(
                file.filename, f"'{name}' is an external link to '{link.path}' in "
                f"'{link.filename}', which cannot be opened (looked for "
                f"'{os.path.normpath(target)}': missing, moved or unreadable?)") from exc
        if isinstance(link, h5py().SoftLink):
            raise CorruptFileError(file.filename, f"'{name}' is a link to '{link.path}', "
                                   "which does not exist") from exc
        raise MissingDatasetError(f"{file.filename}: no dataset or group '{name}'; it holds "
                       f"{_describe(file)}") from exc


def _describe(file, n=8):
    """The datasets of ``file`` with their shapes, for messages."""
    found = []

    def add(name, obj):
        if isinstance(obj, h5py().Dataset) and len(found) <= n:
            found.append(f"'/{name}' {obj.shape}")

    file.visititems(add)
    if not found:
        return "no dataset"
    more = ", ..." if len(found) > n else ""
    return "the datasets " + ", ".join(found[:n]) + more


def default_data(file, hint="dataset= in Python"):
    """Name of the frames of an open file: the NeXus default plot (``default`` and
    ``signal`` attributes), else ``/entry/data/data`` or the ``/entry/data`` group, else the
    file's only dataset of 3 or more dims. ``hint`` says how to name it, for the error if
    there is none."""
    name, group = "", file
    while "default" in group.attrs and isinstance(group, h5py().Group):
        name = f"{name}/{_text(group.attrs['default'])}"
        group = _node(file, name)
    if isinstance(group, h5py().Group) and "signal" in group.attrs:
        return f"{name}/{_text(group.attrs['signal'])}"
    if name:
        return name
    for candidate in DEFAULT_DATA:
        if candidate in file:
            return "/" + candidate
    stacks = []
    file.visititems(lambda n, obj: stacks.append("/" + n)
                    if isinstance(obj, h5py().Dataset) and obj.ndim >= 3 else None)
    if len(stacks) == 1:
        return stacks[0]
    raise ValueError(f"{file.filename}: which dataset holds the frames? It has "
                     f"{len(stacks)} datasets of 3 or more dims, and no NeXus 'default' "
                     f"attribute, '/entry/data/data' or '/entry/data' ({_describe(file)}); "
                     f"name it: {hint}")


def _text(value):
    return value.decode() if isinstance(value, bytes) else str(value)


def frame_parts(file, name):
    """``(names, shapes, dtype)`` of the dataset ``name``, or of the datasets of the group
    ``name`` (in natural order: ``data_000001``, ``data_000002``, ...), checked to be frames
    of one shape and dtype."""
    node = _node(file, name)
    name = "/" + name.strip("/")  # node.name is its name in the file it lies in
    if isinstance(node, h5py().Group):
        names = [f"{name.rstrip('/')}/{k}" for k in _natural(node.keys())]
        nodes = [_node(file, k) for k in names]
        names = [k for k, obj in zip(names, nodes, strict=True)
                 if isinstance(obj, h5py().Dataset) and obj.ndim >= 3]
        if not names:
            raise ValueError(f"{file.filename}: the group '{name}' holds no dataset of "
                             "frames (3 or more dims); name the dataset with dataset=...")
    else:
        names = [name]
    shapes, dtype = [], None
    for part in names:
        dataset = _node(file, part)
        if dataset.ndim < 2 or dataset.dtype.kind not in "biuf":
            raise ValueError(f"{file.filename}: dataset '{part}' holds {dataset.ndim}-D "
                             f"{dataset.dtype} data, not frames of numbers (y, x)")
        if dtype is None:
            first, dtype = part, dataset.dtype
        elif dataset.shape[1:] != shapes[0][1:] or dataset.dtype != dtype:
            raise FrameMismatchError(
                f"{file.filename}: dataset '{part}' holds {dataset.shape[1:]} frames of "
                f"{dataset.dtype}, but '{first}' {shapes[0][1:]} frames of {dtype}")
        missing = missing_filters(dataset)
        if missing:
            raise ValueError(f"{file.filename}: dataset '{part}' is compressed with "
                             f"{', '.join(missing)}, which this HDF5 library cannot decode: "
                             f"{FILTER_HINT}")
        shapes.append(dataset.shape)
    return names, shapes, np.dtype(dtype)


def missing_filters(dataset):
    """Names of the filters of ``dataset`` that the HDF5 library cannot apply."""
    plist = dataset.id.get_create_plist()
    missing = []
    for i in range(plist.get_nfilters()):
        code, _, _, name = plist.get_filter(i)
        if not h5py().h5z.filter_avail(code):
            missing.append(f"filter {code} ({_text(name).split(';')[0] or 'unnamed'})")
    return missing


def _natural(names):
    return sorted(names, key=lambda s: [int(t) if t.isdigit() else t
                                        for t in re.split(r"(\d+)", s)])


class H5Frames:
    """Frames of HDF5 datasets as one array, read where it is indexed.

    Pickles as the file's path and the datasets' names: every read opens the file.

    Parameters
    ----------
    path : path-like
        The HDF5 file (absolute, for workers elsewhere).
    names : list of str
        Datasets, each ``(n, ...)``.
    shapes : list of tuple
        Their shapes.
    dtype : numpy.dtype
    stack : bool, optional
        False: the datasets are concatenated along their first axis (one dataset: itself).
        True: they are stacked along a new second axis (``(delay, scan, y, x)`` from one
        ``(delay, y, x)`` dataset per scan); a shorter dataset reads as zeros past its end.
    """

    def __init__(self, path, names, shapes, dtype, *, stack=False):
        self.path, self.names, self.dtype, self.stack = os.fspath(path), list(names), dtype, stack
        self.lengths = [s[0] for s in shapes]
        if stack:
            self.shape = (max(self.lengths), len(names), *shapes[0][1:])
        else:
            self.shape = (sum(self.lengths), *shapes[0][1:])
        self.token = (self.path, os.path.getmtime(self.path), tuple(self.names), stack)

    ndim = property(lambda self: len(self.shape))

    def __dask_tokenize__(self):
        return (type(self).__name__, self.token)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        scalar = tuple(i for i, k in enumerate(key) if isinstance(k, int | np.integer))
        key = tuple(slice(k, k + 1) if i in scalar else k for i, k in enumerate(key))
        key = key + (slice(None),) * (self.ndim - len(key))
        with open_file(self.path) as file:
            data = self._read(file, key)
        return data.squeeze(scalar) if scalar else data

    def _read(self, file, key):
        first = range(*key[0].indices(self.shape[0]))
        if first.step != 1 and len(first):  # read the span, keep the frames asked for
            lo, hi = min(first), max(first) + 1
            return self._read(file, (slice(lo, hi), *key[1:]))[np.array(first) - lo]
        if self.stack:
            scans = range(*key[1].indices(self.shape[1]))
            out = np.zeros((len(first), len(scans), *self.shape[2:]), self.dtype)
            out = out[(slice(None), slice(None), *key[2:])].copy()
            for j, scan in enumerate(scans):  # past the end of a short scan: zeros
                stop = min(first.stop, self.lengths[scan])
                if stop > first.start:
                    out[: stop - first.start, j] = self._part(
                        file, scan, (slice(first.start, stop), *key[2:]))
            return out
        pieces, offset = [], 0
        for part, n in enumerate(self.lengths):
            lo, hi = max(first.start, offset), min(first.stop, offset + n)
            if lo < hi:
                pieces.append(self._part(file, part, (slice(lo - offset, hi - offset),
                                                      *key[1:])))
            offset += n
        if not pieces:
            return np.empty((0, *self.shape[1:]), self.dtype)[(slice(None), *key[1:])]
        return np.concatenate(pieces) if len(pieces) > 1 else pieces[0]

    def _part(self, file, part, key):
        name = self.names[part]
        dataset = _node(file, name)
        try:
            return dataset[key]
        except (OSError, ValueError) as exc:
            missing = missing_filters(dataset)
            hint = f" ({', '.join(missing)} missing: {FILTER_HINT})" if missing else ""
            raise CorruptFileError(self.path, f"dataset '{name}' cannot be read at "
                                   f"{_key_text(key)}: {exc}{hint}") from exc


def _key_text(key):
    return "[" + ", ".join(f"{k.start}:{k.stop}" if isinstance(k, slice) else str(k)
                           for k in key) + "]"


def open_frames(path, dataset=None):
    """The frames of an HDF5 file as a lazy :class:`H5Frames` (``(frame, ..., y, x)``).

    Parameters
    ----------
    path : path-like
        HDF5 or NeXus file, or a master file whose data are external links.
    dataset : str, optional
        Dataset of frames, or group whose datasets are concatenated (default:
        :func:`default_data`).

    Returns
    -------
    frames : H5Frames
    """
    path = os.path.abspath(check_file(path))
    with open_file(path) as file:
        name = default_data(file) if dataset is None else dataset
        names, shapes, dtype = frame_parts(file, name)
    return H5Frames(path, names, shapes, dtype)


def read_frame(path, dataset=None, frame=0):
    """One frame ``(y, x)`` of an HDF5 file: ``frame`` counts the frames of the stack that
    :func:`open_frames` opens (all leading dims flattened, in C order; negative from the
    end)."""
    frames = open_frames(path, dataset)
    lead = frames.shape[:-2]
    count = int(np.prod(lead))
    if not -count <= frame < count:
        raise ValueError(f"{path}: frame {frame} is out of range: the stack "
                         f"{', '.join(frames.names)} holds {count} frames")
    index = np.unravel_index(frame % count, lead)
    return frames[tuple(int(i) for i in index)]


def _delays(file, spec, data_name, path):
    """Delays (ps) and where they were found: ``spec`` names a dataset (``/entry/delays``),
    an attribute (``/entry/data@delays``, or ``@delays`` of the frame dataset), or is the
    delays themselves; None looks for :data:`DELAY_NAMES` beside the frames."""
    if spec is not None and not isinstance(spec, str | os.PathLike):
        if isinstance(spec, dict):
            raise ValueError(f"{path}: delays of an HDF5 run are a dataset or attribute "
                             "name, or a list of delays (ps); not a table of positions")
        return np.asarray(spec, dtype=float), "the delays given"
    if spec is None:
        tried = []
        for owner in _ancestors(data_name):
            for key in DELAY_NAMES:  # an attribute of the frames or a group above them
                tried.append(f"{owner}@{key}")
                if key in _node(file, owner).attrs:
                    return _delays(file, tried[-1], data_name, path)
            if owner == data_name:
                continue
            for key in DELAY_NAMES:  # a dataset in a group above them
                name = f"{owner.rstrip('/')}/{key}"
                tried.append(name)
                if name in file and isinstance(file[name], h5py().Dataset):
                    return _delays(file, name, data_name, path)
        raise ValueError(f"{path}: where are the delays? None of {', '.join(tried)} exists; "
                         f"name a dataset or attribute (e.g. '/entry/delays' or "
                         f"'/entry/data@delays'): {DELAYS_HINT}")
    spec = os.fspath(spec)
    owner, _, attr = spec.partition("@")
    if owner and owner not in file and os.path.isfile(spec):  # a delay table file
        from .runs import read_delay_table

        table = read_delay_table(spec)
        if sorted(table) != list(range(len(table))):
            raise ValueError(f"{spec}: the delays of an HDF5 run are one delay per line, in "
                             "the order of the frames; not a table of stage positions")
        return np.array([table[k] for k in range(len(table))]), spec
    node = _node(file, owner or data_name)
    if attr:
        if attr not in node.attrs:
            raise MissingDatasetError(f"{path}: '{node.name}' has no attribute '{attr}' (it has "
                           f"{sorted(node.attrs) or 'none'})")
        values, units = node.attrs[attr], "ps"
    else:
        if not isinstance(node, h5py().Dataset):
            raise ValueError(f"{path}: '{node.name}' is a group, not a dataset of delays")
        values, units = node[()], node.attrs.get("units", "ps")
    units = _text(units)
    if units not in DELAY_UNITS:
        raise ValueError(f"{path}: the delays '{spec}' are in '{units}'; expected one of "
                         f"{', '.join(DELAY_UNITS)}")
    values = np.atleast_1d(np.asarray(values, dtype=float)) * DELAY_UNITS[units]
    return values, spec


def _ancestors(name):
    """``name`` and the groups above it, up to the root: ``/a/b``, ``/a``, ``/``."""
    parts = name.strip("/").split("/")
    return ["/" + "/".join(parts[:k]) for k in range(len(parts), -1, -1)]


def _scan_datasets(file, pattern):
    """``{scan: name}`` of the datasets whose names match ``pattern`` (``{scan}`` a number)."""
    regex = re.compile(re.escape("/" + pattern.strip("/")).replace(r"\{scan\}", r"(\d+)")
                       + "$")
    names = []
    file.visit_links(lambda n: names.append("/" + n))
    found = {}
    for name in names:
        match = regex.match(name)
        if match:
            scan = int(match.group(1))
            if scan in found:
                raise ValueError(f"{file.filename}: '{found[scan]}' and '{name}' are both "
                                 f"scan {scan} of the pattern '{pattern}'")
            found[scan] = name
    if not found:
        raise MissingDatasetError(f"{file.filename}: no dataset matches the pattern "
                                  f"'{pattern}'; it holds {_describe(file)}")
    return dict(sorted(found.items()))


def open_run(path, pattern=None, *, delays=None, chunks=None, missing="raise"):
    """Open an HDF5 run lazily as a ``("delay", "scan", "y", "x")`` stack.

    Parameters
    ----------
    path : path-like
        HDF5 file.
    pattern : str or dict, optional
        The frames (a dict: its ``"frames"``, as :func:`uedflow.open_run` takes patterns by
        role; an HDF5 run has no others): one dataset ``(delay, scan, y, x)`` (or
        ``(delay, y, x)``: one scan), or datasets ``(delay, y, x)``, one per scan, named by a
        pattern with ``{scan}``: ``"/entry/scan_{scan}/data"``. Default: the file's frame
        dataset
        (:func:`default_data`).
    delays : str, sequence or path-like, optional
        The delays (ps): a dataset (``"/entry/delays"``, its ``units`` attribute, fs, ps or ns,
        converted), an attribute (``"/entry/data@delays"``; ``"@delays"`` is one of the frame
        dataset), a delay table file, or the delays themselves. Default: an attribute
        ``delays`` (or ``delay``) of the frames or their group, else a dataset of that name
        in their group or at the root.
    chunks : int or dict, optional
        As :func:`uedflow.open_stack` takes them.
    missing : {"raise", "exclude"}, optional
        A scan dataset with fewer delays than the others: raise, or read its missing delays
        as zeros flagged ``present=False``.

    Returns
    -------
    run : xarray.DataArray
        As :func:`uedflow.io.runs.open_run` returns it, with ``file`` the HDF5 file for every
        frame, ``attrs["datasets"]`` the datasets read and ``attrs["delays_from"]`` where the
        delays come from.
    """
    path = os.path.abspath(check_file(path))
    if isinstance(pattern, dict):  # patterns by role, as the [run] section gives them
        others = sorted(role for role, value in pattern.items() if value and role != "frames")
        if others:
            raise ValueError(f"{path}: an HDF5 run has its frames only; patterns of "
                             f"{', '.join(others)} are for run folders")
        pattern = pattern.get("frames")
    with open_file(path) as file:
        name = default_data(file, PATTERN_HINT) if pattern is None else pattern
        if "{scan}" in name:
            scans = _scan_datasets(file, name)
            parts = [frame_parts(file, n) for n in scans.values()]
            names = [n for p in parts for n in p[0]]
            if len(names) != len(parts):
                raise ValueError(f"{path}: the pattern '{name}' matches groups; it should "
                                 "name one dataset (delay, y, x) per scan")
            shapes = [p[1][0] for p in parts]
            _check_scans(path, names, shapes, parts)
            frames = H5Frames(path, names, shapes, parts[0][2], stack=True)
            scan_numbers = list(scans)
        else:
            names, shapes, dtype = frame_parts(file, name)
            if len(names) != 1 or len(shapes[0]) not in (3, 4):
                dims = ", ".join(f"'{n}' {s}" for n, s in zip(names, shapes, strict=True))
                raise ValueError(f"{path}: a run is one dataset (delay, scan, y, x) or "
                                 f"(delay, y, x), or one (delay, y, x) per scan named by a "
                                 f"pattern with {{scan}}; got {dims}")
            if len(shapes[0]) == 3:
                frames = H5Frames(path, names, shapes, dtype, stack=True)
            else:
                frames = H5Frames(path, names, shapes, dtype)
            scan_numbers = list(range(frames.shape[1]))
        values, source = _delays(file, delays, frames.names[0], path)
    if values.shape != (frames.shape[0],):
        raise ValueError(f"{path}: {values.size} delays ({source}) for the {frames.shape[0]} "
                         f"delays of '{frames.names[0]}' (shape {frames.shape})")
    present = np.ones(frames.shape[:2], bool)
    if frames.stack:
        for j, n in enumerate(frames.lengths):
            present[n:, j] = False
    lost = [[float(values[i]), scan_numbers[j]] for i, j in np.argwhere(~present)]
    if lost and missing == "raise":
        short = [f"'{n}' ({k} delays)" for n, k in zip(frames.names, frames.lengths,
                                                        strict=True) if k < frames.shape[0]]
        raise ValueError(f"{path}: scans have fewer delays than the run's {frames.shape[0]}: "
                         f"{', '.join(short)}. To go on without the missing frames (flagged "
                         "present=False), pass --missing exclude on the command line, missing "
                         "= \"exclude\" in the [run] section of the config, or "
                         "missing=\"exclude\" in Python.")
    data = da.from_array(frames, chunks=_leading_chunks(
        frames.shape, chunks if isinstance(chunks, int) else None, frames.dtype.itemsize),
        asarray=False, fancy=False, meta=np.empty((0,) * 4, frames.dtype))
    dims = ("delay", "scan")
    coords = {
        "delay": ("delay", values, {"units": "ps"}),
        "scan": np.array(scan_numbers, np.int64),
        "file": (dims, np.full(present.shape, path, dtype=object)),
        "present": (dims, present),
    }
    stack = _labelled(data, path, "hdf5", dims=(*dims, "y", "x"), coords=coords)
    stack.attrs.update(pattern=pattern or name, preset=None, patterns={"frames": name},
                       datasets=frames.names, delays_from=source, darks=[], flats=[],
                       pump_off=[], unmatched=[], missing=lost, bad_files=[])
    return stack.chunk(chunks) if isinstance(chunks, dict) else stack


def _check_scans(path, names, shapes, parts):
    for n, s, p in zip(names, shapes, parts, strict=True):
        if len(s) != 3:
            raise ValueError(f"{path}: dataset '{n}' has shape {s}; a scan dataset is "
                             "(delay, y, x)")
        if s[1:] != shapes[0][1:] or p[2] != parts[0][2]:
            raise FrameMismatchError(f"{path}: dataset '{n}' holds {s[1:]} frames of {p[2]}, "
                                     f"but '{names[0]}' {shapes[0][1:]} frames of "
                                     f"{parts[0][2]}")
