import numpy as np
import pytest
import skued

from uedflow.datasets import beam_block_mask, make_frame
from uedflow.image.center import auto_masking, autocenter


@pytest.mark.parametrize(
    ("kind", "center"),
    [
        ("polycrystalline", (120.3, 135.6)),
        ("single_crystal", (77.2, 164.7)),
        ("mixed", (51.4, 64.2)),  # far off-centre
        ("single_crystal", (191.6, 203.1)),  # far off-centre, other corner
    ],
)
def test_autocenter_realistic_frames(kind, center):
    """Within 1 px on frames with hot pixels and a dim beam block, given its mask."""
    shape = (256, 256)
    frame = make_frame(shape, center, kind=kind, seed=3)
    assert frame.max() == 65535  # the frame has saturated hot pixels
    mask = beam_block_mask(shape, center)
    found = autocenter(frame, mask=mask)
    assert found.shape == (2,)
    assert np.hypot(*(found - center)) <= 1


def test_autocenter_beats_skued_on_hot_pixels():
    center = (120.3, 135.6)
    frame = make_frame((256, 256), center, kind="single_crystal", seed=1)
    mask = beam_block_mask(frame.shape, center)
    ours = np.hypot(*(autocenter(frame, mask=mask) - center))
    theirs = np.hypot(*(skued.autocenter(frame, mask=mask) - center))
    assert ours <= 1 < theirs


def test_autocenter_large_frame_two_stages():
    """Frames over 256 px go through the binned search, then the full-resolution one."""
    center = (300.4, 230.8)
    frame = make_frame((640, 576), center, kind="mixed", seed=2)
    found = autocenter(frame, mask=beam_block_mask(frame.shape, center))
    assert np.hypot(*(found - center)) <= 1


def test_autocenter_ignores_nan_under_mask():
    center = (120.3, 135.6)
    frame = make_frame((256, 256), center, kind="polycrystalline", seed=4).astype(float)
    mask = beam_block_mask(frame.shape, center)
    frame[~mask] = np.nan
    assert np.hypot(*(autocenter(frame, mask=mask) - center)) <= 1


def test_autocenter_bad_input():
    frame = make_frame((128, 128), kind="mixed").astype(float)
    with pytest.raises(ValueError, match="mask"):
        autocenter(frame, mask=np.ones((64, 64), dtype=bool))
    with pytest.raises(ValueError, match="mask"):
        autocenter(frame, mask=np.full(frame.shape, 255, dtype=np.uint8))
    with pytest.raises(ValueError, match="mask"):
        autocenter(frame, mask=np.zeros(frame.shape, dtype=bool))
    with pytest.raises(ValueError, match="im"):
        autocenter(frame[0])
    frame[5, 5] = np.inf
    with pytest.raises(ValueError, match="im"):
        autocenter(frame)


def test_autocenter_accepts_zero_one_mask():
    center = (60.2, 70.4)
    frame = make_frame((128, 128), center, kind="polycrystalline", seed=5)
    mask = beam_block_mask(frame.shape, center)
    found = autocenter(frame, mask=mask.astype(np.uint8))
    np.testing.assert_allclose(found, autocenter(frame, mask=mask))


@pytest.mark.parametrize("threshold", [0.05, 0.1, 0.5])
def test_auto_masking_matches_skued(threshold):
    frame = make_frame((128, 128), kind="mixed", seed=6).astype(float) - 20
    ours = auto_masking(frame, threshold)
    assert ours.dtype == bool
    np.testing.assert_array_equal(ours, skued.auto_masking(frame, threshold))
