"""Realistic raw UED runs with a known, noise-free answer, for the physics tests.

:func:`make_physics_run` writes a run in the lab layout that ``uedflow reduce`` recognises
(``scan_0001/pumpon_+001.000ps.tif``, ``dark_image/``, ``pump_off/``, optionally
``mask.tif``) and returns a :class:`Truth`: the true centre of every frame, the noise-free
pattern of every delay, the bad pixels, the injected bad frame, the rings and the true ΔI/I
of each ring.

The physics is this module's own (only the file layout follows :mod:`uedflow.datasets`):

* a polycrystalline pattern, radially symmetric about the pattern centre: Gaussian rings at
  ``q = R / m`` (``m`` the frame side) = 0.13, 0.19, 0.255, 0.337 on a Lorentzian diffuse
  background, in electrons per pixel per frame;
* the pump heats the lattice: ring ``k`` is multiplied by the Debye-Waller factor
  ``exp(-B(t) q_k^2)``, ``B(t) = B_res + B_max (1 - exp(-t / tau))`` for ``t > 0``, with
  ``B_max`` such that the innermost ring loses 4 % and the outermost 24 %; the diffuse
  background rises by ``diffuse_rise`` (3 %) at the same pace. The total intensity therefore
  changes with delay. Before time zero the lattice keeps a little heat from the previous
  pulses (``B_res``: the outer ring 1 % below its pump-off level); the pump-off frames are
  the cold equilibrium;
* each frame's beam current ``c`` fluctuates by ``jitter`` (rms); by default the fluctuations
  of the good frames of each delay (and of all pump-off frames) are centred on 1, so that the
  delay averages are at the nominal current and the noise-free pattern is the truth of any
  normalisation that keeps the delays' own levels (the mean current of a delay is otherwise
  indistinguishable from a real change of the total intensity; the benchmark measures that
  case too);
* the detector: ``gain`` ADU per electron (Poisson), a dark offset with a fixed pattern,
  Gaussian read noise, saturated hot pixels, a dead column (offset only), a beam block (no
  electron through, fixed on the detector, off the pattern centre by a few px), uint16;
* the pattern centre drifts by a bounded random walk (``drift`` px per frame, in acquisition
  order: each scan's pump-off frames, then its delays);
* one bad frame: the beam lost (current x 0.3) or a large bright artefact.

Conventions: arrays ``[row, col]``, centres ``(row, col)``, pixel ``(i, j)`` at coordinate
``(i, j)``; masks True on valid pixels.
"""

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

__all__ = ["RunSpec", "Truth", "make_physics_run", "radial_profile", "ring_values"]

#: Ring positions ``q = R / m`` and relative amplitudes (decreasing like a form factor).
RING_Q = (0.13, 0.19, 0.255, 0.337)
RING_AMPLITUDE = (12.0, 8.0, 5.0, 2.5)
#: Ring loss at full heating, innermost and outermost ring (fixes B_max with RING_Q).
INNER_LOSS, OUTER_LOSS = 0.04, 0.24
#: Diffuse background, relative to the ring amplitudes: ``D0 / (1 + (r / (W m))^2) + F``.
DIFFUSE, DIFFUSE_WIDTH, FLOOR = 4.0, 0.15, 0.3
#: Half-width of a ring's radius window, in ring widths (sigma).
WINDOW = 2.5
#: Radial sampling step (px) of the tabulated profiles from which frames are rendered.
STEP = 0.01
SATURATED = 65535
BLOCKS = ("stick", "edge", "disk")
BAD_FRAMES = (None, "beam_lost", "artefact")

# purposes mixed into the seed, so that the random streams never coincide
_GEOMETRY, _DRIFT, _CURRENT, _NOISE, _DARK, _PUMP_OFF = range(6)


@dataclass(frozen=True)
class RunSpec:
    """What to simulate. Counts are electrons, detector values ADU.

    Attributes
    ----------
    size : int
        Frame side (px), square frames.
    delays : tuple of float
        Delays (ps, at most 3 decimals); those below 0 are before time zero.
    n_scans : int
        Scans (each one sweep over the delays).
    outer_counts : float
        Electrons per pixel per frame at the peak of the outermost ring (pump off), ring and
        background together; everything else scales with it.
    gain : float
        ADU per electron.
    dark_offset, offset_spread, read_noise : float
        Mean detector offset, rms of its fixed pattern over pixels, Gaussian read noise (ADU).
    n_darks : int
        Dark frames written (offset, read noise, hot pixels).
    diffuse_rise : float
        Relative rise of the diffuse background at full heating.
    tau : float
        Heating time (ps).
    residual_loss : float
        Loss of the outermost ring before time zero relative to pump off (heat left from the
        previous pulses).
    jitter : float
        Rms of the per-frame beam-current fluctuation.
    centred_current : bool
        Centre the fluctuations of each delay's good frames (and of the pump-off frames) on 1.
    n_pump_off : int
        Pump-off frames per scan (0: no ``pump_off/`` folder).
    drift, drift_bound : float
        Rms step (px, per axis) of the centre's random walk, and its reflecting bound.
    block : {"stick", "edge", "disk"}
        Beam block: a disk on a stick to the frame edge at a random angle, a rectangle from a
        random edge past the centre, or a disk alone.
    block_transmission : float
        Fraction of the electrons that pass the block.
    n_hot : int or None
        Saturated hot pixels (default ``max(5, size**2 // 16384)``).
    dead_column : bool
        One dead column (offset and read noise, no electrons).
    bad_frame : {None, "beam_lost", "artefact"}
        The injected bad frame (after time zero, never the first frame).
    write_mask : bool
        Write ``mask.tif`` (uint8, 1 = valid: every pixel but the block, hot and dead ones).
    seed : int
        Master seed: the run is a deterministic function of the spec.
    """

    size: int = 512
    delays: tuple = (-2.0, -1.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
    n_scans: int = 4
    outer_counts: float = 3.0
    gain: float = 3.0
    dark_offset: float = 12.0
    offset_spread: float = 1.5
    read_noise: float = 2.0
    n_darks: int = 16
    diffuse_rise: float = 0.03
    tau: float = 1.0
    residual_loss: float = 0.01
    jitter: float = 0.03
    centred_current: bool = True
    n_pump_off: int = 1
    drift: float = 0.5
    drift_bound: float = 2.5
    block: str = "stick"
    block_transmission: float = 0.0
    n_hot: int | None = None
    dead_column: bool = True
    bad_frame: str | None = "beam_lost"
    write_mask: bool = True
    seed: int = 0

    def __post_init__(self):
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {self.block!r}")
        if self.bad_frame not in BAD_FRAMES:
            raise ValueError(f"bad_frame must be one of {BAD_FRAMES}, got {self.bad_frame!r}")
        if any(float(f"{t:.3f}") != t for t in self.delays):
            raise ValueError(f"delays must have at most 3 decimals, got {self.delays}")
        if self.bad_frame and not any(t > 0 for t in self.delays):
            raise ValueError("a bad frame needs a delay after time zero")


@dataclass
class Truth:
    """The noise-free answer of a run written by :func:`make_physics_run`.

    Attributes
    ----------
    spec : RunSpec
    path : pathlib.Path
        The run directory.
    shape : tuple of int
    delays : ndarray
        Delays (ps), sorted.
    scans : ndarray
        Scan numbers (from 1).
    center : ndarray
        Nominal pattern centre ``(row, col)``.
    centers : ndarray, shape (delay, scan, 2)
        True pattern centre of every frame.
    pump_off_centers : ndarray, shape (scan, n_pump_off, 2)
    current : ndarray, shape (delay, scan)
        Beam current of every frame (1 = nominal).
    pump_off_current : ndarray, shape (scan, n_pump_off)
    bad : ndarray of bool
        True on the bad detector pixels (block, hot pixels, dead column).
    block, hot, dead : ndarray of bool
        True on the beam block, on the hot pixels, on the dead column.
    bad_frame : tuple or None
        ``(delay, scan)`` of the injected bad frame.
    ring_radii : ndarray
        Ring radii (px).
    ring_sigma : float
        Ring width (px).
    windows : list of (int, int)
        Radius window ``lo <= r <= hi`` of every ring.
    dark_error : ndarray
        Mean of the dark frames minus the true offset (ADU): the part of a dark-subtracted
        frame that no average over scans removes.
    """

    spec: RunSpec
    path: Path
    shape: tuple
    delays: np.ndarray
    scans: np.ndarray
    center: np.ndarray
    centers: np.ndarray
    pump_off_centers: np.ndarray
    current: np.ndarray
    pump_off_current: np.ndarray
    bad: np.ndarray
    block: np.ndarray
    hot: np.ndarray
    dead: np.ndarray
    bad_frame: tuple | None
    ring_radii: np.ndarray
    ring_sigma: float
    windows: list
    dark_error: np.ndarray
    _tables: dict = field(default_factory=dict, repr=False)
    _profiles: dict = field(default_factory=dict, repr=False)

    @property
    def bad_area(self):
        """Fraction of the detector that is bad."""
        return float(self.bad.mean())

    @property
    def reference_center(self):
        """True centre of the first frame (first delay, first scan): the reduced movie's."""
        return self.centers[0, 0]

    def state(self, delay):
        """Debye-Waller coefficient and diffuse scale ``(B, D)`` at ``delay`` (ps), or pump
        off (``delay=None``)."""
        spec = self.spec
        b_max = -math.log(1 - INNER_LOSS) / RING_Q[0] ** 2
        b_res = -math.log(1 - spec.residual_loss) / RING_Q[-1] ** 2
        if delay is None:
            return 0.0, 1.0
        rise = 1 - math.exp(-delay / spec.tau) if delay > 0 else 0.0
        return b_res + b_max * rise, 1 + spec.diffuse_rise * rise

    def profile(self, r, delay):
        """Expected electrons per pixel at radii ``r`` (px) at ``delay`` (None: pump off),
        nominal current, no block."""
        b, d = self.state(delay)
        m = min(self.shape)
        scale = _scale(self.spec.outer_counts, m)
        r = np.asarray(r, float)
        out = d * (DIFFUSE / (1 + (r / (DIFFUSE_WIDTH * m)) ** 2) + FLOOR)
        for q, a in zip(RING_Q, RING_AMPLITUDE, strict=True):
            out += a * math.exp(-b * q**2) * np.exp(-0.5 * ((r - q * m) / self.ring_sigma) ** 2)
        return scale * out

    def model(self, delay, center=None):
        """Noise-free frame (electrons, nominal current, no block) at ``delay`` (None: pump
        off) about ``center`` (default: the first frame's, that of the reduced movie)."""
        c = self.reference_center if center is None else center
        return self._render(delay, c)

    def _render(self, delay, center):
        table = self._tables.get(delay)
        if table is None:
            ny, nx = self.shape
            table = self._tables[delay] = self.profile(
                np.arange(0, math.hypot(ny, nx) + 2 * self.spec.drift_bound + 4, STEP), delay)
        yy = np.arange(self.shape[0]) - center[0]
        xx = np.arange(self.shape[1]) - center[1]
        x = np.sqrt(yy[:, None] ** 2 + xx[None, :] ** 2) / STEP
        index = x.astype(np.intp)
        x -= index
        low = table[index]
        return low + x * (table[index + 1] - low)

    def radial(self, delay):
        """Radial profile (integer radii from 0) of the noise-free frame at ``delay`` (None:
        pump off; "counts": the pixels per radius) about the movie's centre."""
        if delay not in self._profiles:
            image = np.ones(self.shape) if delay == "counts" else self.model(delay)
            self._profiles[delay] = radial_profile(image, self.reference_center,
                                                   counts=delay == "counts")
        return self._profiles[delay]

    def levels(self, kept=None, nominal=False):
        """Mean beam current of each delay's ``kept`` frames (``(delay, scan)`` bool; default:
        all but the bad frame), and of the pump-off frames: the level of each average, which a
        reduction that keeps real changes between delays cannot tell from the pattern's. With
        ``nominal``: 1 everywhere."""
        if nominal:
            return np.ones(self.delays.size), 1.0
        if kept is None:
            kept = np.ones(self.current.shape, bool)
            if self.bad_frame is not None:
                delay, scan = self.bad_frame
                kept[np.flatnonzero(self.delays == delay)[0], scan - 1] = False
        kept = np.asarray(kept, bool)
        delays = np.array([self.current[i, row].mean() if row.any() else np.nan
                           for i, row in enumerate(kept)])
        pump_off = self.pump_off_current.mean() if self.pump_off_current.size else np.nan
        return delays, pump_off

    def reference_profile(self, reference="before_t0", kept=None, nominal=False):
        """Radial profile of the equilibrium: the mean of the delays before time zero, or the
        pump-off pattern (at the levels of :meth:`levels`)."""
        delays, pump_off = self.levels(kept, nominal)
        if reference == "pump_off":
            return pump_off * self.radial(None)
        before = np.flatnonzero(self.delays < 0)
        return np.mean([delays[i] * self.radial(self.delays[i]) for i in before], axis=0)

    def ring_change(self, reference="before_t0", kept=None, nominal=False):
        """True ΔI/I ``(delay, ring)`` of each ring window against the delays before time
        zero or the pump-off pattern: ``sum(P_t - P_ref) / sum(P_ref)`` over the window's
        pixels, from radial profiles of the noise-free frames about the movie's centre, each
        at the level of its ``kept`` frames (:meth:`levels`: with centred jitter, the nominal
        current when every good frame is kept), or at the ``nominal`` current."""
        counts = self.radial("counts")
        ref = self.reference_profile(reference, kept, nominal)
        levels, _ = self.levels(kept, nominal)
        out = np.empty((self.delays.size, len(self.windows)))
        for k, (lo, hi) in enumerate(self.windows):
            w = slice(lo, hi + 1)
            total = (ref[w] * counts[w]).sum()
            for i, t in enumerate(self.delays):
                out[i, k] = ((levels[i] * self.radial(t)[w] - ref[w]) * counts[w]).sum() / total
        return out

    def ring_weights(self, reference="before_t0"):
        """Weights ``(ring, radius)`` (integer radii from 0) that turn a radial ΔI/I into each
        ring window's ΔI/I: the reference profile times the pixels per radius, in the window,
        summing to 1."""
        counts, ref = self.radial("counts"), self.reference_profile(reference)
        weights = np.zeros((len(self.windows), ref.size))
        for k, (lo, hi) in enumerate(self.windows):
            weights[k, lo:hi + 1] = ref[lo:hi + 1] * counts[lo:hi + 1]
            weights[k] /= weights[k].sum()
        return weights

    def expected_ring_noise(self, reference="before_t0"):
        """Shot and read noise alone of each ring window's ΔI/I ``(delay, ring)`` after an
        average over the good scans (standard error, first order): what no reduction can
        beat, to check that a test's bound measures the reduction, not the noise."""
        spec = self.spec
        counts = self.radial("counts")
        n_good = np.full(self.delays.size, spec.n_scans, float)
        if self.bad_frame is not None:
            n_good[np.flatnonzero(self.delays == self.bad_frame[0])] -= 1

        def rel_var(delay, n, w):
            signal = (self.radial(delay)[w] * counts[w]).sum()
            var = spec.gain**2 * signal + spec.read_noise**2 * counts[w].sum()
            return var / (spec.gain * signal) ** 2 / n

        out = np.empty((self.delays.size, len(self.windows)))
        before = np.flatnonzero(self.delays < 0)
        for k, (lo, hi) in enumerate(self.windows):
            w = slice(lo, hi + 1)
            if reference == "pump_off":
                ref = rel_var(None, spec.n_scans * spec.n_pump_off, w)
            else:
                ref = np.mean([rel_var(self.delays[i], n_good[i], w) for i in before])
                ref /= before.size
            for i, t in enumerate(self.delays):
                out[i, k] = math.sqrt(rel_var(t, n_good[i], w) + ref)
        return out


def _scale(outer_counts, m):
    """Electrons per unit amplitude such that the outermost ring's peak (pump off) holds
    ``outer_counts`` electrons per pixel."""
    q = RING_Q[-1]
    peak = RING_AMPLITUDE[-1] + DIFFUSE / (1 + (q / DIFFUSE_WIDTH) ** 2) + FLOOR
    return outer_counts / peak


def radial_profile(image, center, *, counts=False):
    """Mean of ``image`` over the pixels of each integer radius (rounded distance to
    ``center``, ``(row, col)``), from radius 0; with ``counts``, the pixels per radius."""
    yy, xx = np.indices(image.shape)
    bins = np.rint(np.hypot(yy - center[0], xx - center[1])).astype(np.intp).ravel()
    n = np.bincount(bins)
    if counts:
        return n.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.bincount(bins, image.ravel().astype(float)) / n


def ring_values(change, radius, weights):
    """Each ring window's ΔI/I ``(delay, ring)`` from a radial ΔI/I ``(delay, radius)`` on the
    integer radii ``radius``, with the ``weights`` of :meth:`Truth.ring_weights`; NaN for a
    ring whose window the profile does not cover (or where it is NaN)."""
    change = np.asarray(change, float)
    radius = np.asarray(radius).astype(np.intp)
    inside = (radius >= 0) & (radius < weights.shape[1])
    w = np.zeros((weights.shape[0], radius.size))
    w[:, inside] = weights[:, radius[inside]]
    covered = np.isclose(w.sum(axis=1), 1)
    missing = np.isnan(change)
    out = np.where(missing, 0, change) @ w.T
    out[(missing @ (w > 0).T) | ~covered] = np.nan
    return out


def _walk(rng, n, step, bound):
    """Bounded 2-D random walk of ``n`` positions (reflected at +-bound), from 0."""
    out = np.zeros((n, 2))
    p = np.zeros(2)
    for j in range(1, n):
        p = p + rng.normal(0, step, 2)
        p = np.where(p > bound, 2 * bound - p, p)
        p = np.where(p < -bound, -2 * bound - p, p)
        out[j] = p
    return out


def _block(shape, center, kind, rng):
    """True on the beam block: a disk (radius 0.07 m) about ``center`` with a stick (half
    width 0.02 m) to the edge at a random angle, a rectangle (half width 0.05 m) from a random
    edge to 0.07 m past the centre, or the disk alone."""
    m = min(shape)
    yy = np.arange(shape[0])[:, None] - center[0]
    xx = np.arange(shape[1])[None, :] - center[1]
    if kind == "edge":
        half, past = 0.05 * m, 0.07 * m
        side = rng.integers(4)
        along, across = [(-yy, xx), (yy, xx), (-xx, yy), (xx, yy)][side]
        return (along <= past) & (np.abs(across) <= half) | np.zeros(shape, bool)
    block = yy**2 + xx**2 <= (0.07 * m) ** 2
    if kind == "stick":
        angle = rng.uniform(0, 2 * math.pi)
        u, v = math.cos(angle), math.sin(angle)
        along = yy * u + xx * v
        across = -yy * v + xx * u
        block |= (along >= 0) & (np.abs(across) <= 0.02 * m)
    return block


def _centred(values, use):
    """``1 + values`` with the mean of ``values[use]`` removed."""
    return 1 + values - (values[use].mean() if use.any() else 0)


def make_physics_run(path, spec=None, **overrides):
    """Write a raw run in the lab layout and return its :class:`Truth`.

    Parameters
    ----------
    path : path-like
        Run directory (created; must not hold a run).
    spec : RunSpec, optional
        What to simulate; ``overrides`` replace its fields.

    Returns
    -------
    Truth
    """
    spec = RunSpec(**{**(spec.__dict__ if spec else {}), **overrides})
    path = Path(path)
    if (path / "scan_0001").exists():
        raise FileExistsError(f"{path} already holds a run")
    n = spec.size
    shape = (n, n)
    delays = np.array(sorted(spec.delays), float)
    n_delays, n_scans, n_off = delays.size, spec.n_scans, spec.n_pump_off
    geo = np.random.default_rng([spec.seed, _GEOMETRY])

    center = np.array([0.48 * n, 0.52 * n]) + geo.uniform(-0.5, 0.5, 2) * [0.04 * n, 0.04 * n]
    block = _block(shape, center + geo.uniform(-3, 3, 2), spec.block, geo)
    n_hot = max(5, n * n // 16384) if spec.n_hot is None else spec.n_hot
    hot = np.unravel_index(geo.choice(n * n, n_hot, replace=False), shape)
    dead = np.zeros(shape, bool)
    if spec.dead_column:
        dead[:, int(geo.integers(n // 8, n - n // 8))] = True
    bad = block.copy()
    bad[hot] = True
    bad |= dead
    offset = spec.dark_offset + geo.normal(0, spec.offset_spread, shape)

    # acquisition order: each scan's pump-off frames, then its delays
    walk = _walk(np.random.default_rng([spec.seed, _DRIFT]), n_scans * (n_off + n_delays),
                 spec.drift, spec.drift_bound).reshape(n_scans, n_off + n_delays, 2)
    pump_off_centers = center + walk[:, :n_off]
    centers = (center + walk[:, n_off:]).transpose(1, 0, 2)

    bad_frame = None
    good = np.ones((n_delays, n_scans), bool)
    if spec.bad_frame:
        after = np.flatnonzero(delays > 0)
        i = int(geo.choice(after[1:] if after.size > 1 else after))
        s = int(geo.integers(n_scans))
        good[i, s] = False
        bad_frame = (float(delays[i]), s + 1)
    crng = np.random.default_rng([spec.seed, _CURRENT])
    jitter = crng.normal(0, spec.jitter, (n_delays, n_scans))
    off_jitter = crng.normal(0, spec.jitter, (n_scans, max(n_off, 1)))[:, :n_off]
    if spec.centred_current:
        current = np.stack([_centred(row, use) for row, use in zip(jitter, good, strict=True)])
        pump_off_current = _centred(off_jitter, np.ones(off_jitter.shape, bool))
    else:
        current, pump_off_current = 1 + jitter, 1 + off_jitter
    if spec.bad_frame == "beam_lost":
        current[~good] = 0.3

    truth = Truth(spec, path, shape, delays, np.arange(1, n_scans + 1), center, centers,
                  pump_off_centers, current, pump_off_current, bad, block,
                  bad & ~block & ~dead, dead, bad_frame,
                  np.array(RING_Q) * n, max(1.5, 0.008 * n), [], np.zeros(shape))
    truth.windows = [(math.floor(r - WINDOW * truth.ring_sigma),
                      math.ceil(r + WINDOW * truth.ring_sigma)) for r in truth.ring_radii]
    transmission = np.where(block, spec.block_transmission, 1.0)

    def write(name, adu):
        file = path / name
        file.parent.mkdir(parents=True, exist_ok=True)
        adu = np.clip(np.rint(adu), 0, SATURATED)
        adu[hot] = SATURATED
        tifffile.imwrite(file, adu.astype(np.uint16))

    def frame(delay, frame_center, current, seed, artefact=False):
        rng = np.random.default_rng(seed)
        lam = truth._render(delay, frame_center) * transmission * current
        if artefact:  # a bright blob a fifth of the frame across
            yy, xx = np.indices(shape)
            spot = geo.uniform(0.2 * n, 0.8 * n, 2)
            lam += 20 * spec.outer_counts * np.exp(
                -0.5 * ((yy - spot[0]) ** 2 + (xx - spot[1]) ** 2) / (0.05 * n) ** 2)
        electrons = rng.poisson(lam)
        electrons[dead] = 0
        return spec.gain * electrons + offset + rng.normal(0, spec.read_noise, shape)

    for s in range(n_scans):
        for k in range(n_off):
            write(f"pump_off/pumpoff_{s + 1:04d}_{k + 1:02d}.tif",
                  frame(None, pump_off_centers[s, k], pump_off_current[s, k],
                        [spec.seed, _PUMP_OFF, s, k]))
        for i, t in enumerate(delays):
            write(f"scan_{s + 1:04d}/pumpon_{t:+08.3f}ps.tif",
                  frame(t, centers[i, s], current[i, s], [spec.seed, _NOISE, i, s],
                        artefact=spec.bad_frame == "artefact" and not good[i, s]))
    darks = []
    for k in range(spec.n_darks):
        rng = np.random.default_rng([spec.seed, _DARK, k])
        darks.append(np.clip(np.rint(offset + rng.normal(0, spec.read_noise, shape)), 0,
                             SATURATED))
        write(f"dark_image/dark_{k + 1:03d}.tif", darks[-1])
    if darks:
        truth.dark_error = (np.mean(darks, axis=0) - offset).astype(np.float32)
    if spec.write_mask:
        tifffile.imwrite(path / "mask.tif", (~bad).astype(np.uint8))
    return truth
