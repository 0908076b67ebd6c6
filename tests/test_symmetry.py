import numpy as np
import pytest
import skued

from uedflow.datasets import beam_block_mask, make_frame
from uedflow.image._cache import PlanCache
from uedflow.image.symmetry import NFoldPlan, nfold, reflection

SHAPE = (160, 176)
CENTER_RC = (78.4, 90.2)
CENTER_XY = (90.2, 78.4)


@pytest.fixture(scope="module")
def frame():
    return make_frame(SHAPE, CENTER_RC, kind="mixed", seed=8)


@pytest.mark.parametrize("mod", [1, 2, 3, 6])
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("fill_value", [0.0, -7.0])
def test_nfold_matches_skued(frame, mod, use_mask, fill_value):
    mask = beam_block_mask(SHAPE, CENTER_RC) if use_mask else None
    ours = nfold(frame, mod, CENTER_XY, mask, fill_value)
    theirs = skued.nfold(frame, mod, CENTER_XY, mask, fill_value)
    assert ours.dtype == np.float64
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-4 * frame.max())


def test_nfold_plan_reused_and_batched(frame):
    mask = beam_block_mask(SHAPE, CENTER_RC)
    plan = NFoldPlan(SHAPE, 6, CENTER_XY, mask)
    other = frame // 3
    batch = plan(np.stack([frame, other]))
    np.testing.assert_allclose(batch[0], nfold(frame, 6, CENTER_XY, mask))
    np.testing.assert_allclose(batch[1], nfold(other, 6, CENTER_XY, mask))
    assert plan.weight.shape == SHAPE and plan.weight.max() <= 6 + 1e-6


def test_nfold_symmetric_result(frame):
    """A 4-fold average about the array centre is invariant under a 90 degree turn."""
    square = frame[:160, :160]
    out = nfold(square, 4)
    np.testing.assert_allclose(np.rot90(out), out, atol=1e-9)


@pytest.mark.parametrize("angle", [0, 30, 90, 135])
def test_reflection_matches_skued_at_array_centre(frame, angle):
    """Same mirror line; scikit-ued interpolates twice, uedflow once."""
    smooth = skued.nfold(frame, 1).astype(float)
    ours = reflection(smooth, angle)
    theirs = skued.reflection(smooth, angle)
    inner = (slice(30, -30), slice(30, -30))
    scale = smooth.max()
    assert np.abs(ours - theirs)[inner].max() < 0.05 * scale
    if angle == 0:  # a flip of the rows: no interpolation in either
        np.testing.assert_allclose(ours, theirs, atol=1e-9 * scale)


def test_reflection_off_centre_is_a_mirror_through_center():
    image = np.zeros((100, 120))
    image[30, 70] = 1.0  # 10 px right of the centre (x, y) = (60, 30)
    out = reflection(image, angle=90, center=(60, 30))  # vertical line x = 60
    assert out[30, 50] == pytest.approx(0.5)
    assert out[30, 70] == pytest.approx(0.5)


def test_reflection_fill_value(frame):
    """About the array's middle row, the mirror of the mask is its row flip."""
    mask = beam_block_mask(SHAPE, CENTER_RC)
    out = reflection(frame, 0, mask=mask, fill_value=-1.0)
    assert (out[~mask[::-1]] == -1).all()
    assert (out[mask[::-1]] != -1).all()


def test_bad_input(frame):
    with pytest.raises(ValueError, match="mod"):
        nfold(frame, 7)
    with pytest.raises(ValueError, match="mod"):
        nfold(frame, 0)
    with pytest.raises(ValueError, match="center"):
        nfold(frame, 6, center=(500, 10))
    with pytest.raises(ValueError, match="center"):
        reflection(frame, 10, center=(-3, 10))
    with pytest.raises(ValueError, match="mask"):
        nfold(frame, 6, mask=np.ones((5, 5), dtype=bool))
    with pytest.raises(ValueError, match="mask"):
        reflection(frame, 10, mask=np.full(SHAPE, 2))
    with pytest.raises(ValueError, match="angle"):
        reflection(frame, np.inf)
    bad = frame.astype(float)
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="im"):
        nfold(bad, 6)
    mask = np.ones(SHAPE, dtype=bool)
    mask[3, 3] = False
    assert np.isfinite(nfold(bad, 6, mask=mask)).all()  # NaN under the mask is ignored
    plan = NFoldPlan(SHAPE, 6)
    with pytest.raises(ValueError, match="shape"):
        plan(frame[:50])


def test_nfold_plan_threads_give_the_same_result():
    rng = np.random.default_rng(7)
    image = rng.random((96, 80))
    mask = np.ones(image.shape, bool)
    mask[:30, 35:45] = False
    one = NFoldPlan(image.shape, 6, (40.3, 47.6), mask, workers=1)
    two = NFoldPlan(image.shape, 6, (40.3, 47.6), mask, workers=2)
    np.testing.assert_array_equal(one(image), two(image))
    np.testing.assert_array_equal(one.weight, two.weight)
    with pytest.raises(ValueError, match="workers"):
        NFoldPlan(image.shape, 6, workers=0)


def test_nfold_reuses_its_plan_for_the_same_mask(frame, monkeypatch):
    from uedflow.image import symmetry

    built = []
    original = symmetry.NFoldPlan

    def counting(*args, **kwargs):
        built.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(symmetry, "_plans", PlanCache(counting, symmetry.CACHED_PLANS))
    mask = beam_block_mask(SHAPE, CENTER_RC)
    first = nfold(frame, 6, CENTER_XY, mask)
    again = nfold(frame, 6, np.array(CENTER_XY), mask.copy())
    assert len(built) == 1
    np.testing.assert_array_equal(first, again)
    # a mask changed in place is a new plan, and the cached plan kept its own copy
    mask[:, :20] = False
    changed = nfold(frame, 6, CENTER_XY, mask)
    assert len(built) == 2
    np.testing.assert_array_equal(changed, original(SHAPE, 6, CENTER_XY, mask)(frame))
    mask[:, :20] = True
    np.testing.assert_array_equal(nfold(frame, 6, CENTER_XY, mask), first)
    assert len(built) == 2
    for mod in (2, 3, 4, 6):  # the cache stays small
        nfold(frame, mod, CENTER_XY, mask)
    assert len(symmetry._plans) == symmetry.CACHED_PLANS


def test_nfold_cached_plan_is_shared_by_threads(frame):
    from concurrent.futures import ThreadPoolExecutor

    mask = beam_block_mask(SHAPE, CENTER_RC)
    frames = [frame * (k + 1.0) for k in range(8)]
    expected = [NFoldPlan(SHAPE, 6, CENTER_XY, mask)(f) for f in frames]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda f: nfold(f, 6, CENTER_XY, mask), frames))
    for ours, reference in zip(results, expected, strict=True):
        np.testing.assert_array_equal(ours, reference)


def test_nfold_plan_bands_equal_whole_frame_rotation(frame, monkeypatch):
    # the band-by-band average equals rotating the whole frame at once
    from uedflow.image import symmetry

    monkeypatch.setattr(symmetry, "BAND_PIXELS", 7 * SHAPE[1])  # 23 bands of 7 rows or fewer
    plan = NFoldPlan(SHAPE, 3, CENTER_XY, workers=2)
    assert plan._band_rows == 7
    image = frame.astype(float)
    whole = image + sum(symmetry._warp(image, t) for t in plan._transforms)
    np.testing.assert_allclose(plan(image), whole / 3, rtol=1e-12, atol=1e-9)
