"""Reader plug-ins: a lab's own package adds a reader for its file format.

A package declares a reader in the entry-point group ``uedflow.readers`` of its
``pyproject.toml``::

    [project.entry-points."uedflow.readers"]
    toy = "uedflow_toy"

The object named there (a module, a :class:`Reader`, or any object with the same attributes)
gives:

* ``suffixes``: the file suffixes it reads, e.g. ``(".toy",)``;
* ``read(path)``: the image of one file, an ndarray ``(y, x)``;
* ``open_frames(path)`` (optional): all the frames of one file, lazily: an array-like with
  ``shape`` ``(..., y, x)``, ``dtype`` and ``__getitem__`` for a tuple of slices, that
  pickles small (a path, not an open file) so that dask workers can read it; or a dask array.

:func:`uedflow.diffread` reads a file of those suffixes with ``read``;
:func:`uedflow.open_stack` opens one with ``open_frames`` (else as one frame per file, with
``read``), and folders and lists of them with ``read``; :func:`uedflow.open_run` reads the
frames of a run folder with ``read``. uedflow's own readers (TIFF, DigitalMicrograph, MIB,
NumPy, HDF5) keep their suffixes; a plug-in's suffixes take precedence over the formats read
through scikit-image. Plug-ins are found when a file needs one (and by
:func:`uedflow.supported_formats`), once per process; :func:`refresh` finds them again.
"""

import functools
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points

#: The entry-point group of reader plug-ins.
GROUP = "uedflow.readers"


@dataclass(frozen=True)
class Reader:
    """A reader of one file format, as a plug-in declares it.

    Parameters
    ----------
    suffixes : tuple of str
        File suffixes, with the dot (compared in lower case).
    read : callable
        ``read(path) -> ndarray``: the image ``(y, x)`` of one file.
    open_frames : callable, optional
        ``open_frames(path)``: every frame of one file, lazily (see the module documentation).
    name : str, optional
        Name shown in messages (default: the entry point's name).
    """

    suffixes: tuple
    read: object
    open_frames: object = None
    name: str = ""


@functools.cache
def readers():
    """The readers of the installed plug-ins, by suffix (lower case).

    A plug-in that cannot be loaded, or that claims a suffix of uedflow's own readers or of
    a plug-in found before it, is left out with a warning naming it.

    Returns
    -------
    dict
        ``{suffix: Reader}``.
    """
    from .readers import OWN_SUFFIXES

    found = {}
    for point in sorted(entry_points(group=GROUP), key=lambda p: p.name):
        where = f"reader plug-in '{point.name}' ({point.value})"
        try:
            obj = point.load()
            reader = Reader(tuple(s.lower() for s in obj.suffixes), obj.read,
                            getattr(obj, "open_frames", None),
                            getattr(obj, "name", "") or point.name)
        except Exception as exc:  # a broken plug-in must not break uedflow
            warnings.warn(f"The {where} cannot be loaded and is left out: {exc!r}",
                          stacklevel=2)
            continue
        for suffix in reader.suffixes:
            taken = "uedflow" if suffix in OWN_SUFFIXES else getattr(found.get(suffix),
                                                                     "name", None)
            if taken:
                warnings.warn(f"The {where} claims '{suffix}', which {taken} reads already; "
                              "it is left out for that suffix", stacklevel=2)
            else:
                found[suffix] = reader
    return found


def reader_for(path):
    """The plug-in :class:`Reader` of the file ``path`` (by its suffix), or None."""
    from pathlib import Path

    return readers().get(Path(path).suffix.lower())


def suffixes():
    """The suffixes that plug-ins read, as a frozenset."""
    return frozenset(readers())


def refresh():
    """Find the plug-ins again (after installing one in a running session)."""
    readers.cache_clear()
