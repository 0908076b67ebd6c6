"""uedflow.baseline.dualtree (dual-tree complex wavelet transform, baseline_dt) vs scikit-ued."""

import numpy as np
import pytest
import pywt
import skued

from uedflow.baseline.dualtree import (
    DTBaselinePlan,
    available_dt_filters,
    available_first_stage_filters,
    baseline_dt,
    dt_first_stage,
    dt_max_level,
    dtcwt,
    idtcwt,
)


def profile(n=1000, seed=0):
    """Powder-like profile: decaying diffuse background and Bragg peaks."""
    s = np.linspace(0.1, 10, n)
    peaks = sum(a * np.exp(-((s - c) ** 2) / 0.005) for a, c in [(6, 1.5), (3, 2.6), (2, 4.1)])
    return 20 / (1 + s**2) + peaks + 0.1 * np.random.default_rng(seed).random(n)


def test_available_filters_match_skued():
    assert available_dt_filters() == skued.available_dt_filters()
    assert available_first_stage_filters() == skued.available_first_stage_filters()


@pytest.mark.parametrize("wavelet", skued.available_dt_filters())
def test_qshift_banks_match_skued(wavelet):
    """Each filter name gives scikit-ued's transform: the dtcwt bank mapping is right."""
    data = np.random.default_rng(1).random((3, 128))
    level = 4
    ours = dtcwt(data, "sym6", wavelet, level=level)
    theirs = skued.dtcwt(data, "sym6", wavelet, level=level)
    assert len(ours) == len(theirs) == level + 1
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == np.complex128
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    back = idtcwt(ours, "sym6", wavelet)
    np.testing.assert_allclose(back, skued.idtcwt(theirs, "sym6", wavelet), atol=1e-12)
    np.testing.assert_allclose(back, data, atol=1e-6)


@pytest.mark.parametrize("first_stage", ["db1", "sym4", "bior3.3", "coif2"])
@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("mode", ["constant", "symmetric", "periodization"])
def test_dtcwt_matches_skued(first_stage, axis, mode):
    data = np.random.default_rng(2).random((64, 40))
    ours = dtcwt(data, first_stage, "qshift3", mode=mode, level=2, axis=axis)
    theirs = skued.dtcwt(data, first_stage, "qshift3", mode=mode, level=2, axis=axis)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    back = idtcwt(ours, first_stage, "qshift3", mode=mode, axis=axis)
    np.testing.assert_allclose(back, skued.idtcwt(theirs, first_stage, "qshift3", mode=mode,
                                                  axis=axis), atol=1e-12)


def test_dtcwt_level_zero_and_default():
    data = np.random.default_rng(3).random(101)
    (coeffs,) = dtcwt(data, "sym6", "qshift1", level=0)
    np.testing.assert_allclose(coeffs, data / np.sqrt(2))
    np.testing.assert_allclose(idtcwt([coeffs], "sym6", "qshift1"), data)
    even = data[:100]
    assert len(dtcwt(even, "sym6", "qshift1")) == dt_max_level(even, "sym6", "qshift1") + 1


@pytest.mark.parametrize("wavelet", skued.available_dt_filters())
def test_dt_max_level_matches_skued(wavelet):
    data = np.zeros((300, 50))
    for axis in (0, 1):
        assert (dt_max_level(data, "sym6", wavelet, axis=axis)
                == skued.dt_max_level(data, "sym6", wavelet, axis=axis))


@pytest.mark.parametrize("name", ["db1", "sym6", "bior2.2", "coif3"])
def test_first_stage_matches_skued(name):
    ours, theirs = dt_first_stage(name), skued.baseline.dt_first_stage(name)
    for w1, w2 in zip(ours, theirs, strict=True):
        assert isinstance(w1, pywt.Wavelet)
        for f1, f2 in zip(w1.filter_bank, w2.filter_bank, strict=True):
            np.testing.assert_array_equal(f1, f2)
    from_object = dt_first_stage(pywt.Wavelet(name))
    np.testing.assert_array_equal(from_object[1].dec_lo, ours[1].dec_lo)


@pytest.mark.parametrize("wavelet", ["qshift1", "qshift2", "qshift6"])
@pytest.mark.parametrize("level", [None, 1, 3])
@pytest.mark.parametrize("n", [1000, 999])
def test_baseline_dt_matches_skued(wavelet, level, n):
    signal = profile(n)
    ours = baseline_dt(signal, 50, level=level, wavelet=wavelet)
    theirs = skued.baseline_dt(signal, 50, level=level, wavelet=wavelet)
    assert ours.shape == signal.shape and ours.dtype == np.float64
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("axis", [0, -1])
def test_baseline_dt_stack_matches_skued(axis):
    """Along axis 0 the NumPy polyphase kernels run; along the last, PyWavelets'."""
    stack = np.stack([profile(501, seed) for seed in range(6)])
    stack = stack if axis == -1 else stack.T
    ours = baseline_dt(stack, 40, first_stage="db2", wavelet="qshift4", axis=axis)
    theirs = skued.baseline_dt(stack, 40, first_stage="db2", wavelet="qshift4", axis=axis)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("mode", ["zero", "symmetric", "periodic", "reflect"])
def test_baseline_dt_modes_match_skued(mode):
    signal = profile(400)
    ours = baseline_dt(signal, 20, level=3, mode=mode)
    theirs = skued.baseline_dt(signal, 20, level=3, mode=mode)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


def test_baseline_dt_regions_and_mask_match_skued():
    signal = profile(800)
    regions = [slice(0, 20), slice(700, 800)]
    mask = np.zeros(800, dtype=bool)
    mask[:10] = True
    ours = baseline_dt(signal, 30, background_regions=regions, mask=mask)
    theirs = skued.baseline_dt(signal, 30, background_regions=regions, mask=mask)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)
    assert np.all(ours[:10] == 0)


def test_baseline_dt_removes_peaks():
    signal = profile(1000)
    baseline = baseline_dt(signal, 200, level=5)
    s = np.linspace(0.1, 10, 1000)
    peak = np.abs(s - 1.5) < 0.01
    assert np.all(baseline >= 0) and np.all(baseline <= signal)
    assert np.all(signal[peak] - baseline[peak] > 4)  # a peak of height 6


def test_plan_reuse():
    plan = DTBaselinePlan((4, 600), level=4, wavelet="qshift2")
    for seed in range(2):
        stack = np.stack([profile(600, seed + k) for k in range(4)])
        np.testing.assert_array_equal(plan(stack, 20), baseline_dt(stack, 20, level=4,
                                                                   wavelet="qshift2"))


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: baseline_dt(profile(100), 5, wavelet="qshift9"), "wavelet: .*qshift1"),
        (lambda: baseline_dt(profile(100), 5, first_stage="dmey"), "first_stage: .*sym6"),
        (lambda: baseline_dt(profile(100), 5, mode="periodization"), "mode"),
        (lambda: baseline_dt(profile(100), 5, mode="bogus"), "mode"),
        (lambda: baseline_dt(profile(100), 5, level=-2), "level"),
        (lambda: baseline_dt(profile(100), 0), "max_iter"),
        (lambda: baseline_dt(profile(100), 5, mask=np.ones(100, dtype=int)), "mask"),
        (lambda: baseline_dt(profile(100), 5, background_regions=[200]), "background_regions"),
        (lambda: baseline_dt(profile(100), 5, axis=(0, 1)), "axis"),
        (lambda: dtcwt(np.zeros(17), "sym6", "qshift1", level=1), "data: .*even"),
        (lambda: dtcwt(np.zeros(16), "sym6", "qshift1", level=-1), "level"),
        (lambda: dtcwt(np.zeros(16), "sym6", "qshift1", axis=1), "axis"),
        (lambda: dtcwt(np.zeros(16), "nope", "qshift1"), "first_stage"),
        (lambda: idtcwt([], "sym6", "qshift1"), "coeffs"),
        (lambda: dt_max_level(np.zeros(16), "sym6", "qshift0"), "wavelet"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
