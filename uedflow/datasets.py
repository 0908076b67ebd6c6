"""Synthetic ultrafast-electron-diffraction (UED) frames and time-resolved runs.

This module produces the demo run, the test data and the benchmark data of uedflow:
physically plausible detector frames with a known ground truth (pattern centre,
per-frame drift, beam block, hot pixels, pump-induced intensity change).
Everything is deterministic from an integer seed.

Functions
---------
diffraction_pattern
    Noise-free expected counts of one frame (rings and/or Bragg spots).
beam_block_mask
    Valid-pixel mask of a beam block (disc plus holder stick); True = valid.
hot_pixel_positions
    Fixed, seed-determined positions of hot detector pixels.
make_frame
    One realistic uint16 frame: pattern, beam block, dark level, Poisson noise, hot pixels.
make_run
    A whole run directory: frames (uedflow or lab layout), dark frames, ``mask.tif``,
    ``run.json``.
load_run_metadata
    Read the ``run.json`` of a run directory.
demo_run
    ``make_run`` with the demo defaults.

Notes
-----
Conventions: arrays are indexed ``[row, col]``; centres are ``(row, col)`` floats with
pixel ``(i, j)`` centred at coordinate ``(i, j)``; masks are True (or 1) where pixels
are valid, as in scikit-ued.
"""

import json
import math
import pathlib
import re

import numpy as np
import tifffile

__all__ = [
    "beam_block_mask",
    "default_center",
    "demo_run",
    "diffraction_pattern",
    "hot_pixel_positions",
    "load_run_metadata",
    "make_frame",
    "make_run",
]

KINDS = ("polycrystalline", "single_crystal", "mixed")

#: Default ring radii as fractions of ``min(shape)`` and their relative amplitudes.
RING_FRACTIONS = (0.12, 0.20, 0.28, 0.35)
RING_AMPLITUDES = (1.0, 0.7, 0.5, 0.35)
#: Weight of the ring (polycrystalline) part in the "mixed" kind.
MIXED_RING_WEIGHT = 0.6
#: Default reciprocal-lattice spacing as a fraction of ``min(shape)``.
LATTICE_FRACTION = 0.10
#: Form-factor decay length of the Bragg amplitudes, as a fraction of ``min(shape)``.
FORM_FACTOR_FRACTION = 0.30
#: Diffuse background: ``intensity * (LORENTZ / (1 + (r / (W m))^2) + FLOOR)``.
BACKGROUND_LORENTZ = 0.03
BACKGROUND_WIDTH = 0.15
BACKGROUND_FLOOR = 0.008
#: Beam-block geometry as fractions of ``min(shape)``.
BLOCK_RADIUS_FRACTION = 0.06
BLOCK_STICK_HALFWIDTH_FRACTION = 0.04
#: Default delays (ps) of a run.
DEFAULT_DELAYS = (-2.0, -1.0, -0.5, 0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
HOT_VALUE = 65535
#: Detector offset (counts) of every frame of a run with dark frames, and their read noise.
DARK_OFFSET = 100.0
READ_NOISE = 3.0
#: File layouts of :func:`make_run`.
LAYOUTS = ("uedflow", "lab")

# Purposes mixed into the seed so that the random streams never coincide.
_NOISE, _DRIFT, _HOT, _DARK, _PUMP_OFF = 0, 1, 2, 3, 4


def _check_shape(shape):
    shape = tuple(int(n) for n in shape)
    if len(shape) != 2 or min(shape) < 16:
        raise ValueError(f"shape must be (ny, nx) with ny, nx >= 16, got {shape}")
    return shape


def default_center(shape):
    """Default (off-centre, sub-pixel) pattern centre ``(row, col)`` of a frame shape."""
    ny, nx = _check_shape(shape)
    return (0.47 * ny + 0.3, 0.53 * nx - 0.2)


def _ring_sigma(m):
    return 1.5 + m / 1024.0


def _spot_sigma(m):
    return min(2.5, 1.5 + m / 2048.0)


def _add_rings(out, dy, dx, radii, amplitudes, sigma):
    """Add radially symmetric Gaussian rings, each evaluated only on its own annulus."""
    # The exponentials are only evaluated on the rows that the annulus reaches, and on
    # those rows only where |r - R| < 7 sigma (beyond that exp() < 2e-11).
    r = np.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2)
    reach = 7.0 * sigma
    for radius, amp in zip(radii, amplitudes, strict=True):
        if amp == 0:
            continue
        rows = np.flatnonzero(np.abs(dy) < radius + reach)
        if rows.size == 0:
            continue
        sl = slice(rows[0], rows[-1] + 1)
        d = r[sl] - radius
        near = np.abs(d) < reach
        block = out[sl]
        block[near] += amp * np.exp(-0.5 * (d[near] / sigma) ** 2)
    return r


def _add_spots(out, center, spacing, rotation_deg, sigma, amplitude, form_length, dw):
    """Add a hexagonal lattice of separable 2D Gaussian spots rendered in local windows."""
    ny, nx = out.shape
    theta = math.radians(rotation_deg)
    # Reciprocal basis of a hexagonal lattice: two vectors of equal length at 60 degrees.
    b1 = spacing * np.array([math.sin(theta), math.cos(theta)])
    b2 = spacing * np.array([math.sin(theta + math.pi / 3), math.cos(theta + math.pi / 3)])
    half = math.ceil(5.0 * sigma) + 1
    nmax = math.ceil(math.hypot(ny, nx) / (spacing * math.sin(math.pi / 3))) + 2
    hk = np.arange(-nmax, nmax + 1)
    h, k = (a.ravel() for a in np.meshgrid(hk, hk, indexing="ij"))
    pos = center[None, :] + h[:, None] * b1[None, :] + k[:, None] * b2[None, :]
    # Keep every spot whose window touches the frame, except the undiffracted (0, 0) beam.
    keep = (
        ((h != 0) | (k != 0))
        & (pos[:, 0] > -half - 1)
        & (pos[:, 0] < ny + half)
        & (pos[:, 1] > -half - 1)
        & (pos[:, 1] < nx + half)
    )
    m = min(ny, nx)
    for py, px in pos[keep]:
        g2 = ((py - center[0]) ** 2 + (px - center[1]) ** 2) / m**2  # q^2, q = |g| / m
        amp = amplitude * math.exp(-g2 * (m / form_length) ** 2) * math.exp(-dw * g2)
        r0, c0 = math.floor(py) - half, math.floor(px) - half
        r1, c1 = r0 + 2 * half + 2, c0 + 2 * half + 2
        rr0, rr1, cc0, cc1 = max(r0, 0), min(r1, ny), max(c0, 0), min(c1, nx)
        if rr0 >= rr1 or cc0 >= cc1:
            continue
        gy = np.exp(-0.5 * ((np.arange(rr0, rr1) - py) / sigma) ** 2)
        gx = np.exp(-0.5 * ((np.arange(cc0, cc1) - px) / sigma) ** 2)
        out[rr0:rr1, cc0:cc1] += amp * gy[:, None] * gx[None, :]


def diffraction_pattern(
    shape=(512, 512),
    center=None,
    *,
    kind="mixed",
    ring_radii=None,
    lattice_spacing=None,
    rotation_deg=0.0,
    debye_waller=0.0,
    intensity=1000.0,
    background=1.0,
):
    """Noise-free expected counts of one UED frame.

    Parameters
    ----------
    shape : tuple of int, optional
        Frame shape ``(ny, nx)``; both at least 16 (64 or more is realistic).
    center : tuple of float, optional
        Pattern centre ``(row, col)`` in pixels, sub-pixel. Default: slightly off-centre,
        ``(0.47 ny + 0.3, 0.53 nx - 0.2)``.
    kind : {"polycrystalline", "single_crystal", "mixed"}, optional
        Debye-Scherrer rings, a hexagonal lattice of Bragg spots, or both
        (rings weighted by 0.6).
    ring_radii : sequence of float, optional
        Ring radii in pixels. Default ``(0.12, 0.20, 0.28, 0.35) * min(shape)``; amplitudes
        decrease with the ring index.
    lattice_spacing : float, optional
        Reciprocal-lattice spacing of the Bragg spots in pixels.
        Default ``0.1 * min(shape)``.
    rotation_deg : float, optional
        In-plane rotation of the lattice, degrees.
    debye_waller : float, optional
        Debye-Waller coefficient ``B >= 0``; each ring or spot amplitude is multiplied by
        ``exp(-B q^2)`` with ``q`` = radius / ``min(shape)``.
    intensity : float, optional
        Amplitude (counts) of the strongest feature before form factor and Debye-Waller
        attenuation; the diffuse background is a few percent of it.
    background : float, optional
        Scale of the diffuse background (1 = nominal, 0 = none).

    Returns
    -------
    numpy.ndarray
        float64 array of ``shape``.

    Notes
    -----
    Every term is an analytic function of the pixel coordinates relative to ``center``:
    rings :math:`a_k \\exp(-(r - R_k)^2 / 2\\sigma^2)`, spots
    :math:`a(g) \\exp(-|x - c - g|^2 / 2\\sigma^2)` on the hexagonal reciprocal lattice
    :math:`g = h b_1 + k b_2`, and a Lorentzian-plus-constant diffuse background. The
    pattern at ``center + d`` is therefore exactly the pattern at ``center`` translated
    by ``d`` (up to rounding), for any sub-pixel ``d``. Spots are truncated at about 5
    sigma and rendered in local windows, so cost grows with the number of spots, not
    with the number of spots times the frame size. Bragg amplitudes decay with
    :math:`|g|` like an atomic form factor, :math:`\\exp(-(|g| / 0.3 m)^2)`.

    The pump-induced loss of Bragg intensity is modelled with the Debye-Waller factor
    :math:`I(q) = I_0(q) \\exp(-2 M)`, :math:`2M = B q^2` with
    :math:`B \\propto \\langle u^2 \\rangle`, the mean-square atomic displacement.

    References
    ----------
    .. [1] B. E. Warren, *X-ray Diffraction*, Dover (1990), ch. 11 (temperature effects).
    .. [2] R. P. Chatelain et al., "Ultrafast electron diffraction with radio-frequency
       compressed electron pulses", Appl. Phys. Lett. 101, 081901 (2012).
    """
    ny, nx = _check_shape(shape)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if debye_waller < 0:
        raise ValueError(f"debye_waller must be >= 0, got {debye_waller}")
    m = min(ny, nx)
    c = np.asarray(default_center(shape) if center is None else center, dtype=float)
    dy = np.arange(ny) - c[0]
    dx = np.arange(nx) - c[1]
    out = np.zeros((ny, nx))

    ring_weight = {"polycrystalline": 1.0, "single_crystal": 0.0, "mixed": MIXED_RING_WEIGHT}
    weight = ring_weight[kind] * intensity
    if weight:
        if ring_radii is None:
            radii = [f * m for f in RING_FRACTIONS]
            rel = RING_AMPLITUDES
        else:
            radii = [float(x) for x in ring_radii]
            rel = [0.7**i for i in range(len(radii))]
        amps = [
            weight * a * math.exp(-debye_waller * (rad / m) ** 2)
            for rad, a in zip(radii, rel, strict=True)
        ]
        r = _add_rings(out, dy, dx, radii, amps, _ring_sigma(m))
    else:
        r = np.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2)

    if kind != "polycrystalline":
        spacing = LATTICE_FRACTION * m if lattice_spacing is None else float(lattice_spacing)
        if spacing <= 0:
            raise ValueError(f"lattice_spacing must be > 0, got {lattice_spacing}")
        _add_spots(
            out,
            c,
            spacing,
            rotation_deg,
            _spot_sigma(m),
            intensity,
            FORM_FACTOR_FRACTION * m,
            debye_waller,
        )

    if background:
        scale = background * intensity
        r *= 1.0 / (BACKGROUND_WIDTH * m)
        r *= r
        r += 1.0
        np.divide(scale * BACKGROUND_LORENTZ, r, out=r)
        out += r
        out += scale * BACKGROUND_FLOOR
    return out


def beam_block_mask(shape, center, *, radius=None, stick_halfwidth=None):
    """Valid-pixel mask of a beam block: a disc on a stick reaching the top edge.

    Parameters
    ----------
    shape : tuple of int
        Frame shape ``(ny, nx)``.
    center : tuple of float
        Centre ``(row, col)`` of the disc (the nominal beam position).
    radius : float, optional
        Disc radius in pixels. Default ``0.06 * min(shape)``.
    stick_halfwidth : float, optional
        Half-width of the holder stick in pixels. Default ``0.04 * min(shape)``.

    Returns
    -------
    numpy.ndarray of bool
        True where pixels are valid (scikit-ued convention), False on the beam block.

    Notes
    -----
    Invalid pixels: ``|x - center| <= radius`` (the disc), plus the rectangle of rows
    ``0 .. center_row`` and columns ``|col - center_col| <= stick_halfwidth`` (the
    holder, running from the disc to the top edge).
    """
    ny, nx = _check_shape(shape)
    m = min(ny, nx)
    radius = BLOCK_RADIUS_FRACTION * m if radius is None else float(radius)
    half = BLOCK_STICK_HALFWIDTH_FRACTION * m if stick_halfwidth is None else stick_halfwidth
    cy, cx = (float(v) for v in center)
    yy = (np.arange(ny) - cy)[:, None]
    xx = (np.arange(nx) - cx)[None, :]
    disc = yy**2 + xx**2 <= radius**2
    stick = (yy <= 0) & (np.abs(xx) <= half)
    return ~(disc | stick)


def _block_geometry(shape, center):
    m = min(shape)
    return {
        "center": [float(center[0]), float(center[1])],
        "radius": BLOCK_RADIUS_FRACTION * m,
        "stick_halfwidth": BLOCK_STICK_HALFWIDTH_FRACTION * m,
    }


def hot_pixel_positions(shape, n=None, seed=0):
    """Fixed positions of hot detector pixels.

    Parameters
    ----------
    shape : tuple of int
        Frame shape ``(ny, nx)``.
    n : int, optional
        Number of hot pixels. Default ``max(3, ny * nx // 65536)``.
    seed : int, optional
        Seed of the positions (independent of the noise of any frame).

    Returns
    -------
    numpy.ndarray
        int64 array ``(n, 2)`` of distinct ``(row, col)``, sorted row-major.
    """
    ny, nx = _check_shape(shape)
    n = max(3, ny * nx // 65536) if n is None else int(n)
    rng = np.random.default_rng([int(seed), _HOT])
    flat = np.sort(rng.choice(ny * nx, size=n, replace=False))
    return np.stack(np.unravel_index(flat, (ny, nx)), axis=1).astype(np.int64)


def make_frame(
    shape=(512, 512),
    center=None,
    *,
    kind="mixed",
    counts=3000.0,
    seed=0,
    debye_waller=0.0,
    background=1.0,
    block_center=None,
    block_transmission=0.02,
    dark=2.0,
    hot_pixels=None,
    rotation_deg=0.0,
):
    """One realistic detector frame (uint16 counts).

    Parameters
    ----------
    shape : tuple of int, optional
        Frame shape ``(ny, nx)``.
    center : tuple of float, optional
        Pattern centre ``(row, col)``; default as in :func:`diffraction_pattern`.
    kind : {"polycrystalline", "single_crystal", "mixed"}, optional
        Pattern kind.
    counts : float, optional
        Intensity scale: amplitude of the strongest feature, in counts. With the default
        3000 the peaks are a few thousand counts and the diffuse background tens of
        counts.
    seed : int, sequence of int, numpy.random.SeedSequence or numpy.random.Generator
        Seed of the Poisson noise (anything :func:`numpy.random.default_rng` accepts).
    debye_waller : float, optional
        Debye-Waller coefficient, see :func:`diffraction_pattern`.
    background : float, optional
        Scale of the diffuse background.
    block_center : tuple of float, optional
        Beam-block centre ``(row, col)``. Default ``center``.
    block_transmission : float, optional
        Fraction of the signal that passes the beam block (dim, not black).
    dark : float, optional
        Mean dark level added to every pixel, counts.
    hot_pixels : array-like of shape (n, 2), optional
        ``(row, col)`` of hot pixels, set to 65535. Default
        ``hot_pixel_positions(shape)``; pass an empty list for none.
    rotation_deg : float, optional
        In-plane rotation of the lattice, degrees.

    Returns
    -------
    numpy.ndarray
        uint16 array of ``shape``.

    Notes
    -----
    Expected counts ``lam = pattern * T + dark`` with ``T = block_transmission`` on the
    beam block and 1 elsewhere; the frame is a Poisson draw of ``lam`` (shot noise of
    the electron count), clipped to the uint16 range, with hot pixels saturated.
    """
    shape = _check_shape(shape)
    center = default_center(shape) if center is None else center
    block_center = center if block_center is None else block_center
    lam = diffraction_pattern(
        shape,
        center,
        kind=kind,
        rotation_deg=rotation_deg,
        debye_waller=debye_waller,
        intensity=counts,
        background=background,
    )
    blocked = ~beam_block_mask(shape, block_center)
    lam[blocked] *= block_transmission
    lam += dark
    rng = np.random.default_rng(seed)
    frame = rng.poisson(lam)
    np.minimum(frame, HOT_VALUE, out=frame)
    frame = frame.astype(np.uint16)
    hot = hot_pixel_positions(shape) if hot_pixels is None else np.asarray(hot_pixels)
    if len(hot):
        hot = hot.astype(np.intp).reshape(-1, 2)
        frame[hot[:, 0], hot[:, 1]] = HOT_VALUE
    return frame


def _random_walk(rng, n, step, bound):
    """Bounded 2D random walk of ``n`` positions (reflected at ``+-bound``)."""
    pos = np.empty((n, 2))
    p = np.zeros(2)
    for j in range(n):
        p = p + rng.normal(0.0, step, size=2)
        p = np.where(p > bound, 2 * bound - p, p)
        p = np.where(p < -bound, -2 * bound - p, p)
        p = np.clip(p, -bound, bound)
        pos[j] = p
    return pos


def _frame_name(layout, s, delay_index, delay):
    if layout == "lab":
        return f"scan_{s + 1:04d}/pumpon_{delay:+08.3f}ps.tif"
    return f"scan_{s:03d}_delay_{delay_index:03d}.tif"


#: The names of the files :func:`make_run` writes, relative to the run directory.
_MAKE_RUN_FILES = re.compile(
    r"scan_\d{3,}_delay_\d{3,}\.tif|scan_\d{4,}/pumpon_[+-]\d{3,}\.\d{3}ps\.tif"
    r"|pump_off/pumpoff_\d{4,}\.tif|dark_image/dark_\d{3,}\.tif|mask\.tif")


def _written_by_make_run(path, name):
    """Whether ``name`` (from a run's ``run.json``) is a file that :func:`make_run` writes in
    ``path``: one of its own names, a regular file, inside ``path``. Only those are replaced."""
    if not isinstance(name, str) or not _MAKE_RUN_FILES.fullmatch(name):
        return False
    file = path / name
    return file.is_file() and not file.is_symlink() and not file.parent.is_symlink()


def _dark_frame(shape, level, hot, seed):
    """A dark frame: detector offset, Gaussian read noise and the hot pixels."""
    rng = np.random.default_rng(seed)
    frame = np.clip(np.rint(rng.normal(level, READ_NOISE, shape)), 0, HOT_VALUE)
    frame[hot[:, 0], hot[:, 1]] = HOT_VALUE
    return frame


def make_run(
    path,
    *,
    shape=(512, 512),
    delays=None,
    n_scans=2,
    kind="mixed",
    seed=0,
    drift=0.5,
    n_hot=None,
    dtype="uint16",
    counts=3000.0,
    dw_amplitude=1.0,
    tau=2.0,
    diffuse_increase=0.1,
    n_darks=0,
    layout="uedflow",
    overwrite=False,
):
    """Write a synthetic time-resolved UED run and return its ground truth.

    Parameters
    ----------
    path : path-like
        Run directory (created if needed).
    shape : tuple of int, optional
        Frame shape ``(ny, nx)``.
    delays : sequence of float, optional
        Pump-probe delays in ps (negative = before time zero). Default 12 delays,
        ``[-2, -1, -0.5, 0, 0.25, 0.5, 1, 2, 4, 8, 16, 32]``.
    n_scans : int, optional
        Number of scans (repeated sweeps over all delays).
    kind : {"polycrystalline", "single_crystal", "mixed"}, optional
        Pattern kind.
    seed : int, optional
        Master seed; the run is a deterministic function of the arguments.
    drift : float, optional
        Standard deviation (px) of each step of the centre's random walk, in
        acquisition order (scan-major, then delay). The walk is reflected at
        ``+-max(1, 4 * drift)`` px. 0 disables drift.
    n_hot : int, optional
        Number of hot pixels (default: see :func:`hot_pixel_positions`).
    dtype : {"uint16", "uint32", "float32"}, optional
        Data type of the frame files.
    counts : float, optional
        Intensity scale, see :func:`make_frame`.
    dw_amplitude, tau : float, optional
        Debye-Waller coefficient ``B(t) = dw_amplitude * (1 - exp(-t / tau))`` for
        ``t > 0`` (else 0); ``tau`` in ps.
    diffuse_increase : float, optional
        Relative rise of the diffuse background, ``1 + diffuse_increase * (1 - exp(-t/tau))``
        for ``t > 0``.
    n_darks : int, optional
        Number of dark frames (detector offset, read noise and hot pixels, no beam). With
        dark frames, every frame carries a detector offset of ``DARK_OFFSET`` = 100 counts;
        without, a dark level of 2 counts (the default of :func:`make_frame`).
    layout : {"uedflow", "lab"}, optional
        File names: ``scan_{s:03d}_delay_{i:03d}.tif`` in ``path``, or the layout common in
        UED labs, one folder per scan, ``scan_{s + 1:04d}/pumpon_{delay:+08.3f}ps.tif``,
        with one pump-off frame per scan in ``pump_off/pumpoff_{s + 1:04d}.tif``. Lab delays
        must have at most 3 decimals (fs resolution).
    overwrite : bool, optional
        Replace an existing run in ``path``; otherwise refuse with FileExistsError. Only the
        files of the old run that ``make_run`` writes are removed: those of its own naming
        scheme (below), inside ``path``; any other file, even one that the old ``run.json``
        names, is left alone.

    Returns
    -------
    dict
        The content of ``run.json`` (see Notes).

    Raises
    ------
    FileExistsError
        If ``path`` already holds a ``run.json`` and ``overwrite`` is false.

    Notes
    -----
    Files: the frames (one each, named by ``layout``), the dark frames
    ``dark_image/dark_{k:03d}.tif``, ``mask.tif`` (uint8, 1 = valid, 0 = beam block or hot
    pixel) and ``run.json``, written last so that its presence marks a complete run.
    ``run.json`` lists the frame files (relative to ``path``) as ``files[s][i]`` for scan
    number ``scans[s]`` (from 0 in the uedflow layout, from 1 in the lab layout) and delay
    ``delays[i]``.

    The pattern centre of frame ``(s, i)`` is ``truth["centers"][s][i]``;
    ``truth["shifts"][s][i] = center - centers[s][i]`` translates that frame onto the
    nominal pattern. The beam block and the hot pixels belong to the detector and do not
    move. The Poisson noise of frame ``(s, i)`` is drawn from
    ``numpy.random.default_rng([seed, 0, s, i])``, so a frame can be regenerated alone::

        make_frame(shape, centers[s][i], kind=kind, counts=counts,
                   seed=[seed, 0, s, i], debye_waller=debye_waller[i],
                   background=background[i], block_center=center, hot_pixels=hot_pixels,
                   dark=dark_level)

    The mean of the dark frames is ``truth["dark_level"]`` (up to read noise and the hot
    pixels). Pump-off frames (lab layout) are equilibrium frames (no Debye-Waller drop) at the
    nominal centre.

    The pump deposits energy in the lattice; the mean-square atomic displacement rises
    with the electron-phonon coupling time ``tau``, which lowers Bragg/ring intensities
    by the Debye-Waller factor ``exp(-B(t) q^2)`` and feeds the diffuse (thermal) background.

    References
    ----------
    .. [1] M. J. Stern et al., "Mapping momentum-dependent electron-phonon coupling and
       nonequilibrium phonon dynamics with ultrafast electron diffuse scattering",
       Phys. Rev. B 97, 165416 (2018).
    """
    path = pathlib.Path(path)
    shape = _check_shape(shape)
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype("uint16"), np.dtype("uint32"), np.dtype("float32")):
        raise ValueError(f"dtype must be uint16, uint32 or float32, got {dtype}")
    delays = [float(t) for t in (DEFAULT_DELAYS if delays is None else delays)]
    n_scans = int(n_scans)
    if n_scans < 1 or not delays:
        raise ValueError("a run needs at least one scan and one delay")
    if drift < 0:
        raise ValueError(f"drift must be >= 0, got {drift}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if n_darks < 0:
        raise ValueError(f"n_darks must be >= 0, got {n_darks}")
    if layout == "lab" and any(float(f"{t:.3f}") != t for t in delays):
        raise ValueError(f"the lab layout names delays with 3 decimals (fs); got {delays}")

    meta_file = path / "run.json"
    if meta_file.exists():
        if not overwrite:
            raise FileExistsError(
                f"{path} already holds a run ({meta_file}); pass overwrite=True to replace it"
            )
        old = json.loads(meta_file.read_text())
        names = [f for row in old.get("files", []) for f in row] + [old.get("mask_file")]
        names += [p.relative_to(path).as_posix() for p in
                  [*path.glob("dark_image/dark_*.tif"), *path.glob("pump_off/pumpoff_*.tif")]]
        stale = [path / name for name in names if _written_by_make_run(path, name)]
        meta_file.unlink()
        for file in stale:
            file.unlink()
        for folder in {file.parent for file in stale} - {path}:
            if not any(folder.iterdir()):
                folder.rmdir()
    path.mkdir(parents=True, exist_ok=True)

    seed = int(seed)
    n_delays = len(delays)
    center = np.array(default_center(shape))
    bound = max(1.0, 4.0 * drift)
    walk = _random_walk(np.random.default_rng([seed, _DRIFT]), n_scans * n_delays, drift, bound)
    centers = (center + walk).reshape(n_scans, n_delays, 2)
    shifts = center - centers
    rise = [1.0 - math.exp(-t / tau) if t > 0 else 0.0 for t in delays]
    dws = [dw_amplitude * x for x in rise]
    bgs = [1.0 + diffuse_increase * x for x in rise]
    hot = hot_pixel_positions(shape, n_hot, seed)
    dark_level = DARK_OFFSET if n_darks else 2.0

    def write(name, frame):
        (path / name).parent.mkdir(exist_ok=True)
        tifffile.imwrite(path / name, frame.astype(dtype, copy=False))

    common = {"kind": kind, "counts": counts, "block_center": tuple(center),
              "hot_pixels": hot, "dark": dark_level}
    files = [[_frame_name(layout, s, i, t) for i, t in enumerate(delays)]
             for s in range(n_scans)]
    for s in range(n_scans):
        for i in range(n_delays):
            frame = make_frame(shape, tuple(centers[s, i]), seed=[seed, _NOISE, s, i],
                               debye_waller=dws[i], background=bgs[i], **common)
            write(files[s][i], frame)
        if layout == "lab":
            write(f"pump_off/pumpoff_{s + 1:04d}.tif",
                  make_frame(shape, tuple(center), seed=[seed, _PUMP_OFF, s], **common))
    for k in range(n_darks):
        write(f"dark_image/dark_{k:03d}.tif", _dark_frame(shape, dark_level, hot, [seed, _DARK, k]))

    mask = beam_block_mask(shape, center)
    mask[hot[:, 0], hot[:, 1]] = False
    tifffile.imwrite(path / "mask.tif", mask.astype(np.uint8))

    meta = {
        "format": "uedflow-run",
        "version": 1,
        "dims": ["scan", "delay", "y", "x"],
        "shape": list(shape),
        "dtype": dtype.name,
        "delays": delays,
        "delay_units": "ps",
        "scans": list(range(1, n_scans + 1) if layout == "lab" else range(n_scans)),
        "files": files,
        "mask_file": "mask.tif",
        "truth": {
            "seed": seed,
            "kind": kind,
            "counts": float(counts),
            "center": center.tolist(),
            "centers": centers.tolist(),
            "shifts": shifts.tolist(),
            "drift": float(drift),
            "drift_bound": bound,
            "hot_pixels": hot.tolist(),
            "beam_block": _block_geometry(shape, center),
            "debye_waller": dws,
            "background": bgs,
            "dw_amplitude": float(dw_amplitude),
            "tau": float(tau),
            "dark_level": dark_level,
            "noise_seed": "numpy.random.default_rng([seed, 0, scan, delay])",
        },
    }
    meta_file.write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def load_run_metadata(path):
    """Read the ``run.json`` of a run directory.

    Parameters
    ----------
    path : path-like
        Run directory, or the ``run.json`` file itself.

    Returns
    -------
    dict
        The run metadata, as written by :func:`make_run`.

    Raises
    ------
    FileNotFoundError
        If there is no ``run.json``; the message names the missing file.
    """
    path = pathlib.Path(path)
    meta_file = path if path.suffix == ".json" else path / "run.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"no run metadata: {meta_file} does not exist")
    return json.loads(meta_file.read_text())


def demo_run(path, *, size=512, overwrite=False):
    """Write the demo run: 2 scans x 12 delays of ``size x size`` mixed patterns, seed 0.

    Parameters
    ----------
    path : path-like
        Run directory.
    size : int, optional
        Frame side in pixels.
    overwrite : bool, optional
        Replace an existing run in ``path``.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = pathlib.Path(path)
    make_run(path, shape=(size, size), n_scans=2, kind="mixed", seed=0, overwrite=overwrite)
    return path
