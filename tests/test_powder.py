import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import skued

from uedflow.datasets import beam_block_mask, make_frame
from uedflow.image.powder import AzimuthalPlan, azimuthal_average

SHAPE = (192, 224)
CENTER_RC = (90.3, 120.6)
CENTER_XY = (120.6, 90.3)


@pytest.fixture(scope="module")
def frame():
    return make_frame(SHAPE, CENTER_RC, kind="polycrystalline", seed=7)


@pytest.mark.parametrize("bounds", [None, (30, 200), (-45, 45), (420, 720)])
@pytest.mark.parametrize("use_mask", [False, True])
@pytest.mark.parametrize("trim", [True, False])
def test_matches_skued(frame, bounds, use_mask, trim):
    mask = beam_block_mask(SHAPE, CENTER_RC) if use_mask else None
    radius, intensity = azimuthal_average(frame, CENTER_XY, mask, bounds, trim)
    r_sk, i_sk = skued.azimuthal_average(frame, CENTER_XY, mask, bounds, trim)
    np.testing.assert_array_equal(radius, r_sk)
    np.testing.assert_allclose(intensity, i_sk, rtol=1e-12)
    assert intensity.dtype == np.float64


def test_plan_batch_matches_frames(frame):
    mask = beam_block_mask(SHAPE, CENTER_RC)
    plan = AzimuthalPlan(SHAPE, CENTER_XY, mask=mask)
    batch = np.stack([frame, frame // 2, frame * 0])
    radius, out = plan(batch)
    assert out.shape == (3, radius.size)
    r0, i0 = plan(frame)
    np.testing.assert_array_equal(radius, r0)
    np.testing.assert_allclose(out[0], i0)
    np.testing.assert_allclose(out[2], 0)
    assert plan.counts.sum() == mask.sum()


def test_nan_under_mask_is_ignored(frame):
    mask = beam_block_mask(SHAPE, CENTER_RC)
    with_nan = frame.astype(float)
    with_nan[~mask] = np.nan
    expected = azimuthal_average(frame, CENTER_XY, mask)[1]
    np.testing.assert_allclose(azimuthal_average(with_nan, CENTER_XY, mask)[1], expected)


def test_bad_input(frame):
    with pytest.raises(ValueError, match="center"):
        azimuthal_average(frame, (300, 10))
    with pytest.raises(ValueError, match="center"):
        azimuthal_average(frame, (10, -1))
    with pytest.raises(ValueError, match="mask"):
        azimuthal_average(frame, CENTER_XY, mask=np.ones((10, 10), dtype=bool))
    with pytest.raises(ValueError, match="mask"):
        azimuthal_average(frame, CENTER_XY, mask=np.full(SHAPE, 0.5))
    with pytest.raises(ValueError, match="valid pixel"):
        azimuthal_average(frame, CENTER_XY, mask=np.zeros(SHAPE, dtype=bool))
    with pytest.raises(ValueError, match="angular_bounds"):
        azimuthal_average(frame, CENTER_XY, angular_bounds=(0, np.nan))
    bad = frame.astype(float)
    bad[100, 100] = np.nan
    with pytest.raises(ValueError, match="image"):
        azimuthal_average(bad, CENTER_XY)
    plan = AzimuthalPlan(SHAPE, CENTER_XY)
    with pytest.raises(ValueError, match="image"):
        plan(frame[:10])


def test_plan_is_shared_safely_by_threads(frame):
    mask = beam_block_mask(SHAPE, CENTER_RC)
    plan = AzimuthalPlan(SHAPE, CENTER_XY, mask=mask, trim=False)
    assert plan.thread_safe
    frames = [frame * (k + 1) for k in range(16)]
    expected = [plan(f)[1] for f in frames]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda f: plan(f)[1], frames * 4))
    for k, profile in enumerate(got):
        np.testing.assert_array_equal(profile, expected[k % 16])
    # the geometry is one bin index (8 bytes) per pixel, not a sparse matrix (16 bytes)
    assert len(pickle.dumps(plan)) < 9 * frame.size


def test_drop_in_reuses_its_plan_until_the_geometry_changes(frame, monkeypatch):
    from uedflow.image import powder
    from uedflow.image._cache import PlanCache

    built = []

    def counting(*args):
        built.append(args)
        return AzimuthalPlan(*args)

    monkeypatch.setattr(powder, "_plans", PlanCache(counting, powder.CACHED_PLANS))
    mask = beam_block_mask(frame.shape, CENTER_RC)
    first = azimuthal_average(frame, CENTER_XY, mask)
    again = azimuthal_average(frame * 2.0, CENTER_XY, mask.copy())
    assert len(built) == 1
    np.testing.assert_allclose(again[1], 2 * first[1], rtol=1e-12)
    mask[:40] = False  # changed in place: a new geometry, a new plan
    changed = azimuthal_average(frame, CENTER_XY, mask)
    assert len(built) == 2
    expected = AzimuthalPlan(frame.shape, CENTER_XY, mask)(frame)
    np.testing.assert_array_equal(changed[1], expected[1])
