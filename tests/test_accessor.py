"""``ds.ued.time_series``: the region mean of a reduced movie and its standard error, on
hand-made Datasets whose truth is known."""

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

import uedflow.pipeline  # noqa: F401  (registers the Dataset accessor)

SHAPE = (16, 20)


def movie(rng, ndelay=3, shape=SHAPE):
    """A Dataset with diffraction, diffraction_error, error_correlation and mask, with units."""
    ds = xr.Dataset(
        {"diffraction": (("delay", "y", "x"), rng.normal(100, 10, (ndelay, *shape))),
         "diffraction_error": (("delay", "y", "x"), rng.uniform(1, 3, (ndelay, *shape))),
         "error_correlation": ("delay", rng.uniform(1, 3, ndelay)),
         "mask": (("y", "x"), rng.random(shape) > 0.2)},
        coords={"delay": np.linspace(-1, 4, ndelay)})
    ds["diffraction"].attrs.update(units="counts", long_name="diffracted intensity")
    ds["delay"].attrs.update(units="ps", long_name="pump-probe delay")
    return ds


def by_loops(ds, center, r1, r2):
    """The mean and its error by explicit loops over pixels (the contract's formula)."""
    means, errors = [], []
    for d in range(ds.sizes["delay"]):
        values, squares = [], []
        for i in range(ds.sizes["y"]):
            for j in range(ds.sizes["x"]):
                r = np.hypot(i - center[0], j - center[1])
                value = float(ds["diffraction"][d, i, j])
                if r1 <= r <= r2 and ds["mask"].values[i, j] and np.isfinite(value):
                    values.append(value)
                    squares.append(float(ds["diffraction_error"][d, i, j]) ** 2)
        n = len(values)
        means.append(sum(values) / n)
        errors.append(np.sqrt(float(ds["error_correlation"][d]) * sum(squares)) / n)
    return np.array(means), np.array(errors)


def test_mean_and_error_equal_an_independent_computation():
    ds = movie(np.random.default_rng(0))
    ds["diffraction"][1, 7, 14] = np.nan  # in the ring: left out of delay 1's mean and error
    ds["mask"][7, 14] = True
    ds["diffraction_error"][2, 0, 0] = np.nan  # outside the ring: no effect
    center = (6.5, 11.0)
    ts = ds.ued.time_series(ring=(center, 2, 5))
    assert isinstance(ts, xr.Dataset) and set(ts.data_vars) == {"diffraction",
                                                                 "diffraction_error"}
    assert ts["diffraction"].dims == ("delay",)
    means, errors = by_loops(ds, center, 2, 5)
    np.testing.assert_allclose(ts["diffraction"].values, means, rtol=1e-12)
    np.testing.assert_allclose(ts["diffraction_error"].values, errors, rtol=1e-12)
    assert ts["diffraction"].attrs == {"units": "counts", "long_name": "mean diffracted intensity"}
    assert ts["diffraction_error"].attrs["units"] == "counts"
    assert "standard error" in ts["diffraction_error"].attrs["long_name"]
    assert ts["delay"].attrs["units"] == "ps"
    assert ts.attrs["region"] == "ring ((6.5, 11), 2, 5) px"
    r = np.hypot(*(np.indices(SHAPE) - np.reshape(center, (2, 1, 1))))
    assert ts.attrs["pixels"] == ((r >= 2) & (r <= 5) & ds["mask"].values).sum()
    assert np.isfinite(ts["diffraction"].values).all()
    # an unknown error on a used pixel makes that delay's error unknown, not smaller
    ds["diffraction_error"][0, 6, 14] = np.nan
    ds["mask"][6, 14] = True
    error = ds.ued.time_series(ring=(center, 2, 5))["diffraction_error"].values
    assert np.isnan(error[0]) and np.isfinite(error[1:]).all()


def test_centre_is_row_col():
    """An off-diagonal centre picks the pixel at (row, col), not at (col, row)."""
    rows, cols = np.indices(SHAPE)
    ds = xr.Dataset({"diffraction": (("delay", "y", "x"), (1000.0 * rows + cols)[None])},
                    coords={"delay": [0.0]})
    assert ds.ued.time_series(disk=((3, 12), 0.5))["diffraction"].item() == 3012
    assert ds.ued.time_series(rect=(3, 4, 12, 13))["diffraction"].item() == 3012


def test_lazy_where_the_inputs_are_and_factor_one_without_error_correlation():
    ds = movie(np.random.default_rng(1)).drop_vars("error_correlation")
    lazy = ds.chunk({"delay": 1}).assign(mask=ds["mask"])  # the mask is read at the call
    computed = []

    class Count(dask.callbacks.Callback):
        def _start(self, dsk):
            computed.append(len(dsk))

    with Count():
        ts = lazy.ued.time_series(disk=((8, 9), 4))
    assert computed == []
    assert all(isinstance(ts[v].data, da.Array) for v in ts.data_vars)
    eager = ds.ued.time_series(disk=((8, 9), 4))
    xr.testing.assert_allclose(ts.compute(), eager, rtol=1e-12)
    ds["error_correlation"] = ("delay", np.ones(3))
    np.testing.assert_allclose(by_loops(ds, (8, 9), 0, 4)[1],
                               eager["diffraction_error"].values, rtol=1e-12)


def test_monte_carlo_error_is_sigma_over_sqrt_n_scans_and_matches_the_spread():
    """iid Gaussian noise of known sigma over S scans: every "delay" is an independent
    realisation. The returned error is sigma / sqrt(N S), and the means scatter by it."""
    rng = np.random.default_rng(2)
    seeds, scans, sigma = 400, 5, 3.0
    truth = 50.0 + np.indices((12, 12)).sum(axis=0)  # a non-flat pattern
    frames = truth + rng.normal(0, sigma, (seeds, scans, 12, 12))
    ds = xr.Dataset({"diffraction": (("delay", "y", "x"), frames.mean(axis=1)),
                     "diffraction_error": (("delay", "y", "x"),
                                           frames.std(axis=1, ddof=1) / np.sqrt(scans))},
                    coords={"delay": np.arange(seeds, dtype=float)})
    center, radius = (5.0, 6.0), 3.5
    ts = ds.ued.time_series(disk=(center, radius))
    n = ts.attrs["pixels"]
    inside = np.hypot(*(np.indices((12, 12)) - np.reshape(center, (2, 1, 1)))) <= radius
    assert n == inside.sum() > 30
    expected = sigma / np.sqrt(n * scans)
    errors = ts["diffraction_error"].values
    assert abs(errors.mean() / expected - 1) < 0.02  # the estimate is unbiased in variance
    assert abs(np.sqrt((errors**2).mean()) / expected - 1) < 0.01
    scatter = ts["diffraction"].values - truth[inside].mean()
    assert abs(scatter.mean()) < 4 * expected / np.sqrt(seeds)
    assert abs(scatter.std() / expected - 1) < 0.1  # 400 seeds: 3.5 % statistical spread
    assert 0.9 < np.std(scatter / errors) < 1.1


def test_monte_carlo_error_correlation_accounts_for_correlated_neighbours():
    """Noise averaged over horizontal neighbours (as interpolation does): each pixel's variance
    halves, neighbours correlate. With the true factor the error matches the spread; without
    it (factor 1) it is too small."""
    rng = np.random.default_rng(3)
    seeds, sigma = 600, 2.0
    white = rng.normal(0, sigma, (seeds, 12, 13))
    noise = (white[..., :-1] + white[..., 1:]) / 2  # var sigma**2 / 2, neighbour cov / 4
    center, radius = (6.0, 6.0), 4.0
    inside = np.hypot(*(np.indices((12, 12)) - np.reshape(center, (2, 1, 1)))) <= radius
    n, pairs = inside.sum(), (inside[:, :-1] & inside[:, 1:]).sum()
    factor = 1 + pairs / n  # var(sum) / sum(var) = (n / 2 + 2 pairs / 4) / (n / 2)
    ds = xr.Dataset({"diffraction": (("delay", "y", "x"), 10.0 + noise),
                     "diffraction_error": (("delay", "y", "x"),
                                           np.full(noise.shape, sigma / np.sqrt(2)))},
                    coords={"delay": np.arange(seeds, dtype=float)})
    scatter = ds.ued.time_series(disk=(center, radius))["diffraction"].std().item()
    plain = ds.ued.time_series(disk=(center, radius))["diffraction_error"].values
    ds["error_correlation"] = ("delay", np.full(seeds, factor))
    corrected = ds.ued.time_series(disk=(center, radius))["diffraction_error"].values
    np.testing.assert_allclose(corrected, plain * np.sqrt(factor), rtol=1e-12)
    assert abs(corrected[0] / scatter - 1) < 0.1  # 600 seeds: 3 % statistical spread
    assert plain[0] / scatter < 0.8


def test_without_errors_only_the_mean_and_bad_input_is_named():
    ds = movie(np.random.default_rng(4)).drop_vars(["diffraction_error"])
    ts = ds.ued.time_series(rect=(0, 4, 0, 4))
    assert list(ts.data_vars) == ["diffraction"]
    with pytest.raises(ValueError, match="exactly one of rect, disk or ring"):
        ds.ued.time_series()
    with pytest.raises(ValueError, match="exactly one"):
        ds.ued.time_series(rect=(0, 5, 0, 5), disk=((5, 5), 2))
    with pytest.raises(ValueError, match=r"ring: expected \(\(row, col\), r1, r2\)"):
        ds.ued.time_series(ring=((5, 5), 2))
    with pytest.raises(ValueError, match=r"rect \(30, 40, 0, 5\) holds no valid pixel"):
        ds.ued.time_series(rect=(30, 40, 0, 5))
    with pytest.raises(ValueError, match="'mask' is not a variable"):
        ds.ued.time_series(rect=(0, 5, 0, 5), var="mask")
