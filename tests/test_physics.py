"""``uedflow reduce RUN -o OUT`` with no configuration, against the noise-free truth.

Each case is a realistic raw run from :mod:`physics_runs` (lab layout, a few electrons per
pixel in the outer rings, dark offset and read noise with dark frames, gain, the total
intensity changing with delay, per-frame beam-current jitter, centre drift, hot pixels, a dead
column, a beam block of some shape, one bad frame; with or without ``mask.tif``, with or
without pump-off frames), reduced by the command as a user runs it. Asserted per case:

* the centre of the movie within :data:`CENTRE_PX` of the true centre of the first frame (the
  movie is registered onto it);
* the ΔI/I of every ring window (the stored ``radial_change`` weighted over the window) within
  :data:`RING_PP` RMS of the noise-free model's, over every delay and ring; the shot and read
  noise alone is well below that bound (checked), so the bound measures the reduction;
* the masked fraction at most twice the true bad area; every beam-block pixel, hot pixel and
  (95 % of) the dead column masked;
* the injected bad frame rejected, and few good ones;
* with ``[dynamics] reference = "pump_off"`` (runs with pump-off frames), ΔI/I against the
  pump-off pattern within the same bound (it differs from the delays before time zero by the
  heat left from earlier pulses).
"""

import contextlib
import io
import json
from dataclasses import dataclass

import numpy as np
import pytest
from physics_runs import RunSpec, make_physics_run, ring_values

import uedflow
from uedflow.cli import main

#: Bounds: centre error (px), ring ΔI/I RMS error (percentage points), masked fraction over
#: the true bad area, fraction of good frames rejected.
CENTRE_PX = 0.25
RING_PP = 0.3
MASK_RATIO = 2.0
FALSE_REJECTIONS = 0.1
#: The noise alone must stay below this fraction of RING_PP (or the bound measures noise).
NOISE_SHARE = 0.7

DELAYS = (-2.0, -1.0, 0.5, 2.0, 8.0)


@dataclass(frozen=True)
class Case:
    name: str
    spec: RunSpec
    pump_off_reference: bool = False


CASES = [
    Case("512-stick-mask", RunSpec(size=512, delays=DELAYS, n_scans=10, outer_counts=3.0,
                                   block="stick", write_mask=True, n_pump_off=2,
                                   bad_frame="beam_lost", seed=11), pump_off_reference=True),
    Case("512-stick-found", RunSpec(size=512, delays=DELAYS, n_scans=10, outer_counts=4.0,
                                    block="stick", write_mask=False, n_pump_off=0,
                                    bad_frame="artefact", seed=12)),
    Case("512-edge-found", RunSpec(size=512, delays=DELAYS, n_scans=10, outer_counts=5.0,
                                   block="edge", write_mask=False, n_pump_off=2,
                                   block_transmission=0.02, bad_frame="beam_lost", seed=13),
         pump_off_reference=True),
    Case("512-disk-mask", RunSpec(size=512, delays=(-1.5, -0.5, 1.0, 8.0), n_scans=16,
                                  outer_counts=2.0, block="disk", write_mask=True,
                                  n_pump_off=0, bad_frame="artefact", seed=14)),
    Case("1024-stick-found", RunSpec(size=1024, delays=DELAYS, n_scans=5, outer_counts=3.0,
                                     block="stick", write_mask=False, n_pump_off=0,
                                     bad_frame="artefact", seed=15)),
    Case("2048-edge-mask", RunSpec(size=2048, delays=(-1.0, 1.0, 8.0), n_scans=3,
                                   outer_counts=3.0, block="edge", write_mask=True,
                                   n_pump_off=0, n_darks=4, bad_frame="beam_lost", seed=16)),
]


def reduce_cli(run, out, config=None):
    """``uedflow reduce RUN -o OUT -q [--config FILE]`` in-process; the reduced Dataset."""
    argv = ["reduce", str(run), "-o", str(out), "-q"]
    if config is not None:
        argv += ["--config", str(config)]
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(argv)
    assert status == 0, f"uedflow {' '.join(argv)} -> {status}\n{stdout.getvalue()}" \
                        f"\n{stderr.getvalue()}"
    return uedflow.open_reduced(out)


def ring_error(truth, ds, reference="before_t0"):
    """Error (pp) of each ring window's ΔI/I ``(delay, ring)``, and the true ΔI/I (pp) at the
    mean beam current of each delay's kept frames (the nominal one when no good frame is
    rejected; a few % of jitter over ten frames moves it by tenths of a %)."""
    change = ds["radial_change"].values
    estimate = ring_values(change, ds["radius"].values, truth.ring_weights(reference))
    expected = truth.ring_change(reference, kept=~ds["rejected"].values)
    return 100 * (estimate - expected), 100 * expected


def figures(truth, ds, reference="before_t0"):
    """The measured figures of one reduction (all that the tests assert)."""
    error, _ = ring_error(truth, ds, reference)
    rejected = ds["rejected"].values
    bad = np.zeros(rejected.shape, bool)
    if truth.bad_frame is not None:
        delay, scan = truth.bad_frame
        bad[np.flatnonzero(truth.delays == delay)[0], scan - 1] = True
    return {
        "centre_px": float(np.hypot(*(ds["center"].values - truth.reference_center))),
        "ring_rms_pp": float(np.sqrt(np.mean(error**2))),
        "ring_rms_covered_pp": float(np.sqrt(np.nanmean(error**2))),
        "rings_covered": int(np.isfinite(error).all(axis=0).sum()),
        "ring_max_pp": float(np.nanmax(np.abs(error))),
        "noise_rms_pp": float(100 * np.sqrt(np.mean(truth.expected_ring_noise(reference)**2))),
        "masked": float(1 - ds["mask"].values.mean()),
        "bad_area": truth.bad_area,
        "bad_frame_rejected": bool(rejected[bad].all()),
        "good_rejected": int(rejected[~bad].sum()),
        "good_frames": int((~bad).sum()),
    }


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    """``reduced(case, reference)``: the case's run, its truth, its reduction by ``uedflow
    reduce`` (no configuration, or ``[dynamics] reference = "pump_off"``) and the figures;
    each made once per module."""
    runs, done = {}, {}

    def get(case, reference="before_t0"):
        key = case.name, reference
        if key not in done:  # a failure is kept too: raised again, not redone, by each test
            try:
                if case.name not in runs:
                    runs[case.name] = make_physics_run(
                        tmp_path_factory.mktemp(case.name) / "run", case.spec)
                truth = runs[case.name]
                config = None
                if reference == "pump_off":
                    config = truth.path.parent / "pump_off.toml"
                    config.write_text('[dynamics]\nreference = "pump_off"\n')
                out = truth.path.parent / f"reduced_{reference}.zarr"
                ds = reduce_cli(truth.path, out, config)
                done[key] = truth, ds, figures(truth, ds, reference)
            except Exception as exc:
                done[key] = exc
        if isinstance(done[key], Exception):
            raise done[key]
        return done[key]

    return get


def ids(case):
    return case.name


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_centre_of_the_movie(reduced, case):
    truth, ds, got = reduced(case)
    assert got["centre_px"] <= CENTRE_PX, (ds["center"].values, truth.reference_center, got)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_ring_change_against_the_noise_free_model(reduced, case):
    truth, ds, got = reduced(case)
    assert got["noise_rms_pp"] <= NOISE_SHARE * RING_PP, got  # the bound measures the reduction
    error, expected = ring_error(truth, ds)
    assert got["ring_rms_pp"] <= RING_PP, (
        f"ring ΔI/I RMS error {got['ring_rms_pp']:.2f} pp (noise alone "
        f"{got['noise_rms_pp']:.2f} pp); errors (delay, ring):\n{np.round(error, 2)}\n"
        f"true ΔI/I (pp):\n{np.round(expected, 2)}")


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_masked_fraction(reduced, case):
    truth, ds, got = reduced(case)
    parts = json.loads(ds.attrs["uedflow"]).get("mask")
    assert got["masked"] <= MASK_RATIO * truth.bad_area, (got, parts)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_beam_block_masked(reduced, case):
    """Every beam-block pixel is masked (an unmasked one is a dark hole in the rings)."""
    truth, ds, _ = reduced(case)
    unmasked = truth.block & ds["mask"].values
    assert unmasked.sum() <= 1e-3 * truth.block.sum(), (int(unmasked.sum()),
                                                        int(truth.block.sum()))


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_bad_pixels_masked(reduced, case):
    """The hot pixels and the dead column are masked (a dead column left in the movie is a line
    of zeros across the rings), with or without ``mask.tif``."""
    truth, ds, _ = reduced(case)
    mask = ds["mask"].values
    assert not (truth.hot & mask).any(), np.argwhere(truth.hot & mask)
    dead = truth.dead & ~truth.block
    assert (dead & mask).sum() <= 0.05 * dead.sum(), (int((dead & mask).sum()), int(dead.sum()))


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_bad_frame_rejected(reduced, case):
    truth, ds, got = reduced(case)
    assert got["bad_frame_rejected"], (truth.bad_frame, ds["rejected"].values)
    assert got["good_rejected"] <= FALSE_REJECTIONS * got["good_frames"], got


@pytest.mark.parametrize("case", [c for c in CASES if c.pump_off_reference], ids=ids)
def test_pump_off_reference(reduced, case):
    """ΔI/I against the pump-off frames (``[dynamics] reference = "pump_off"``)."""
    truth, ds, got = reduced(case, "pump_off")
    assert got["noise_rms_pp"] <= NOISE_SHARE * RING_PP, got
    error, expected = ring_error(truth, ds, "pump_off")
    assert got["ring_rms_pp"] <= RING_PP, (
        f"ring ΔI/I RMS error {got['ring_rms_pp']:.2f} pp against pump off; errors:\n"
        f"{np.round(error, 2)}\ntrue ΔI/I (pp):\n{np.round(expected, 2)}")
    # the pump-off reference is not the pre-time-zero one: the heat left from earlier pulses
    assert 100 * np.abs(expected[truth.delays < 0]).max() > 2 * RING_PP
