"""Calibration of the reduction's error bars against the noise-free truth, over many runs.

:data:`SEEDS` small runs from :mod:`physics_runs` (128² frames, no drift, 16 scans x 4 delays,
a pump-off frame per scan, beam-current jitter, dark offset and read noise, ``mask.tif``) are
reduced with the default configuration. For every estimate with an error bar, the normalised
deviations ``z = (estimate - truth) / error`` are pooled over the runs. The truth is the
noise-free pattern at the mean beam current of the kept frames (the level that
normalisation within each delay keeps), minus the residual of the dark frames' mean (common to
every frame, so no average over scans reveals it; :attr:`physics_runs.Truth.dark_error`).

With ``n`` scans, ``z`` follows Student's t with ``n - 1`` degrees of freedom: RMS
``sqrt((n - 1) / (n - 3))`` = 1.07 for 16 scans, 94 % within 2. Asserted: RMS of ``z`` in
``1 ± 0.15``, at least 90 % within 2 errors and the mean of ``z`` within ±0.2 (no bias
beyond a fifth of an error bar), for ``diffraction_error``, ``radial_error``,
``radial_change_error``, ``equilibrium_error``, ``pump_off_error`` and the error of
``ds.ued.time_series`` over each ring. Per-pixel errors are judged 2 px inside the mask and
the frame, where every scan contributes: at the frame's edge a fraction-of-a-pixel shift
leaves a pixel to a few frames, whose standard error is itself uncertain (t with 1 to 3
degrees of freedom has no finite or a huge RMS).
"""

import numpy as np
import pytest
from physics_runs import RunSpec, make_physics_run
from scipy import ndimage as ndi

import uedflow
from uedflow.pipeline.reduce import reduce

SEEDS = range(30)
SPEC = RunSpec(size=128, delays=(-1.0, -0.5, 1.0, 4.0), n_scans=16, drift=0.0, n_darks=16,
               outer_counts=6.0, bad_frame=None, write_mask=True, n_pump_off=1)
RMS_BOUNDS = (0.85, 1.15)
WITHIN_2 = 0.9
#: Largest |mean z|: a bias of a fifth of an error bar (the skew of Poisson counts at a few
#: electrons per pixel gives about -0.05 to -0.1).
MEAN_Z = 0.2


def truth_profile(image, center, mask, radius):
    """Mean of ``image`` over the ``mask`` pixels of each integer ``radius`` about
    ``center`` (row, col): the reduction's bins, computed independently."""
    yy, xx = np.nonzero(mask)
    bins = np.rint(np.hypot(yy - center[0], xx - center[1])).astype(np.intp)
    size = max(bins.max(), radius.max()) + 1
    counts = np.bincount(bins, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = np.bincount(bins, image[yy, xx], minlength=size) / counts
    return profile[radius]


def deviations(truth, ds):
    """Normalised deviations ``(estimate - truth) / error`` of one reduced run, by name."""
    spec = truth.spec
    levels, pump_off_level = truth.levels(~ds["rejected"].values)
    images = np.stack([spec.gain * level * truth.model(t) - truth.dark_error
                       for t, level in zip(truth.delays, levels, strict=True)])
    before = truth.delays < 0
    equilibrium = images[before].mean(axis=0)
    pump_off = spec.gain * pump_off_level * truth.model(None) - truth.dark_error
    mask = ds["mask"].values
    # pixels 2 px inside the mask and the frame: every frame reaches them (the shifts of a run
    # without drift are a fraction of a pixel), so their errors come from all the scans
    interior = ndi.binary_erosion(np.pad(mask, 1), iterations=2)[1:-1, 1:-1]
    center = ds["center"].values
    radius = ds["radius"].values
    radial = np.stack([truth_profile(image, center, mask, radius) for image in images])
    change = radial / radial[before].mean(axis=0) - 1
    out = {}

    def add(name, estimate, expected, error, where=None):
        with np.errstate(divide="ignore", invalid="ignore"):  # edge pixels, judged elsewhere
            z = (np.asarray(estimate, float) - expected) / np.asarray(error, float)
        z = z[where] if where is not None else z.ravel()
        out[name] = z[np.isfinite(z)]

    add("diffraction", ds["diffraction"].values, images, ds["diffraction_error"].values,
        np.broadcast_to(interior, images.shape))
    add("equilibrium", ds["equilibrium"].values, equilibrium, ds["equilibrium_error"].values,
        interior)
    add("pump_off", ds["pump_off"].values, pump_off, ds["pump_off_error"].values, interior)
    add("radial", ds["radial"].values, radial, ds["radial_error"].values)
    add("radial_change", ds["radial_change"].values, change, ds["radial_change_error"].values)
    zs = []
    for lo, hi in truth.windows:
        ts = ds.ued.time_series(ring=(tuple(center), lo, hi)).compute()
        yy, xx = np.indices(mask.shape)
        r = np.hypot(yy - center[0], xx - center[1])
        region = mask & (r >= lo) & (r <= hi)
        expected = images[:, region].mean(axis=1)
        zs.append((ts["diffraction"].values - expected) / ts["diffraction_error"].values)
    out["time_series"] = np.ravel(zs)
    return out


@pytest.fixture(scope="module")
def pooled(tmp_path_factory):
    """Normalised deviations of every quantity, pooled over the runs of :data:`SEEDS`."""
    folder = tmp_path_factory.mktemp("error_bars")
    pools = {}
    for seed in SEEDS:
        truth = make_physics_run(folder / f"run_{seed}", SPEC, seed=seed)
        ds = reduce(uedflow.open_run(truth.path), None).compute()
        for name, z in deviations(truth, ds).items():
            pools.setdefault(name, []).append(z)
    return {name: np.concatenate(z) for name, z in pools.items()}


def student_rms(n):
    """RMS of Student's t with ``n - 1`` degrees of freedom."""
    return np.sqrt((n - 1) / (n - 3))


def test_the_bounds_hold_for_student_t():
    """The bounds hold for the ideal error bars of SPEC's scans (the design of the test)."""
    assert RMS_BOUNDS[0] <= student_rms(SPEC.n_scans) <= RMS_BOUNDS[1] - 0.05
    t = np.random.default_rng(0).standard_t(SPEC.n_scans - 1, 100_000)
    assert np.mean(np.abs(t) <= 2) >= WITHIN_2 + 0.02


@pytest.mark.parametrize("name", ["diffraction", "equilibrium", "pump_off", "radial",
                                  "radial_change", "time_series"])
def test_error_bars_are_calibrated(pooled, name):
    z = pooled[name]
    assert z.size >= 100, (name, z.size)
    rms = float(np.sqrt(np.mean(z**2)))
    within = float(np.mean(np.abs(z) <= 2))
    assert RMS_BOUNDS[0] <= rms <= RMS_BOUNDS[1], (name, rms, within, z.size)
    assert within >= WITHIN_2, (name, rms, within, z.size)
    assert abs(z.mean()) <= MEAN_Z, (name, float(z.mean()), rms, within, z.size)


def test_a_delay_before_time_zero_with_one_frame_keeps_the_equilibrium_error(tmp_path):
    """One frame left at a delay before time zero (the others rejected: non-finite) has no
    error of its own; the equilibrium's error takes that frame's variance from the other
    delays' frames, as theory predicts, instead of becoming unknown with every ΔI/I error."""
    from dataclasses import replace

    truth = make_physics_run(tmp_path / "run", replace(SPEC, n_scans=8, n_pump_off=0), seed=3)
    run = uedflow.open_run(truth.path).load()
    full = reduce(run, None)
    frames = run.values.astype(np.float32)
    frames[0, 1:] = np.nan  # delay -1 ps: scan 0 only
    one = reduce(run.copy(data=frames), None)
    assert one["rejected"].values[0, 1:].all() and not one["rejected"].values[1:].any()
    # the single frame's own error is unknown (it was reported as 0 before: registered
    # averages filled unknown errors with 0)
    assert np.isnan(one["diffraction_error"].values[0][one["mask"].values]).all()
    inside = ndi.binary_erosion(full["mask"].values, iterations=2)
    inside &= np.isfinite(full["equilibrium_error"].values)
    assert np.isfinite(one["equilibrium_error"].values[inside]).all()
    # the equilibrium: the mean of two averages, of 1 and 8 frames instead of 8 and 8
    ratio = np.median(one["equilibrium_error"].values[inside]
                      / full["equilibrium_error"].values[inside])
    assert abs(ratio - np.sqrt((1 + 1 / 8) / (2 / 8))) < 0.15
    after = one["delay"].values > 0
    assert np.isfinite(one["radial_change_error"].values[after]).mean() > 0.95
