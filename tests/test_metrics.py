"""Tests of uedflow.image.metrics: streaming masks and per-pixel statistics of collections."""

import numpy as np
import pytest
import skued

from uedflow import datasets as ds
from uedflow.image import metrics
from uedflow.image.metrics import (
    RunningStats,
    combine_masks,
    isnr,
    mask_from_collection,
    mask_image,
    snr_from_collection,
    triml,
    trimr,
)

SHAPE = (128, 128)


@pytest.fixture(params=[1, 3])
def small_batches(request, monkeypatch):
    """Force batches of 1 or 3 float64 frames (4 or 12 uint16 ones) and small pixel tiles."""
    monkeypatch.setattr(metrics, "_BATCH_BYTES", request.param * SHAPE[0] * SHAPE[1] * 8)
    monkeypatch.setattr(metrics, "_TILE_BYTES", 4096)


def _float_stack(n=12, seed=0, offset=10.0):
    rng = np.random.default_rng(seed)
    return offset + rng.normal(0.0, 1.0, size=(n, *SHAPE))


def _reference_mask(stack, low, high, std_thresh):
    """The mask by definition: value out of [low, high] in a frame, or a prefix std too big."""
    stack = stack.astype(np.float64)
    mask = np.any((stack > high) | (stack < low), axis=0)
    for j in range(1, len(stack) + 1):
        mask |= stack[:j].std(axis=0) > std_thresh
    return mask


# --- RunningStats ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint16, np.int32])
def test_running_stats_matches_numpy(dtype):
    rng = np.random.default_rng(1)
    stack = rng.uniform(0, 1000, size=(23, 40, 30)).astype(dtype)
    stats = RunningStats(stack.shape[1:], stack.dtype)
    for start, stop in [(0, 1), (1, 8), (8, 9), (9, 23)]:
        stats.update(stack[start:stop])
    exact = stack.astype(np.float64)
    rtol = 1e-6 if _is_single(dtype) else 1e-12
    assert stats.count == 23
    np.testing.assert_allclose(stats.mean, exact.mean(axis=0), rtol=rtol)
    np.testing.assert_allclose(stats.var, exact.var(axis=0), rtol=rtol)
    np.testing.assert_allclose(stats.std, exact.std(axis=0), rtol=rtol)
    np.testing.assert_array_equal(stats.min, stack.min(axis=0))
    np.testing.assert_array_equal(stats.max, stack.max(axis=0))
    assert stats.min.dtype == dtype


def _is_single(dtype):
    return np.dtype(dtype).itemsize <= 4 and np.dtype(dtype) != np.int32


@pytest.mark.parametrize(("dtype", "rtol"), [(np.float64, 1e-8), (np.float32, 1e-6)])
def test_running_stats_variance_stable_under_large_offset(dtype, rtol):
    rng = np.random.default_rng(2)
    stack = (1e6 + rng.normal(0.0, 0.5, size=(40, 64, 64))).astype(dtype)
    exact = stack.astype(np.float64)
    two_pass = np.var(exact, axis=0)
    # The textbook one-pass formula E[x^2] - E[x]^2 loses the variance at this offset ...
    naive = np.mean(exact**2, axis=0) - np.mean(exact, axis=0) ** 2
    assert np.max(np.abs(naive - two_pass) / two_pass) > 1e-3
    # ... the batched pairwise update keeps it.
    stats = RunningStats(stack.shape[1:], dtype)
    for start in range(0, 40, 7):
        stats.update(stack[start : start + 7])
    np.testing.assert_allclose(stats.var, two_pass, rtol=rtol)
    np.testing.assert_allclose(snr_from_collection(stack), exact.mean(0) / two_pass**0.5, rtol=rtol)


def test_running_stats_merge_is_the_whole_stream():
    stack = _float_stack(n=17, seed=3)
    whole = RunningStats(SHAPE).update(stack)
    left = RunningStats(SHAPE).update(stack[:5])
    middle = RunningStats(SHAPE).update(stack[5:6])
    right = RunningStats(SHAPE).update(stack[6:])
    merged = left.merge(middle.merge(right))
    assert merged.count == 17
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-13)
    np.testing.assert_allclose(merged.var, whole.var, rtol=1e-11)
    np.testing.assert_array_equal(merged.min, stack.min(axis=0))
    np.testing.assert_array_equal(merged.max, stack.max(axis=0))


def test_running_stats_merge_with_empty():
    stack = _float_stack(n=4)
    empty = RunningStats(SHAPE)
    full = RunningStats(SHAPE).update(stack)
    np.testing.assert_allclose(RunningStats(SHAPE).merge(full).var, stack.var(axis=0))
    np.testing.assert_allclose(full.merge(empty).var, stack.var(axis=0))
    assert full.count == 4 and empty.count == 0


def test_running_stats_bad_input():
    stats = RunningStats(SHAPE)
    with pytest.raises(ValueError, match="batch must have shape"):
        stats.update(np.zeros(SHAPE))
    with pytest.raises(ValueError, match="no frames"):
        _ = stats.mean
    with pytest.raises(ValueError, match="other has frame shape"):
        stats.merge(RunningStats((4, 4)))
    with pytest.raises(ValueError, match="other must be a RunningStats"):
        stats.merge(np.zeros(SHAPE))


# --- mask_from_collection ----------------------------------------------------------------


@pytest.mark.parametrize("std_thresh", [None, 1.3, 2.0])
@pytest.mark.parametrize("px_thresh", [(7, 13), 12.5, (-np.inf, 13)])
def test_mask_from_collection_matches_skued(std_thresh, px_thresh, small_batches):
    frames = list(_float_stack(n=10, seed=4))
    ours = mask_from_collection(frames, px_thresh=px_thresh, std_thresh=std_thresh)
    theirs = skued.mask_from_collection(frames, px_thresh=px_thresh, std_thresh=std_thresh)
    assert ours.dtype == bool and ours.shape == SHAPE
    assert 0 < ours.sum() < ours.size
    np.testing.assert_array_equal(ours, theirs)


def test_mask_from_collection_std_is_a_running_std():
    """A pixel noisy in the first frames only is rejected though its final std is small."""
    stack = np.full((30, *SHAPE), 5.0)
    stack[0, 3, 4] = 9.0  # std over the first 2 frames: 2; over all 30: 0.72
    assert stack[:, 3, 4].std() < 1.0
    ours = mask_from_collection(stack, px_thresh=100, std_thresh=1.0)
    assert ours[3, 4] and ours.sum() == 1
    np.testing.assert_array_equal(ours, skued.mask_from_collection(list(stack), 100, 1.0))


@pytest.mark.parametrize("std_thresh", [np.pi, 10 * np.pi])
def test_mask_from_collection_integer_frames(std_thresh, small_batches):
    """uint16 frames: compared with the definition (scikit-ued squares in uint16 and wraps).

    Thresholds whose squares are far from any ratio of small integers avoid exact ties.
    """
    stack = np.stack([ds.make_frame(SHAPE, seed=s) for s in range(8)])
    ours = mask_from_collection(iter(stack), px_thresh=(0, 6e4), std_thresh=std_thresh)
    expected = _reference_mask(stack, 0, 6e4, std_thresh)
    np.testing.assert_array_equal(ours, expected)
    hot = ds.hot_pixel_positions(SHAPE)
    assert np.all(ours[hot[:, 0], hot[:, 1]])
    assert len(hot) < ours.sum() < ours.size  # the std test rejects some pixels, not all


def test_mask_from_collection_input_kinds(small_batches):
    stack = _float_stack(n=9, seed=5)
    expected = skued.mask_from_collection(list(stack), px_thresh=(8, 12), std_thresh=1.2)
    for images in (stack, list(stack), (frame for frame in stack), [f.tolist() for f in stack]):
        ours = mask_from_collection(images, px_thresh=(8, 12), std_thresh=1.2)
        np.testing.assert_array_equal(ours, expected)
    single = mask_from_collection(stack[0], px_thresh=(8, 12), std_thresh=1.2)
    np.testing.assert_array_equal(single, (stack[0] < 8) | (stack[0] > 12))


def test_mask_from_collection_nan_pixels_judged_on_other_frames():
    stack = _float_stack(n=5, seed=6)
    stack[1, 10, 10] = np.nan
    stack[3, 10, 10] = 1e9
    stack[:, 20, 20] = np.nan
    ours = mask_from_collection(list(stack), px_thresh=(0, 100))
    np.testing.assert_array_equal(ours, skued.mask_from_collection(list(stack), (0, 100)))
    assert ours[10, 10] and not ours[20, 20]


def test_mask_from_collection_bad_input():
    with pytest.raises(ValueError, match="images is empty"):
        mask_from_collection([])
    with pytest.raises(ValueError, match="images is empty"):
        mask_from_collection(frame for frame in [])
    with pytest.raises(ValueError, match="images is empty"):
        mask_from_collection(np.zeros((0, *SHAPE)))
    frames = [np.zeros(SHAPE)] * 3 + [np.zeros((64, 64))]
    with pytest.raises(ValueError, match=r"frame 3 has shape \(64, 64\)"):
        mask_from_collection(frames, std_thresh=1)
    with pytest.raises(ValueError, match="std_thresh"):
        mask_from_collection([np.zeros(SHAPE)], std_thresh=-1)
    with pytest.raises(ValueError, match="px_thresh"):
        mask_from_collection([np.zeros(SHAPE)], px_thresh=np.nan)
    with pytest.raises(ValueError, match="px_thresh"):
        mask_from_collection([np.zeros(SHAPE)], px_thresh=())


# --- signal-to-noise ratio ---------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # scikit-ued's sqrt
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_snr_from_collection_matches_skued(dtype, small_batches):
    stack = _float_stack(n=11, seed=7).astype(dtype)
    stack[:, 5, 5] = 3.0  # constant pixel: std 0 -> fill_value
    ours = snr_from_collection(list(stack), fill_value=-1.0)
    theirs = skued.snr_from_collection(list(stack), fill_value=-1.0)
    assert ours.dtype == dtype
    assert ours[5, 5] == -1.0
    np.testing.assert_allclose(ours, theirs, rtol=1e-4 if dtype == np.float32 else 1e-10)


def test_snr_from_collection_integer_frames_are_float64():
    stack = np.stack([ds.make_frame(SHAPE, seed=s) for s in range(6)])
    ours = snr_from_collection(stack)
    exact = stack.astype(np.float64)
    std = exact.std(axis=0)
    expected = np.divide(exact.mean(axis=0), std, out=np.zeros(SHAPE), where=std != 0)
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, expected, rtol=1e-6)


def test_isnr_yields_the_ratio_after_each_frame(small_batches):
    stack = _float_stack(n=7, seed=8)
    yielded = list(isnr(frame for frame in stack))
    assert len(yielded) == 7
    np.testing.assert_array_equal(yielded[0], np.zeros(SHAPE))
    for j, snr in enumerate(yielded[1:], start=2):
        expected = stack[:j].mean(axis=0) / stack[:j].std(axis=0)
        np.testing.assert_allclose(snr, expected, rtol=1e-10)
    # scikit-ued's E[x^2] - E[x]^2 is off by up to ~1e-5 where two frames nearly agree
    for ours, theirs in zip(yielded, skued.isnr(list(stack)), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4)


def test_snr_bad_input():
    with pytest.raises(ValueError, match="images is empty"):
        snr_from_collection([])
    frames = [np.ones(SHAPE), np.ones((SHAPE[0], SHAPE[1] + 1))]
    with pytest.raises(ValueError, match="frame 1 has shape"):
        snr_from_collection(frames)
    stream = isnr(frames)
    next(stream)
    with pytest.raises(ValueError, match="frame 1 has shape"):
        next(stream)


# --- combine_masks and mask_image --------------------------------------------------------


def test_combine_masks_matches_skued():
    rng = np.random.default_rng(9)
    masks = [rng.random(SHAPE) > 0.1 for _ in range(4)]
    masks.append(masks[0].astype(np.uint8))
    ours = combine_masks(*masks)
    assert ours.dtype == bool
    np.testing.assert_array_equal(ours, skued.combine_masks(*masks))
    np.testing.assert_array_equal(ours, np.logical_and.reduce(masks[:4]))
    assert ours is not masks[0]


def test_combine_masks_bad_input():
    good = np.ones(SHAPE, dtype=bool)
    with pytest.raises(ValueError, match="at least one mask"):
        combine_masks()
    with pytest.raises(ValueError, match=r"masks\[2\] has shape"):
        combine_masks(good, good, good[:10])
    with pytest.raises(ValueError, match=r"masks\[1\] must be boolean"):
        combine_masks(good, np.full(SHAPE, 7.0))
    with pytest.raises(ValueError, match=r"masks\[0\] must be a boolean array"):
        combine_masks(np.full(SHAPE, "a"), good)


def test_mask_image_matches_skued():
    image = ds.make_frame(SHAPE, seed=10)
    mask = ds.beam_block_mask(SHAPE, ds.default_center(SHAPE))
    ours = mask_image(image, mask, fill_value=7)
    np.testing.assert_array_equal(ours, skued.mask_image(image, mask, fill_value=7))
    assert np.all(ours[~mask] == 7) and np.array_equal(ours[mask], image[mask])
    assert ours is not image and np.any(image[~mask] != 7)


def test_mask_image_in_place_and_batches():
    image = _float_stack(n=1)[0]
    mask = np.ones(SHAPE, dtype=bool)
    mask[:5] = False
    same = mask_image(image, mask, fill_value=np.nan, copy=False)
    assert same is image and np.all(np.isnan(image[:5])) and not np.any(np.isnan(image[5:]))
    batch = _float_stack(n=3)
    masked = mask_image(batch, mask)
    assert np.all(masked[:, :5] == 0)
    np.testing.assert_array_equal(masked[:, 5:], batch[:, 5:])


def test_mask_image_bad_input():
    image = np.zeros(SHAPE)
    with pytest.raises(ValueError, match="mask has shape"):
        mask_image(image, np.ones((64, 64), dtype=bool))
    with pytest.raises(ValueError, match="mask has shape"):
        mask_image(image, np.ones((2, *SHAPE), dtype=bool))
    with pytest.raises(ValueError, match="mask must be boolean"):
        mask_image(image, np.full(SHAPE, 255, dtype=np.uint8))


# --- triml and trimr ---------------------------------------------------------------------


@pytest.mark.parametrize("axis", [None, 0, 1])
@pytest.mark.parametrize("percentile", [0, 13.5, 80, 100])
def test_trim_matches_skued(axis, percentile):
    array = _float_stack(n=1, seed=11)[0]
    for ours_fn, theirs_fn in ((triml, skued.triml), (trimr, skued.trimr)):
        ours = ours_fn(array, percentile, axis=axis, fill_value=-3)
        theirs = theirs_fn(array, percentile, axis=axis, fill_value=-3)
        np.testing.assert_array_equal(ours, theirs)
        assert ours is not array
    trimmed = np.count_nonzero(triml(array, 80, fill_value=-3) == -3)
    assert abs(trimmed - 0.8 * array.size) <= 1


def test_trim_bad_input():
    with pytest.raises(ValueError, match="percentile"):
        triml(np.arange(10), 101)
    with pytest.raises(ValueError, match="percentile"):
        trimr(np.arange(10), -1)
    with pytest.raises(ValueError, match="array is empty"):
        trimr([], 50)
