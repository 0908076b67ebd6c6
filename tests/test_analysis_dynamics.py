"""Dynamics: the exponential model against a numerical convolution, fits that recover known
parameters within calibrated errors, time zero found and shifted, relative changes."""

import json
import math

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from scipy.signal import fftconvolve

import uedflow.pipeline  # noqa: F401  (registers the Dataset accessor)
from uedflow.analysis import (
    exponential_model,
    find_time_zero,
    fit_exponentials,
    onset,
    relative_change,
)

DELAYS = np.array([-2, -1, -0.5, -0.25, 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.5, 2, 3,
                   4, 6, 10.0])
TRUTH = {"t0": 0.3, "fwhm": 0.35, "amplitude": -0.08, "tau": 1.5, "offset": 0.002}
NOISE = 0.002


def numerical_model(t, t0, fwhm, amplitudes, taus, offset, dt=5e-4):
    """The model by direct numerical convolution of the response with a sampled Gaussian."""
    grid = np.arange(t.min() - 6, t.max() + 6, dt)
    s = grid - t0
    response = sum(a * np.where(s > 0, -np.expm1(-np.maximum(s, 0) / tau), 0.0)
                   for a, tau in zip(amplitudes, taus, strict=True))
    if fwhm > 0:
        sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
        x = np.arange(-8 * sigma, 8 * sigma + dt / 2, dt)
        kernel = np.exp(-0.5 * (x / sigma) ** 2)
        response = fftconvolve(response, kernel / kernel.sum(), mode="same")
    return offset + np.interp(t, grid, response)


@pytest.mark.parametrize("fwhm, amplitudes, taus", [
    (0.35, [-0.08], [1.5]), (0.1, [1.0, -0.6], [0.3, 4.0]), (0.0, [2.0], [0.7]),
    (1.2, [0.5], [0.05]),  # a response much wider than the rise: the erfcx branch
])
def test_model_is_the_numerical_convolution(fwhm, amplitudes, taus):
    t = np.linspace(-3, 12, 301)
    expected = numerical_model(t, 0.4, fwhm, amplitudes, taus, 0.1)
    got = exponential_model(t, 0.4, fwhm, amplitudes, taus, 0.1)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, expected, atol=2e-3 * max(map(abs, amplitudes)))


def test_model_is_finite_far_from_time_zero():
    t = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    y = exponential_model(t, 0.0, 0.05, [1.0], [0.01])
    np.testing.assert_allclose(y, [0, 0, 0.5 * (1 - math.exp(0.5 * (0.05 / 2.3548 / 0.01) ** 2)
                                                * math.erfc(0.05 / 2.3548 / 0.01 / math.sqrt(2)))
                                   , 1, 1], atol=1e-4)


def noisy_trace(seed, truth=TRUTH, delays=DELAYS, noise=NOISE):
    rng = np.random.default_rng(seed)
    clean = exponential_model(delays, truth["t0"], truth["fwhm"], [truth["amplitude"]],
                              [truth["tau"]], truth["offset"])
    return clean + rng.normal(0, noise, delays.size), np.full(delays.size, noise)


def test_fit_recovers_the_parameters():
    values, errors = noisy_trace(0)
    fit = fit_exponentials(DELAYS, values, errors)
    for name in ("t0", "amplitude", "tau", "offset"):
        assert abs(fit[name] - TRUTH[name]) < 3 * fit.errors[name], (name, fit)
    assert 0.2 < fit.chi2 < 2.5 and fit.dof == DELAYS.size - 5
    np.testing.assert_allclose(fit(DELAYS), exponential_model(
        DELAYS, fit["t0"], fit["fwhm"], [fit["amplitude"]], [fit["tau"]], fit["offset"]))
    record = fit.to_dict()
    assert record["tau_error"] == fit.errors["tau"] and record["fixed"] == []
    assert "tau" in str(fit)


def test_fitted_errors_are_calibrated_over_many_seeds():
    """(estimate - truth) / error over 120 noise draws: RMS 1 ± 0.2 and ~68 % within 1σ."""
    z = {name: [] for name in ("t0", "amplitude", "tau", "offset")}
    for seed in range(120):
        fit = fit_exponentials(DELAYS, *noisy_trace(seed))
        if "at_bound" in fit.extra:
            continue
        for name in z:
            z[name].append((fit[name] - TRUTH[name]) / fit.errors[name])
    for name, values in z.items():
        values = np.array(values)
        assert len(values) > 100
        assert np.sqrt(np.mean(values**2)) == pytest.approx(1, abs=0.2), name
        assert 0.58 < np.mean(np.abs(values) < 1) < 0.78, name


def test_two_exponentials():
    truth = {"t0": 0.1, "fwhm": 0.2, "amplitude": -0.1, "tau": 0.4, "amplitude2": 0.06,
             "tau2": 5.0, "offset": 0.0}
    delays = np.concatenate([np.linspace(-1, 2, 31), np.linspace(2.5, 25, 20)])
    clean = exponential_model(delays, 0.1, 0.2, [-0.1, 0.06], [0.4, 5.0])
    rng = np.random.default_rng(3)
    fit = fit_exponentials(delays, clean + rng.normal(0, 0.002, delays.size),
                           np.full(delays.size, 0.002), n=2)
    assert fit.names == ["t0", "fwhm", "amplitude", "tau", "amplitude2", "tau2", "offset"]
    for name, value in truth.items():
        assert abs(fit[name] - value) < 3.5 * fit.errors[name], (name, fit)
    assert fit["tau"] < fit["tau2"]


def test_fixed_parameters_and_unresolved_response():
    values, errors = noisy_trace(1)
    fit = fit_exponentials(DELAYS, values, errors, irf=0.35, t0=0.3)
    assert fit["fwhm"] == 0.35 and fit.errors["t0"] == 0 and fit.free == ["amplitude", "tau",
                                                                         "offset"]
    assert fit.to_dict()["fixed"] == ["t0", "fwhm"]
    # a step without instrument response, sampled every 0.1 ps: a narrow response at most
    fine = np.arange(-2, 10, 0.1)
    clean = exponential_model(fine, 0.25, 0.0, [1.0], [2.0])
    fit = fit_exponentials(fine, clean + 1e-3 * np.cos(fine), np.full(fine.size, 1e-3))
    assert fit["fwhm"] < 0.15 and abs(fit["t0"] - 0.25) < 0.01 and abs(fit["tau"] - 2) < 0.01


def test_fit_without_errors_scales_by_the_scatter():
    values, _ = noisy_trace(2)
    fit = fit_exponentials(DELAYS, values)
    assert fit.scaled and 0.3 * NOISE < fit.errors["offset"] < 3 * NOISE


@pytest.mark.parametrize("kwargs, match", [
    ({"n": 3}, "n must be 1 or 2"),
    ({"irf": -1.0}, "irf"),
])
def test_bad_fit_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_exponentials(DELAYS, *noisy_trace(0), **kwargs)


def test_too_few_points_or_mismatched_lengths():
    with pytest.raises(ValueError, match="at least 6"):
        fit_exponentials(DELAYS[:5], np.zeros(5), np.ones(5))
    with pytest.raises(ValueError, match="differ in length"):
        fit_exponentials(DELAYS, np.zeros(3))


def test_time_zero_from_the_data():
    truth = {**TRUTH, "t0": -0.37}
    t0, error = find_time_zero(DELAYS, *noisy_trace(5, truth))
    assert abs(t0 + 0.37) < 3 * error and error < 0.05
    assert onset([0, 1, 2, 3, 4], [1, 1, 1, 3, 3]) == 2.5
    assert onset([0, 1, 2, 3, 4], [1, 1, 1, 3, 3], fraction=0.25) == 2.25


def test_relative_change_error_is_that_of_a_monte_carlo():
    """The first-order error of x / mean(x_1..x_n) - 1, for an x that is one of the n and for
    one that is not, against the scatter of 200 000 draws."""
    rng = np.random.default_rng(0)
    truth, sigma, n = np.array([100.0, 103.0, 98.0, 90.0]), np.array([0.5, 0.6, 0.4, 0.5]), 3
    draws = truth + sigma * rng.standard_normal((200_000, 4))
    reference = draws[:, :n].mean(axis=1, keepdims=True)
    simulated = (draws / reference - 1).std(axis=0)
    reference_error = np.sqrt((sigma[:n] ** 2).sum()) / n
    members = np.arange(4) < n
    _, error = relative_change(truth, sigma, truth[:n].mean(), reference_error,
                               covariance=members * sigma**2 / n)
    np.testing.assert_allclose(error, simulated, rtol=0.01)
    change, _ = relative_change(truth, sigma, 0.0, 0.0)
    assert np.isnan(change).all()


# ------------------------------------------------------------------ on a reduced Dataset

def reduced(rng, reference="before_t0", t0=0.0, lazy=False):
    """A small reduced-like Dataset: diffraction, radial, their errors, equilibrium and
    radial_change of the delays before ``t0``, as the reduction makes them."""
    delay = np.array([-1.0, -0.4, 0.2, 0.7, 1.5, 3.0])
    diffraction = rng.normal(100, 3, (6, 8, 8))
    diffraction_error = rng.uniform(1, 2, (6, 8, 8))
    radial = rng.normal(50, 2, (6, 5))
    radial_error = rng.uniform(0.5, 1, (6, 5))
    before = delay < t0
    equilibrium = radial[before].mean(axis=0)
    change = radial / equilibrium - 1
    wrap = da.from_array if lazy else np.asarray
    ds = xr.Dataset(
        {"diffraction": (("delay", "y", "x"), wrap(diffraction)),
         "diffraction_error": (("delay", "y", "x"), wrap(diffraction_error)),
         "equilibrium": (("y", "x"), diffraction[before].mean(axis=0)),
         "equilibrium_error": (("y", "x"),
                               np.sqrt((diffraction_error[before] ** 2).sum(0)) / before.sum()),
         "radial": (("delay", "radius"), wrap(radial)),
         "radial_error": (("delay", "radius"), wrap(radial_error)),
         "radial_change": (("delay", "radius"), wrap(change), {"units": "1"}),
         "radial_change_error": (("delay", "radius"), wrap(np.zeros_like(change)))},
        coords={"delay": ("delay", delay, {"units": "ps"}), "radius": np.arange(5)},
        attrs={"uedflow": json.dumps({"config": {"dynamics": {"t0": t0,
                                                             "reference": reference}}})})
    return ds


def test_shift_time_zero_recomputes_the_equilibrium_when_a_delay_crosses():
    ds = reduced(np.random.default_rng(0), lazy=True)
    shifted = ds.ued.shift_time_zero(0.5)
    np.testing.assert_allclose(shifted["delay"].values, ds["delay"].values - 0.5)
    assert shifted["delay"].attrs["units"] == "ps"
    assert list(shifted.ued.reference_delays().values) == [True, True, True, False, False,
                                                           False]
    record = json.loads(shifted.attrs["uedflow"])["time_zero"]
    assert record["shift"] == 0.5 and record["t0"] == 0.0
    assert set(record["recomputed"]) == {"equilibrium", "equilibrium_error", "radial_change",
                                         "radial_change_error"}
    assert isinstance(shifted["radial_change"].data, da.Array)  # lazy
    # against an independent computation, by loops, over the three delays now before zero
    radial, error = ds["radial"].values, ds["radial_error"].values
    for j in range(5):
        mean = sum(radial[i, j] for i in range(3)) / 3
        mean_error = math.sqrt(sum(error[i, j] ** 2 for i in range(3))) / 3
        for i in range(6):
            expected = radial[i, j] / mean - 1
            cov = error[i, j] ** 2 / 3 if i < 3 else 0.0
            variance = (error[i, j] ** 2 / mean**2 + radial[i, j] ** 2 * mean_error**2 / mean**4
                        - 2 * radial[i, j] / mean**3 * cov)
            assert shifted["radial_change"].values[i, j] == pytest.approx(expected)
            assert shifted["radial_change_error"].values[i, j] == pytest.approx(
                math.sqrt(variance))
    np.testing.assert_allclose(shifted["equilibrium"].values,
                               ds["diffraction"].values[:3].mean(axis=0))
    # shifts add up; back to the old reference: the same values again
    back = shifted.ued.shift_time_zero(-0.5)
    assert json.loads(back.attrs["uedflow"])["time_zero"]["shift"] == 0.0
    np.testing.assert_allclose(back["radial_change"].values, ds["radial_change"].values)


def test_shift_within_a_gap_or_with_pump_off_moves_only_the_coordinate():
    ds = reduced(np.random.default_rng(1))
    within = ds.ued.shift_time_zero(0.1)  # no delay between 0 and 0.1
    assert json.loads(within.attrs["uedflow"])["time_zero"]["recomputed"] == []
    assert within["radial_change"] is not None
    np.testing.assert_array_equal(within["radial_change"].values, ds["radial_change"].values)
    pump_off = reduced(np.random.default_rng(1), reference="pump_off")
    moved = pump_off.ued.shift_time_zero(2.0)
    assert not moved.ued.reference_delays().values.any()
    np.testing.assert_array_equal(moved["radial_change"].values, pump_off["radial_change"].values)
    with pytest.raises(ValueError, match="no delay before"):
        ds.ued.shift_time_zero(-5.0)
    with pytest.raises(ValueError, match="t0"):
        ds.ued.shift_time_zero("soon")


def test_time_zero_of_the_reduction_config():
    ds = reduced(np.random.default_rng(2), t0=0.5)
    assert ds.ued.time_zero == 0.5
    assert list(ds.ued.reference_delays().values) == [True, True, True, False, False, False]
    shifted = ds.ued.shift_time_zero(0.5)  # the same delays before time zero
    assert shifted.ued.time_zero == 0.0
    assert json.loads(shifted.attrs["uedflow"])["time_zero"]["recomputed"] == []


def test_accessor_fit_and_time_zero_of_a_trace_dataset():
    values, errors = noisy_trace(7)
    trace = xr.Dataset({"change": ("delay", values), "change_error": ("delay", errors)},
                       coords={"delay": DELAYS})
    ds = xr.Dataset(coords={"delay": DELAYS})
    fit = ds.ued.fit(trace)
    assert fit.values == fit_exponentials(DELAYS, values, errors).values
    t0, error = ds.ued.find_time_zero(trace["change"], trace["change_error"])
    assert abs(t0 - TRUTH["t0"]) < 3 * error
    with pytest.raises(ValueError, match="one dim 'delay'"):
        ds.ued.fit(xr.DataArray(np.zeros((2, 3)), dims=("peak", "delay")))


def test_region_change_against_the_equilibrium():
    """time_series(change=True): the region's mean over the same region of the equilibrium,
    with the covariance of the delays that make it, by an independent computation."""
    ds = reduced(np.random.default_rng(3), t0=0.5, lazy=True)
    ts = ds.ued.time_series(disk=((3.5, 4.0), 2.2), change=True)
    assert isinstance(ts["change"].data, da.Array)
    yy, xx = np.indices((8, 8))
    inside = np.hypot(yy - 3.5, xx - 4.0) <= 2.2
    images, errors = ds["diffraction"].values, ds["diffraction_error"].values
    means = images[:, inside].mean(axis=1)
    mean_errors = np.sqrt((errors[:, inside] ** 2).sum(axis=1)) / inside.sum()
    reference = means[:3].mean()  # delays -1, -0.4 and 0.2 are before t0 = 0.5
    reference_error = np.sqrt((mean_errors[:3] ** 2).sum()) / 3
    for i in range(6):
        cov = mean_errors[i] ** 2 / 3 if i < 3 else 0.0
        variance = (mean_errors[i] ** 2 / reference**2
                    + means[i] ** 2 * reference_error**2 / reference**4
                    - 2 * means[i] / reference**3 * cov)
        assert float(ts["change"][i]) == pytest.approx(means[i] / reference - 1)
        assert float(ts["change_error"][i]) == pytest.approx(math.sqrt(variance))
    with pytest.raises(ValueError, match="change needs"):
        ds.drop_vars("equilibrium").ued.time_series(disk=((3.5, 4.0), 2.2), change=True)
