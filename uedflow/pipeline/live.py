"""Reduce a run while it is acquired: :func:`follow` (``uedflow reduce RAW -o OUT --follow``).

The run directory is looked at every ``every`` seconds (:class:`Follower`). A file is
*taken* once it is complete: its size and modification time unchanged for ``settle`` seconds,
and its pixels readable. A scan is *closed* once every frame of it is taken and a later scan
has begun (or the run's ``run.json`` manifest is there: delays named by the files are all
known only when a scan is over); a frame of a scan that a later scan follows, still not taken
``timeout`` seconds after its scan's last change, is reported and left out as missing.

Each time scans close, the closed scans are reduced into a new version of the store,
``OUT.live/vNNNNNN``, a complete reduced store written by
:func:`~uedflow.pipeline.store.write_reduced`; then ``OUT``, a symbolic link, is pointed at it
in one atomic ``rename``. A reader that opens ``OUT`` (resolved once: :func:`open_live`) sees
the last complete version, never a half-written one; its ``attrs["uedflow_live"]`` says which
scans are in and whether the run is complete. Older versions are deleted after
:data:`GRACE` seconds (the last :data:`KEEP` are kept).

While the run is acquired, versions come from :class:`Partials`: a new scan costs the work of
that scan. When the run ends (its manifest appears, or nothing changed for ``until_idle``
seconds) the last version is the offline reduction (:func:`~uedflow.pipeline.reduce.reduce`)
of every file taken: it equals ``uedflow reduce RAW --missing exclude`` of the same files. See
``docs/live.md``.
"""

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UnsafeDeleteError
from ..image.center import autocenter
from ..image.powder import refine_center
from ..io.lazy import RUN_MANIFEST
from ..io.readers import diffread
from ..io.runs import open_run, scan_run
from ..io.safety import clear_store, is_vacant, store_marker
from .config import ReduceConfig
from .partials import PixelSums
from .reduce import (
    RadialProfile,
    _dataset,
    _finish,
    _fraction,
    _frame_rejections,
    _frame_setup,
    _group_stats,
    _group_sums,
    _known_rejections,
    _labels,
    _movie_mask,
    _radial_geometry,
    _Registration,
    _rejected,
    _scales,
    _Timer,
    dark_and_gain,
    detector_mask,
    reduce,
)
from .store import open_reduced, write_reduced

__all__ = ["Follower", "Partials", "follow", "open_live"]

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
    problem: str = None  # why the last look found no frame

    def _listing(self):
        get = self.open_kwargs.get
        return scan_run(self.raw, get("pattern"), preset=get("preset") or "auto",
                        delays=get("delays"))

    def poll(self, now=None):
        """Look at the run's files once: record new and changed files, take the complete
        ones. Returns the listing (:class:`~uedflow.io.runs.RunFiles`)."""
        now = time.monotonic() if now is None else now
        try:
            listing = self._listing()
        except FileNotFoundError as exc:  # nothing there yet (or a pattern that never fits)
            self.problem = str(exc)
            return None
        self.problem = None
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
        self.given_up = {key: reason for key, reason in self.given_up.items()
                         if not self.taken(listing.frames.get(key, ""))}  # came late
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
        # files being written are not bad: only the frames of the closed scans are listed
        run.attrs["bad_files"] = [bad for bad in run.attrs["bad_files"] if bad[0] in files]
        delays, numbers = run["delay"].values, run["scan"].values
        run.attrs["missing"] = [[float(delays[i]), int(numbers[k])]
                                for i, k in np.argwhere(files == "")]
        return run

    def ended(self, until_idle, now=None):
        """Whether the run is over: its manifest is there and every file is taken, or nothing
        changed for ``until_idle`` seconds."""
        now = time.monotonic() if now is None else now
        if until_idle is not None and now - self.last_change >= max(until_idle, self.settle):
            return True  # every file was read after settling: those not taken never will be
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
        try:
            clear_store(old)
        except UnsafeDeleteError:  # it holds a file uedflow did not write: left alone
            continue
        shutil.rmtree(old / ".uedflow", ignore_errors=True)
        old.rmdir()


def _check_output(output, raw, overwrite):
    """``output`` must be absent or a link that ``--follow`` made, of the run ``raw`` unless
    ``overwrite``."""
    if output.is_symlink():
        target = Path(os.path.realpath(output))
        if target.parent != versions_dir(output):
            raise FileExistsError(f"'{output}' is a link to '{target}', not a live store of "
                                  f"uedflow (those link into '{versions_dir(output)}')")
        try:
            source = json.loads(open_reduced(target).attrs["uedflow"]).get("source")
        except (OSError, ValueError, KeyError):
            source = None  # its last version is gone or damaged: nothing to keep
        if source is not None and source != str(raw) and not overwrite:
            raise FileExistsError(f"'{output}' holds the live reduction of another run "
                                  f"('{source}'); use --overwrite (overwrite=True) to replace "
                                  "it, or another -o")
    elif output.exists():
        raise FileExistsError(f"'{output}' exists and is not a live store: reduce --follow "
                              "writes its output as a link to versions in "
                              f"'{versions_dir(output)}'; choose another -o")


def _next_version(folder):
    numbers = [int(p.name[1:]) for p in folder.glob("v*") if p.name[1:].isdigit()]
    return folder / f"v{max(numbers, default=0) + 1:06d}"


def follow(raw, output, config=None, *, open_kwargs=None, every=2.0, until_idle=None,
           settle=None, timeout=60.0, overwrite=False, on_update=None, log=print):
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
    overwrite : bool, optional
        Replace the live store of another run at ``output``; the store of the same run is
        always carried on (new versions after the last).
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
    if config is None:
        config = ReduceConfig()
    elif isinstance(config, dict):
        config = ReduceConfig.from_dict(config)
    if not raw.is_dir():
        raise NotADirectoryError(f"--follow watches a run directory as it is written; '{raw}' "
                                 "is not a directory (a growing HDF5 file cannot be followed "
                                 "yet: reduce it once it is complete)")
    _check_output(output, raw, overwrite)
    folder = versions_dir(output)
    follower = Follower(raw, dict(open_kwargs or {}), min(every, 1.0) if settle is None
                        else settle, timeout)
    done, versions, complete, waiting = [], 0, False, None
    live = {"partials": None, "exact": config.align.reference == "early"}
    try:
        while True:
            start = time.monotonic()
            listing = follower.poll(start)
            if listing is None and follower.problem != waiting:
                waiting = follower.problem
                log(f"follow: waiting for frames: {waiting}")
            if (listing is None and until_idle is not None
                    and start - follower.last_change >= until_idle):
                raise FileNotFoundError(f"{waiting} (for --until-idle {until_idle:g} s)")
            ended = listing is not None and follower.ended(until_idle, start)
            closed = follower.closed_scans(listing, ended, start) if listing is not None else []
            if closed and (closed != done or ended):
                for (d, s), reason in follower.given_up.items():
                    if s in closed and s not in done:
                        log(f"follow: frame (delay {d:g} ps, scan {s}) left out: {reason}")
                folder.mkdir(exist_ok=True)
                version = _next_version(folder)
                try:
                    _write_version(follower, closed, ended, config, version, live)
                except ValueError as exc:  # e.g. a delay without a frame yet
                    if ended:
                        raise
                    log(f"follow: scans {closed} not reduced yet: {exc}")
                    done = closed
                    time.sleep(every)
                    continue
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


def _write_version(follower, scans, complete, config, version, live):
    """Reduce the closed ``scans`` into the new store ``version``: at the end of the run (or
    with ``live["exact"]``) offline (:func:`reduce`), else by the :class:`Partials` kept in
    ``live``; a write interrupted is removed (it was never published)."""
    try:
        run = follower.snapshot(scans)
        partials = live["partials"]
        reads = None  # an offline reduction reads every frame twice
        if complete or live["exact"]:
            ds = reduce(run, config)
        else:
            if partials is None or not np.array_equal(partials.delays, run["delay"].values):
                partials = live["partials"] = Partials(run, config)
            ds = partials.update(run)
            reads = dict(partials.reads)
        ds.attrs[LIVE_ATTR] = json.dumps({
            "scans": [int(s) for s in scans], "complete": bool(complete),
            "version": version.name, "written": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "method": "offline" if reads is None else "partials", "reads": reads,
            "left_out": [[d, s, r] for (d, s), r in follower.given_up.items() if s in scans]})
        write_reduced(ds, version)
    except BaseException:
        if version.exists() and (store_marker(version)[0] is not None or is_vacant(version)):
            clear_store(version)
            shutil.rmtree(version / ".uedflow", ignore_errors=True)
            version.rmdir()
        raise


def _reindexed(values, start0, start, size):
    """Values of the radial bins from ``start0`` on, as those of ``start .. start + size - 1``
    (NaN where they have none)."""
    out = np.full(size, np.nan)
    low, high = max(start, start0), min(start + size, start0 + len(values))
    if high > low:
        out[low - start:high - start] = values[low - start0:high - start0]
    return out


class Partials:
    """The partial results of a live reduction, kept per scan so that a new scan costs the
    work of that scan: its frames are read once, registered (frame statistics) and added,
    divided by their own totals, into each delay's :class:`~uedflow.pipeline.partials.
    PixelSums`. The decisions that depend on all frames (frame rejection, the normalisation
    level, the movie's mask and centre, the pixel cut) are taken again at every update from
    the kept statistics and sums.

    What is fixed by the first update (the live approximation; the final version of
    :func:`follow` is the offline reduction): the dark and gain, the detector mask, the
    reference frame and the noise floor (:func:`~uedflow.pipeline.reduce.detector_mask` of the
    first scans), and the pixels and centre of the frames' radial profiles (their error).
    What is read again: the frames of a delay in which a frame added before is rejected now
    (the delay's sums are rebuilt), and the frames rejected before and kept now.

    Parameters
    ----------
    run : xarray.DataArray
        The first closed scans (:meth:`Follower.snapshot`).
    config : ReduceConfig
        Configuration (``[align] reference = "early"`` is not supported: use :func:`reduce`).
    """

    def __init__(self, run, config):
        self.config = config
        self.delays = run["delay"].values
        present = run.coords["present"].values.astype(bool)
        self.dark, self.gain = dark_and_gain(run, config)
        (self.valid, self.parts, self.reference, self.reference_label,
         self.noise) = detector_mask(run, config, self.dark, self.gain, present)
        given = config.center.value is not None
        center = None
        if given or config.normalize.ring is not None:
            center = np.asarray(config.center.value if given else
                                autocenter(self.reference, self.valid), dtype=float)
        self.center = center if given else None
        self.registration, self.inside = _frame_setup(config, self.reference, self.valid,
                                                      center)
        if center is None:
            center = np.asarray(autocenter(self.reference, self.valid), dtype=float)
        self.radial = _radial_geometry(center, self.valid)
        self.profile = RadialProfile(center, self.valid, *self.radial)
        self.stats = {}  # scan -> (delay, 5) frame statistics
        self.order = []  # scans in the order they came: their index in the sums
        self.aligned = np.zeros(self.valid.shape, np.float32)
        self.sums = [None] * len(self.delays)
        self.added = [set() for _ in self.delays]
        self.pump = {}  # pump-off file -> its statistics
        self.pump_sums, self.pump_added = None, set()
        self.reads = {"frames": 0, "again": 0}
        self._frames = {}

    def _read(self, run, i, k):
        """Frame ``(i, k)`` of ``run``: of a new scan, from memory; else read again."""
        scan = int(run["scan"].values[k])
        if (scan, i) in self._frames:
            return self._frames[scan, i]
        self.reads["again"] += 1
        return np.asarray(run.data[i, k].compute())

    def _statistics(self, frame, label, aligned=True):
        stats, _ = _group_stats(frame[None, None], np.array([label]), np.ones(1, bool),
                                    self.dark, self.gain, self.valid, self.registration,
                                    self.inside, self.aligned if aligned else None)
        return stats[0]

    def _add(self, sums, frame, shift, base, index):
        if sums is None:
            sums = PixelSums(frame.shape, self.profile)
        return _group_sums(frame[None, None], np.ones(1, bool), shift[None], np.array([base]),
                           np.array([index]), self.dark, self.gain, self.valid, self.profile,
                           sums)

    def update(self, run):
        """Take in the scans of ``run`` (the closed scans, a snapshot) not seen before and
        return the reduced Dataset of all of them, as :func:`reduce` lays it out."""
        config = self.config
        scans = run["scan"].values
        present = run.coords["present"].values.astype(bool)
        labels = _labels(run)
        for k, scan in enumerate(scans):
            if scan in self.stats:
                continue
            stats = np.full((len(self.delays), 5), np.nan)
            frames = np.asarray(run.data[:, k].compute())  # the scan, in one read
            for i in np.flatnonzero(present[:, k]):
                self.reads["frames"] += 1
                self._frames[int(scan), i] = frames[i]
                stats[i] = self._statistics(frames[i], labels[i, k])
            self.stats[scan] = stats
            self.order.append(int(scan))
        stats = np.stack([self.stats[s] for s in scans], axis=1)
        present &= ~np.isnan(stats[..., 4])  # a frame come after its scan closed: left out
        shifts, total, correlation = stats[..., :2], stats[..., 2], stats[..., 3]
        reasons = _known_rejections(config.reject, present, scans[None, :])
        reasons["nonfinite"] = present & (stats[..., 4] == 1)
        reasons = _frame_rejections(config.reject, reasons, shifts, total, correlation,
                                    config.align.max_shift, config.align.upsample_factor)
        rejected = _rejected(reasons, self.delays)
        kept = ~rejected
        mode = config.normalize.mode
        base = 1 / total if mode != "none" else np.ones(total.shape)
        for i in range(len(self.delays)):
            want = {int(s) for s in scans[kept[i]]}
            if self.added[i] - want:  # a frame added before is rejected now: rebuild
                self.sums[i], self.added[i] = None, set()
            for k in np.flatnonzero(kept[i]):
                scan = int(scans[k])
                if scan not in self.added[i]:
                    self.sums[i] = self._add(self.sums[i], self._read(run, i, k), shifts[i, k],
                                             base[i, k], self.order.index(scan))
                    self.added[i].add(scan)
        self._frames = {}
        return self._dataset(run, stats, reasons, rejected, present)

    def _pump_off(self, files, level):
        """The pump-off average (computed), its frames left out; None without files."""
        if not files:
            return None, []
        for f in files:
            if f not in self.pump:
                frame = np.asarray(diffread(f), dtype=np.float32)
                self.reads["frames"] += 1
                self.pump[f] = (frame, self._statistics(frame, f, aligned=False))
        stats = np.array([self.pump[f][1] for f in files])
        kept = stats[:, 4] == 0
        if not kept.any():
            raise ValueError(f"every pump-off frame has non-finite values on valid pixels: "
                             f"{files[0]}, ...")
        scales = _scales(stats[None, :, 2], kept[None], level)[0]
        for k in np.flatnonzero(kept):
            if files[k] not in self.pump_added:
                base = 1.0 if level is None else 1 / stats[k, 2]
                self.pump_sums = self._add(self.pump_sums, self.pump[files[k]][0],
                                           stats[k, :2], base, k)
                self.pump_added.add(files[k])
        self.pump = {f: (None, s) for f, (_, s) in self.pump.items()}  # frames: added
        factor = scales[kept][0] * stats[kept][0, 2] if level is not None else 1.0
        return factor, [f for f, k in zip(files, kept, strict=True) if not k]

    def _dataset(self, run, stats, reasons, rejected, present):
        config, timer = self.config, _Timer()
        shifts, total, correlation = stats[..., :2], stats[..., 2], stats[..., 3]
        kept = ~rejected
        mask, common = _movie_mask(self.valid, shifts, kept)
        parts = {**self.parts, "margin": _fraction(self.valid & ~mask),
                 "total": _fraction(~mask)}
        center = self.center
        if center is None:  # as reduce: the refined centre of the aligned mean
            summed = np.stack([self.stats[s] for s in self.order], axis=1)[..., 4] == 0
            aligned = self.aligned / max(np.count_nonzero(summed), 1)
            center = refine_center(aligned, autocenter(aligned, common), common)
            center -= np.mean(np.rint(shifts[stats[..., 4] == 0]) - shifts[stats[..., 4] == 0],
                              axis=0)
        level = {"none": None, "delay": "delay", "run": float(np.median(total[kept]))}[
            config.normalize.mode]
        scales = _scales(total, kept, level)
        # each delay's factor: its frames were added divided by their own totals
        first = np.argmax(kept, axis=1)
        rows = np.arange(len(self.delays))
        factors = (scales[rows, first] * total[rows, first] if level is not None
                   else np.ones(len(self.delays)))
        start, size = _radial_geometry(center, mask)
        pixel_z = config.reject.pixel_z if config.reject.enabled else None
        registration = (_Registration(self.reference, mask, config.align.upsample_factor, 1)
                        if config.average.align else None)
        position = [self.order.index(int(s)) for s in run["scan"].values]

        def finish(sums, factor, registration=registration):
            image, error, delta, cuts, radial_error = _finish(
                sums.scaled(factor), pixel_z, self.noise, mask, registration, len(self.order))
            return (image, error, delta, cuts[position],
                    _reindexed(radial_error, self.radial[0], start, size))

        results = [finish(self.sums[i], factors[i]) for i in range(len(self.delays))]
        pump_off_files = list(run.attrs.get("pump_off") or [])
        factor, left_out = self._pump_off(pump_off_files, level)
        pump_off = None if factor is None else finish(self.pump_sums, factor, None)
        timer("live_update")
        return _dataset(run, config, results, pump_off, center=np.asarray(center, float),
                        mask=mask, radial_range=(start, size), shifts=shifts, kept=kept,
                        scales=scales, rejected=rejected, reasons=reasons, total=total,
                        correlation=correlation, present=present, parts=parts,
                        reference_label=self.reference_label, pump_off_left_out=left_out,
                        timer=timer)
