"""Crystal lattices and the indexing of single-crystal Bragg peaks.

A :class:`Lattice` holds the six lattice constants and gives reciprocal vectors
(``2π`` convention: ``q = |h a* + k b* + l c*| = 2π / d``). :func:`index_peaks` gives the
Miller indices of the peaks of a zone-axis pattern: it finds the two-dimensional lattice of
the peaks, and matches it, up to a scale, to the reciprocal-lattice plane perpendicular to the
zone axis. :func:`read_cif_cell` reads the lattice constants of a CIF file.
"""

import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Lattice", "index_peaks", "read_cif_cell"]

#: Largest Miller index searched for the shortest vectors of a zone.
MAX_INDEX = 6
#: Largest relative mismatch of the lengths, or of the angle (radians), between the peaks'
#: lattice and the zone's, accepted by :func:`index_peaks`.
MATCH_TOLERANCE = 0.03


@dataclass(frozen=True)
class Lattice:
    """A crystal lattice: lengths ``a, b, c`` (Å) and angles ``alpha, beta, gamma`` (degrees).

    Examples
    --------
    >>> graphite = Lattice.hexagonal(2.46, 6.71)
    >>> round(float(graphite.q((1, 0, 0))), 4), round(float(graphite.d((1, 1, 0))), 3)
    (2.9493, 1.23)
    """

    a: float
    b: float
    c: float
    alpha: float = 90.0
    beta: float = 90.0
    gamma: float = 90.0

    def __post_init__(self):
        for name in ("a", "b", "c", "alpha", "beta", "gamma"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"lattice constant {name} must be a positive number, "
                                 f"got {value!r}")
        if max(self.alpha, self.beta, self.gamma) >= 180:
            raise ValueError(f"lattice angles must be below 180 degrees, got "
                             f"{(self.alpha, self.beta, self.gamma)}")
        if not np.isfinite(self.volume) or self.volume <= 0:
            raise ValueError(f"the angles {(self.alpha, self.beta, self.gamma)} make no cell")

    @classmethod
    def cubic(cls, a):
        """Cubic lattice of side ``a`` (Å)."""
        return cls(a, a, a)

    @classmethod
    def hexagonal(cls, a, c):
        """Hexagonal lattice (``gamma = 120``)."""
        return cls(a, a, c, 90.0, 90.0, 120.0)

    @classmethod
    def from_cif(cls, path):
        """The lattice of a CIF file's cell (see :func:`read_cif_cell`)."""
        return cls(*read_cif_cell(path))

    @property
    def direct(self):
        """Direct basis vectors (rows ``a, b, c``, Å): ``a`` along x, ``b`` in the xy plane."""
        alpha, beta, gamma = np.radians([self.alpha, self.beta, self.gamma])
        cx = math.cos(beta)
        cy = (math.cos(alpha) - math.cos(beta) * math.cos(gamma)) / math.sin(gamma)
        cz2 = 1 - cx**2 - cy**2
        cz = math.sqrt(cz2) if cz2 > 0 else math.nan
        return np.array([[self.a, 0, 0],
                         [self.b * math.cos(gamma), self.b * math.sin(gamma), 0],
                         [self.c * cx, self.c * cy, self.c * cz]])

    @property
    def volume(self):
        """Cell volume, Å³."""
        return float(np.linalg.det(self.direct))

    @property
    def reciprocal(self):
        """Reciprocal basis vectors (rows ``a*, b*, c*``, 1/Å), with ``a · a* = 2π``."""
        return 2 * np.pi * np.linalg.inv(self.direct).T

    def vector(self, hkl):
        """Reciprocal vectors ``h a* + k b* + l c*`` (1/Å) of indices ``(..., 3)``."""
        return np.asarray(hkl, dtype=float) @ self.reciprocal

    def q(self, hkl):
        """``|G_hkl|`` = ``2π / d`` (1/Å) of indices ``(..., 3)``."""
        return np.linalg.norm(self.vector(hkl), axis=-1)

    def d(self, hkl):
        """Lattice-plane spacing ``d_hkl`` (Å) of indices ``(..., 3)``."""
        return 2 * np.pi / self.q(hkl)

    def zone_basis(self, zone_axis):
        """The two shortest independent reciprocal vectors perpendicular to ``zone_axis``.

        Parameters
        ----------
        zone_axis : sequence of 3 int
            Zone axis ``[u v w]`` (direct-lattice indices): the beam direction.

        Returns
        -------
        ndarray of int, shape (2, 3)
            Miller indices of a reduced basis of the zone's reciprocal-lattice plane
            (``h u + k v + l w = 0``).

        Raises
        ------
        ValueError
            If ``zone_axis`` is not three integers, not all zero.
        """
        axis = np.asarray(zone_axis)
        if axis.shape != (3,) or axis.dtype.kind not in "iu" or not axis.any():
            raise ValueError(f"zone_axis must be three integers [u, v, w], not all zero, "
                             f"got {zone_axis!r}")
        span = range(-MAX_INDEX, MAX_INDEX + 1)
        hkl = np.array([v for v in itertools.product(span, span, span)
                        if any(v) and np.dot(v, axis) == 0])
        hkl = hkl[np.argsort(self.q(hkl), kind="stable")]
        vectors = self.vector(hkl)
        first = vectors[0]
        for index in range(1, len(hkl)):
            cross = np.linalg.norm(np.cross(first, vectors[index]))
            if cross > 1e-6 * np.linalg.norm(first) * np.linalg.norm(vectors[index]):
                return np.stack([hkl[0], hkl[index]])
        raise ValueError(f"no two independent reflections in the zone {zone_axis}")


def read_cif_cell(path):
    """The lattice constants of a CIF file: ``_cell_length_a`` ... ``_cell_angle_gamma``.

    Only the cell is read (atoms and symmetry are not); standard uncertainties in brackets,
    as in ``2.4612(3)``, are dropped.

    Parameters
    ----------
    path : path-like
        CIF file.

    Returns
    -------
    tuple of float
        ``(a, b, c, alpha, beta, gamma)``, Å and degrees.

    Raises
    ------
    ValueError
        If a cell parameter is missing or not a number; the message names the file.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8", errors="replace")
    values = []
    for name in ("length_a", "length_b", "length_c", "angle_alpha", "angle_beta",
                 "angle_gamma"):
        match = re.search(rf"(?mi)^\s*_cell_{name}\s+([^\s#]+)", text)
        if match is None:
            raise ValueError(f"{path}: no _cell_{name}")
        number = re.sub(r"\(\d+\)$", "", match.group(1))
        try:
            values.append(float(number))
        except ValueError:
            raise ValueError(f"{path}: _cell_{name} is not a number: {match.group(1)!r}") \
                from None
    return tuple(values)


def _reduced_basis(vectors):
    """Gauss-reduce a 2D basis (rows): the shortest pair spanning the same lattice."""
    u, v = (np.asarray(x, dtype=float) for x in vectors)
    while True:
        if u @ u > v @ v:
            u, v = v, u
        step = round(float(u @ v / (u @ u)))
        if step == 0:
            return np.stack([u, v])
        v = v - step * u


def _lattice_fit(points, basis, tolerance):
    """Integer coordinates of the points in ``basis``, which points sit within ``tolerance``
    (px) of their lattice site, and the least-squares basis over those."""
    for _ in range(3):
        coords = np.rint(np.linalg.solve(basis.T, points.T).T)
        residual = np.linalg.norm(coords @ basis - points, axis=1)
        good = (residual < tolerance) & coords.any(axis=1)
        if good.sum() < 2:
            break
        basis = np.linalg.lstsq(coords[good], points[good], rcond=None)[0]
    return coords.astype(int), good, basis


def _measured_lattice(points, candidates=12):
    """The 2D lattice of peak positions ``points`` (relative to the centre): of the reduced
    bases made of two of the ``candidates`` shortest vectors, the one on whose sites most
    points sit (within a fifth of its shortest vector), the coarsest of those."""
    order = np.argsort(np.hypot(*points.T), kind="stable")[:candidates]
    best = None
    for i, j in itertools.combinations(order, 2):
        u, v = points[i], points[j]
        sine = abs(u[0] * v[1] - u[1] * v[0]) / (np.linalg.norm(u) * np.linalg.norm(v))
        if sine < 0.25:
            continue
        basis = _reduced_basis([u, v])
        tolerance = 0.2 * np.linalg.norm(basis, axis=1).min()
        coords, good, fitted = _lattice_fit(points, basis, tolerance)
        score = (int(good.sum()), abs(float(np.linalg.det(fitted))))
        if best is None or score > best[0]:
            best = (score, coords, good, fitted)
    if best is None:
        raise ValueError("the peaks lie on one line: no two-dimensional lattice")
    if best[0][0] < 2:
        raise ValueError("fewer than two peaks on any lattice of the shortest peaks")
    return best[1:]


def _shape(basis):
    lengths = np.linalg.norm(basis, axis=1)
    cosine = basis[0] @ basis[1] / (lengths[0] * lengths[1])
    return lengths, math.acos(max(-1.0, min(1.0, cosine)))


def index_peaks(peaks, center, lattice, zone_axis=(0, 0, 1)):
    """Miller indices of the Bragg peaks of a zone-axis pattern.

    Parameters
    ----------
    peaks : array_like, shape (K, 2)
        Peak positions ``(row, col)``, px.
    center : array_like, shape (2,)
        Pattern centre ``(row, col)``.
    lattice : Lattice
    zone_axis : sequence of 3 int, optional
        Zone axis ``[u v w]`` (the beam direction).

    Returns
    -------
    hkl : ndarray of int, shape (K, 3)
        Miller indices of every peak; rows of peaks off the lattice are ``(0, 0, 0)``.
    indexed : ndarray of bool, shape (K,)
        True on the peaks that sit on the lattice.
    basis : ndarray, shape (2, 2)
        Least-squares positions (``(row, col)`` from the centre, px) of the reflections
        ``hkl_basis``.
    hkl_basis : ndarray of int, shape (2, 3)
        Their Miller indices.

    Raises
    ------
    ValueError
        If there are too few peaks, they lie on a line, or their lattice does not match the
        zone's (lengths or angle off by more than 3 %).

    Notes
    -----
    The peaks' lattice is, of the reduced bases of two of the 12 shortest peak vectors from
    the centre, the one with most peaks within 0.2 basis lengths of a site (then the
    coarsest), refined by least squares over those peaks; a spurious peak is left out.
    The zone's reciprocal plane has the reduced basis of :meth:`Lattice.zone_basis`; the
    pair of zone vectors (among the unimodular integer combinations with coefficients up to
    2, in a fixed order) with the same ratio of lengths and the same angle names the peaks'
    basis. The indices are thus known up to the symmetry of the zone (e.g. which of six
    equivalent {100} reflections is (100)), and up to a mirror: a detector image may be
    flipped.

    Examples
    --------
    >>> import numpy as np
    >>> angles = np.radians([0, 60, 120, 180, 240, 300])
    >>> peaks = 100 + 25 * np.stack([np.sin(angles), np.cos(angles)], axis=1)
    >>> hkl, indexed, _, _ = index_peaks(peaks, (100, 100), Lattice.hexagonal(2.46, 6.7))
    >>> bool(indexed.all()), sorted(set(np.abs(hkl).sum(axis=1).tolist()))
    (True, [1, 2])
    """
    points = np.asarray(peaks, dtype=float).reshape(-1, 2) - np.asarray(center, dtype=float)
    if len(points) < 2:
        raise ValueError(f"indexing needs at least two peaks, got {len(points)}")
    points = np.where(np.hypot(*points.T)[:, None] > 0, points, np.nan)
    finite = np.isfinite(points).all(axis=1)
    coords = np.zeros((len(points), 2), dtype=int)
    good = np.zeros(len(points), dtype=bool)
    coords[finite], good[finite], measured = _measured_lattice(points[finite])
    lengths, angle = _shape(measured)

    zone = lattice.zone_basis(zone_axis)
    vectors = lattice.vector(zone)
    best = None
    for m in itertools.product(range(-2, 3), repeat=4):
        matrix = np.reshape(m, (2, 2))
        if abs(round(np.linalg.det(matrix))) != 1:
            continue
        candidate = matrix @ vectors
        zone_lengths = np.linalg.norm(candidate, axis=1)
        cosine = candidate[0] @ candidate[1] / (zone_lengths[0] * zone_lengths[1])
        zone_angle = math.acos(max(-1.0, min(1.0, cosine)))
        misfit = max(abs(math.log(lengths[0] / lengths[1] * zone_lengths[1] / zone_lengths[0])),
                     abs(angle - zone_angle))
        if best is None or misfit < best[0] - 1e-9:
            best = (misfit, matrix)
    misfit, matrix = best
    if misfit > MATCH_TOLERANCE:
        raise ValueError(f"the peaks' lattice (lengths {lengths.round(2).tolist()} px, angle "
                         f"{math.degrees(angle):.1f}°) does not match the zone {list(zone_axis)}"
                         f" of {lattice} (mismatch {misfit:.3f})")
    hkl_basis = matrix @ zone
    hkl = np.where(good[:, None], coords @ hkl_basis, 0)
    return hkl.astype(int), good, measured, hkl_basis.astype(int)
