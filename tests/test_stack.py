"""uedflow.stack: frame kernels lifted onto lazy stacks, and streaming reductions."""

import pickle
from concurrent.futures import ThreadPoolExecutor

import dask
import dask.array as da
import numpy as np
import pytest
import tifffile
import xarray as xr
from dask.callbacks import Callback
from dask.utils import key_split

import uedflow.io.lazy as lazy
import uedflow.stack.accessor as accessor
from uedflow import open_stack
from uedflow.baseline import baseline_dt, baseline_dwt
from uedflow.datasets import make_frame, make_run
from uedflow.image import (
    AlignPlan,
    AzimuthalPlan,
    RunningStats,
    autocenter,
    azimuthal_average,
    nfold,
)
from uedflow.image import mask_from_collection as frame_mask_from_collection
from uedflow.image import snr_from_collection as frame_snr_from_collection
from uedflow.image.indexing import bragg_peaks
from uedflow.stack import compute_passes, mask_from_collection, snr_from_collection
from uedflow.stack.lift import Plans

SHAPE = (128, 128)
DELAYS = [-1.0, 0.0, 0.5, 1.0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A 4 delays x 2 scans run of 128² uint16 frames, its frames and its valid-pixel mask."""
    path = tmp_path_factory.mktemp("stack") / "run"
    truth = make_run(path, shape=SHAPE, delays=DELAYS, n_scans=2, seed=3, drift=1.0)["truth"]
    mask = tifffile.imread(path / "mask.tif").astype(bool)
    frames = open_stack(path).values
    return path, frames, mask, truth


def stack_of(run, **chunks):
    """The run opened lazily, chunked along delay by 3 (uneven: 3 + 1) unless told."""
    return open_stack(run[0], chunks=chunks or {"delay": 3})


def frames_of(frames):
    """(index, frame) pairs over the leading dims."""
    return [(index, frames[index]) for index in np.ndindex(frames.shape[:-2])]


def test_autocenter_equals_frame_loop_and_keeps_labels(run):
    _, frames, mask, _ = run
    centers = stack_of(run).ued.autocenter(mask=mask)
    assert centers.dims == ("delay", "scan", "coord")
    assert list(centers.coord.values) == ["row", "col"]
    np.testing.assert_array_equal(centers.delay.values, DELAYS)
    np.testing.assert_array_equal(centers.scan.values, [0, 1])
    values = centers.values
    for index, frame in frames_of(frames):
        np.testing.assert_array_equal(values[index], autocenter(frame, mask))


def test_shifts_and_align_equal_frame_loop(run):
    _, frames, mask, truth = run
    stack = stack_of(run)
    shifts = stack.ued.shifts(mask=mask, max_shift=8)
    aligned = stack.ued.align(mask=mask, max_shift=8, fill_value=7)
    assert shifts.dims == ("delay", "scan", "shift") and aligned.dims == stack.dims
    assert aligned.dtype == stack.dtype
    plan = AlignPlan(frames[0, 0], mask, max_shift=8)  # default reference: the first frame
    shift_values, aligned_values = dask.compute(shifts.data, aligned.data)
    for index, frame in frames_of(frames):
        np.testing.assert_array_equal(shift_values[index], plan.shift(frame))
        np.testing.assert_array_equal(aligned_values[index], plan.align(frame, 7))
    # the shifts found are the run's drift, relative to the first frame
    expected = np.array(truth["shifts"]).transpose(1, 0, 2) - np.array(truth["shifts"])[0, 0]
    assert np.abs(shift_values - expected).max() < 0.3

    reference = frames[1, 1].astype(float)
    integer = stack.ued.shifts(reference, mask, upsample_factor=1).values
    plan = AlignPlan(reference, mask, upsample_factor=1)
    for index, frame in frames_of(frames):
        np.testing.assert_array_equal(integer[index], plan.shift(frame))


def test_per_frame_references_broadcast_over_delays(run):
    _, frames, mask, _ = run
    stack = stack_of(run)
    references = stack.isel(delay=1)  # one per scan, lazy
    shifts = stack.ued.shifts(references, mask, max_shift=8).values
    for scan in range(2):
        plan = AlignPlan(frames[1, scan], mask, max_shift=8)
        for delay in range(len(DELAYS)):
            np.testing.assert_array_equal(shifts[delay, scan], plan.shift(frames[delay, scan]))


def test_nfold_with_one_centre_and_per_frame_centres(run):
    _, frames, mask, truth = run
    stack = stack_of(run)
    row, col = truth["center"]
    one = stack.ued.nfold(6, (row, col), mask).values
    centers = stack.ued.autocenter(mask=mask)
    per_frame = stack.ued.nfold(6, centers, mask)
    assert per_frame.dims == stack.dims and per_frame.dtype == np.float64
    per_frame = per_frame.values
    found = centers.values
    for index, frame in frames_of(frames):
        np.testing.assert_array_equal(one[index], nfold(frame, 6, (col, row), mask))
        r, c = found[index]
        np.testing.assert_array_equal(per_frame[index], nfold(frame, 6, (c, r), mask))


@pytest.mark.parametrize("trim", [True, False])
def test_azimuthal_average_equals_frame_loop(run, trim):
    _, frames, mask, truth = run
    stack = stack_of(run)
    row, col = truth["center"]
    profiles = stack.ued.azimuthal_average((row, col), mask, trim=trim)
    assert profiles.dims == ("delay", "scan", "radius")
    radius = profiles.radius.values
    values = profiles.values
    for index, frame in frames_of(frames):
        r, average = azimuthal_average(frame, (col, row), mask, trim=trim)
        got = values[index]
        np.testing.assert_array_equal(got[np.searchsorted(radius, r)], average)
        assert np.all(got[~np.isin(radius, r)] == 0)


def test_azimuthal_average_with_per_frame_centres(run):
    _, frames, mask, _ = run
    stack = stack_of(run)
    centers = stack.ued.autocenter(mask=mask)
    profiles = stack.ued.azimuthal_average(centers, mask)
    values, found = dask.compute(profiles.data, centers.data)
    for index, frame in frames_of(frames):
        r, average = azimuthal_average(frame, found[index][::-1], mask)
        np.testing.assert_array_equal(values[index][r], average)
        assert np.all(np.delete(values[index], r) == 0)


def test_bragg_peaks_ragged_per_frame():
    frames = np.stack([make_frame(SHAPE, (63.0 + i / 3, 65.0), kind="single_crystal", seed=i,
                                  hot_pixels=[]) for i in range(3)])
    stack = open_stack(frames, chunks=2)
    peaks = stack.ued.bragg_peaks(center=(63.0, 65.0))
    assert peaks.dims == ("frame",) and peaks.dtype == object
    values = peaks.values
    counts = []
    for i, frame in enumerate(frames):
        expected = np.array(bragg_peaks(frame, center=(63.0, 65.0))).reshape(-1, 2)
        np.testing.assert_array_equal(values[i], expected)
        counts.append(len(expected))
    assert min(counts) > 0


def test_accessor_centres_are_row_col_and_only_drop_ins_take_x_y():
    """An off-diagonal centre (row far from col, non-square frame): the accessor's (row, col),
    as a tuple or as ds["center"]-like DataArray, gives what the drop-ins give with (x, y)."""
    row, col = 30.4, 52.7
    frames = np.stack([make_frame((72, 96), (row, col), kind="mixed", seed=i, hot_pixels=[])
                       for i in range(2)]).astype(float)
    stack = open_stack(frames, chunks=1)
    mask = np.ones(frames.shape[1:], dtype=bool)
    mask[:8, :20] = False
    labelled = xr.DataArray([row, col], dims="coord", coords={"coord": ["row", "col"]})
    for center in [(row, col), np.array([row, col]), labelled, labelled[::-1]]:
        profiles = stack.ued.azimuthal_average(center, mask).values
        nfolded = stack.ued.nfold(4, center, mask).values
        for i, frame in enumerate(frames):
            r, average = azimuthal_average(frame, (col, row), mask)
            np.testing.assert_allclose(profiles[i][r], average, rtol=1e-12)
            np.testing.assert_allclose(nfolded[i], nfold(frame, 4, (col, row), mask),
                                       rtol=1e-12)
    # the swapped order is a different profile: the test would catch a silent swap
    r, swapped = azimuthal_average(frames[0], (row, col), mask)
    assert not np.allclose(profiles[0][r], swapped)
    found = stack.ued.autocenter(mask=mask).values
    np.testing.assert_allclose(found, [[row, col]] * 2, atol=0.5)
    peaks = stack.ued.bragg_peaks(mask, center=(row, col)).values
    np.testing.assert_array_equal(peaks[0], np.reshape(
        bragg_peaks(frames[0], mask, center=(row, col)), (-1, 2)))
    with pytest.raises(ValueError, match=r"\(row, col\)"):
        stack.ued.azimuthal_average((row, col, 0.0), mask)
    with pytest.raises(ValueError, match=r"\(row, col\)"):
        stack.ued.nfold(4, (row, np.nan))


def profiles_array(rng, dims=("delay", "scan", "radius")):
    radius = np.arange(150)
    background = 50 * np.exp(-radius / 60)
    peaks = sum(30 * np.exp(-((radius - r) / 2.0) ** 2) for r in (30, 70, 110))
    data = background + peaks + rng.normal(0, 0.5, size=(4, 2, radius.size))
    profiles = xr.DataArray(data, dims=("delay", "scan", "radius"),
                            coords={"delay": DELAYS, "radius": radius})
    return profiles.transpose(*dims).chunk({"delay": 3})


@pytest.mark.parametrize("method,kernel", [("baseline_dwt", baseline_dwt),
                                           ("baseline_dt", baseline_dt)])
def test_baselines_along_a_named_dim(method, kernel):
    profiles = profiles_array(np.random.default_rng(0), dims=("radius", "delay", "scan"))
    mask = np.zeros(150, dtype=bool)
    mask[:5] = True
    regions = [slice(140, 150)]
    result = getattr(profiles.ued, method)(20, level=3, mask=mask, background_regions=regions)
    assert result.dims == profiles.dims and isinstance(result.data, da.Array)
    np.testing.assert_array_equal(result.radius.values, profiles.radius.values)
    data = profiles.values
    values = result.values
    for d in range(4):
        for s in range(2):
            expected = kernel(data[:, d, s], 20, level=3, mask=mask, background_regions=regions)
            np.testing.assert_allclose(values[:, d, s], expected, rtol=1e-12, atol=1e-12)


def test_baseline_dwt_2d_over_frames(run):
    _, frames, _, _ = run
    stack = stack_of(run)
    result = stack.ued.baseline_dwt(3, level=2, dim=("y", "x")).values
    for index, frame in frames_of(frames):
        np.testing.assert_allclose(result[index], baseline_dwt(frame, 3, level=2, axis=(0, 1)),
                                   rtol=1e-12, atol=1e-9)


def test_streaming_statistics_equal_numpy_with_a_large_offset():
    rng = np.random.default_rng(1)
    data = 1e8 + rng.normal(0, 1.0, size=(4, 3, 16, 24))
    stack = xr.DataArray(data, dims=("delay", "scan", "y", "x"),
                         coords={"delay": DELAYS, "scan": [0, 1, 2]}).chunk({"delay": 1,
                                                                             "scan": 2})
    flat = data.reshape(-1, 16, 24)
    np.testing.assert_allclose(stack.ued.mean().values, flat.mean(0), rtol=1e-15)
    np.testing.assert_allclose(stack.ued.std().values, flat.std(0), rtol=1e-6)
    np.testing.assert_array_equal(stack.ued.min().values, flat.min(0))
    np.testing.assert_array_equal(stack.ued.max().values, flat.max(0))
    np.testing.assert_allclose(stack.ued.snr().values, flat.mean(0) / flat.std(0), rtol=1e-6)
    per_delay = stack.ued.std("scan")
    assert per_delay.dims == ("delay", "y", "x")
    np.testing.assert_array_equal(per_delay.delay.values, DELAYS)
    np.testing.assert_allclose(per_delay.values, data.std(1), rtol=1e-6)
    # the frames may be split across y/x for a reduction
    split = stack.chunk({"y": 8, "x": 10})
    np.testing.assert_allclose(split.ued.std("delay").values, data.std(0), rtol=1e-6)


def test_mask_and_snr_dispatch_on_lazy_stacks(run):
    _, frames, _, _ = run
    stack = stack_of(run)
    flat = frames.reshape(-1, *SHAPE)
    px = (20, 200)
    expected = frame_mask_from_collection(flat, px)
    assert 0 < expected.sum() < expected.size
    for images in (stack, stack.data.reshape(-1, *SHAPE), flat):
        np.testing.assert_array_equal(np.asarray(mask_from_collection(images, px)), expected)
    lazy_mask = mask_from_collection(stack, px)
    assert isinstance(lazy_mask, xr.DataArray) and isinstance(lazy_mask.data, da.Array)
    np.testing.assert_array_equal(stack.ued.mask_from_collection(px).values, expected)

    # std_thresh: the standard deviation over all frames (one pass), a subset of the frame
    # kernel's running (prefix) criterion
    std_mask = mask_from_collection(stack, px, std_thresh=15).values
    direct = (flat.max(0) > 200) | (flat.min(0) < 20) | (flat.std(0) > 15)
    np.testing.assert_array_equal(std_mask, direct)
    running = frame_mask_from_collection(flat, px, std_thresh=15)
    assert not (std_mask & ~running).any() and (std_mask != expected).any()

    snr = snr_from_collection(stack)
    assert snr.dims == ("y", "x")
    # RunningStats keeps uint16 deviations in float32 (about 1e-7), batched per chunk here
    np.testing.assert_allclose(snr.values, frame_snr_from_collection(flat), rtol=1e-6)
    std = flat.std(0)
    direct = np.divide(flat.mean(0), std, out=np.zeros(SHAPE), where=std != 0)
    np.testing.assert_allclose(snr.values, direct, rtol=1e-6)
    with pytest.raises(ValueError, match="std_thresh"):
        mask_from_collection(stack, std_thresh=-1)
    with pytest.raises(ValueError, match="empty"):
        mask_from_collection(da.zeros((0, 4, 4)))


def test_nothing_is_read_or_computed_at_call_time(run, monkeypatch):
    _, _, mask, truth = run
    reads = []
    original = lazy.read_tiff_frame
    monkeypatch.setattr(lazy, "read_tiff_frame", lambda *a: reads.append(a) or original(*a))
    stack = stack_of(run)
    row, col = truth["center"]
    centers = stack.ued.autocenter(mask=mask)
    results = [
        centers,
        stack.ued.shifts(mask=mask, max_shift=4),
        stack.ued.align(mask=mask),
        stack.ued.nfold(3, centers, mask),
        stack.ued.azimuthal_average(centers, mask),
        stack.ued.azimuthal_average((row, col), mask).ued.baseline_dt(5),
        stack.ued.bragg_peaks(mask, centers),
        stack.ued.mask_from_collection(std_thresh=3),
        stack.ued.snr(),
    ]
    assert all(isinstance(r.data, da.Array) for r in results)
    assert reads == []
    results[1].compute()
    assert len(reads) == stack.shape[0] * stack.shape[1]


BUILT = []


class CountingPlan(AlignPlan):
    """AlignPlan that records the reference shape of every plan built (in ``BUILT``)."""

    def __init__(self, *args, **kwargs):
        BUILT.append(args[0].shape)
        super().__init__(*args, **kwargs)


def test_graph_is_small_and_holds_the_plan_once(run, monkeypatch):
    _, frames, mask, _ = run
    stack = open_stack(run[0], chunks=1)  # one frame per chunk: 8 chunks
    nframes = 8
    reference = np.random.default_rng(0).normal(size=SHAPE)
    BUILT.clear()
    monkeypatch.setattr(accessor, "AlignPlan", CountingPlan)
    aligned = stack.ued.align(reference, mask, max_shift=4)
    graph = dict(aligned.__dask_graph__())
    assert len(graph) <= 3 * nframes + 4
    pickled = pickle.dumps(graph)
    assert pickled.count(reference.tobytes()) == 1
    assert len(pickled) < 2 * (reference.nbytes + mask.nbytes) + nframes * 2000
    values = aligned.compute(num_workers=4)  # threads share the plan: each uses its own copy
    assert BUILT.count(SHAPE) == 1  # built once on the client, not per frame or chunk
    plan = AlignPlan(reference, mask, max_shift=4)
    for index, frame in frames_of(frames):
        np.testing.assert_array_equal(values[index], plan.align(frame))


def test_processes_scheduler_gives_identical_results(run):
    _, _, mask, truth = run
    stack = stack_of(run)
    row, col = truth["center"]
    results = (stack.ued.shifts(mask=mask, max_shift=8).data,
               stack.ued.azimuthal_average((row, col), mask).data,
               stack.ued.std().data)
    threaded = dask.compute(*results)
    processes = dask.compute(*results, scheduler="processes", num_workers=2)
    for a, b in zip(threaded, processes, strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_input_fails_at_graph_build_time(run):
    _, _, mask, _ = run
    stack = stack_of(run)
    with pytest.raises(ValueError, match="'y', 'x'"):
        stack.rename(x="col").ued.autocenter()
    with pytest.raises(ValueError, match="mask has shape"):
        stack.ued.align(mask=mask[:-1])
    with pytest.raises(ValueError, match="reference has shape"):
        stack.ued.shifts(np.zeros((64, 64)))
    with pytest.raises(ValueError, match="mod"):
        stack.ued.nfold(7)
    centers = stack.ued.autocenter()
    with pytest.raises(ValueError, match="not leading dims"):
        stack.ued.nfold(6, centers.expand_dims(run=2))
    with pytest.raises(ValueError, match="values along 'delay'"):
        stack.ued.azimuthal_average(centers.isel(delay=slice(0, 2)))
    with pytest.raises(ValueError, match="'coord' labelled"):
        stack.ued.azimuthal_average(centers.rename(coord="xy"))
    with pytest.raises(ValueError, match="split frames"):
        stack.chunk({"y": 64}).ued.align()
    profiles = profiles_array(np.random.default_rng(0))
    with pytest.raises(ValueError, match="split"):
        profiles.chunk({"radius": 50}).ued.baseline_dwt(5)
    with pytest.raises(ValueError, match="dim"):
        profiles.ued.baseline_dt(5, dim="energy")


def test_failing_frame_is_named_in_the_error(run):
    _, frames, mask, _ = run
    data = frames.astype(np.float32)
    data[2, 1, 40, 40] = np.nan  # delay 0.5, scan 1, on a valid pixel
    stack = open_stack(xr.DataArray(data, dims=("delay", "scan", "y", "x"),
                                    coords={"delay": DELAYS, "scan": [0, 1]}), chunks=4)
    shifts = stack.ued.shifts(frames[0, 0], mask)
    with pytest.raises(ValueError, match=r"frame delay=0\.5, scan=1: .*NaN"):
        shifts.compute()
    profiles = profiles_array(np.random.default_rng(0)).load()
    profiles[1, 0, 7] = np.inf
    with pytest.raises(ValueError, match=r"frame delay=0, scan=0: .*infinite"):
        profiles.chunk({"delay": 2}).ued.baseline_dwt(5).compute()


class _HeldStats(Callback):
    """Records the largest number of RunningStats held between tasks during a compute."""

    def __init__(self):
        super().__init__()
        self.most = 0

    def _posttask(self, key, result, dsk, state, id):
        held = sum(isinstance(v, RunningStats) for v in state["cache"].values())
        self.most = max(self.most, held)


@pytest.mark.parametrize("nchunks", [8, 64])
def test_streaming_reduction_holds_a_bounded_number_of_partials(nchunks):
    rng = np.random.default_rng(2)
    data = rng.normal(100.0, 3.0, size=(nchunks * 2, 16, 16))
    stack = open_stack(data, chunks=2)
    assert stack.data.npartitions == nchunks
    with _HeldStats() as held:
        std = stack.ued.std().compute(scheduler="sync")
    np.testing.assert_allclose(std, data.std(0), rtol=1e-10)
    # a chain of folds: the total and the chunk statistics not yet folded, not one per chunk
    assert held.most <= 2


def test_chained_kernels_fuse_into_one_task_per_chunk(run):
    _, frames, mask, truth = run
    stack = stack_of(run)
    row, col = truth["center"]
    profiles = stack.ued.align(mask=mask, max_shift=8).ued.azimuthal_average((row, col), mask)
    (optimized,) = dask.optimize(profiles.data)
    names = [key_split(key) for key in dict(optimized.__dask_graph__())]
    assert not any(name.startswith("align") for name in names)  # fused, never held alone
    assert sum(name.startswith("azimuthal") for name in names) == stack.data.npartitions
    plan = AlignPlan(frames[0, 0], mask, max_shift=8)
    values = profiles.values
    for index, frame in frames_of(frames):
        r, average = azimuthal_average(plan.align(frame), (col, row), mask)
        np.testing.assert_array_equal(values[index][np.searchsorted(profiles.radius, r)],
                                      average)


def test_thread_safe_plans_are_shared_and_others_copied_per_thread():
    shape = (32, 32)
    azimuthal = Plans(AzimuthalPlan, (shape, (15.5, 16.0)))
    align = Plans(AlignPlan, (np.random.default_rng(0).normal(size=shape),))
    assert AzimuthalPlan.thread_safe and not getattr(AlignPlan, "thread_safe", False)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: (azimuthal.get(), align.get()), range(8)))
    assert all(a is azimuthal.plan for a, _ in got)
    copies = {id(b) for _, b in got}
    assert align.plan not in [b for _, b in got] and 1 <= len(copies) <= 4


def test_compute_passes_equals_one_compute(run):
    _, _, mask, truth = run
    stack = stack_of(run)
    row, col = truth["center"]
    profiles = stack.ued.align(mask=mask, max_shift=8).ued.azimuthal_average((row, col), mask)
    bad = stack.ued.mask_from_collection(std_thresh=20)
    together = dask.compute(profiles, bad)
    separate = compute_passes(profiles, bad.data, scheduler="threads")
    np.testing.assert_array_equal(separate[0].values, together[0].values)
    assert isinstance(separate[1], np.ndarray)
    np.testing.assert_array_equal(separate[1], together[1].values)
    assert 0 < separate[1].sum() < separate[1].size


def test_reductions_of_one_stack_computed_together_equal_each_alone(run):
    _, frames, _, _ = run
    stack = stack_of(run)
    flat = frames.reshape(-1, *SHAPE).astype(float)
    results = [stack.ued.mask_from_collection(std_thresh=t) for t in (10, 20)]
    results += [stack.ued.std(), stack.ued.std(), stack.ued.mean()]
    together = dask.compute(*results)
    for result, value in zip(results, together, strict=True):
        np.testing.assert_array_equal(value.values, result.values)
    np.testing.assert_allclose(together[2].values, flat.std(0), rtol=1e-6)
    np.testing.assert_allclose(together[4].values, flat.mean(0), rtol=1e-12)
    assert (together[0].values != together[1].values).any()
