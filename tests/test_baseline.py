"""uedflow.baseline.dwt (iterative wavelet baseline) against scikit-ued and PyWavelets."""

import warnings

import numpy as np
import pytest
import pywt
import skued
from skued.baseline.algorithms import _dwt_approx_rec as skued_approx_rec
from skued_private import _dwt_approx_rec

from uedflow.baseline._wavelets import MODES, Decimate, Interpolate
from uedflow.baseline.dwt import DWTBaselinePlan, baseline_dwt
from uedflow.datasets import hot_pixel_positions, make_frame

NON_PERIODIZATION = [m for m in MODES if m != "periodization"]


def spectrum(n=1001, seed=0):
    """Peaks on a smooth decaying background, with a little noise."""
    x = np.linspace(0, 10, n)
    peaks = sum(a * np.exp(-((x - c) ** 2) / 0.01) for a, c in [(3, 2), (2, 4.5), (4, 7)])
    return 5 * np.exp(-x / 5) + peaks + 0.05 * np.random.default_rng(seed).random(n)


@pytest.mark.parametrize("mode", NON_PERIODIZATION)
@pytest.mark.parametrize("size", [2, 3, 4, 5, 11, 40, 41])
def test_decimate_interpolate_match_pywt(mode, size):
    """The NumPy polyphase steps (axis 0) reproduce pywt.dwt's cA and idwt(cA, None)."""
    x = np.random.default_rng(size).random((size, 7))
    for name in ["db1", "sym2", "sym6", "bior2.2", "coif3"]:
        wavelet = pywt.Wavelet(name)
        step = Decimate(x.shape, 0, wavelet, mode)
        assert step.direct
        expected = pywt.dwt(x, wavelet, mode=mode, axis=0)[0]
        np.testing.assert_allclose(step(x), expected, rtol=1e-12, atol=1e-12)
        full = pywt.idwt(expected, None, wavelet, mode=mode, axis=0)
        back = Interpolate(expected.shape, 0, wavelet, mode, None)
        np.testing.assert_allclose(back(expected), full, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("wavelet", ["sym6", "db1", "sym2", "bior2.2", "coif3"])
@pytest.mark.parametrize("level", [None, 1, 3])
@pytest.mark.parametrize("n", [1000, 1001])
def test_1d_matches_skued(wavelet, level, n):
    signal = spectrum(n)
    ours = baseline_dwt(signal, 50, level=level, wavelet=wavelet)
    theirs = skued.baseline_dwt(signal, 50, level=level, wavelet=wavelet)
    assert ours.shape == signal.shape and ours.dtype == np.float64
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", NON_PERIODIZATION)
def test_1d_modes_match_skued(mode):
    signal = spectrum(500)
    # Few iterations: with 'smooth' (linear extrapolation) the iteration amplifies rounding
    # differences at the ends, by ~10x per 10 iterations.
    ours = baseline_dwt(signal, 10, level=2, wavelet="sym4", mode=mode)
    theirs = skued.baseline_dwt(signal, 10, level=2, wavelet="sym4", mode=mode)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("axis", [0, 1])
def test_1d_along_axis_of_stack_matches_skued(axis):
    """Along axis 0 the NumPy polyphase kernels run; along axis 1, PyWavelets'."""
    stack = np.stack([spectrum(301, seed) for seed in range(8)])
    stack = stack if axis == 1 else stack.T
    ours = baseline_dwt(stack, 30, level=3, wavelet="sym4", axis=axis)
    theirs = skued.baseline_dwt(stack, 30, level=3, wavelet="sym4", axis=axis)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("level", [None, 1, 2])
def test_2d_matches_skued(mode, level):
    image = make_frame((128, 127), seed=1).astype(float)
    ours = baseline_dwt(image, 10, level=level, wavelet="db3", mode=mode, axis=(0, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pywt's boundary-effect warnings at high levels
        theirs = skued.baseline_dwt(image, 10, level=level, wavelet="db3", mode=mode,
                                    axis=(0, 1))
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)


def test_2d_of_a_stack_matches_skued():
    stack = np.random.default_rng(3).random((21, 31, 5))
    ours = baseline_dwt(stack, 10, level=1, wavelet="sym2", axis=(0, 1))
    theirs = skued.baseline_dwt(stack, 10, level=1, wavelet="sym2", axis=(0, 1))
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_hot_pixel_removal_matches_skued():
    """The tutorial's denoising: a level-1 baseline with many iterations drops hot pixels."""
    hot = hot_pixel_positions((256, 256), n=20, seed=2)
    image = make_frame((256, 256), hot_pixels=hot, seed=2)
    ours = baseline_dwt(image, max_iter=250, level=1, wavelet="sym2", axis=(0, 1))
    theirs = skued.baseline_dwt(image, max_iter=250, level=1, wavelet="sym2", axis=(0, 1))
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-9)
    assert np.all(image[hot[:, 0], hot[:, 1]] == 65535)
    assert ours[hot[:, 0], hot[:, 1]].max() < 0.1 * 65535


def test_background_regions_and_mask_match_skued():
    signal = spectrum(1000)
    regions = [0, slice(100, 150), 999]
    mask = np.zeros(signal.shape, dtype=bool)
    mask[400:420] = True
    ours = baseline_dwt(signal, 40, level=4, background_regions=regions, mask=mask)
    theirs = skued.baseline_dwt(signal, 40, level=4, background_regions=regions, mask=mask)
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)
    assert np.all(ours[400:420] == 0)
    assert np.all(ours[:400] > 0)


def test_mask_on_odd_length():
    """scikit-ued fails on a mask of an odd-length signal; uedflow masks it."""
    signal = spectrum(1001)
    mask = np.zeros(signal.shape, dtype=bool)
    mask[-5:] = True
    masked = baseline_dwt(signal, 20, mask=mask)
    plain = baseline_dwt(signal, 20)
    assert np.all(masked[-5:] == 0)
    np.testing.assert_array_equal(masked[:-5], plain[:-5])


def test_plan_reuse_and_buffers():
    """A plan gives the drop-in's results frame after frame; results are not its buffers."""
    frames = [make_frame((128, 128), seed=s) for s in range(3)]
    plan = DWTBaselinePlan((128, 128), level=2, wavelet="sym4", axis=(0, 1))
    results = [plan(frame, 15) for frame in frames]
    first = results[0].copy()
    plan(frames[1], 15)
    np.testing.assert_array_equal(results[0], first)
    for frame, result in zip(frames, results, strict=True):
        expected = baseline_dwt(frame, 15, level=2, wavelet="sym4", axis=(0, 1))
        np.testing.assert_array_equal(result, expected)


def test_baseline_properties():
    signal = spectrum(512)
    baseline = baseline_dwt(signal, 100, level=4)
    assert np.all(baseline >= 0)
    assert np.all(baseline <= signal + 1e-12)
    # The peak of height 4 at x = 7 is mostly left out of the baseline.
    x = np.linspace(0, 10, 512)
    peak = np.abs(x - 7) < 0.05
    assert np.all(signal[peak] - baseline[peak] > 2)


def test_level_too_high_warns_like_skued():
    signal = spectrum(100)
    with pytest.warns(UserWarning, match="level"):
        ours = baseline_dwt(signal, 10, level=12, wavelet="sym6")
    with pytest.warns(UserWarning):
        theirs = skued.baseline_dwt(signal, 10, level=12, wavelet="sym6")
    np.testing.assert_allclose(ours, theirs, rtol=1e-10, atol=1e-12)


def test_level_zero_is_identity():
    signal = spectrum(101)
    np.testing.assert_allclose(baseline_dwt(signal, 5, level=0), signal)


def test_private_approximation_matches_skued():
    array = np.random.default_rng(4).random((101, 104))
    ours = _dwt_approx_rec(array, level=2, wavelet="sym4", mode="constant", axis=1)
    theirs = skued_approx_rec(array, level=2, wavelet="sym4", mode="constant", axis=1)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(wavelet="nope"), "wavelet: .*sym6"),
        (dict(wavelet="morl"), "wavelet"),
        (dict(mode="sideways"), "mode: .*symmetric"),
        (dict(mode="periodization"), "mode: 'periodization'"),
        (dict(level=-1), "level"),
        (dict(max_iter=0), "max_iter"),
        (dict(mask=np.zeros(99, dtype=bool)), "mask"),
        (dict(mask=np.zeros(100)), "mask"),
        (dict(background_regions=[slice(0, 3), 250]), "background_regions"),
        (dict(axis=(0, 1, 2)), "axis"),
        (dict(axis=1), "axis"),
    ],
)
def test_bad_input(kwargs, match):
    kwargs = {"max_iter": 5, **kwargs}
    with pytest.raises(ValueError, match=match):
        baseline_dwt(spectrum(100), **kwargs)


def test_bad_input_2d():
    image = np.ones((16, 16))
    with pytest.raises(ValueError, match="axis: repeated"):
        baseline_dwt(image, 5, axis=(0, -2))
    image[3, 3] = np.nan
    with pytest.raises(ValueError, match="array: .*NaN"):
        baseline_dwt(image, 5, axis=(0, 1))
    plan = DWTBaselinePlan((16, 16), axis=(0, 1))
    with pytest.raises(ValueError, match="array: shape"):
        plan(np.ones((16, 15)), 5)
