"""Reduce a run while it is acquired: :func:`follow` (``uedflow reduce RAW -o OUT --follow``).

The run directory is polled every ``every`` seconds. A file is *taken* once it is complete:
its size and modification time unchanged over two polls at least ``settle`` seconds apart,
and its pixels readable. A scan is *closed* once every frame of it is taken, and a later scan
has begun (or the run's ``run.json`` manifest is there: delays named by the files are only all
known when a scan is over); a frame of a closed scan... that is still not taken ``timeout``
seconds after its scan's last change is reported and left out (``present=False``).

Each time scans close, the closed scans are reduced (:func:`~uedflow.pipeline.reduce.reduce`
of the run restricted to them, every frame not taken left out) into a new version of the
store, ``OUT.live/vNNNNNN``, a complete reduced store written by
:func:`~uedflow.pipeline.store.write_reduced`; then ``OUT``, a symbolic link, is pointed at it
in one atomic ``rename``. A reader that opens ``OUT`` (resolved: :func:`open_live`) sees the
last complete version, never a half-written one; its ``attrs["uedflow_live"]`` says which
scans are in and whether the run is complete. Older versions are deleted after
:data:`GRACE` seconds (the last :data:`KEEP` are kept), so a reader has that long to read the
version it opened.

When the run ends (its manifest appears, or nothing changed for ``until_idle`` seconds) the
last version reduces every scan: it equals an offline ``uedflow reduce RAW --missing
exclude`` of the same files. See ``docs/live.md``.
"""

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io.lazy import RUN_MANIFEST
from ..io.readers import diffread
from ..io.runs import open_run, scan_run
from ..io.safety import clear_store, store_marker
from .reduce import reduce
from .store import open_reduced, write_reduced

__all__ = ["Follower", "follow", "open_live"]

#: Attribute of a live store's Dataset: the scans in it and the state of the run.
LIVE_ATTR = "uedflow_live"
#: Versions of the store kept whatever their age (the newest), and the least age (s) of a
#: version before it is deleted.
KEEP = 3
GRACE = 60.0


def open_live(output):
    """Open the current version of a store that ``reduce --follow`` writes (or any reduced
    store): the link ``output`` is resolved once, so that every read comes from one version.

    Parameters
    ----------
    output : path-like
        The ``-o`` path of ``uedflow reduce --follow``.

    Returns
    -------
    xarray.Dataset
        As :func:`~uedflow.pipeline.store.open_reduced`; ``attrs["uedflow_live"]`` (JSON)
        gives ``scans`` (the scans reduced), ``complete`` (the run is over and every scan is
        in), ``left_out`` (frames never completed) and ``version``.
    """
    return open_reduced(Path(output).resolve())


def versions_dir(output):
    """The folder of the versions of a live store ``output``: ``OUT.live`` beside it."""
    output = Path(output).absolute()
    return output.with_name(output.name + ".live")


@dataclass
class _File:
    size: int
    mtime: int
    since: float  # when this size and mtime were first seen
    taken: bool = False


@dataclass
class Follower:
    """The state of a live reduction: what is seen of the run's files, which are taken, which
    scans are closed. One :meth:`poll` per interval; :meth:`snapshot` opens the closed scans.

    Parameters
    ----------
    raw : path-like
        Run directory.
    open_kwargs : dict
        Keyword arguments of :func:`~uedflow.io.runs.open_run` (``missing`` is always
        ``"exclude"``: frames not there yet are missing).
    settle : float
        Seconds a file's size and mtime must stay unchanged before it is read.
    timeout : float
        Seconds after its scan's last change at which a frame not taken is given up.
    """

    raw: Path
    open_kwargs: dict
    settle: float = 0.5
    timeout: float = 60.0
    files: dict = field(default_factory=dict)
    activity: dict = field(default_factory=dict)  # scan -> last time one of its files changed
    given_up: dict = field(default_factory=dict)  # (delay, scan) -> reason
    last_change: float = field(default_factory=time.monotonic)

    def _listing(self):
        kwargs = {k: self.open_kwargs.get(k) for k in ("pattern", "delays")}
        return scan_run(self.raw, kwargs["pattern"], preset=self.open_kwargs.get("preset", "auto"),
                        delays=kwargs["delays"])

    def poll(self, now=None):
        """Look at the run's files once: record new and changed files, take the complete
        ones. Returns the listing (:class:`~uedflow.io.runs.RunFiles`)."""
        now = time.monotonic() if now is None else now
        try:
            listing = self._listing()
        except FileNotFoundError:  # nothing there yet
            return None
        paths = {p: key for key, p in listing.frames.items()}
        for role in ("darks", "flats", "pump_off"):
            paths.update({p: None for p in getattr(listing, role)})
        for path, key in paths.items():
            try:
                stat = os.stat(path)
            except OSError:
                continue
            seen = self.files.get(path)
            if seen is None or (seen.size, seen.mtime) != (stat.st_size, stat.st_mtime_ns):
                self.files[path] = _File(stat.st_size, stat.st_mtime_ns, now)
                self.last_change = now
                if key is not None:
                    self.activity[key[1]] = now
            elif not seen.taken and now - seen.since >= self.settle and stat.st_size > 0:
                seen.taken = _readable(path)
        return listing

    def taken(self, path):
        """Whether the file ``path`` is complete and taken."""
        seen = self.files.get(Path(path))
        return seen is not None and seen.taken

    def closed_scans(self, listing, ended, now=None):
        """The scans of ``listing`` that are over: every frame taken, or given up after
        ``timeout``; all the scans once the run has ``ended``. A later scan must have begun
        (or the run's manifest be there, or the run have ended)."""
        now = time.monotonic() if now is None else now
        manifest = (Path(self.raw) / RUN_MANIFEST).is_file()
        closed = []
        for k, scan in enumerate(listing.scans):
            later = k + 1 < len(listing.scans)
            pending = [(d, scan) for d in listing.delays
                       if not self.taken(listing.frames.get((d, scan), ""))]
            if ended:
                closed.append(scan)
            elif not pending and (later or manifest):
                closed.append(scan)
            elif later and now - self.activity.get(scan, now) > self.timeout:
                closed.append(scan)
            else:
                continue
            for key in pending:
                if key not in self.given_up:
                    path = listing.frames.get(key)
                    self.given_up[key] = ("never completed" if path is not None
                                          else "no file")
        return closed

    def snapshot(self, scans):
        """The run restricted to ``scans``, every frame not taken left out (``present``
        False) and the darks, flats and pump-off frames not taken left out."""
        kwargs = {**self.open_kwargs, "missing": "exclude", "skip_bad": True}
        run = open_run(self.raw, **kwargs)
        run = run.sel(scan=list(scans))
        files = run.coords["file"].values
        taken = np.vectorize(lambda f: bool(f) and self.taken(f), otypes=[bool])(files)
        run = run.assign_coords(present=run.coords["present"] & taken)
        for role in ("darks", "flats", "pump_off"):
            run.attrs[role] = [f for f in run.attrs.get(role) or [] if self.taken(f)]
        delays, numbers = run["delay"].values, run["scan"].values
        run.attrs["missing"] = [[float(delays[i]), int(numbers[k])]
                                for i, k in np.argwhere(files == "")]
        return run

    def ended(self, until_idle, now=None):
        """Whether the run is over: its manifest is there and every file is taken, or nothing
        changed for ``until_idle`` seconds."""
        now = time.monotonic() if now is None else now
        if until_idle is not None and now - self.last_change >= until_idle:
            return True
        manifest = (Path(self.raw) / RUN_MANIFEST).is_file()
        return manifest and bool(self.files) and all(f.taken for f in self.files.values())


def _readable(path):
    try:
        diffread(path)
    except Exception:  # truncated, or being written: not taken yet
        return False
    return True


def _publish(output, version):
    """Point the link ``output`` at ``version`` atomically (a new link renamed over it)."""
    link = output.with_name(f".{output.name}.link-{os.getpid()}")
    if link.is_symlink():
        link.unlink()
    os.symlink(os.path.relpath(version, output.parent), link)
    os.replace(link, output)


def _prune(folder, current, now=None):
    """Delete old versions: all but the newest :data:`KEEP` and :data:`GRACE` seconds old,
    only stores uedflow wrote (:func:`~uedflow.io.safety.clear_store`)."""
    now = time.time() if now is None else now
    versions = sorted(p for p in folder.glob("v*") if p.is_dir() and p != current)
    for old in versions[:max(len(versions) - (KEEP - 1), 0)]:
        if now - old.stat().st_mtime < GRACE or store_marker(old)[0] is None:
            continue
        clear_store(old)
        shutil.rmtree(old / ".uedflow", ignore_errors=True)
        old.rmdir()


def _check_output(output):
    """``output`` must be absent or a link that ``--follow`` made."""
    if output.is_symlink():
        target = Path(os.path.realpath(output))
        if target.parent != versions_dir(output):
            raise FileExistsError(f"'{output}' is a link to '{target}', not a live store of "
                                  f"uedflow (those link into '{versions_dir(output)}')")
    elif output.exists():
        raise FileExistsError(f"'{output}' exists and is not a live store: reduce --follow "
                              "writes its output as a link to versions in "
                              f"'{versions_dir(output)}'; choose another -o")


def _next_version(folder):
    numbers = [int(p.name[1:]) for p in folder.glob("v*") if p.name[1:].isdigit()]
    return folder / f"v{max(numbers, default=0) + 1:06d}"


def follow(raw, output, config=None, *, open_kwargs=None, every=2.0, until_idle=None,
           settle=None, timeout=60.0, on_update=None, log=print):
    """Reduce a run while it is acquired, keeping ``output`` a valid reduced store.

    Parameters
    ----------
    raw : path-like
        Run directory, being written.
    output : path-like
        The store: a symbolic link to the current version in ``OUT.live/`` (see the module's
        notes); absent, or a link a previous ``follow`` made.
    config : ReduceConfig or dict, optional
        Reduction configuration.
    open_kwargs : dict, optional
        How to open the run (:func:`~uedflow.io.runs.open_run` keywords, e.g.
        ``config.run.open_kwargs()``).
    every : float, optional
        Seconds between polls of the run directory.
    until_idle : float, optional
        Stop once no file has changed for this many seconds (and reduce every scan); None:
        only the run's manifest (``run.json``, written last) or Ctrl-C stops.
    settle : float, optional
        Seconds a file must stay unchanged to be read (default: ``min(every, 1)``).
    timeout : float, optional
        Seconds after its scan's last change at which a frame not complete is given up
        (reported, left out).
    on_update : callable, optional
        Called with the path of each new version once it is published.
    log : callable, optional
        Prints progress lines.

    Returns
    -------
    dict
        ``scans`` reduced, ``complete``, ``versions`` written, ``left_out`` frames, and
        ``interrupted`` (Ctrl-C).
    """
    raw, output = Path(raw).absolute(), Path(output).absolute()
    _check_output(output)
    folder = versions_dir(output)
    folder.mkdir(exist_ok=True)
    follower = Follower(raw, dict(open_kwargs or {}), min(every, 1.0) if settle is None
                        else settle, timeout)
    done, versions, complete = [], 0, False
    try:
        while True:
            start = time.monotonic()
            listing = follower.poll()
            ended = listing is not None and follower.ended(until_idle)
            closed = follower.closed_scans(listing, ended) if listing is not None else []
            if closed and (closed != done or ended):
                for (d, s), reason in follower.given_up.items():
                    if s in closed and s not in done:
                        log(f"follow: frame (delay {d:g} ps, scan {s}) left out: {reason}")
                version = _next_version(folder)
                _write_version(follower, closed, ended, config, version)
                _publish(output, version)
                versions += 1
                done, complete = closed, ended
                log(f"follow: {output} has scans {closed[0]}..{closed[-1]} ({len(closed)}); "
                    + ("run complete" if ended else "following"))
                if on_update is not None:
                    on_update(version)
                _prune(folder, version)
            if ended:
                break
            time.sleep(max(every - (time.monotonic() - start), 0.05))
    except KeyboardInterrupt:
        log(f"follow: interrupted; {output} holds scans {done or 'none'}")
        return _summary(done, False, versions, follower, interrupted=True)
    return _summary(done, complete, versions, follower)


def _summary(scans, complete, versions, follower, interrupted=False):
    return {"scans": list(scans), "complete": complete, "versions": versions,
            "left_out": [[d, s, r] for (d, s), r in follower.given_up.items()],
            "interrupted": interrupted}


def _write_version(follower, scans, complete, config, version):
    """Reduce the closed ``scans`` into the new store ``version``; a write interrupted is
    removed (it was never published)."""
    try:
        run = follower.snapshot(scans)
        ds = reduce(run, config)
        ds.attrs[LIVE_ATTR] = json.dumps({
            "scans": [int(s) for s in scans], "complete": bool(complete),
            "version": version.name, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "left_out": [[d, s, r] for (d, s), r in follower.given_up.items() if s in scans]})
        write_reduced(ds, version)
    except BaseException:
        if version.exists() and store_marker(version)[0] is not None:
            clear_store(version)
            shutil.rmtree(version / ".uedflow", ignore_errors=True)
            version.rmdir()
        raise
