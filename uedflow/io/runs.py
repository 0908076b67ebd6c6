"""Open a raw time-resolved run: :func:`scan_run` finds its files, :func:`open_run` opens it.

A run is a directory of single-frame files, one per (delay, scan), with dark, flat-field and
pump-off frames beside them. File paths relative to the run directory are recognised by
*patterns*:

* ``{delay}`` — a signed decimal number, the pump-probe delay in ps: ``+001.500``, ``-0.25``,
  ``12``. ``{delay:fs}`` or ``{delay:ns}`` read it in femto- or nanoseconds (converted to ps);
* ``{delay_index}`` — an integer position in the ``delays`` of the run's ``run.json``, or in
  a delay table (``delays=``: a list, or a file of one delay per line);
* ``{position}`` — a signed decimal number, a stage position in any unit, mapped to its delay
  through a delay table (``delays=``: a dict, or a file of ``position, delay`` lines);
* ``{scan}`` — a non-negative integer, the scan number: ``0001`` is scan 1. Without it, every
  frame belongs to scan 0;
* ``*`` — any characters within one folder or file name (never ``/``);
* everything else, including ``/`` between folders, is literal.

For example ``"scan_{scan}/pumpon_{delay}ps.tif"`` matches ``scan_0001/pumpon_+001.500ps.tif``
(scan 1, delay 1.5 ps). A frame pattern has ``{delay}`` or ``{delay_index}``; the patterns of
the other roles (darks, flats, pump-off, ignored files) have no fields. Delays are in ps
everywhere, tables included.

On the command line the same settings are flags (``--pattern``, ``--darks``, ``--flats``,
``--pump-off``, ``--preset``, ``--delays``, ``--missing``, ``--skip-bad``) and in a reduce
configuration the keys of its ``[run]`` section; error messages name all three.
"""

import json
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError
from .lazy import (
    RUN_MANIFEST,
    FrameFiles,
    _frame_header_or_error,
    _frame_suffixes,
    _is_image_file,
    _natural_sorted,
    run_stack,
)
from .readers import HDF5_SUFFIXES, TIFF_SUFFIXES

#: Regular expression of each pattern field.
FIELDS = {
    "delay": r"[+-]?(?:\d+\.?\d*|\.\d+)",
    "delay_index": r"\d+",
    "position": r"[+-]?(?:\d+\.?\d*|\.\d+)",
    "scan": r"\d+",
}

#: Fields of a frame pattern that give the delay; a frame pattern has exactly one.
DELAY_FIELDS = ("delay", "delay_index", "position")

#: Delay units of ``{delay:UNIT}``: ``(numerator, denominator)`` of the conversion to ps.
DELAY_UNITS = {"fs": (1, 1000), "ps": (1, 1), "ns": (1000, 1)}

#: How to go on without what cannot be read, in every error message that suggests it.
SKIP_BAD_HINT = ("to go on without them, pass --skip-bad on the command line, skip_bad = true "
                 "in the [run] section of the config, or skip_bad=True in Python")

#: Name of the mask file of a run (True = valid pixel), in the run directory.
MASK_FILE = "mask.tif"

#: Patterns of the frames of the other roles, shared by the presets.
AUXILIARY = {
    "darks": "dark_image/*.tif",
    "flats": "flat*/*.tif",
    "pump_off": "pump_off/*.tif",
    "ignore": MASK_FILE,
}

#: Presets: a pattern per role. ``"uedflow"`` is the layout of
#: :func:`uedflow.datasets.make_run` (delays from ``run.json``); ``"lab"`` the layout common in
#: UED labs, one folder per scan with ``pump_off/`` and ``dark_image/`` folders beside them.
PRESETS = {
    "uedflow": {"frames": "scan_{scan}_delay_{delay_index}.tif", **AUXILIARY},
    "lab": {"frames": "scan_{scan}/pumpon_{delay}ps.tif", **AUXILIARY},
}

#: Roles of the files of a run, the keys of a preset.
ROLES = tuple(PRESETS["lab"])

_TOKEN = re.compile(r"\{(\w+)(?::(\w+))?\}|\*")


@dataclass
class RunFiles:
    """The files of a run, found by :func:`scan_run` (no pixel is read).

    Attributes
    ----------
    root : pathlib.Path
        Absolute path of the run directory.
    frames : dict
        ``(delay, scan) -> Path`` of every frame file.
    delays : list of float
        Sorted delays (ps).
    scans : list of int
        Sorted scan numbers.
    darks, flats, pump_off : list of pathlib.Path
        Dark, flat-field and pump-off frames, in natural order.
    missing : list of (float, int)
        ``(delay, scan)`` combinations without a frame file.
    unmatched : list of pathlib.Path
        Image files that match no pattern.
    pattern : str
        The frame pattern.
    unreadable : list of (pathlib.Path, str)
        Folders of the run that could not be listed, and why: their files are not in the
        other lists.
    folders : dict
        ``(delay, scan) -> Path`` of folders named as frames (a frame that is a folder, not a
        file): neither frames nor missing.
    preset : str or None
        The preset whose frame pattern names the frames (None: a given pattern).
    patterns : dict
        The pattern of each role (``"frames"``, ``"darks"``, ...).
    duplicates : list of (float, int, pathlib.Path, pathlib.Path)
        ``(delay, scan, kept, other)`` where two files give the same delay and scan (the
        first file in natural order is in ``frames``); :func:`open_run` refuses them.
    """

    root: Path
    frames: dict
    delays: list
    scans: list
    darks: list
    flats: list
    pump_off: list
    missing: list
    unmatched: list
    pattern: str
    unreadable: list = field(default_factory=list)
    folders: dict = field(default_factory=dict)
    duplicates: list = field(default_factory=list)
    preset: str | None = None
    patterns: dict = field(default_factory=dict)


@dataclass
class _Pattern:
    """A compiled pattern: its text, regular expression, fields and delay unit."""

    text: str
    regex: re.Pattern
    fields: tuple
    unit: str


def _compile(text):
    parts, fields, unit, end = [], [], "ps", 0
    for token in _TOKEN.finditer(text):
        parts.append(re.escape(text[end:token.start()]))
        end = token.end()
        name, suffix = token.groups()
        if token[0] == "*":
            parts.append("[^/]*")
            continue
        if name not in FIELDS:
            raise ValueError(f"Unknown field {{{name}}} in the pattern {text!r}; fields are "
                             f"{', '.join('{' + f + '}' for f in FIELDS)}")
        if name in fields:
            raise ValueError(f"The field {{{name}}} appears twice in the pattern {text!r}")
        if suffix is not None:
            if name != "delay" or suffix not in DELAY_UNITS:
                raise ValueError(f"Bad unit in {token[0]} of the pattern {text!r}: only "
                                 f"{{delay}} takes a unit, one of {', '.join(DELAY_UNITS)}")
            unit = suffix
        fields.append(name)
        parts.append(f"(?P<{name}>{FIELDS[name]})")
    parts.append(re.escape(text[end:]))
    return _Pattern(text, re.compile("".join(parts)), tuple(fields), unit)


def _patterns(pattern, preset, files):
    """The compiled pattern of each role: the preset's, overridden by ``pattern``."""
    if preset != "auto" and preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; presets are 'auto', "
                         f"{', '.join(map(repr, PRESETS))}")
    overrides = {"frames": pattern} if isinstance(pattern, str) else dict(pattern or {})
    unknown = set(overrides) - set(ROLES)
    if unknown:
        raise ValueError(f"Unknown pattern role(s) {sorted(unknown)}; roles are {list(ROLES)}")
    if preset == "auto":
        preset = "lab" if "frames" in overrides else _detect(files)
    texts = {**PRESETS[preset], **overrides}
    if "frames" in overrides:
        preset = None  # the frames are named by the given pattern, not by a preset
    compiled = {role: _compile(text) for role, text in texts.items()}
    frame_fields = set(compiled["frames"].fields)
    if len(frame_fields & set(DELAY_FIELDS)) != 1:
        raise ValueError(f"The frame pattern {texts['frames']!r} needs one of {{delay}}, "
                         "{delay_index} or {position}")
    for role in ROLES[1:]:
        if compiled[role].fields:
            raise ValueError(f"The {role} pattern {texts[role]!r} takes no fields")
    return preset, compiled


def _fitting_preset(files):
    """The first preset whose frame pattern matches a file, or None."""
    for name, preset in PRESETS.items():
        regex = _compile(preset["frames"]).regex
        if any(regex.fullmatch(f) for f in files):
            return name
    return None


def is_run(path):
    """Whether ``path`` is a directory laid out as one of the :data:`PRESETS` runs.

    Parameters
    ----------
    path : path-like
        Candidate run directory.

    Returns
    -------
    bool
        True if a file under ``path`` matches the frame pattern of a preset.
    """
    path = Path(path)
    return path.is_dir() and _fitting_preset(_list_files(path, [])) is not None


def _detect(files):
    """The first preset whose frame pattern matches a file."""
    name = _fitting_preset(files)
    if name is not None:
        return name
    expected = "; ".join(f"{name!r}: {p['frames']}" for name, p in PRESETS.items())
    raise ValueError(f"No preset fits the run: its files match no preset's frame pattern "
                     f"({expected}); examples of names found: {_examples(files)}. Give the "
                     f"frame pattern{_suggestion(files)}: --pattern on the command line, "
                     "pattern in the [run] section of the config, pattern= in Python (fields "
                     "{delay}, {delay:fs}, {position}, {delay_index}, {scan}; see 'uedflow "
                     "reduce --help')")


#: A signed decimal number in a file name, and the unit (fs, ps, ns) that may follow it.
_NUMBER = re.compile(r"([+-]?\d+(?:\.\d+)?)(fs|ps|ns)?")


def _suggestion(files):
    """`` (such as '...')``: a frame pattern guessed from the commonest kind of file name (its
    last number the delay, with its unit if one follows; the number in its folder the scan)."""
    names = [f for f in files if Path(f).suffix.lower() in _frame_suffixes()] or files
    shapes = [re.sub(r"\d+", "#", name) for name in names]  # the commonest name, numbers aside
    commonest = Counter(shapes).most_common(1)[0][0]
    folder, _, name = names[shapes.index(commonest)].rpartition("/")
    numbers = list(_NUMBER.finditer(name))
    if not numbers:
        return ""
    last, unit = numbers[-1], numbers[-1][2] or ""
    field = f"{{delay:{unit}}}" if unit in ("fs", "ns") else "{delay}"
    guess = _NUMBER.sub("*", name[:last.start()]) + field + unit + name[last.end():]
    if folder:
        guess = re.sub(r"\d+", "{scan}", folder, count=1) + "/" + guess
    return f" (such as '{guess}')"


def _unreadable_note(unreadable):
    if not unreadable:
        return ""
    return (f" ({len(unreadable)} folders could not be read: "
            f"{_examples([f'{path}: {reason}' for path, reason in unreadable])})")


def _examples(names, n=5):
    more = f", ... ({len(names)} in all)" if len(names) > n else ""
    return ", ".join(map(str, names[:n])) + more


def _list_files(root, unreadable, folders=None):
    """Paths of all files under ``root``, relative, with ``/`` separators, in natural order.

    ``(folder, reason)`` of every folder that cannot be listed is appended to ``unreadable``,
    and the relative path of every folder to ``folders`` if given.
    """
    files = []

    def failed(exc):
        unreadable.append((Path(exc.filename or root), f"cannot list the folder "
                           f"({exc.strerror or exc})"))

    for folder, subfolders, names in os.walk(root, onerror=failed):
        rel = Path(folder).relative_to(root)
        files += [(rel / name).as_posix() for name in names]
        if folders is not None:
            folders += [(rel / name).as_posix() for name in subfolders]
    return [p.as_posix() for p in _natural_sorted(files)]


def _manifest_delays(root):
    path = root / RUN_MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"The frames of '{root}' are named by delay index (pattern "
                                f"{{delay_index}}, e.g. scan_000_delay_001.tif), but the run "
                                f"has no '{RUN_MANIFEST}' giving the delays of the indices: "
                                f"'{path}' does not exist. Restore it, give a delay table "
                                "(--delays FILE, [run] delays, delays= in Python), or rename "
                                "the frames with their delays (e.g. "
                                "scan_0001/pumpon_+001.000ps.tif)")
    try:
        manifest = json.loads(path.read_text())
        return [float(t) for t in manifest["delays"]], [int(s) for s in manifest["scans"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptFileError(path, f"not a valid run manifest ({exc})") from exc


def read_delay_table(table):
    """A delay table as a dict ``key -> delay`` (ps).

    Parameters
    ----------
    table : path-like, sequence or mapping
        A sequence of delays (the keys are their indices, for ``{delay_index}``), a mapping of
        stage positions (or indices) to delays (keys that are strings are read as numbers,
        as a TOML table gives them), or a text file: one delay per line (by index) or
        ``position, delay`` per line (comma, tab or spaces between; ``#`` starts a comment; a
        first line that is not numbers is a header).

    Returns
    -------
    dict
        ``float -> float``.

    Raises
    ------
    FileNotFoundError, ValueError
        Naming the file and line, or the entry, that is not a number.
    """
    if isinstance(table, str | os.PathLike):
        return _table_file(Path(table))
    items = table.items() if isinstance(table, dict) else enumerate(table)
    parsed = {}
    for key, delay in items:
        try:
            parsed[float(key)] = float(delay)
        except (TypeError, ValueError):
            raise ValueError(f"Delay table: the entry {key!r}: {delay!r} is not a number "
                             "and its delay in ps") from None
    if not parsed:
        raise ValueError("The delay table is empty")
    return parsed


def _table_file(path):
    if not path.is_file():
        raise FileNotFoundError(f"No such delay table: '{path}'")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        cells = line.split("#")[0].replace(",", " ").split()
        if not cells:
            continue
        try:
            values = [float(c) for c in cells]
        except ValueError:
            if not rows and number == 1:  # a header
                continue
            raise ValueError(f"'{path}', line {number}: {line.strip()!r} is not numbers "
                             "(one delay, or a position and its delay, per line)") from None
        if len(values) > 2 or (rows and len(values) != len(rows[0])):
            raise ValueError(f"'{path}', line {number}: expected "
                             f"{len(rows[0]) if rows else '1 or 2'} numbers, got {len(values)}")
        rows.append(values)
    if not rows:
        raise ValueError(f"The delay table '{path}' has no rows")
    return read_delay_table(dict(rows) if len(rows[0]) == 2 else [r[0] for r in rows])


def _delay_of(match, pattern, table, path, source="the delay table"):
    """The delay (ps) of a frame from its name, through ``table`` for an index or a position."""
    if "delay" in pattern.fields:
        num, den = DELAY_UNITS[pattern.unit]
        return float(match["delay"]) * num / den + 0.0  # no -0.0
    name = "delay_index" if "delay_index" in pattern.fields else "position"
    key = float(match[name])
    if key not in table:
        kind = "delay index" if name == "delay_index" else "stage position"
        raise ValueError(f"'{path}': {kind} {key:g} is not in {source} ({len(table)} "
                         f"delay{'s' * (len(table) != 1)}, for "
                         f"{_examples([f'{k:g}' for k in table])})")
    return table[key]


def scan_run(path, pattern=None, *, preset="auto", delays=None):
    """Find the files of a raw run and parse their delays and scans (no pixel is read).

    Parameters
    ----------
    path : path-like
        Run directory.
    pattern : str or dict, optional
        The frame pattern (see :mod:`uedflow.io.runs`), or a dict mapping roles
        (``"frames"``, ``"darks"``, ``"flats"``, ``"pump_off"``, ``"ignore"``) to patterns;
        roles not given keep the preset's patterns.
    preset : {"auto", "uedflow", "lab"}, optional
        Patterns to start from (:data:`PRESETS`). ``"auto"`` picks the first preset whose
        frame pattern matches a file (the ``"lab"`` folders for darks, flats and pump-off when
        ``pattern`` gives the frame pattern).
    delays : path-like, sequence or mapping, optional
        The delay table of ``{delay_index}`` (default: the ``delays`` of the run's
        ``run.json``) or ``{position}`` (required), see :func:`read_delay_table`.

    Returns
    -------
    RunFiles
        The frames by ``(delay, scan)``, the other roles' files, the missing combinations and
        the image files that match no pattern.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a directory, holds no file, or no file matches the frame pattern.
    ValueError
        If a pattern or preset is not valid, no preset fits (``preset="auto"``), or a
        ``{delay_index}`` or ``{position}`` is not in the delay table.
    """
    root = Path(os.path.abspath(path))
    if not root.is_dir():
        raise FileNotFoundError(f"No such run directory: '{root}'")
    unreadable, folders = [], []
    files = _list_files(root, unreadable, folders)
    if unreadable and unreadable[0][0] == root:
        raise PermissionError(f"The run directory '{root}' cannot be read: "
                              f"{unreadable[0][1]}")
    if not files:
        raise FileNotFoundError(f"The run directory '{root}' is empty")
    try:
        preset, patterns = _patterns(pattern, preset, files)
    except ValueError as exc:
        raise type(exc)(f"{exc}{_unreadable_note(unreadable)}") from None
    frame_pattern = patterns.pop("frames")
    table, source, found_delays, scans = None, "the delay table", set(), set()
    if delays is not None and "delay" in frame_pattern.fields:
        raise ValueError(f"A delay table was given, but the frame pattern "
                         f"{frame_pattern.text!r} reads the delays from the names ({{delay}}); "
                         "the table is for {delay_index} or {position}: leave out --delays "
                         "([run] delays, delays=), or change the pattern")
    if delays is not None:
        table = read_delay_table(delays)
    elif "delay_index" in frame_pattern.fields:
        manifest_delays, manifest_scans = _manifest_delays(root)
        table, source = dict(enumerate(manifest_delays)), f"'{root / RUN_MANIFEST}'"
        found_delays.update(manifest_delays)
        scans.update(manifest_scans)
    elif "position" in frame_pattern.fields:
        raise ValueError(f"The frame pattern {frame_pattern.text!r} reads stage positions: "
                         "give the delay table that maps them to delays (--delays FILE, "
                         "[run] delays, delays= in Python)")

    def key_of(name):
        match = frame_pattern.regex.fullmatch(name)
        if match is None:
            return None
        return (_delay_of(match, frame_pattern, table, root / name, source),
                int(match["scan"]) if "scan" in frame_pattern.fields else 0)

    frames, found, unmatched, duplicates = {}, {role: [] for role in patterns}, [], []
    for name in files:
        key = key_of(name)
        if key is None:
            role = next((r for r, p in patterns.items() if p.regex.fullmatch(name)), None)
            if role is not None:
                found[role].append(root / name)
            elif _is_image_file(root / name):
                unmatched.append(root / name)
            continue
        if key in frames:
            duplicates.append((*key, frames[key], root / name))
        else:
            frames[key] = root / name
    if not frames:
        raise FileNotFoundError(f"No file under '{root}' matches the pattern "
                                f"'{frame_pattern.text}'; examples of names found: "
                                f"{_examples(files)}{_unreadable_note(unreadable)}")
    named = {key: root / name for name in folders if (key := key_of(name)) is not None}
    named = {key: path for key, path in named.items() if key not in frames}
    delays = found_delays | {d for d, _ in frames} | {d for d, _ in named}
    delays = sorted(delays)
    scans = sorted(scans | {s for _, s in frames} | {s for _, s in named})
    missing = [(d, s) for d in delays for s in scans if (d, s) not in frames | named]
    return RunFiles(root, frames, delays, scans, found["darks"], found["flats"],
                    found["pump_off"], missing, unmatched, frame_pattern.text, unreadable,
                    named, duplicates, preset,
                    {"frames": frame_pattern.text, **{r: p.text for r, p in patterns.items()}})


def _readable(paths, skip_bad, bad):
    """The files of ``paths`` (darks, flats, pump-off frames) whose header can be read (and
    compressed pixels decoded, with ``skip_bad``), as strings; the others are appended to
    ``bad`` as ``[path, reason]`` with ``skip_bad``, and raise otherwise."""
    readable = []
    for path in paths:
        header = _frame_header_or_error(path, skip_bad,
                                        tiff=path.suffix.lower() in TIFF_SUFFIXES)
        if isinstance(header, CorruptFileError) and skip_bad:
            bad.append([header.path, header.reason])
        elif isinstance(header, Exception):
            raise header
        else:
            readable.append(str(path))
    return readable


def open_run(path, pattern=None, *, preset="auto", chunks=None, missing="raise",
             skip_bad=False, delays=None):
    """Open a raw run lazily as a ``("delay", "scan", "y", "x")`` stack.

    Opening lists the run's files (:func:`scan_run`) and reads the header of every frame,
    dark, flat-field and pump-off file; pixels are read when the stack is computed, one chunk
    of whole frames per dask task (with ``skip_bad``, compressed frames are also decoded once
    at open, see below).

    Parameters
    ----------
    path : path-like
        Run directory.
    pattern : str or dict, optional
        Frame pattern, or patterns by role, see :func:`scan_run`.
    preset : {"auto", "uedflow", "lab"}, optional
        Patterns to start from, see :func:`scan_run`.
    delays : path-like, sequence or mapping, optional
        Delay table of ``{delay_index}`` or ``{position}``, see :func:`scan_run`.
    chunks : int or dict, optional
        Whole frames per chunk, or chunk sizes by dim, as :func:`uedflow.open_stack` takes
        them. The default makes chunks of whole frames of about 64 MiB.
    missing : {"raise", "exclude"}, optional
        What to do about ``(delay, scan)`` combinations without a file: raise a ValueError
        listing them, or keep them as frames of zeros with ``present=False``.
    skip_bad : bool, optional
        Go on without what cannot be read, listing each in ``attrs["bad_files"]``, instead of
        raising for the first: frames that cannot be read, are truncated or do not decode
        (``present=False``), dark, flat-field and pump-off files likewise (left out of their
        list), folders named as frames, and folders of the run that cannot be listed. To
        find bad frames at open,
        every compressed frame (a compressed TIFF, or another format than an uncompressed
        TIFF) is decoded once when the run is opened, which costs a read of those frames;
        uncompressed TIFF frames are checked to be as long as their header says.

    Returns
    -------
    run : xarray.DataArray
        Named ``"intensity"``, with coords ``delay`` (float64, ps), ``scan`` (int64), ``file``
        (``(delay, scan)``, absolute path, ``""`` where missing) and ``present`` (``(delay,
        scan)``, False where the frame is missing or bad). ``attrs``: ``source`` (the run
        directory), ``pattern`` (the frame pattern), ``preset`` (the preset that named the
        frames, None for a given pattern), ``patterns`` (of every role), ``darks``,
        ``flats``, ``pump_off`` and ``unmatched`` (absolute paths), ``missing``
        (``[[delay, scan], ...]``), ``bad_files`` (``[[path, reason], ...]``: frames, other
        files and folders left out) and, when the run has one (``mask.tif`` in the run
        directory), ``mask_file``.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`scan_run`; ValueError also for two files of the same ``(delay, scan)``,
        and for missing combinations with ``missing="raise"``.
    IsADirectoryError
        If frames are folders (and ``skip_bad`` is false).
    PermissionError
        If a folder of the run cannot be listed (and ``skip_bad`` is false).
    uedflow.errors.CorruptFileError
        If a frame, dark, flat-field or pump-off file is unreadable or truncated (and
        ``skip_bad`` is false).
    uedflow.errors.FrameMismatchError
        If frames differ in shape or dtype.

    Warns
    -----
    UserWarning
        If image files in the run match no pattern.
    """
    if missing not in ("raise", "exclude"):
        raise ValueError(f"missing must be 'raise' or 'exclude', got {missing!r}")
    if Path(path).suffix.lower() in HDF5_SUFFIXES:  # one HDF5 file: see uedflow.io.hdf5
        from .hdf5 import open_run as open_hdf5_run

        return open_hdf5_run(path, pattern, delays=delays, chunks=chunks, missing=missing)
    run = scan_run(path, pattern, preset=preset, delays=delays)
    if run.duplicates:
        delay, scan, kept, other = run.duplicates[0]
        raise ValueError(f"Two files of the run give delay {delay:g} ps, scan {scan}: "
                         f"'{kept}' and '{other}'" + (f" ({len(run.duplicates)} such pairs)"
                                                      if len(run.duplicates) > 1 else ""))
    if run.unreadable and not skip_bad:
        raise PermissionError(
            f"{len(run.unreadable)} folders of the run '{run.root}' cannot be read, so their "
            f"frames would be left out: {_examples([f'{p}: {r}' for p, r in run.unreadable])}. "
            f"Make them readable or, {SKIP_BAD_HINT} (they are listed in attrs['bad_files'])")
    if run.folders and not skip_bad:
        raise IsADirectoryError(
            f"{len(run.folders)} frames of the run '{run.root}' are folders, not files: "
            f"{_examples([str(p) for p in run.folders.values()])}. Replace them with the "
            f"frame files or, {SKIP_BAD_HINT}")
    bad = [[str(p), reason] for p, reason in run.unreadable]
    bad += [[str(p), "a folder, not a frame file"] for p in run.folders.values()]
    roles = {role: _readable(getattr(run, role), skip_bad, bad)
             for role in ("darks", "flats", "pump_off")}
    unmatched = [str(p) for p in run.unmatched]
    if run.missing and missing == "raise":
        combos = _examples([f"({d:g} ps, scan {s})" for d, s in run.missing], 20)
        hint = f" Files that match no pattern: {_examples(unmatched)}." if unmatched else ""
        raise ValueError(f"{len(run.missing)} (delay, scan) combinations of the run "
                         f"'{run.root}' have no file: {combos}.{hint} To go on without them "
                         "(flagged present=False), pass --missing exclude on the command line, "
                         "missing = \"exclude\" in the [run] section of the config, or "
                         "missing=\"exclude\" in Python.")
    if unmatched:
        warnings.warn(f"{len(unmatched)} image files of the run '{run.root}' match no "
                      f"pattern and are left out: {_examples(unmatched)}", stacklevel=2)
    grid = np.array([[os.fspath(run.frames.get((d, s), "")) for s in run.scans]
                     for d in run.delays], dtype=object)
    frames = FrameFiles(grid, skip_bad=skip_bad)
    dims = ("delay", "scan")
    coords = {
        "delay": ("delay", np.array(run.delays, np.float64), {"units": "ps"}),
        "scan": np.array(run.scans, np.int64),
        "file": (dims, grid),
        "present": (dims, frames.paths != ""),
    }
    stack = run_stack(frames, chunks if isinstance(chunks, int) else None, str(run.root),
                      coords)
    stack.attrs.update(
        pattern=run.pattern,
        preset=run.preset,
        patterns=run.patterns,
        **roles,
        **({"mask_file": str(run.root / MASK_FILE)} if (run.root / MASK_FILE).is_file()
           else {}),
        unmatched=unmatched,
        missing=[[d, s] for d, s in run.missing],
        bad_files=bad + [[path, reason] for path, reason in frames.bad],
    )
    return stack.chunk(chunks) if isinstance(chunks, dict) else stack
