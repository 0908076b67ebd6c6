"""Randomized diffraction frames for ``autocenter``, written independently of
:mod:`uedflow.datasets` (another envelope, other blocks, other gradients, other noise).

:func:`heldout_frame` draws one frame from a seed: Debye-Scherrer rings, a hexagonal or a square
lattice of Bragg spots, or rings and spots; 512 to 2048 pixels; the centre anywhere in the
middle half of the frame; a beam block (disc and holder, in any direction; given as the mask);
hot pixels and dead columns (not masked); few or many counts (Poisson); an unmasked dim edge;
and an intensity gradient across the frame: a multiplicative ramp, or, for spots, the
excitation error of an Ewald sphere through a tilted crystal (spots bright along a Laue circle
through the centre, dim on the other side). The form factor falls as a Lorentzian squared
rather than a Gaussian, as atomic form factors do.
"""

import numpy as np

KINDS = ("rings", "hexagonal", "square", "rings+spots")
GRADIENTS = ("none", "ramp", "ewald")


def _spots(shape, center, spacing, angle, hexagonal):
    """Reciprocal-lattice points inside the frame (and a margin): rows, cols, |g|."""
    a = np.array([np.cos(angle), np.sin(angle)])
    turn = np.pi / 3 if hexagonal else np.pi / 2
    b = np.array([np.cos(angle + turn), np.sin(angle + turn)])
    reach = int(np.hypot(*shape) / spacing) + 2
    h, k = np.meshgrid(np.arange(-reach, reach + 1), np.arange(-reach, reach + 1))
    g = spacing * (h.ravel()[:, None] * a + k.ravel()[:, None] * b)
    rows, cols = center[0] + g[:, 0], center[1] + g[:, 1]
    inside = (rows > -10) & (rows < shape[0] + 10) & (cols > -10) & (cols < shape[1] + 10)
    return g[inside], rows[inside], cols[inside]


def _draw_spots(image, rows, cols, amplitudes, sigma):
    """Add Gaussian spots, each drawn on a small window."""
    half = int(4 * sigma) + 1
    ny, nx = image.shape
    for r, c, amp in zip(rows, cols, amplitudes, strict=True):
        r0, r1 = max(0, int(r) - half), min(ny, int(r) + half + 1)
        c0, c1 = max(0, int(c) - half), min(nx, int(c) + half + 1)
        if r0 >= r1 or c0 >= c1:
            continue
        rr, cc = np.ogrid[r0:r1, c0:c1]
        image[r0:r1, c0:c1] += amp * np.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * sigma**2))


def heldout_frame(seed, size=None, kind=None, gradient=None):
    """One randomized frame: ``(counts, mask, center, description)``.

    ``counts`` is float (Poisson counts plus hot pixels and dead columns), ``mask`` is True on
    valid pixels (False on the beam block only), ``center`` is the true ``(row, col)``.
    ``size``, ``kind`` and ``gradient`` fix what is otherwise drawn from ``seed``.
    """
    rng = np.random.default_rng(seed)
    size = size or int(rng.choice([512, 1024, 2048], p=[0.5, 0.35, 0.15]))
    kind = kind or str(rng.choice(KINDS))
    gradient = gradient or str(rng.choice(GRADIENTS, p=[0.3, 0.35, 0.35]))
    if gradient == "ewald" and kind == "rings":
        gradient = "ramp"
    shape = (size, size)
    center = size / 2 + rng.uniform(-0.22, 0.22, 2) * size
    rr, cc = np.indices(shape, dtype=np.float32)
    rr -= center[0]
    cc -= center[1]
    r = np.hypot(rr, cc)
    q0 = 0.18 * size
    form = 1 / (1 + (r / q0) ** 2) ** 2  # envelope of the pattern
    image = 0.05 * form + 0.01 / (1 + r / (0.5 * size))  # diffuse background

    scale = size / 512
    if kind in ("rings", "rings+spots"):
        radii = np.sort(rng.uniform(0.08, 0.45, 5)) * size
        width = rng.uniform(1.0, 2.5) * scale
        for radius in radii:
            f = 1 / (1 + (radius / q0) ** 2) ** 2
            image += 0.6 * f * np.exp(-((r - radius) ** 2) / (2 * width**2))
    if kind != "rings":
        spacing = rng.uniform(0.06, 0.12) * size
        hexagonal = kind == "hexagonal" or (kind == "rings+spots" and rng.random() < 0.5)
        g, rows, cols = _spots(shape, center, spacing, rng.uniform(0, np.pi), hexagonal)
        gn = np.hypot(g[:, 0], g[:, 1])
        amplitudes = 1 / (1 + (gn / q0) ** 2) ** 2 * np.exp(-0.5 * (gn / size) ** 2)
        amplitudes[gn < 1e-6] = 3.0  # the undiffracted beam, under the block
        if gradient == "ewald":
            # excitation error of a crystal tilted by t: s ~ (|g + t|^2 - |t|^2) / 2k
            t = rng.uniform(0.15, 0.5) * size * np.array(
                [np.cos(phi := rng.uniform(0, 2 * np.pi)), np.sin(phi)])
            k = rng.uniform(2, 6) * size
            s = (np.sum((g + t) ** 2, axis=1) - t @ t) / (2 * k)
            amplitudes *= np.exp(-((s / (rng.uniform(0.004, 0.012) * size)) ** 2))
        sigma = rng.uniform(1.2, 2.5) * scale
        _draw_spots(image, rows, cols, amplitudes, sigma)
    if gradient == "ramp":
        phi = rng.uniform(0, 2 * np.pi)
        slope = rng.uniform(0.6, 1.6)
        ramp = 1 + slope * (np.cos(phi) * (rr + center[0] - size / 2)
                            + np.sin(phi) * (cc + center[1] - size / 2)) / size
        image *= np.maximum(ramp, 0.1)

    # an unmasked dim edge: the detector's response falls over the last tenth of one side
    edge = np.ones(size, dtype=np.float32)
    edge[size - size // 10:] = np.linspace(1, rng.uniform(0.2, 0.6), size // 10)
    edge = edge if rng.random() < 0.5 else edge[::-1]
    image *= edge[:, None] if rng.random() < 0.5 else edge[None, :]

    # beam block: a disc over the centre (a little off it) and a holder to the frame's edge
    block_radius = rng.uniform(0.025, 0.06) * size
    block_center = center + rng.uniform(-0.3, 0.3, 2) * block_radius
    brr, bcc = rr + center[0] - block_center[0], cc + center[1] - block_center[1]
    theta = rng.uniform(0, 2 * np.pi)
    along = brr * np.cos(theta) + bcc * np.sin(theta)
    across = -brr * np.sin(theta) + bcc * np.cos(theta)
    holder = (along > 0) & (np.abs(across) < rng.uniform(0.008, 0.02) * size)
    blocked = (np.hypot(brr, bcc) < block_radius) | holder
    image[blocked] *= 0.01

    peak_counts = float(rng.choice([30.0, 300.0, 5000.0]))
    counts = rng.poisson(image * (peak_counts / 0.6)).astype(np.float32)
    counts += rng.normal(0, 1.0, shape).astype(np.float32)  # read noise after dark subtraction
    hot = rng.integers(0, size, (int(rng.integers(10, 60)), 2))
    counts[hot[:, 0], hot[:, 1]] = 65535
    for col in rng.integers(0, size, int(rng.integers(0, 3))):
        counts[:, col] = 0
    mask = ~blocked
    description = (f"seed {seed}: {size}² {kind}, gradient {gradient}, "
                   f"{peak_counts:g} counts, centre ({center[0]:.1f}, {center[1]:.1f})")
    return counts, mask, center, description
