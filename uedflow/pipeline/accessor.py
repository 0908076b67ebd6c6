"""The ``ued`` accessor of reduced Datasets: ``ds.ued.time_series(...)``.

Registered on :class:`xarray.Dataset` (the ``ued`` accessor of DataArrays, for stacks, is
:class:`uedflow.stack.UedAccessor`).
"""

import numpy as np
import xarray as xr

__all__ = ["ReducedAccessor"]


def _selection(shape, rect, disk, ring):
    """Boolean ``(y, x)`` selection of exactly one of a rectangle, a disk or a ring."""
    given = {name: value for name, value in (("rect", rect), ("disk", disk), ("ring", ring))
             if value is not None}
    if len(given) != 1:
        raise ValueError(f"time_series needs exactly one of rect, disk or ring; got "
                         f"{sorted(given) or 'none'}")
    if rect is not None:
        row0, row1, col0, col1 = (int(v) for v in rect)
        selection = np.zeros(shape, dtype=bool)
        selection[row0:row1, col0:col1] = True
        return selection
    (row, col), *radii = disk if disk is not None else ring
    inner, outer = (0.0, *radii) if disk is not None else radii
    yy, xx = np.indices(shape)
    r = np.hypot(yy - row, xx - col)
    return (r >= inner) & (r <= outer)


@xr.register_dataset_accessor("ued")
class ReducedAccessor:
    """Analyses of a reduced run (as :func:`uedflow.pipeline.reduce.reduce` returns it)."""

    def __init__(self, obj):
        self._obj = obj

    def time_series(self, rect=None, disk=None, ring=None, var="diffraction"):
        """Mean intensity in a region of every frame of the movie, against delay.

        Give exactly one region. Pixels outside ``mask`` (when the Dataset has one) are
        left out.

        Parameters
        ----------
        rect : tuple of int, optional
            ``(row0, row1, col0, col1)``: rows ``row0 <= row < row1``, columns alike.
        disk : tuple, optional
            ``((row, col), radius)``: pixels within ``radius`` of the centre.
        ring : tuple, optional
            ``((row, col), r1, r2)``: pixels between the radii ``r1`` and ``r2``, inclusive.
        var : str, optional
            Variable ``(delay, y, x)`` to average.

        Returns
        -------
        xarray.DataArray
            Dims ``("delay",)``, lazy where ``var`` is.

        Raises
        ------
        ValueError
            If not exactly one region is given, ``var`` is not a ``(..., y, x)`` variable,
            or the region holds no valid pixel.

        Examples
        --------
        >>> import numpy as np, xarray as xr
        >>> import uedflow.pipeline
        >>> ds = xr.Dataset({"diffraction": (("delay", "y", "x"), np.ones((2, 8, 8)) *
        ...                                  np.array([1.0, 2.0])[:, None, None])},
        ...                 coords={"delay": [-1.0, 1.0]})
        >>> ds.ued.time_series(disk=((4, 4), 2)).values
        array([1., 2.])
        """
        ds = self._obj
        if var not in ds or ds[var].dims[-2:] != ("y", "x"):
            raise ValueError(f"var: {var!r} is not a variable with dims (..., 'y', 'x') of the "
                             f"Dataset; it has {list(ds.data_vars)}")
        images = ds[var]
        selection = _selection(images.shape[-2:], rect, disk, ring)
        if "mask" in ds:
            selection &= ds["mask"].values.astype(bool)
        if not selection.any():
            raise ValueError("the region holds no valid pixel")
        selection = xr.DataArray(selection, dims=("y", "x"))
        series = images.astype(np.float64).where(selection).sum(("y", "x"))
        series /= int(selection.sum())
        return series.rename(f"{var}_time_series")
