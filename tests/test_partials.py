"""Mergeable partial sums of a delay's frames (uedflow.pipeline.partials.PixelSums): merged
in any grouping they give the average of all frames; the pixel cut from the extremes against
an independent median-based cut; errors against numpy."""

import numpy as np
import pytest
from scipy import sparse

from uedflow.pipeline.partials import PixelSums

SHAPE = (6, 7)


def profile_matrix(shape=SHAPE):
    """Two radial 'bins': the first 20 pixels and the next 20 (the rest left out)."""
    bins = np.repeat([0, 1], 20)
    return sparse.csc_matrix((np.full(40, 1 / 20, np.float32), (bins, np.arange(40))),
                             shape=(2, np.prod(shape)))


def sums_of(frames, scans=None, profile=None):
    profile = profile_matrix() if profile is None else profile
    out = PixelSums(SHAPE, profile)
    work, flag = np.empty(SHAPE, np.float32), np.empty(SHAPE, bool)
    for k, frame in enumerate(frames):
        out.add(frame.astype(np.float32).copy(), k if scans is None else scans[k], work, flag)
    return out


def frames_with_gaps(n, seed=0):
    rng = np.random.default_rng(seed)
    frames = rng.poisson(50, (n, *SHAPE)).astype(np.float32)
    frames[rng.random(frames.shape) < 0.1] = np.nan  # pixels some frames do not reach
    return frames


@pytest.mark.parametrize("groups", [[5], [1, 1, 1, 1, 1], [2, 3], [4, 1]])
def test_merged_in_any_grouping_as_one(groups):
    frames = frames_with_gaps(5)
    whole = sums_of(frames).result(None, np.zeros(SHAPE), 5)
    parts, start = [], 0
    for size in groups:
        parts.append(sums_of(frames[start:start + size], range(start, start + size)))
        start += size
    merged = parts[0]
    for part in parts[1:]:
        merged = merged.merge(part)
    for a, b in zip(merged.result(None, np.zeros(SHAPE), 5), whole, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, equal_nan=True)


def test_mean_and_error_without_cut_against_numpy():
    frames = frames_with_gaps(6, seed=1)
    mean, error, cuts, radial_error = sums_of(frames).result(None, np.zeros(SHAPE), 6)
    with np.errstate(invalid="ignore"):
        n = np.isfinite(frames).sum(axis=0)
        expected = np.nanstd(frames.astype(float), axis=0, ddof=1) / np.sqrt(n)
    np.testing.assert_allclose(mean, np.nanmean(frames.astype(float), axis=0), rtol=1e-6)
    np.testing.assert_allclose(error, np.where(n >= 2, expected, np.nan), rtol=1e-6)
    assert not cuts.any()
    # each frame's profile over the 40 pixels of the bins (NaN counted as 0: the profile
    # pixels are those every frame reaches; here a check of the arithmetic only)
    profiles = np.nan_to_num(frames).reshape(6, -1)[:, :40].reshape(6, 2, 20).mean(axis=2)
    np.testing.assert_allclose(radial_error, profiles.std(axis=0, ddof=1) / np.sqrt(6),
                               rtol=1e-5)


@pytest.mark.parametrize("n", [3, 4])
def test_cut_of_3_or_4_values_is_a_median_cut(n):
    """With 3 or 4 values the trimmed mean is the median: the same pixels are cut as by an
    explicit median-based cut (deviation > z * max(sqrt(median), floor))."""
    rng = np.random.default_rng(n)
    frames = rng.normal(100, 3, (n, *SHAPE)).astype(np.float32)
    spikes = rng.random(frames.shape) < 0.05
    frames[spikes] += rng.choice([-80, 200], spikes.sum())
    floor = np.full(SHAPE, 3.0)
    z = 5.0
    mean, _, cuts, _ = sums_of(frames).result(z, floor, n)

    median = np.median(frames.astype(float), axis=0)
    limit = z * np.maximum(np.sqrt(median), floor)
    cut = np.abs(frames - median) > limit
    assert cut.sum() >= 3  # spikes were there to cut
    # at most one above and one below per pixel: true here
    kept = np.where(cut, np.nan, frames.astype(float))
    np.testing.assert_allclose(mean, np.nanmean(kept, axis=0), rtol=1e-6)
    np.testing.assert_array_equal(cuts, cut.reshape(n, -1).sum(axis=1))


def test_cut_leaves_a_second_outlier_in_the_same_pixel():
    """The stated approximation: one value above (and one below) is cut per pixel; a second
    outlier stays in, and pulls the trimmed mean (here so far that the lowest good value is
    cut too)."""
    frames = np.full((6, *SHAPE), 100.0, np.float32)
    frames[1, 0, 0] = frames[4, 0, 0] = 1000.0
    mean, _, cuts, _ = sums_of(frames).result(5.0, np.ones(SHAPE), 6)
    assert cuts[1] == 1 and cuts[4] == 0  # the highest (first of equals) cut, the other not
    assert mean[0, 0] == pytest.approx((3 * 100 + 1000) / 4)
    assert mean[1, 1] == pytest.approx(100)


def test_radial_profile_pickles_as_its_geometry_and_averages_each_ring():
    import importlib
    import pickle

    from uedflow.pipeline.reduce import RadialProfile

    reduce_module = importlib.import_module("uedflow.pipeline.reduce")  # not the function

    rng = np.random.default_rng(5)
    pixels = rng.random((512, 512)) > 0.1
    center, start, size = np.array([250.3, 261.8]), 3, 300
    profile = RadialProfile(center, pixels, start, size)
    frame = rng.random((512, 512)).astype(np.float32)
    radius = np.rint(np.hypot(*(np.indices(pixels.shape) - center[:, None, None])))
    expected = [frame[pixels & (radius == start + k)].mean() for k in range(size)]
    np.testing.assert_allclose(profile @ frame.ravel(), expected, rtol=1e-5)
    # a graph or a partial sum carries the packed pixels, not the 12 bytes a pixel matrix
    data = pickle.dumps(profile)
    assert len(data) < pixels.size / 8 + 2000
    reduce_module._PROFILES.clear()  # as in a fresh worker process: built again from them
    np.testing.assert_allclose(pickle.loads(data) @ frame.ravel(), expected, rtol=1e-5)


def test_dask_sees_the_bytes_a_partial_holds():
    """A cluster's scheduler places tasks and its workers' memory managers spill by dask's
    ``sizeof``: a partial must not pass for a small object."""
    from dask.sizeof import sizeof

    sums = sums_of(frames_with_gaps(3))
    held = sum(getattr(sums, name).nbytes for name in (
        "missing", "sum", "squares", "high", "high_scan", "low", "low_scan", "profile_sum",
        "profile_squares"))
    assert held <= sizeof(sums) < held + 1000
