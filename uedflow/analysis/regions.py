"""Regions of a diffraction pattern and the means of images over them, with errors.

A region is a sorted array of flat pixel indices into the ``(y, x)`` frame. The kernels work
on any number of leading dims (delays) and never need more than the images they are given.
"""

import numpy as np
from scipy.spatial import cKDTree
from skimage.draw import polygon2mask

__all__ = ["annulus_pixels", "bragg_regions", "equivalent_groups", "integration_weights",
           "refine_peaks", "region_means", "weighted_sums", "zone_regions"]


def _distance(shape, center):
    yy, xx = np.indices(shape, dtype=float)
    return np.hypot(yy - center[0], xx - center[1])


def annulus_pixels(shape, center, inner, outer, valid=None):
    """Flat indices of the pixels with ``inner <= distance to center <= outer`` (and
    ``valid``); ``inner = 0`` gives a disk.

    Examples
    --------
    >>> annulus_pixels((5, 5), (2, 2), 0, 1)
    array([ 7, 11, 12, 13, 17])
    """
    r = _distance(shape, center)
    inside = (r >= inner) & (r <= outer)
    if valid is not None:
        inside &= valid
    return np.flatnonzero(inside)


def _near_any(shape, points, radius):
    """Boolean image: True within ``radius`` of any of the ``points`` (row, col)."""
    near = np.zeros(shape, dtype=bool)
    reach = int(np.ceil(radius))
    for row, col in np.asarray(points, dtype=float).reshape(-1, 2):
        r0, c0 = max(int(row) - reach, 0), max(int(col) - reach, 0)
        r1, c1 = min(int(row) + reach + 2, shape[0]), min(int(col) + reach + 2, shape[1])
        if r0 >= r1 or c0 >= c1:
            continue
        yy, xx = np.ogrid[r0:r1, c0:c1]
        near[r0:r1, c0:c1] |= np.hypot(yy - row, xx - col) <= radius
    return near


def region_means(images, errors, regions):
    """Mean of ``images`` over each region and its standard error, for independent pixels.

    Parameters
    ----------
    images : ndarray, shape (..., ny, nx)
        Images; pixels whose value is not finite in an image are left out of its means.
    errors : ndarray, shape (..., ny, nx) or None
        Standard error of every pixel.
    regions : list of ndarray of int
        Flat pixel indices of each region (none empty).

    Returns
    -------
    means, errors : ndarray, shape (..., len(regions))
        ``mean_i = sum(x) / N`` and ``sqrt(sum(e**2)) / N`` over the ``N`` finite pixels of
        the region (NaN when ``N = 0``, or when the error of one of them is not finite);
        ``errors`` None without ``errors``. Multiply the errors by ``sqrt(c)`` for pixels
        whose errors are correlated (the ``error_correlation`` of a reduced Dataset).

    Raises
    ------
    ValueError
        If a region is empty.

    Examples
    --------
    >>> import numpy as np
    >>> images = np.arange(16.0).reshape(1, 4, 4)
    >>> region_means(images, np.ones((1, 4, 4)), [np.array([0, 1]), np.array([15])])
    (array([[ 0.5, 15. ]]), array([[0.70710678, 1.        ]]))
    """
    sizes = np.array([len(r) for r in regions])
    if not len(regions) or (sizes == 0).any():
        raise ValueError(f"regions {np.flatnonzero(sizes == 0).tolist()} hold no pixel")
    lead = images.shape[:-2]
    index = np.concatenate(regions)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    values = images.reshape(*lead, -1)[..., index].astype(np.float64)
    finite = np.isfinite(values)
    count = np.add.reduceat(finite, starts, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.add.reduceat(np.where(finite, values, 0.0), starts, axis=-1) / count
        if errors is None:
            return means, None
        squares = errors.reshape(*lead, -1)[..., index].astype(np.float64) ** 2
        variance = np.add.reduceat(np.where(finite, squares, 0.0), starts, axis=-1)
        return means, np.sqrt(variance) / count


def bragg_regions(shape, peaks, radius, background, valid=None):
    """The integration disk and the background annulus of every Bragg peak.

    Parameters
    ----------
    shape : tuple of int
        Frame shape.
    peaks : array_like, shape (K, 2)
        Peak positions ``(row, col)``.
    radius : float
        Disk radius, px.
    background : tuple of float
        ``(inner, outer)`` radii of the annulus, px (``inner >= radius``).
    valid : ndarray of bool, optional
        Valid pixels.

    Returns
    -------
    disks, annuli : list of ndarray of int
        Flat pixel indices. Disks take the valid pixels within ``radius``; annuli the valid
        pixels between ``inner`` and ``outer`` that are farther than ``inner`` from every
        other peak (no neighbour's intensity in the background).

    Raises
    ------
    ValueError
        If the radii are not ``0 < radius <= inner < outer``.
    """
    inner, outer = (float(b) for b in background)
    if not 0 < radius <= inner < outer:
        raise ValueError(f"radii must be 0 < radius <= inner < outer, got radius {radius}, "
                         f"background {background}")
    peaks = np.asarray(peaks, dtype=float).reshape(-1, 2)
    valid = np.ones(shape, dtype=bool) if valid is None else valid
    # the peaks whose exclusion disk can reach the annulus of each peak
    neighbours = cKDTree(peaks).query_ball_point(peaks, outer + inner + 2)
    disks, annuli = [], []
    for k, (row, col) in enumerate(peaks):
        reach = int(np.ceil(outer)) + 1
        r0, c0 = max(int(row) - reach, 0), max(int(col) - reach, 0)
        r1, c1 = min(int(row) + reach + 1, shape[0]), min(int(col) + reach + 1, shape[1])
        yy, xx = np.mgrid[r0:r1, c0:c1]
        r = np.hypot(yy - row, xx - col)
        window = valid[r0:r1, c0:c1]
        others = peaks[[j for j in neighbours[k] if j != k]]
        crowded = _near_any((r1 - r0, c1 - c0), others - (r0, c0), inner)
        flat = yy * shape[1] + xx
        disks.append(np.sort(flat[(r <= radius) & window]))
        annuli.append(np.sort(flat[(r >= inner) & (r <= outer) & window & ~crowded]))
    return disks, annuli


def refine_peaks(image, peaks, radius, background, valid=None, iterations=5):
    """Peak positions refined to the centroid of the background-subtracted intensity.

    Parameters
    ----------
    image : ndarray, shape (ny, nx)
        Pattern (e.g. the equilibrium of a reduced run).
    peaks : array_like, shape (K, 2)
        Approximate positions ``(row, col)``.
    radius : float
        Radius (px) of the disk of the centroid.
    background : tuple of float
        ``(inner, outer)`` radii of the annulus to which the local background (a plane) is
        fitted.
    valid : ndarray of bool, optional
        Valid pixels; a peak whose disk holds an invalid or non-finite pixel keeps its
        position.
    iterations : int, optional
        Centroid steps, each about the previous centroid.

    Returns
    -------
    ndarray, shape (K, 2)

    Notes
    -----
    The centroid of ``max(I - b, 0)`` over the disk, with ``b`` the plane fitted to the
    annulus by least squares, is free of the bias of a sloping background (e.g. a form
    factor or a diffuse halo), to which the centroids of :func:`uedflow.image.bragg_peaks`
    (of the pattern divided by its blurred self) are prone: there, peaks sit outward by
    about 0.2 % of their distance to the centre on a pattern whose intensity falls with
    ``q``.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.indices((32, 32))
    >>> spot = 100 * np.exp(-((yy - 15.3) ** 2 + (xx - 16.8) ** 2) / 4) + 0.5 * xx
    >>> refine_peaks(spot, [(15, 16)], 4, (6, 9)).round(2)
    array([[15.3, 16.8]])
    """
    image = np.asarray(image, dtype=float)
    points = np.array(peaks, dtype=float).reshape(-1, 2)
    inner, outer = background
    usable = np.isfinite(image) if valid is None else (valid & np.isfinite(image))
    reach = int(np.ceil(outer)) + 2
    for k in range(len(points)):
        position = points[k].copy()
        for _ in range(iterations):
            row, col = position
            r0, c0 = max(int(row) - reach, 0), max(int(col) - reach, 0)
            r1 = min(int(row) + reach + 1, image.shape[0])
            c1 = min(int(col) + reach + 1, image.shape[1])
            yy, xx = np.mgrid[r0:r1, c0:c1]
            r = np.hypot(yy - row, xx - col)
            window, good = image[r0:r1, c0:c1], usable[r0:r1, c0:c1]
            disk, ring = r <= radius, (r >= inner) & (r <= outer) & good
            if not good[disk].all() or not ring.any():
                break
            design = np.stack([np.ones(ring.sum()), yy[ring] - row, xx[ring] - col], axis=1)
            plane = np.linalg.lstsq(design, window[ring], rcond=None)[0]
            under = plane[0] + plane[1] * (yy[disk] - row) + plane[2] * (xx[disk] - col)
            weight = np.maximum(window[disk] - under, 0)
            if weight.sum() <= 0:
                break
            position = np.array([yy[disk] @ weight, xx[disk] @ weight]) / weight.sum()
        else:
            points[k] = position
    return points


def integration_weights(shape, disks, annuli):
    """Pixel weights of the background-subtracted integral of each peak: 1 on the disk, and
    on the annulus the weights of the least-squares plane under the disk.

    Parameters
    ----------
    shape : tuple of int
        Frame shape.
    disks, annuli : list of ndarray of int
        Flat pixel indices (:func:`bragg_regions`).

    Returns
    -------
    regions, weights : list of ndarray
        For each peak, its disk's and annulus' pixels and their weights, for
        :func:`weighted_sums`: ``sum(I[disk]) - sum(plane[disk])`` with the plane
        ``a + b (row - row_0) + c (col - col_0)`` fitted to the annulus.

    Notes
    -----
    The plane's sum over the disk is ``s · p`` with ``s = (N, Σ Δrow, Σ Δcol)`` of the disk
    and ``p = X⁺ I`` of the annulus (``X⁺`` the pseudo-inverse of its design matrix): a
    linear function of the annulus pixels, with weights ``-s X⁺``. Unlike the annulus' mean,
    a plane leaves no bias from a sloping background (a diffuse halo, a form factor) when
    the annulus is not symmetric about the peak (neighbours or masked pixels left out). An
    annulus whose pixels do not determine a plane falls back to its mean.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.indices((20, 20))
    >>> image = 5.0 + 0.3 * yy - 0.2 * xx          # a sloping background
    >>> image[10, 10] += 100                        # and a one-pixel peak
    >>> disks, annuli = bragg_regions(image.shape, [(10, 10)], 2, (4, 6))
    >>> regions, weights = integration_weights(image.shape, disks, annuli)
    >>> sums, _ = weighted_sums(image[None], None, regions, weights)
    >>> sums.round(6)
    array([[100.]])
    """
    regions, weights = [], []
    for disk, annulus in zip(disks, annuli, strict=True):
        rows, cols = np.divmod(np.concatenate([disk, annulus]), shape[1])
        row0, col0 = rows[: len(disk)].mean(), cols[: len(disk)].mean()
        design = np.stack([np.ones(len(annulus)), rows[len(disk):] - row0,
                           cols[len(disk):] - col0], axis=1)
        under = np.array([len(disk), 0.0, 0.0])
        if len(annulus) >= 3 and np.linalg.matrix_rank(design) == 3:
            background = -under @ np.linalg.pinv(design)
        else:
            background = np.full(len(annulus), -len(disk) / max(len(annulus), 1))
        regions.append(np.concatenate([disk, annulus]))
        weights.append(np.concatenate([np.ones(len(disk)), background]))
    return regions, weights


def weighted_sums(images, errors, regions, weights):
    """``Σ w I`` over each region, and its standard error ``sqrt(Σ w² e²)`` for independent
    pixels.

    Parameters
    ----------
    images : ndarray, shape (..., ny, nx)
    errors : ndarray, shape (..., ny, nx) or None
        Standard error of every pixel.
    regions, weights : list of ndarray
        Flat pixel indices of each region and their weights (e.g. from
        :func:`integration_weights`).

    Returns
    -------
    sums, errors : ndarray, shape (..., len(regions))
        NaN where a pixel of the region is not finite (the weights assume every pixel);
        ``errors`` None without ``errors``. Multiply the errors by ``sqrt(c)`` for pixels
        whose errors are correlated.
    """
    sizes = np.array([len(r) for r in regions])
    if not len(regions) or (sizes == 0).any():
        raise ValueError(f"regions {np.flatnonzero(sizes == 0).tolist()} hold no pixel")
    lead = images.shape[:-2]
    index = np.concatenate(regions)
    weight = np.concatenate(weights)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    values = images.reshape(*lead, -1)[..., index].astype(np.float64)
    sums = np.add.reduceat(values * weight, starts, axis=-1)
    if errors is None:
        return sums, None
    squares = (errors.reshape(*lead, -1)[..., index].astype(np.float64) * weight) ** 2
    return sums, np.sqrt(np.add.reduceat(squares, starts, axis=-1))


def zone_regions(shape, zones, peaks, exclude, valid=None):
    """Pixels of each Brillouin zone, Bragg disks excluded.

    Parameters
    ----------
    shape : tuple of int
        Frame shape.
    zones : list of array_like, shape (V, 2)
        Corners ``(row, col)`` of each zone (e.g. the ``visible_vertices`` of
        :meth:`uedflow.image.brillouin_zones.getVisibleBZs`).
    peaks : array_like, shape (K, 2)
        Every Bragg peak (and the centre), whose disks are excluded.
    exclude : float
        Radius (px) of the excluded disks.
    valid : ndarray of bool, optional
        Valid pixels.

    Returns
    -------
    list of ndarray of int
        Flat pixel indices of each zone.

    Examples
    --------
    >>> square = [(0, 0), (0, 9), (9, 9), (9, 0)]
    >>> [len(r) for r in zone_regions((10, 10), [square], [(4.5, 4.5)], 2)]
    [88]
    """
    free = ~_near_any(shape, peaks, exclude)
    if valid is not None:
        free &= valid
    return [np.flatnonzero(polygon2mask(shape, np.asarray(zone, dtype=float)) & free)
            for zone in zones]


def equivalent_groups(values, tolerance):
    """Groups of equal values (e.g. the ``q`` of peaks): sorted values closer than
    ``tolerance`` to their neighbour share a group.

    Parameters
    ----------
    values : array_like, shape (K,)
    tolerance : float

    Returns
    -------
    ndarray of int, shape (K,)
        Group of each value, numbered from 0 in increasing order of value.

    Examples
    --------
    >>> equivalent_groups([2.0, 1.0, 1.01, 3.5, 2.02], 0.05)
    array([1, 0, 0, 2, 1])
    """
    values = np.asarray(values, dtype=float)
    order = np.argsort(values, kind="stable")
    jumps = np.diff(values[order]) > tolerance
    labels = np.empty(values.size, dtype=int)
    labels[order] = np.concatenate([[0], np.cumsum(jumps)])
    return labels
