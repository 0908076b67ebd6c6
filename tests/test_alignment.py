"""Tests of uedflow.image.alignment: against scikit-ued, ground truth and bad input."""

import numpy as np
import pytest
import skued
from scipy import ndimage as ndi
from skimage.registration import phase_cross_correlation

from uedflow.datasets import beam_block_mask, default_center, hot_pixel_positions, make_frame
from uedflow.image.alignment import AlignPlan, align, ialign, itrack_peak, translate

SHAPE = (256, 256)
CENTER = default_center(SHAPE)


def detector_mask(shape=SHAPE):
    """Beam block and hot pixels, which do not move with the pattern."""
    mask = beam_block_mask(shape, default_center(shape))
    hot = hot_pixel_positions(shape)
    mask[hot[:, 0], hot[:, 1]] = False
    return mask


def moved_frame(shift, seed, shape=SHAPE, **kwargs):
    """A frame whose pattern must be moved by ``shift`` to match ``make_frame(shape)``."""
    center = np.asarray(default_center(shape))
    return make_frame(shape, tuple(center - shift), block_center=tuple(center), seed=seed,
                      **kwargs)


@pytest.fixture(scope="module")
def reference():
    return make_frame(SHAPE, CENTER, seed=100)


def test_integer_registration_matches_scikit_ued(reference):
    """upsample_factor=1 gives scikit-ued's (scikit-image's) integer shifts, masked or not."""
    rng = np.random.default_rng(1)
    mask = detector_mask()
    masked = AlignPlan(reference, mask, upsample_factor=1)
    plain_ref = make_frame(SHAPE, CENTER, hot_pixels=[], block_transmission=1.0, seed=2)
    plain = AlignPlan(plain_ref, upsample_factor=1)
    for seed in range(4):
        shift = rng.uniform(-12, 12, size=2)
        image = moved_frame(shift, seed)
        expected = phase_cross_correlation(reference, image, reference_mask=mask)[0]
        np.testing.assert_array_equal(masked.shift(image), expected)
        image = moved_frame(shift, seed, hot_pixels=[], block_transmission=1.0)
        expected = phase_cross_correlation(plain_ref, image)[0]
        np.testing.assert_array_equal(plain.shift(image), expected)


def test_integer_alignment_reproduces_scikit_ued(reference):
    mask = detector_mask()
    image = moved_frame((3.2, -5.4), seed=3)
    ours = align(image, reference, mask, fill_value=7.0, upsample_factor=1)
    theirs = skued.align(image, reference, mask, fill_value=7.0)
    assert ours.dtype == theirs.dtype == image.dtype
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("max_shift", [None, 8])
def test_subpixel_accuracy(reference, max_shift):
    """Known sub-pixel drifts of Poisson frames with a beam block and hot pixels."""
    rng = np.random.default_rng(7)
    mask = detector_mask()
    plan = AlignPlan(reference, mask, max_shift=max_shift)
    ours, theirs = [], []
    for seed in range(6):
        shift = rng.uniform(-4, 4, size=2)
        image = moved_frame(shift, seed, debye_waller=0.5 * (seed % 2))
        ours.append(plan.shift(image) - shift)
        if max_shift is None and seed < 2:
            theirs.append(phase_cross_correlation(reference, image, reference_mask=mask)[0] - shift)
    rms = np.sqrt(np.mean(np.sum(np.square(ours), axis=1)))
    assert rms < 0.05  # scikit-ued's integer registration: ~0.4 px
    if theirs:
        assert np.sqrt(np.mean(np.sum(np.square(theirs), axis=1))) > 4 * rms


def test_upsample_factor_sets_the_grid(reference):
    image = moved_frame((1.234, -2.345), seed=4)
    mask = detector_mask()
    for factor in (1, 4, 20, 100):
        shift = AlignPlan(reference, mask, upsample_factor=factor).shift(image)
        np.testing.assert_allclose(shift * factor, np.round(shift * factor), atol=1e-9)
        assert np.all(np.abs(shift - (1.234, -2.345)) <= 0.5 / factor + 0.03)


def test_unmasked_subpixel_shift():
    """Phase correlation, upsampled: a band-limited image moved by a known fraction."""
    image = make_frame(SHAPE, CENTER, hot_pixels=[], block_transmission=1.0, seed=5)
    smooth = ndi.gaussian_filter(image.astype(float), 2.0)
    moved = np.fft.ifft2(ndi.fourier_shift(np.fft.fft2(smooth), (-2.3, 1.6))).real
    np.testing.assert_allclose(AlignPlan(smooth).shift(moved), (2.3, -1.6), atol=0.05 + 1e-9)
    assert np.all(AlignPlan(smooth, upsample_factor=1).shift(moved) == (2, -2))


def test_integer_shifts_are_exact(reference):
    """Integer shifts are found exactly and applied as copies, by default (sub-pixel)."""
    mask = detector_mask()
    image = np.full_like(reference, 9)
    image[:-6, 4:] = reference[6:, :-4]  # reference moved by (-6, +4)
    for m in (None, mask):
        np.testing.assert_array_equal(AlignPlan(reference, m).shift(image), (6, -4))
        aligned = align(image, reference, m, fill_value=1)
        np.testing.assert_array_equal(aligned[6:, :-4], reference[6:, :-4])
        assert np.all(aligned[:6] == 1) and np.all(aligned[:, -4:] == 1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint16, np.int8])
@pytest.mark.parametrize("shift", [(0.3, -1.7), (-2.5, 0.0), (0.0, 3.0), (-0.25, 2.75),
                                   (30.0, 1.5), (-1e-9, 1.0)])
def test_translate_matches_ndimage(dtype, shift):
    """Bilinear shift with scipy.ndimage's 'constant' fill and integer rounding."""
    rng = np.random.default_rng(0)
    image = (rng.random((23, 31)) * 120).astype(dtype)
    for fill in (0.0, 5.0, -3.0, np.nan):
        ours = translate(image, shift, fill)
        theirs = ndi.shift(image, shift, order=1, mode="constant", cval=fill)
        assert ours.dtype == image.dtype
        if np.issubdtype(dtype, np.integer):  # float32 arithmetic: rare off-by-one halves
            assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
            assert np.mean(ours == theirs) > 0.98
        else:
            tol = 1e-5 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(ours, theirs, rtol=tol, atol=tol * 120)


def test_fill_value_of_integer_images():
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert np.all(translate(image, (1, 0), np.nan)[0] == 0)
    assert np.all(translate(image, (1, 0), 300.0)[0] == 255)
    assert np.all(translate(image, (1, 0), -2.0)[0] == 0)


def test_align_keeps_input(reference):
    image = moved_frame((0.4, 0.6), seed=6)
    copy = image.copy()
    image.setflags(write=False)
    aligned = align(image, reference, detector_mask(), fill_value=np.nan)
    np.testing.assert_array_equal(image, copy)
    assert aligned.dtype == image.dtype


def test_max_shift_bounds_the_search(reference):
    mask = detector_mask()
    image = moved_frame((9.3, -2.2), seed=8)
    np.testing.assert_allclose(AlignPlan(reference, mask).shift(image), (9.3, -2.2), atol=0.05)
    np.testing.assert_allclose(AlignPlan(reference, mask, max_shift=12).shift(image),
                               (9.3, -2.2), atol=0.05)
    bounded = AlignPlan(reference, mask, max_shift=5).shift(image)
    assert np.all(np.abs(bounded) <= 5)


def test_constant_image_does_not_move(reference):
    """A flat correlation: the mean of its maxima, zero (as scikit-image)."""
    flat = np.full(SHAPE, 3.0)
    np.testing.assert_array_equal(AlignPlan(reference, detector_mask()).shift(flat), (0, 0))


def test_nan_on_masked_pixels_is_ignored(reference):
    mask = detector_mask()
    image = moved_frame((1.5, -0.5), seed=9).astype(float)
    expected = AlignPlan(reference, mask).shift(image)
    image[~mask] = np.nan
    np.testing.assert_array_equal(AlignPlan(reference, mask).shift(image), expected)


def test_ialign_stream(reference):
    mask = detector_mask()
    frames = [moved_frame(s, seed=i) for i, s in enumerate([(0.5, 1.0), (-2.0, 0.25)])]
    aligned = list(ialign(frames, reference=reference, mask=mask, fill_value=1))
    assert len(aligned) == 2
    for frame, result in zip(frames, aligned, strict=True):
        np.testing.assert_array_equal(result, align(frame, reference, mask, fill_value=1))
    first, *rest = ialign(np.stack([reference, *frames]), mask=mask, max_shift=4)
    assert first is not None and np.array_equal(first, reference) and len(rest) == 2
    np.testing.assert_array_equal(rest[0], align(frames[0], reference, mask, max_shift=4))


def test_itrack_peak_matches_scikit_ued():
    rng = np.random.default_rng(3)
    frames = [make_frame((128, 128), (60 + dy, 66 + dx), hot_pixels=[], seed=i,
                         block_transmission=1.0) for i, (dy, dx) in
              enumerate(rng.uniform(-2, 2, size=(5, 2)))]
    region = dict(row_slice=np.s_[20:110], col_slice=np.s_[10:100])
    ours = np.array(list(itrack_peak(frames, **region)))
    theirs = np.array(list(skued.itrack_peak(frames, **region)))
    assert ours.shape == theirs.shape == (5, 2)
    np.testing.assert_allclose(ours, theirs, atol=0.1 + 1e-9)
    assert np.mean(np.isclose(ours, theirs, atol=1e-9)) >= 0.8
    np.testing.assert_array_equal(ours[0], (0, 0))


def test_bad_input(reference):
    mask = detector_mask()
    image = moved_frame((1, 1), seed=0)
    with pytest.raises(ValueError, match="image has shape"):
        align(image[:-1], reference)
    with pytest.raises(ValueError, match="mask has shape"):
        align(image, reference, mask[:, :-1])
    with pytest.raises(ValueError, match="mask must be boolean"):
        align(image, reference, np.full(SHAPE, 2, np.uint8))
    with pytest.raises(ValueError, match="mask has no valid"):
        align(image, reference, np.zeros(SHAPE, bool))
    with pytest.raises(ValueError, match="reference must be a 2D"):
        align(image, reference[None])
    with pytest.raises(ValueError, match="image must be a real"):
        align(image.astype(complex), reference)
    bad = image.astype(float)
    bad[100, 100] = np.nan
    assert mask[100, 100]
    bad_ref = reference.astype(float)
    bad_ref[100, 100] = np.inf
    for m in (None, mask):
        with pytest.raises(ValueError, match="^image has NaN"):
            align(bad, reference, m)
        with pytest.raises(ValueError, match="^reference has NaN"):
            align(image, bad_ref, m)
    with pytest.raises(ValueError, match="upsample_factor"):
        align(image, reference, upsample_factor=0)
    with pytest.raises(ValueError, match="upsample_factor"):
        align(image, reference, upsample_factor=2.5)
    with pytest.raises(ValueError, match="max_shift"):
        align(image, reference, max_shift=0)
    with pytest.raises(ValueError, match="images is empty"):
        next(ialign([]))
    assert list(ialign([], reference=reference)) == []
    with pytest.raises(ValueError, match="images is empty"):
        next(itrack_peak([]))
    with pytest.raises(ValueError, match="precision"):
        next(itrack_peak([image], precision=2))


def test_register_returns_the_correlation_at_the_shift():
    """1 for an image equal to the reference up to a shift and an affine change of intensity;
    lower for another pattern; the same for a fractional shift as for a whole one."""
    from uedflow.datasets import diffraction_pattern

    shape = (128, 128)
    reference = diffraction_pattern(shape, (60.0, 66.0), kind="polycrystalline")
    mask = np.ones(shape, bool)
    mask[:, :4] = False
    plan = AlignPlan(reference, mask, max_shift=6)
    whole = diffraction_pattern(shape, (62.0, 63.0), kind="polycrystalline") * 3 + 7
    shift, correlation = plan.register(whole)
    np.testing.assert_allclose(shift, [-2, 3])
    assert correlation == pytest.approx(1, abs=1e-4)
    fractional = diffraction_pattern(shape, (61.5, 63.25), kind="polycrystalline")
    assert plan.register(fractional)[1] == pytest.approx(1, abs=2e-3)
    other = diffraction_pattern(shape, (60.0, 66.0), kind="single_crystal")
    assert plan.register(other)[1] < 0.9
