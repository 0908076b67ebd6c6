"""Bragg peaks: uedflow.image.indexing against scikit-ued, and bad input."""

import warnings

import numpy as np
import pytest
import skued
from scipy.ndimage import gaussian_filter
from skued.image.indexing import Persistence

from uedflow.datasets import beam_block_mask, default_center, diffraction_pattern, make_frame
from uedflow.image.center import autocenter
from uedflow.image.indexing import bragg_peaks, bragg_peaks_persistence, superlevel_persistence

SHAPE = (128, 128)
CENTER = default_center(SHAPE)


def skued_records(image):
    """scikit-ued's persistence records as (birth pixel, birth, persistence) arrays."""
    records = Persistence(image).persistence
    width = image.shape[1]
    return (np.array([row * width + col for (row, col), _, _, _ in records]),
            np.array([birth for _, birth, _, _ in records]),
            np.array([persistence for _, _, persistence, _ in records]))


def skued_bragg_peaks(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-image deprecation inside scikit-ued
        return skued.bragg_peaks(*args, **kwargs)


def random_images():
    rng = np.random.default_rng(7)
    images = []
    for i in range(24):
        shape = tuple(rng.integers(2, 40, 2))
        kind = i % 4
        if kind == 0:  # few levels: plateaus and equal maxima everywhere
            images.append(rng.integers(0, rng.integers(2, 6), shape).astype(np.int16))
        elif kind == 1:
            images.append(rng.random(shape))
        elif kind == 2:
            images.append(np.round(gaussian_filter(rng.random(shape), 1.5) * 40).astype(np.uint16))
        else:
            images.append(np.round(rng.random(shape) * 3, 1).astype(np.float32))
    return images


@pytest.mark.parametrize("image", random_images(), ids=lambda im: f"{im.dtype}{im.shape}")
def test_persistence_records_equal_skued_random(image):
    ours = superlevel_persistence(image)
    theirs = skued_records(image)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)
    assert ours[2].dtype == theirs[2].dtype


@pytest.mark.parametrize("image", [
    make_frame(SHAPE, kind="single_crystal", seed=1),
    make_frame((96, 128), kind="mixed", counts=40, seed=2),
    diffraction_pattern(SHAPE, kind="single_crystal"),
    np.full((9, 7), 3.0),
], ids=["frame", "dim mixed frame", "noise-free", "constant"])
def test_persistence_records_equal_skued_frames(image):
    ours = superlevel_persistence(image)
    theirs = skued_records(image)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_persistence_constant_image_has_one_record():
    pixel, birth, persistence = superlevel_persistence(np.full((5, 6), 2.5))
    np.testing.assert_array_equal(pixel, [0])
    np.testing.assert_array_equal(birth, [2.5])
    np.testing.assert_array_equal(persistence, [2.5])


def assert_same_outputs(ours, theirs):
    assert len(ours) == len(theirs) == 4
    for a, b in zip(ours, theirs, strict=True):
        assert type(a) is type(b)
        if isinstance(a, np.ndarray):
            assert a.shape == b.shape and a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        else:
            assert len(a) == len(b)
            assert all(type(x) is type(y) and x == y for x, y in zip(a, b, strict=True))


FRAME = make_frame(SHAPE, CENTER, kind="single_crystal", hot_pixels=[], seed=0)
MASK = beam_block_mask(SHAPE, CENTER)


@pytest.mark.parametrize("kwargs", [
    {},
    {"prominence": 300},
    {"prominence": 300, "min_dist": 5.0},
    {"prominence": 100, "min_dist": 7},
    {"prominence": 100, "min_dist": [4, 9]},
    {"bd_threshold": 200, "prominence": 50},
    {"prominence": 1e9},
    {"center": (64, 64), "prominence": 20},
    {"mask": MASK},
    {"mask": MASK, "prominence": 300},
    {"mask": MASK, "bd_threshold": 100, "prominence": 50, "min_dist": 3},
    {"mask": MASK, "prominence": 1e9},
    {"mask": MASK, "bd_threshold": 1e9, "prominence": 200},
], ids=str)
def test_persistence_peaks_equal_skued(kwargs):
    kwargs = {"center": CENTER, **kwargs}
    assert_same_outputs(bragg_peaks_persistence(FRAME, **kwargs),
                        skued.bragg_peaks_persistence(FRAME, **kwargs))


def test_persistence_peaks_equal_skued_with_hot_pixels_and_float():
    frame = make_frame(SHAPE, CENTER, kind="single_crystal", seed=3)
    assert_same_outputs(bragg_peaks_persistence(frame, center=CENTER, prominence=200),
                        skued.bragg_peaks_persistence(frame, center=CENTER, prominence=200))
    pattern = diffraction_pattern(SHAPE, CENTER, kind="single_crystal")
    assert_same_outputs(bragg_peaks_persistence(pattern, MASK, center=CENTER, prominence=10),
                        skued.bragg_peaks_persistence(pattern, MASK, center=CENTER,
                                                      prominence=10))


def test_persistence_finds_the_lattice():
    pattern = diffraction_pattern(SHAPE, CENTER, kind="single_crystal", background=0)
    peaks, *_ = bragg_peaks_persistence(pattern, center=CENTER, prominence=0.05 * pattern.max())
    assert len(peaks) > 20
    # every peak is a local maximum of the pattern, given as (x, y)
    for x, y in peaks:
        window = pattern[max(y - 1, 0):y + 2, max(x - 1, 0):x + 2]
        assert pattern[y, x] == window.max()


def test_persistence_center_none_uses_autocenter():
    frame = make_frame(SHAPE, CENTER, kind="single_crystal", seed=4)
    ours = bragg_peaks_persistence(frame, prominence=200)
    again = bragg_peaks_persistence(frame, center=autocenter(frame), prominence=200)
    np.testing.assert_array_equal(ours[0], again[0])


@pytest.mark.parametrize("frame, mask", [
    (make_frame((256, 256), kind="single_crystal", hot_pixels=[], seed=0), None),
    (make_frame((256, 256), kind="single_crystal", hot_pixels=[], seed=0),
     beam_block_mask((256, 256), default_center((256, 256)))),
    (make_frame((256, 256), kind="single_crystal", hot_pixels=[], seed=5, rotation_deg=17,
                counts=300), None),
    (make_frame(SHAPE, CENTER, kind="single_crystal", seed=0), None),
    (diffraction_pattern((256, 256), kind="single_crystal"),
     beam_block_mask((256, 256), default_center((256, 256)))),
    (FRAME, None),
], ids=["frame", "masked frame", "dim rotated frame", "small frame with hot pixels",
        "noise-free masked", "small frame"])
def test_bragg_peaks_equal_skued(frame, mask):
    center = default_center(frame.shape)
    ours = bragg_peaks(frame, mask, center=center)
    theirs = skued_bragg_peaks(frame, mask, center=center)
    assert len(theirs) > 0
    assert len(ours) == len(theirs)
    assert all(isinstance(p, np.ndarray) and p.shape == (2,) for p in ours)
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)


def test_bragg_peaks_min_dist_equals_skued():
    frame = make_frame((256, 256), kind="single_crystal", hot_pixels=[], seed=0)
    center = default_center(frame.shape)
    ours = bragg_peaks(frame, center=center, min_dist=30)
    theirs = skued_bragg_peaks(frame, center=center, min_dist=30)
    assert 0 < len(ours) < len(bragg_peaks(frame, center=center))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-9)


def test_bragg_peaks_center_none_uses_autocenter():
    frame = make_frame((256, 256), kind="single_crystal", hot_pixels=[], seed=0)
    np.testing.assert_array_equal(bragg_peaks(frame),
                                  bragg_peaks(frame, center=autocenter(frame)))


@pytest.mark.parametrize("function", [bragg_peaks, bragg_peaks_persistence])
def test_bad_input(function):
    frame = FRAME.astype(float)
    with pytest.raises(ValueError, match="mask has shape"):
        function(frame, np.ones((10, 10), bool), center=CENTER)
    with pytest.raises(ValueError, match="mask must be boolean"):
        function(frame, np.full(SHAPE, 2), center=CENTER)
    with pytest.raises(ValueError, match="mask has no valid"):
        function(frame, np.zeros(SHAPE, bool), center=CENTER)
    for bad in (np.nan, np.inf):
        corrupt = frame.copy()
        corrupt[3, 4] = bad
        with pytest.raises(ValueError, match="im has NaN or infinite"):
            function(corrupt, center=CENTER)
    with pytest.raises(ValueError, match="im must be a 2D"):
        function(frame[None], center=CENTER)
    with pytest.raises(ValueError, match="center must be"):
        function(frame, center=(1, 2, 3))


def test_zero_one_mask_is_accepted():
    ours = bragg_peaks_persistence(FRAME, MASK.astype(np.uint8), center=CENTER, prominence=300)
    assert_same_outputs(ours, bragg_peaks_persistence(FRAME, MASK, center=CENTER,
                                                      prominence=300))


def test_bad_min_dist():
    with pytest.raises(ValueError, match="min_dist"):
        bragg_peaks_persistence(FRAME, center=CENTER, min_dist=(1, 2, 3))
    with pytest.raises(ValueError, match="min_dist"):
        bragg_peaks_persistence(FRAME, center=CENTER, min_dist="far")


def test_numpy_scalar_min_dist_is_a_distance():
    # scikit-ued fails on NumPy scalars (it checks ``type(min_dist) == float``)
    ours = bragg_peaks_persistence(FRAME, center=CENTER, prominence=100, min_dist=np.float64(7))
    theirs = skued.bragg_peaks_persistence(FRAME, center=CENTER, prominence=100, min_dist=7.0)
    assert_same_outputs(ours, theirs)
