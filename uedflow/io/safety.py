"""Never lose or corrupt data: one writer per store, checksummed chunks, a strict deletion policy.

Deletion policy
---------------
uedflow deletes only what it wrote and can prove it wrote:

* a store directory whose root ``zarr.json`` carries uedflow's marker (the group attribute
  ``uedflow`` of an ingested store, ``uedflow_reduced`` of a reduced one) and that holds exactly
  the layout uedflow writes: the root ``zarr.json``; one directory per array with its
  ``zarr.json`` and its chunk files under ``c/`` (names of digits only); zarr's temporary
  ``*.partial`` files; and uedflow's own ``.uedflow`` directory. A store holding anything else
  (a file, a folder, a symbolic link) is refused with :class:`~uedflow.errors.UnsafeDeleteError`
  naming the unexpected entry, and nothing is deleted. Replacing a store
  (``overwrite=True``) empties it this way and keeps its lock;
* never an input: :func:`uedflow.to_zarr` refuses an output that is, contains or is inside the
  run directory or the files it reads (:class:`~uedflow.errors.InputOverlapError`);
* :func:`uedflow.datasets.make_run` replaces only the files of its own naming scheme, inside
  the run directory;
* a lock file only when it is its own, or provably stale (see :func:`writer_lock`).

Files of a store
----------------
In ``STORE/.uedflow``, a zarr group of its own (so that zarr readers list it as a group, not
as a stray object):

``lock``
    JSON ``{"pid", "host", "started", "time", "command"}`` of the process writing the store,
    created atomically (``O_EXCL``) and removed when it is done (:func:`writer_lock`).
``journal/HOST-PID.log``
    One line per chunk file written by that process (the writer or a ``distributed``
    worker), ``["key", size, crc32]``, appended once the file is in place: a write killed at
    any moment leaves either no line or a whole one, so a resume knows what was written.
``checksums.json``
    Once a write is complete: every chunk file's key, size and CRC-32, sorted (the same bytes
    for the same data); the journals are then removed.

Every chunk read through :func:`~uedflow.pipeline.store.open_reduced` (see
:class:`VerifiedStore`) is checked against its size and CRC-32; :func:`verify_store` checks a
whole store. CRC-32 costs about 4 % of the Blosc-zstd compression of the same chunk.
"""

import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import socket
import sys
import threading
import time
import warnings
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from zarr.storage import LocalStore

from ..errors import DamagedStoreError, InputOverlapError, StoreLockedError, UnsafeDeleteError

__all__ = [
    "ChunkProblem",
    "RecordingStore",
    "StoreCheck",
    "VerifiedStore",
    "chunk_problem",
    "chunk_records",
    "clear_store",
    "is_vacant",
    "refuse_overlap",
    "seal_records",
    "store_marker",
    "verify_store",
    "writer_lock",
]

#: uedflow's own directory in a store: lock, journal and checksums.
BOOKKEEPING = ".uedflow"
LOCK = "lock"
JOURNAL = "journal"
CHECKSUMS = "checksums.json"
#: ``.uedflow/timing.json``: seconds of the steps done while writing (e.g. the write itself).
TIMING = "timing.json"
#: ``.uedflow/zarr.json``: an empty group, so that zarr lists ``.uedflow`` without a warning.
_GROUP = json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {
    "uedflow_bookkeeping": "lock, journal and chunk checksums of this store (uedflow.io.safety)"}},
    indent=2) + "\n"

_held = {}  # lock file -> [thread id, depth]: the locks this process holds
_held_guard = threading.Lock()
_journal_guard = threading.Lock()


# -- the writer lock --------------------------------------------------------------------------

@contextlib.contextmanager
def writer_lock(store, *, command=None):
    """Hold the store's writer lock: one writing process at a time.

    The lock file ``STORE/.uedflow/lock`` is created atomically (``O_EXCL``) with the owner's
    pid, host, start time and command, and removed on exit. A lock left by a process that is
    gone (same host, and its pid not running, or running but started after the lock: a reused
    pid) is taken over with a warning; a lock of another host is never taken over. The lock
    is re-entrant within a thread: :func:`~uedflow.pipeline.store.write_reduced` and
    :func:`~uedflow.to_zarr` take it themselves, and a caller can take it before a long
    analysis so that a second process stops at once.

    Parameters
    ----------
    store : path-like
        The store's directory, created if missing (and removed on exit if it then holds
        nothing). An existing directory must be empty or a uedflow store.
    command : str, optional
        What is writing, for the message a second writer gets (default: the command line).

    Yields
    ------
    path : pathlib.Path
        The store's absolute path.

    Raises
    ------
    uedflow.errors.StoreLockedError
        If another process (or another thread of this one) holds the lock; it names the owner.
    FileExistsError
        If ``store`` is a file, or a non-empty directory that is not a uedflow store.
    """
    path = Path(os.path.realpath(store))
    lock = path / BOOKKEEPING / LOCK
    with _held_guard:
        held = _held.get(lock)
        if held is not None and held[0] != threading.get_ident():
            raise StoreLockedError(path, _read_lock(lock) or {}, lock)
        if held is not None:
            held[1] += 1
    if held is not None:
        try:
            yield path
        finally:
            with _held_guard:
                held[1] -= 1
        return
    created = _prepare_directory(path)
    owner = {"pid": os.getpid(), "host": socket.gethostname(),
             "started": datetime.now(UTC).isoformat(timespec="seconds"),
             "time": time.time(), "command": command or _command_line()}
    try:
        _acquire(lock, owner, path)
    except BaseException:
        _remove_if_vacant(path, created)
        raise
    with _held_guard:
        _held[lock] = [threading.get_ident(), 1]
    try:
        _add_bookkeeping(path)
        yield path
    finally:
        with _held_guard:
            del _held[lock]
        if _read_lock(lock) == owner:
            lock.unlink()
        else:
            warnings.warn(f"The lock '{lock}' was no longer this process's when it finished",
                          stacklevel=3)
        _remove_if_vacant(path, created)


def _command_line():
    return shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "python"


def _prepare_directory(path):
    """Create ``path`` (True) or check that uedflow may write in it (False); add ``.uedflow``."""
    created = False
    if path.exists() and not path.is_dir():
        raise FileExistsError(f"'{path}' exists and is not a directory; refusing to write a "
                              "store there (nothing was changed)")
    if path.is_dir() and not is_vacant(path) and store_marker(path)[0] is None:
        entry = sorted(p.name for p in path.iterdir())[0]
        raise FileExistsError(f"'{path}' exists and is not a uedflow store (it holds "
                              f"'{entry}'); refusing to write there (nothing was changed)")
    if not path.exists():
        path.mkdir(parents=True)
        created = True
    (path / BOOKKEEPING).mkdir(exist_ok=True)
    return created


def _add_bookkeeping(path):
    """The journal's directory and the ``.uedflow`` group's metadata, under the lock."""
    (path / BOOKKEEPING / JOURNAL).mkdir(exist_ok=True)
    group = path / BOOKKEEPING / "zarr.json"
    if not group.exists():
        group.write_text(_GROUP)


def _remove_if_vacant(path, created):
    """Remove the bookkeeping of a store that holds nothing else (and the directory, if this
    process created it)."""
    if not is_vacant(path):
        return
    book = path / BOOKKEEPING
    if book.is_dir() and not (book / LOCK).exists():
        journal = book / JOURNAL
        if journal.is_dir() and not any(journal.iterdir()):
            journal.rmdir()
        for name in ("zarr.json", CHECKSUMS):
            (book / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            book.rmdir()
    if created:
        with contextlib.suppress(OSError):
            path.rmdir()


def _acquire(lock, owner, store):
    for _ in range(5):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            current = _read_lock(lock)
            if current is None:  # being written, or just released: look again
                time.sleep(0.05)
                current = _read_lock(lock)
                if current is None:
                    if lock.exists():
                        raise StoreLockedError(store, {}, lock) from None
                    continue
            if not _is_stale(current):
                raise StoreLockedError(store, current, lock) from None
            _take_over(lock, current, store)
            continue
        with os.fdopen(fd, "w") as file:
            file.write(json.dumps(owner))
            file.flush()
            os.fsync(file.fileno())
        return
    raise StoreLockedError(store, _read_lock(lock) or {}, lock)


def _read_lock(lock):
    try:
        owner = json.loads(Path(lock).read_text())
    except (OSError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


def _is_stale(owner):
    """True if the lock's process is provably gone (on this host only)."""
    if owner.get("host") != socket.gethostname() or not isinstance(owner.get("pid"), int):
        return False
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    started = _process_start(owner["pid"])
    locked = owner.get("time")
    return started is not None and isinstance(locked, int | float) and started > locked + 2.0


def _process_start(pid):
    """Start time (s since the epoch, to within 1 s) of a process, from /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime"))
        return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def _take_over(lock, stale, store):
    """Remove a stale lock, unless another process replaced it meanwhile."""
    aside = lock.with_name(f"{LOCK}.stale.{socket.gethostname()}.{os.getpid()}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return
    moved = _read_lock(aside)
    if moved != stale:  # a fresh lock: put it back
        with contextlib.suppress(FileExistsError):
            os.link(aside, lock)
        aside.unlink()
        raise StoreLockedError(store, moved or {}, lock)
    aside.unlink()
    warnings.warn(f"Took over the stale lock of '{store}' left by pid {stale.get('pid')} on "
                  f"{stale.get('host')!r} (no longer running), started {stale.get('started')}, "
                  f"command: {stale.get('command')}", stacklevel=5)


# -- what a store is; what may be deleted -----------------------------------------------------

def store_marker(store):
    """The kind of uedflow store at ``store`` and its marker, from its root ``zarr.json``.

    Parameters
    ----------
    store : path-like
        A directory.

    Returns
    -------
    kind : {"reduced", "raw"} or None
        None if ``store`` has no readable root ``zarr.json`` with uedflow's marker.
    marker : dict or None
        The group attribute ``uedflow_reduced`` (reduced) or ``uedflow`` (raw).
    """
    try:
        attrs = json.loads((Path(store) / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError, AttributeError):
        return None, None
    if isinstance(attrs.get("uedflow_reduced"), dict):
        return "reduced", attrs["uedflow_reduced"]
    if isinstance(attrs.get("uedflow"), dict):
        return "raw", attrs["uedflow"]
    return None, None


def is_vacant(store):
    """True if ``store`` is a directory holding nothing but uedflow's bookkeeping."""
    try:
        return all(entry.name == BOOKKEEPING for entry in Path(store).iterdir())
    except OSError:
        return False


def _unexpected_entry(store):
    """The first entry of ``store`` (relative path) that uedflow does not write, or None."""
    store = Path(store)
    for folder, dirs, files in os.walk(store):  # symbolic links are listed, not followed
        for name in sorted(dirs + files):
            entry = Path(folder, name)
            parts = entry.relative_to(store).parts
            if (entry.is_symlink() or not _written_by_uedflow(parts, entry.is_dir())
                    or (len(parts) == 2 and parts[0] != BOOKKEEPING
                        and parts[1] == "zarr.json" and not _is_array_metadata(entry))):
                return "/".join(parts)
    return None


def _is_array_metadata(path):
    try:
        return json.loads(path.read_text()).get("node_type") == "array"
    except (OSError, ValueError, AttributeError):
        return False


def _written_by_uedflow(parts, is_dir):
    """Whether uedflow writes an entry at ``parts`` (its path in a store): the layout of the
    deletion policy."""
    name, depth = parts[-1], len(parts)
    if parts[0] == BOOKKEEPING:
        if depth == 1:
            return is_dir
        if depth == 2 and is_dir:
            return name == JOURNAL
        if depth == 2:
            return name in ("zarr.json", CHECKSUMS, TIMING) or name.startswith(
                (LOCK, CHECKSUMS + "."))
        return depth == 3 and parts[1] == JOURNAL and not is_dir and name.endswith(".log")
    if name.endswith(".partial") and not is_dir:  # zarr's temporary files
        return True
    if depth == 1:  # the group's metadata, an array
        return is_dir and not name.startswith(".") if name != "zarr.json" else not is_dir
    if depth == 2:  # an array's metadata, its chunks (a file "c" for a 0-d array)
        return name == "c" or (name == "zarr.json" and not is_dir)
    return parts[1] == "c" and name.isdigit()


def clear_store(store):
    """Empty a store uedflow wrote, keeping its lock: the deletion policy of ``overwrite``.

    Parameters
    ----------
    store : path-like
        A uedflow store (raw or reduced), or a directory holding only uedflow's bookkeeping
        (whose old journal and checksums are then removed).

    Raises
    ------
    uedflow.errors.UnsafeDeleteError
        If ``store`` does not carry uedflow's marker, or holds anything uedflow does not write
        (named in the message). Nothing is deleted then.
    """
    store = Path(store)
    if is_vacant(store):
        _reset_records(store)
        return
    if store_marker(store)[0] is None:
        raise UnsafeDeleteError(f"Refusing to delete '{store}': it is not a store uedflow wrote "
                                "(no uedflow marker in its zarr.json); nothing was deleted")
    entry = _unexpected_entry(store)
    if entry is not None:
        raise UnsafeDeleteError(
            f"Refusing to delete the store '{store}': it holds '{entry}', which uedflow does "
            "not write; move that away or delete the store yourself (nothing was deleted)")
    for child in store.iterdir():
        if child.name == BOOKKEEPING:
            _reset_records(store)
        elif child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def refuse_overlap(output, inputs):
    """Refuse an output path that is, contains or is inside one of ``inputs``.

    Parameters
    ----------
    output : path-like
        Where a store is to be written.
    inputs : iterable of path-like
        The files and directories it is made from.

    Raises
    ------
    uedflow.errors.InputOverlapError
        Naming the output, the input and how they overlap.
    """
    out = Path(os.path.realpath(output))
    for source in inputs:
        src = Path(os.path.realpath(source))
        if out == src:
            relation = "is"
        elif src in out.parents:
            relation = "is inside"
        elif out in src.parents:
            relation = "contains"
        else:
            continue
        raise InputOverlapError(
            f"Refusing to write '{output}': it {relation} the input '{source}'; uedflow never "
            "writes over, into or around what it reads. Choose another output path")


# -- chunk records: journal and checksums ---------------------------------------------------

def _is_chunk_key(key):
    return not key.endswith("zarr.json") and not key.startswith(BOOKKEEPING + "/") and "/" in key


def _journal_file(root):
    host = re.sub(r"[^\w.-]", "_", socket.gethostname())
    return Path(root, BOOKKEEPING, JOURNAL, f"{host}-{os.getpid()}.log")


def record_chunk(root, key, data):
    """Append the record of a chunk file just written (its bytes ``data``) to the journal."""
    view = memoryview(data).cast("B")
    # a line of its own, even after a line torn by a killed process (then left unparsable)
    line = ("\n" + json.dumps([key, view.nbytes, zlib.crc32(view)]) + "\n").encode()
    journal = _journal_file(root)
    with _journal_guard:
        try:
            fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except FileNotFoundError:
            journal.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)


class RecordingStore(LocalStore):
    """A zarr ``LocalStore`` that journals the size and CRC-32 of every chunk it writes.

    The record is appended to ``ROOT/.uedflow/journal/HOST-PID.log`` after the chunk file is in
    place (zarr writes a temporary file and renames it), by the process that wrote it: the
    writer, or a ``distributed`` worker the store was sent to.
    """

    async def set(self, key, value):
        await super().set(key, value)
        if _is_chunk_key(key):
            await asyncio.to_thread(record_chunk, self.root, key, value.as_buffer_like())


class VerifiedStore(LocalStore):
    """A read-only zarr ``LocalStore`` that checks every recorded chunk it reads.

    Parameters
    ----------
    root : path-like
        The store.
    records : dict
        Chunk key -> set of ``(size, crc32)`` (:func:`chunk_records`).
    hint : str, optional
        How to repair the store, for the error.

    Raises
    ------
    uedflow.errors.DamagedStoreError
        When a recorded chunk is read and its file is missing, of another size or another
        CRC-32; it names the store, the variable and the chunk.
    """

    def __init__(self, root, records, hint="", *, read_only=True):
        super().__init__(Path(root), read_only=read_only)
        self.records, self.hint = records, hint

    def with_read_only(self, read_only=False):
        return type(self)(self.root, self.records, self.hint, read_only=read_only)

    async def get(self, key, prototype=None, byte_range=None):
        expected = self.records.get(key)
        buffer = await super().get(key, prototype, byte_range)
        if expected is None or byte_range is not None:
            return buffer
        problem = "missing" if buffer is None else _mismatch(buffer.as_buffer_like(), expected)
        if problem:
            raise DamagedStoreError(self.root, [_problem(key, problem)], self.hint)
        return buffer


def _mismatch(data, expected):
    view = memoryview(data).cast("B")
    if view.nbytes not in {size for size, _ in expected}:
        return _record_problem(view.nbytes, expected)
    if (view.nbytes, zlib.crc32(view)) not in expected:
        return "corrupt: its CRC-32 differs from the one recorded when it was written"
    return None


def _record_problem(size, candidates):
    if not candidates:
        return "no record of its write (unfinished, or written by something else)"
    sizes = " or ".join(str(s) for s in sorted({s for s, _ in candidates}))
    return f"{size} bytes, {sizes} written (truncated or replaced?)"


def chunk_records(store):
    """What uedflow recorded of a store's chunk files: its checksums and its journals.

    Parameters
    ----------
    store : path-like
        A store written by uedflow.

    Returns
    -------
    records : dict
        Chunk key (``"diffraction/c/3/0/0"``) -> set of ``(size, crc32)`` (more than one if
        the chunk was written more than once with different bytes).
    """
    book = Path(store, BOOKKEEPING)
    try:
        entries = list(json.loads((book / CHECKSUMS).read_text())["chunks"].items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        entries = []
    for journal in sorted((book / JOURNAL).glob("*.log")):
        try:
            lines = journal.read_bytes().split(b"\n")[:-1]  # the last one, if torn, is dropped
        except OSError:
            continue
        for line in lines:
            with contextlib.suppress(ValueError, TypeError):
                key, *value = json.loads(line)
                entries.append((key, value))
    records = {}
    for key, value in entries:
        if (isinstance(key, str) and isinstance(value, list) and len(value) == 2
                and all(isinstance(v, int) for v in value)):
            records.setdefault(key, set()).add(tuple(value))
    return records


def _reset_records(store):
    """Forget the records of a store about to be written anew (they are uedflow's own)."""
    book = Path(store, BOOKKEEPING)
    for journal in (book / JOURNAL).glob("*.log"):
        journal.unlink()
    (book / CHECKSUMS).unlink(missing_ok=True)
    (book / TIMING).unlink(missing_ok=True)
    (book / JOURNAL).mkdir(parents=True, exist_ok=True)


def seal_records(store):
    """Write ``checksums.json`` of a store whose chunks are all written; remove the journals.

    Parameters
    ----------
    store : path-like
        A store written by uedflow, under its writer lock.

    Returns
    -------
    problems : list of ChunkProblem
        The chunks that are missing, unrecorded or not as recorded; nothing is sealed then.
    """
    store = Path(store)
    records = chunk_records(store)
    expected, problems = _expected_chunks(store)
    chosen = {}
    for key in sorted(expected):
        candidates = records.get(key, set())
        path = store / key
        try:
            size = path.stat().st_size
        except OSError:
            problems.append(_problem(key, "missing"))
            continue
        same_size = {c for c in candidates if c[0] == size}
        if len(same_size) > 1:
            same_size = {c for c in same_size if c[1] == zlib.crc32(path.read_bytes())}
        if len(same_size) == 1:
            chosen[key] = list(next(iter(same_size)))
        else:
            problems.append(_problem(key, _record_problem(size, candidates)))
    if problems:
        return problems
    book = store / BOOKKEEPING
    temporary = book / f"{CHECKSUMS}.{os.getpid()}"
    temporary.write_text(json.dumps({"algorithm": "crc32", "chunks": chosen}, indent=0,
                                    sort_keys=True) + "\n")
    os.replace(temporary, book / CHECKSUMS)
    for journal in (book / JOURNAL).glob("*.log"):
        journal.unlink()
    return []


# -- verification ---------------------------------------------------------------------------

@dataclass(frozen=True)
class ChunkProblem:
    """A damaged chunk: ``variable``, ``chunk`` (index tuple), ``key`` (file path in the
    store) and ``problem`` (what is wrong)."""

    variable: str
    chunk: tuple
    key: str
    problem: str

    def __str__(self):
        return f"{self.variable} chunk {self.chunk} ({self.key}): {self.problem}"


@dataclass(frozen=True)
class StoreCheck:
    """What :func:`verify_store` found: a sequence of the problems found (empty, and false,
    if the store is intact), with a report as ``str``.

    Attributes
    ----------
    store : str
    kind : {"reduced", "raw"}
    complete : bool
        Whether the store's write completed (an incomplete store misses chunks by design).
    chunks : int
        Chunk files checked.
    checksums : bool
        Whether their CRC-32 were compared (False: presence and size only).
    problems : tuple of ChunkProblem
    """

    store: str
    kind: str
    complete: bool
    chunks: int
    checksums: bool
    problems: tuple

    def __len__(self):
        return len(self.problems)

    def __iter__(self):
        return iter(self.problems)

    def __getitem__(self, index):
        return self.problems[index]

    @property
    def ok(self):
        """True if no chunk is missing or damaged."""
        return not self.problems

    @property
    def hint(self):
        """How to repair the store."""
        if self.kind == "reduced":
            return (f"Resume the reduction (run the same `uedflow reduce RAW -o {self.store}` "
                    "again): it rewrites missing and damaged chunks")
        return f"Ingest the run again: uedflow ingest RAW -o {self.store} --overwrite"

    def raise_if_damaged(self):
        """Raise :class:`~uedflow.errors.DamagedStoreError` if there are problems."""
        if self.problems:
            raise DamagedStoreError(self.store, self.problems, self.hint)

    def __str__(self):
        state = "complete" if self.complete else "incomplete (an unfinished write)"
        checked = "size and CRC-32" if self.checksums else "presence and size"
        head = (f"{self.store}: {self.kind} store, {state}; {self.chunks} chunk files checked "
                f"({checked}): ")
        if self.ok:
            return head + "no problem"
        lines = [head + f"{len(self.problems)} missing or damaged"]
        lines += [f"  {problem}" for problem in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f"  ... and {len(self.problems) - 50} more")
        lines.append(self.hint)
        return "\n".join(lines)


def verify_store(store, *, checksums=True):
    """Check every chunk file of a store uedflow wrote (reduced or ingested).

    Each chunk file of each array (from the arrays' metadata and from the records of the
    write) must be there, recorded, of its recorded size and, with ``checksums``, of its
    recorded CRC-32.

    Parameters
    ----------
    store : path-like
        The store.
    checksums : bool, optional
        Compare each file's CRC-32 with the one recorded when it was written (reads every
        file); False checks presence and size only (one ``stat`` per chunk).

    Returns
    -------
    check : StoreCheck
        The problems found (variable, chunk index, what is wrong), as a sequence: empty if the
        store is intact; ``str(check)`` is a report, ``check.raise_if_damaged()`` raises.

    Raises
    ------
    FileNotFoundError
        If ``store`` does not exist.
    ValueError
        If it is not a store uedflow wrote.
    """
    store = Path(store).absolute()
    if not store.exists():
        raise FileNotFoundError(f"The store '{store}' does not exist")
    kind, marker = store_marker(store)
    if kind is None:
        raise ValueError(f"'{store}' is not a store uedflow wrote (no uedflow marker in its "
                         "zarr.json)")
    complete = (marker.get("state") == "complete" if kind == "reduced"
                else bool(marker.get("complete")))
    records = chunk_records(store)
    expected, problems = _expected_chunks(store)
    keys = sorted(set(expected) | set(records))
    for key in keys:
        problem = chunk_problem(store / key, records.get(key), checksums=checksums)
        if problem:
            problems.append(_problem(key, problem))
    return StoreCheck(str(store), kind, complete, len(keys), checksums, tuple(problems))


def chunk_problem(path, candidates, *, checksums=True):
    """What is wrong with a chunk file, or None if it is as recorded.

    Parameters
    ----------
    path : pathlib.Path
        The chunk file.
    candidates : set of (int, int) or None
        Its records, ``(size, crc32)`` (:func:`chunk_records`).
    checksums : bool, optional
        Compare its CRC-32 (read it), or only its size (``stat``).

    Returns
    -------
    problem : str or None
    """
    try:
        size = path.stat().st_size
    except OSError:
        return "missing"
    if not candidates or size not in {s for s, _ in candidates}:
        return _record_problem(size, candidates)
    return _mismatch(path.read_bytes(), candidates) if checksums else None


def _problem(key, problem):
    variable, _, rest = key.partition("/")
    parts = rest.split("/")
    chunk = tuple(int(p) for p in parts[1:] if p.isdigit()) if parts[0] == "c" else (rest,)
    return ChunkProblem(variable, chunk, key, problem)


def _expected_chunks(store):
    """Every chunk key of the arrays of ``store`` (from their metadata), and the problems of
    the arrays whose metadata cannot be read."""
    import numpy as np

    keys, problems = {}, []
    for folder in sorted(Path(store).iterdir()):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        try:
            meta = json.loads((folder / "zarr.json").read_text())
            if meta.get("node_type") == "group":
                continue
            shape = meta["shape"]
            chunks = meta["chunk_grid"]["configuration"]["chunk_shape"]
            encoding = meta.get("chunk_key_encoding", {"name": "default"})
            separator = encoding.get("configuration", {}).get(
                "separator", "/" if encoding["name"] == "default" else ".")
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            problems.append(ChunkProblem(folder.name, (), f"{folder.name}/zarr.json",
                                         "array metadata missing or unreadable"))
            continue
        grid = [-(-n // c) for n, c in zip(shape, chunks, strict=True)]
        for index in np.ndindex(*grid):
            parts = [str(i) for i in index]
            if encoding["name"] == "default":
                parts = ["c", *parts]
            keys[f"{folder.name}/{separator.join(parts or ['0'])}"] = folder.name
    return keys, problems
