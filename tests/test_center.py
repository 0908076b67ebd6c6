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


def hexagonal_pattern(shape, center, spacing, seed):
    """Hexagonal lattice of Gaussian spots, its second ring (at sqrt(3) spacings) brightest
    as in graphite, central disc zeroed, clipped at 0.8 of its maximum, with 5 % uniform
    noise: like the pattern of scikit-ued's ``bragg_peaks`` tests."""
    rr, cc = np.indices(shape, dtype=float)
    rr -= center[0]
    cc -= center[1]
    image = np.zeros(shape)
    for h in range(-4, 5):
        for k in range(-4, 5):
            gr = spacing * np.sqrt(3) / 2 * k
            gc = spacing * (h + k / 2)
            g = np.hypot(gr, gc) / spacing
            amplitude = 0.3 if g < 1.1 else np.exp(-((g - 1.7) ** 2) / 0.1)
            image += amplitude * np.exp(-((rr - gr) ** 2 + (cc - gc) ** 2) / 4)
    image[np.hypot(rr, cc) < spacing / 3] = 0
    image = np.minimum(image, 0.8 * image.max())
    image /= image.max()
    return image + 0.05 * np.random.default_rng(seed).random(shape)


@pytest.mark.parametrize(
    ("center", "spacing"), [((128, 128), 69), ((110.4, 141.7), 60), ((120.3, 135.6), 60)]
)
def test_autocenter_lattice_picks_true_centre(center, spacing):
    """A lattice is point-symmetric about every lattice point and half-point, and other
    points of this one match their reflections better than the centre does; the centre
    found must be the one about which the envelope is symmetric (no mask to help)."""
    image = hexagonal_pattern((256, 256), center, spacing, seed=0)
    assert np.hypot(*(autocenter(image) - center)) <= 1


@pytest.mark.parametrize("center", [(256.3, 435.2), (102.9, 128.3)])
def test_autocenter_lattice_far_off_centre(center):
    """Far off-centre single-crystal frames (where the half-lattice points have the larger
    overlap with the frame), binned for the rough search."""
    shape = (512, 512)
    frame = make_frame(shape, center, kind="single_crystal", seed=6)
    found = autocenter(frame, mask=beam_block_mask(shape, center))
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
