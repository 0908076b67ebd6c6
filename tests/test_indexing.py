"""Bragg peaks: uedflow.image.indexing against scikit-ued, and bad input."""

import warnings

import numpy as np
import pytest
import skued
from scipy.ndimage import gaussian_filter
from skued.image.indexing import Persistence

from uedflow import datasets
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


def true_spots(shape, center, rotation_deg=0.0, counts=3000.0, mask=None):
    """Bragg spots of ``uedflow.datasets`` frames: all positions, and the clearly visible ones.

    The positions include the undiffracted beam at ``center`` (a peak where it is not
    blocked), never counted as visible. Visible: at least 3 px inside the frame, on a valid
    pixel, and with an amplitude of 5 standard deviations of the Poisson background or more.
    """
    m = min(shape)
    spacing = datasets.LATTICE_FRACTION * m
    angles = np.radians([rotation_deg, rotation_deg + 60])
    basis = spacing * np.stack([np.sin(angles), np.cos(angles)], axis=1)
    h, k = (a.ravel() for a in np.meshgrid(np.arange(-15, 16), np.arange(-15, 16)))
    pos = np.asarray(center) + h[:, None] * basis[0] + k[:, None] * basis[1]
    keep = (pos > -3).all(axis=1) & (pos < np.array(shape) + 2).all(axis=1)
    pos, undiffracted = pos[keep], ((h == 0) & (k == 0))[keep]
    radius = np.hypot(*(pos - center).T)
    amplitude = counts * np.exp(-(radius / (datasets.FORM_FACTOR_FRACTION * m)) ** 2)
    background = counts * (datasets.BACKGROUND_LORENTZ
                           / (1 + (radius / (datasets.BACKGROUND_WIDTH * m)) ** 2)
                           + datasets.BACKGROUND_FLOOR)
    visible = (pos >= 3).all(axis=1) & (pos <= np.array(shape) - 4).all(axis=1)
    visible &= (amplitude >= 5 * np.sqrt(background)) & ~undiffracted
    if mask is not None:
        rows, cols = np.clip(np.round(pos).astype(int), 0, np.array(shape) - 1).T
        visible &= mask[rows, cols]
    return pos, visible


def distances(a, b):
    a, b = np.reshape(a, (-1, 2)), np.reshape(b, (-1, 2))
    return np.hypot(*(a[:, None] - b[None]).transpose(2, 0, 1))


FRAMES_WITH_TRUTH = [  # (size, counts, rotation, masked), as measured in the docstring
    (128, 3000, 0, False), (128, 300, 17, False), (128, 3000, 17, True),
    (256, 3000, 0, False), (256, 300, 17, True), (256, 60, 0, False), (512, 300, 0, True),
]


@pytest.mark.parametrize("size, counts, rotation, masked", FRAMES_WITH_TRUTH, ids=str)
def test_bragg_peaks_find_the_true_spots(size, counts, rotation, masked):
    shape = (size, size)
    center = default_center(shape)
    frame = make_frame(shape, center, kind="single_crystal", counts=counts, hot_pixels=[],
                       rotation_deg=rotation, seed=size + counts)
    mask = beam_block_mask(shape, center) if masked else None
    pos, visible = true_spots(shape, center, rotation, counts, mask)
    peaks = bragg_peaks(frame, mask, center=center)
    assert all(isinstance(p, np.ndarray) and p.shape == (2,) for p in peaks)
    d = distances(peaks, pos)
    recall = (d[:, visible] <= 3).any(axis=0).mean()
    precision = (d.min(axis=1) <= 3).mean()
    assert recall >= 0.9 and precision >= 0.95, (recall, precision)
    # centroids of the spot regions lie within a pixel of the spot
    assert np.median(d.min(axis=1)) < 0.5


@pytest.mark.parametrize("size, rotation, masked", [(256, 17, True), (256, 0, False)], ids=str)
def test_bragg_peaks_agree_with_skued_where_it_is_right(size, rotation, masked):
    shape = (size, size)
    center = default_center(shape)
    frame = make_frame(shape, center, kind="single_crystal", hot_pixels=[],
                       rotation_deg=rotation, seed=size)
    mask = beam_block_mask(shape, center) if masked else None
    pos, visible = true_spots(shape, center, rotation, mask=mask)
    ours = bragg_peaks(frame, mask, center=center)
    theirs = skued_bragg_peaks(frame, mask, center=center)
    # scikit-ued is right here: every one of its peaks is a true spot, and it finds most
    assert (distances(theirs, pos).min(axis=1) <= 3).all()
    assert (distances(theirs, pos[visible]) <= 3).any(axis=0).mean() >= 0.9
    # the same spots (they are 25 px apart); the regions differ, so the centroids a little
    d = distances(ours, theirs)
    assert (d.min(axis=0) <= 3).all()
    assert np.median(d.min(axis=0)) < 0.5
    # what scikit-ued misses and uedflow finds is a true spot
    assert (distances(np.array(ours)[d.min(axis=1) > 3], pos).min(axis=1) <= 3).all()


def test_bragg_peaks_do_not_depend_on_the_subpixel_centre():
    # scikit-ued's peak regions are blurred by the sub-pixel part of the centre (here it
    # finds 138, 87, 82 and 84 peaks); ours are not, up to a peak at the edge of the frame
    shape = (128, 128)
    center = np.array(default_center(shape))
    frame = make_frame(shape, center, kind="single_crystal", hot_pixels=[], seed=11)
    found = [bragg_peaks(frame, center=np.floor(center) + f) for f in (0.0, 0.25, 0.5, 0.75)]
    counts = [len(peaks) for peaks in found]
    assert max(counts) - min(counts) <= 1 and min(counts) > 100
    for peaks in found[1:]:  # the regions move with the centre, by under a pixel
        assert (distances(peaks, found[0]).min(axis=1) > 1.5).sum() <= 1


def test_bragg_peaks_min_dist():
    frame = make_frame((256, 256), kind="single_crystal", hot_pixels=[], seed=0)
    center = default_center(frame.shape)
    peaks = bragg_peaks(frame, center=center, min_dist=30)
    assert 0 < len(peaks) < len(bragg_peaks(frame, center=center))
    d = distances(peaks, peaks)
    assert d[~np.eye(len(peaks), dtype=bool)].min() >= 30
    radii = np.hypot(*(np.array(peaks) - center).T)
    assert (np.diff(radii) >= 0).all()  # sorted by distance to the centre


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
