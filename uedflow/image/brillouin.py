"""Brillouin zones of single-crystal diffraction patterns, from their Bragg peaks."""

import numbers
from warnings import warn

import numpy as np
from scipy.spatial import QhullError, Voronoi

from .center import autocenter as _autocenter
from .indexing import bragg_peaks_persistence

__all__ = ["VoronoiRegion", "bragg_peaks_persistence", "brillouin_zones", "brilluoin_zones"]


class VoronoiRegion:
    """Voronoi cell of one Bragg peak: its Brillouin zone.

    Parameters
    ----------
    region_id : int
        Index of the region in the Voronoi diagram.

    Attributes
    ----------
    id : int
        ``region_id``.
    vertices : list of ndarray, shape (2,)
        Corners of the cell, ``(row, col)``.
    is_inf : bool
        True if the cell is unbounded.
    point_inside : tuple
        ``(index, position)`` of the Bragg peak of the cell.
    center : ndarray, shape (2,)
        Position of the Bragg peak of the cell.
    visible_vertices : ndarray, shape (K, 2)
        Corners of the cell if it is visible (see :meth:`brillouin_zones.getVisibleBZs`),
        otherwise empty.
    is_visible : bool
        True if the cell is visible.
    """

    def __init__(self, region_id):
        self.id = region_id
        self.vertices = []
        self.is_inf = False
        self.point_inside = None
        self.center = None
        self.visible_vertices = []
        self.is_visible = False

    def __repr__(self):
        text = f"region id={self.id}"
        if self.point_inside is not None:
            index, point = self.point_inside
            text += f"[point:{point}(point_id:{index})]"
        text += ", vertices: " + ("(inf)" if self.is_inf else "")
        return text + "".join(str(v) for v in self.vertices)

    def __str__(self):
        return repr(self)

    def add_vertex(self, vertex, vertices):
        """Add corner number ``vertex`` of ``vertices``; -1 marks the cell as unbounded."""
        if vertex == -1:
            self.is_inf = True
        else:
            self.vertices.append(vertices[vertex])

    def set_center(self, center):
        """Set the position of the Bragg peak of the cell."""
        self.center = center


class brillouin_zones:
    """Brillouin zones of a single-crystal pattern: the Voronoi cells of its Bragg peaks.

    Parameters
    ----------
    image : ndarray, shape (M, N)
        Diffraction pattern.
    mask : ndarray of bool, shape (M, N)
        True on valid pixels of ``image`` (used to find the centre).
    peaks : array_like, shape (K, 2)
        Bragg peaks ``(row, col)``, e.g. from :func:`bragg_peaks_persistence`. Extra columns
        are dropped.
    center : array_like, shape (2,), optional
        Centre ``(row, col)`` of the pattern (the zone-centre peak); found with
        :func:`uedflow.image.autocenter` if None.
    optimization_radius : float, optional
        If given, every peak moves to the brightest pixel of ``image`` in the square
        ``[peak - optimization_radius, peak + optimization_radius + 1)`` (first in raster
        order if several).

    Attributes
    ----------
    center : array_like, shape (2,)
        Centre of the pattern.
    bragg_peaks : ndarray, shape (K + 1, 2)
        The centre followed by the (optimized) peaks: the points of the Voronoi diagram.
    visible_BZs : list of VoronoiRegion or None
        Zones selected by :meth:`getVisibleBZs`.

    Raises
    ------
    ValueError
        If ``image`` is not 2D, ``mask`` does not have its shape, ``peaks`` cannot be read as
        ``(K, 2)`` or are too few (or all on a line) for a Voronoi diagram, ``center`` is not
        two finite numbers or ``optimization_radius`` is negative.

    Notes
    -----
    The first Brillouin zone of a reciprocal-lattice point is its Wigner-Seitz cell, the
    Voronoi cell of the point among all lattice points [1]_; the cells are computed with
    Qhull [2]_. All coordinates are ``(row, col)``.

    References
    ----------
    .. [1] N. W. Ashcroft and N. D. Mermin, *Solid State Physics*, ch. 5 and 9. Holt,
       Rinehart and Winston (1976).
    .. [2] C. B. Barber, D. P. Dobkin and H. Huhdanpaa, "The Quickhull algorithm for
       convex hulls", ACM Trans. Math. Softw. 22, 469-483 (1996).

    Examples
    --------
    >>> import numpy as np
    >>> from uedflow import bragg_peaks_persistence, brillouin_zones
    >>> from uedflow.datasets import diffraction_pattern
    >>> image = diffraction_pattern((256, 256), (128.0, 128.0), kind="single_crystal",
    ...                             background=0)
    >>> peaks = bragg_peaks_persistence(image, prominence=50)[0]
    >>> zones = brillouin_zones(image, np.ones(image.shape, dtype=bool), peaks,
    ...                         center=(128, 128))
    >>> visible = zones.getVisibleBZs(symmetry=6)
    >>> len(zones.visible_BZs) > 10
    True
    """

    def __init__(self, image, mask, peaks, center=None, optimization_radius=None):
        image = np.asarray(image)
        if image.ndim != 2:
            raise ValueError(f"image must be a 2D array, got shape {image.shape}")
        if mask is not None and np.shape(mask) != image.shape:
            raise ValueError(f"mask has shape {np.shape(mask)}, but image has {image.shape}")
        peaks = np.asarray(peaks)
        if peaks.ndim == 2 and peaks.shape[1] > 2:
            peaks = peaks[:, :2]
        if peaks.size % 2 or peaks.dtype.kind not in "iuf":
            raise ValueError(f"peaks must be numbers of shape (K, 2), got shape {peaks.shape}")
        peaks = peaks.reshape(-1, 2)
        if center is None:
            center = _autocenter(image, mask)
        if np.shape(center) != (2,) or not np.isfinite(np.asarray(center, dtype=float)).all():
            raise ValueError(f"center must be two finite numbers (row, col), got {center!r}")
        self._image = image
        self._mask = mask
        self.center = center
        self.visible_BZs = None

        points = np.vstack((center, peaks))
        if optimization_radius is not None:
            if optimization_radius < 0:
                raise ValueError(
                    f"optimization_radius must be non-negative, got {optimization_radius}")
            points[1:] = self._brightest_near(points[1:], optimization_radius)
        self.bragg_peaks = points
        try:
            diagram = Voronoi(points)
        except QhullError as error:
            raise ValueError(
                f"peaks: no Voronoi diagram of the centre and {len(peaks)} peaks "
                "(at least 3 points not on one line are needed)") from error
        self._regions = []
        for index, region_index in enumerate(diagram.point_region):
            region = VoronoiRegion(region_index)
            for vertex in diagram.regions[region_index]:
                region.add_vertex(vertex, diagram.vertices)
            region.point_inside = (index, diagram.points[index])
            region.set_center(diagram.points[index])
            self._regions.append(region)

    def _brightest_near(self, peaks, radius):
        """Brightest pixel of the image in the square of half-width ``radius`` of each peak."""
        moved = np.array(peaks)
        skipped = []
        for index, (row, col) in enumerate(peaks.astype(int)):
            r0, c0 = max(int(row - radius), 0), max(int(col - radius), 0)
            r1, c1 = int(row + radius + 1), int(col + radius + 1)
            window = self._image[r0:r1, c0:c1]
            if window.size == 0:
                skipped.append(index + 1)
                continue
            row, col = np.unravel_index(np.argmax(window), window.shape)
            moved[index] = (r0 + row, c0 + col)
        if skipped:
            warn(f"peaks {skipped} are outside the image and were not optimized", stacklevel=3)
        return moved

    def getVisibleBZs(self, symmetry=None, bbox=None):
        """Zones that are bounded, close to the centre and with ``symmetry`` corners.

        Parameters
        ----------
        symmetry : int, optional
            Required number of corners of a zone (e.g. 6 for a hexagonal lattice).
        bbox : float, optional
            Every corner of a zone must be closer than this to the centre (pixels). Default
            ``int(0.49 * image.shape[0])``.

        Returns
        -------
        visible_BZs : list of VoronoiRegion
            The zones that qualify, in the order of the peaks. Also stored in
            :attr:`visible_BZs`, and their corners in their ``visible_vertices``.

        Raises
        ------
        ValueError
            If ``bbox`` is not a number.
        """
        if bbox is None:
            bbox = int(0.49 * self._image.shape[0])
        elif not isinstance(bbox, numbers.Real):
            raise ValueError(f"bbox must be a number of pixels, got {bbox!r}")
        self._symmetry = symmetry
        for region in self._regions:
            corners = np.array(region.vertices).reshape(-1, 2)
            distance = np.sqrt(np.sum((corners - self.center) ** 2, axis=1))
            visible = (not region.is_inf and bool(np.all(distance < bbox))
                       and (symmetry is None or len(corners) == symmetry))
            region.visible_vertices = corners if visible else np.empty((0, 2))
            region.is_visible = visible
        self.visible_BZs = [region for region in self._regions if region.is_visible]
        return self.visible_BZs

    def renderVisibleBZs(self, axis, BZs=None, **kwargs):
        """Draw zones as unfilled polygons on a matplotlib axis.

        Parameters
        ----------
        axis : matplotlib.axes.Axes
            Axis to draw on.
        BZs : list of VoronoiRegion, optional
            Zones to draw; default the visible ones from :meth:`getVisibleBZs`.
        **kwargs
            Passed to ``matplotlib.patches.Polygon``.

        Notes
        -----
        As in scikit-ued, corners are passed as ``(row, col)`` to matplotlib, which reads
        ``(x, y)``.
        """
        from matplotlib.patches import Polygon

        for region in self._zones(BZs):
            axis.add_patch(Polygon(np.array(region.vertices).reshape(-1, 2), fill=False,
                                   **kwargs))

    def determineConsistency(self, BZs=None):
        """How equal the zones' areas are: one minus their relative standard deviation.

        Parameters
        ----------
        BZs : list of VoronoiRegion, optional
            Zones to compare; default the visible ones from :meth:`getVisibleBZs`.

        Returns
        -------
        consistency : float
            ``1 - std(areas) / mean(areas)``; 1 when every zone has the same area. Areas
            are those of the zones' visible corners, by the shoelace formula.

        Raises
        ------
        ValueError
            If there is no zone to compare.
        """
        zones = self._zones(BZs)
        if not zones:
            raise ValueError("BZs: no Brillouin zone to compare (call getVisibleBZs first)")
        self._areas = []
        for region in zones:
            row, col = np.reshape(region.visible_vertices, (-1, 2)).T
            self._areas.append(0.5 * abs(row @ np.roll(col, 1) - col @ np.roll(row, 1)))
        return 1 - np.std(self._areas) / np.mean(self._areas)

    def getEquivalentScatteringVectors(self, Qvector, use_visible=False):
        """Scattering vectors equivalent to ``Qvector`` in every other Brillouin zone.

        ``Qvector`` is reduced to the zone of its nearest Bragg peak; the reduced vector (its
        length, and its angle to the peak's direction from the centre) is then placed about
        every other peak, rotated with that peak's direction.

        Parameters
        ----------
        Qvector : array_like, shape (2,)
            Scattering vector ``(row, col)``, in pixels.
        use_visible : bool, optional
            If True, use the peaks of the visible zones (see :meth:`getVisibleBZs`),
            otherwise all peaks.

        Returns
        -------
        QVectors : ndarray of int, shape (K, 2)
            Equivalent vectors, sorted by distance to the centre, without the one nearest
            the centre.

        Raises
        ------
        ValueError
            If ``Qvector`` is not two numbers, or ``use_visible`` is True before
            :meth:`getVisibleBZs` has been called.
        """
        q = np.asarray(Qvector, dtype=float)
        if q.shape != (2,):
            raise ValueError(f"Qvector must be two numbers (row, col), got {Qvector!r}")
        if use_visible and self.visible_BZs is None:
            raise ValueError("use_visible=True needs getVisibleBZs() to be called first")
        q = q - self.center
        peaks = self.bragg_peaks - self.center
        delta = peaks - q
        nearest = peaks[np.argmin(np.einsum("ij,ij->i", delta, delta))]
        reduced = q - nearest
        length = np.linalg.norm(reduced)
        with np.errstate(invalid="ignore", divide="ignore"):
            cosine = np.inner(reduced, nearest) / (length * np.linalg.norm(nearest))
        separation = np.arctan2(reduced[1], reduced[0])
        tilt = np.arccos(np.clip(cosine, -1.0, 1.0))

        if use_visible:
            sites = np.array([region.center for region in self.visible_BZs]).reshape(-1, 2)
        else:
            sites = np.asarray(self.bragg_peaks)
        direction = np.arctan2(sites[:, 1] - self.center[1], sites[:, 0] - self.center[0])
        angle = separation + direction - tilt
        vectors = sites + length * np.stack([np.cos(angle), np.sin(angle)], axis=1)
        offset = vectors - self.center
        vectors = vectors[np.argsort(np.sqrt(offset[:, 0] ** 2 + offset[:, 1] ** 2),
                                     kind="stable")]
        return vectors.astype(int)[1:]

    def _zones(self, BZs):
        return self.visible_BZs if BZs is None else BZs


#: scikit-ued's tutorial spelling.
brilluoin_zones = brillouin_zones
