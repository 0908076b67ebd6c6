"""``uedflow reduce --follow``: a run reduced while a writer process writes it frame by frame.

The writer (a subprocess) copies a synthetic run in acquisition order: some frames in pieces
with pauses between them, one frame never written, a pause longer than a scan, and the
manifest ``run.json`` last. Readers open the store throughout; every version the follower
published is then compared with an offline reduction of the same files and scans.
"""

import itertools
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from uedflow.cli import main
from uedflow.datasets import make_run
from uedflow.io.runs import open_run
from uedflow.pipeline.live import LIVE_ATTR, Follower, Partials, open_live, versions_dir
from uedflow.pipeline.reduce import reduce
from uedflow.pipeline.store import open_reduced

DELAYS = [-1.0, 0.0, 1.0, 2.0]
SCANS = 4
SHAPE = (48, 48)
#: The run's own mask file gives the beam block: the detector mask of the first scan is that
#: of the whole run, so that a version from partials compares with the offline reduction.
CONFIG = {"mask": {"beam_block": False}}

#: Copies the run of argv[1] into argv[2] frame by frame, as an acquisition would.
WRITER = """
import os, shutil, sys, time
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
skip = set(sys.argv[3].split(",")) if sys.argv[3] else set()
slow = set(sys.argv[4].split(",")) if sys.argv[4] else set()
pause_after, pause = sys.argv[5], float(sys.argv[6])
last = sys.argv[7] == "manifest"

def atomic(rel):
    (dst / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / rel, dst / rel.with_name(rel.name + ".part"))
    os.replace(dst / rel.with_name(rel.name + ".part"), dst / rel)

for rel in [Path("mask.tif"), *sorted(p.relative_to(src) for p in src.glob("dark_image/*"))]:
    atomic(rel)
for scan in sorted(p.name for p in src.glob("scan_*")):
    for frame in sorted((src / scan).glob("*.tif"), key=lambda p: float(p.stem[7:-2])):
        rel = frame.relative_to(src)
        if str(rel) in skip:
            continue
        data = frame.read_bytes()
        (dst / scan).mkdir(exist_ok=True)
        with open(dst / rel, "wb") as out:
            pieces = 3 if str(rel) in slow else 1
            for k in range(pieces):
                out.write(data[k * len(data) // pieces:(k + 1) * len(data) // pieces])
                out.flush()
                if k + 1 < pieces:
                    time.sleep(0.5)
        time.sleep(0.1)
    atomic(Path("pump_off") / f"pumpoff_{scan[5:]}.tif")
    if scan == pause_after:
        time.sleep(pause)
if last:
    atomic(Path("run.json"))
"""


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    """The synthetic run the writer copies (lab layout: the delays are in the names)."""
    path = tmp_path_factory.mktemp("staged") / "run"
    make_run(path, shape=SHAPE, delays=DELAYS, n_scans=SCANS, layout="lab", n_darks=2, seed=3)
    return path


def _writer(staged, live, *, skip="", slow="", pause_after="", pause=0.0, last="manifest"):
    return subprocess.Popen([sys.executable, "-c", WRITER, str(staged), str(live), skip, slow,
                             pause_after, str(pause), last])


def _follower(live, out, *extra):
    config = out.with_name("config.toml")
    config.write_text("[mask]\nbeam_block = false\n")
    return subprocess.Popen([sys.executable, "-m", "uedflow.cli", "reduce", str(live), "-o",
                             str(out), "--follow", "--every", "0.2", "--config", str(config),
                             *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _same(a, b):
    """Every variable of ``b`` equal in ``a``, bit for bit (NaN equal to NaN)."""
    for name in b.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
    for name in b.coords:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def _offline(live, scans, inputs):
    """The offline reduction of ``scans`` of the run as it is now, with the darks and pump-off
    frames that the version read (its provenance's inputs)."""
    run = open_run(live, missing="exclude").sel(scan=scans)
    run.attrs["pump_off"] = [f for f in run.attrs["pump_off"] if f in inputs]
    run.attrs["missing"] = [m for m in run.attrs["missing"] if m[1] in scans]
    return reduce(run, CONFIG)


def _close(live, offline):
    """A version reduced from partials against the offline reduction of its scans: the
    frame statistics and decisions exactly, the images to float32 rounding (frames are added
    divided by their totals, the delay's level applied to the sums), the standard errors to
    the rounding of a sum of squares minus a square of sums (bright pixels, few scans), as
    large in either."""
    for name in ("shifts", "total", "correlation", "rejected", "scale", "mask", "center",
                 "rejected_pixels"):
        np.testing.assert_array_equal(live[name].values, offline[name].values, err_msg=name)
    assert set(live.data_vars) == set(offline.data_vars)
    mask = offline["mask"].values
    for name in {"diffraction", "equilibrium", "pump_off"} & set(offline.data_vars):
        np.testing.assert_allclose(live[name].values[..., mask], offline[name].values[..., mask],
                                   rtol=2e-6, err_msg=name)
    np.testing.assert_allclose(live["radial_change"].values, offline["radial_change"].values,
                               atol=1e-5)
    error, truth = live["diffraction_error"].values, offline["diffraction_error"].values
    np.testing.assert_array_equal(np.isnan(error), np.isnan(truth))
    known = np.isfinite(truth) & (truth > 0)  # none with one scan
    if known.any():
        assert np.median(np.abs(error[known] / truth[known] - 1)) < 1e-3
        # the rounding of a variance of float32 values: about 1e-3 of the value itself
        floor = 1e-3 * np.abs(offline["diffraction"].values[known])
        assert (np.abs(error[known] - truth[known]) <= 0.05 * truth[known] + floor).all()


def _check_reader(out, seen):
    """Open the store as a reader would, mid-run: a complete, labelled Dataset."""
    try:
        ds = open_live(out)
    except FileNotFoundError:
        return
    live = json.loads(ds.attrs[LIVE_ATTR])
    ds = ds.load()  # every chunk read (and checked) from the version opened
    assert list(ds["scan"].values) == live["scans"]
    assert ds["diffraction"].shape == (len(DELAYS), *SHAPE)
    assert np.isfinite(ds["diffraction"].values[:, ds["mask"].values]).all()
    seen[live["version"]] = live


def test_follow_a_run_being_written(staged, tmp_path):
    live, out = tmp_path / "run", tmp_path / "out"
    live.mkdir()
    missing = "scan_0002/pumpon_+000.000ps.tif"
    writer = _writer(staged, live, skip=missing,
                     slow="scan_0001/pumpon_+001.000ps.tif,scan_0003/pumpon_-001.000ps.tif",
                     pause_after="scan_0002", pause=3.0)
    follower = _follower(live, out)
    seen, deadline = {}, time.monotonic() + 60
    while follower.poll() is None and time.monotonic() < deadline:
        _check_reader(out, seen)
        time.sleep(0.05)
    if follower.poll() is None:
        follower.kill()
    log = follower.communicate(timeout=5)[0]
    assert writer.wait(timeout=5) == 0
    assert follower.returncode == 0, log
    assert "(delay 0 ps, scan 2) left out: no file" in log

    final = open_live(out)
    state = json.loads(final.attrs[LIVE_ATTR])
    assert state["complete"] and state["scans"] == [1, 2, 3, 4]
    assert state["left_out"] == [[0.0, 2, "no file"]]
    offline = reduce(open_run(live, missing="exclude"), CONFIG)
    _same(final, offline)  # the final store is the offline reduction
    assert final["rejected"].values[DELAYS.index(0.0), 1]  # the frame never written
    assert [0.0, 2, ["missing"]] in json.loads(final.attrs["uedflow"])["rejected"]

    # scans were published as they closed, each version the offline reduction of its scans
    versions = sorted(versions_dir(out).glob("v*"))
    scans = [json.loads(open_reduced(v).attrs[LIVE_ATTR])["scans"] for v in versions]
    assert scans[0][0] == 1 and len(scans) >= 3, scans
    # scan 2 waits for its missing frame (60 s, or the end of the run); scan 3 does not wait
    assert all(set(a) < set(b) for a, b in itertools.pairwise(scans)), scans
    assert 2 not in scans[-2] and 3 in scans[-2], scans
    for version in versions[:-1]:
        ds = open_reduced(version)
        state = json.loads(ds.attrs[LIVE_ATTR])
        inputs = json.loads(ds.attrs["uedflow"])["inputs"]["files"]
        _close(ds, _offline(live, state["scans"], inputs))
        # each frame read once, when its scan closed (the pump-off frames too)
        frames = sum(len(DELAYS) - (s == 2) for s in state["scans"])
        pump_off = [f for f in inputs if "pump_off" in f]
        assert state["method"] == "partials"
        assert state["reads"] == {"frames": frames + len(pump_off), "again": 0}
    assert len(seen) >= 2  # the readers saw the store change while it was written


def test_ctrl_c_leaves_a_valid_store_that_reduce_completes(staged, tmp_path):
    live, out = tmp_path / "run", tmp_path / "out"
    live.mkdir()
    writer = _writer(staged, live, pause_after="scan_0002", pause=30.0, last="none")
    follower = _follower(live, out, "--quicklook")
    pngs = tmp_path / "out-quicklook"
    deadline = time.monotonic() + 40
    while not list(pngs.glob("*.png")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert out.exists()  # the PNGs follow the store
    follower.send_signal(signal.SIGINT)
    log = follower.communicate(timeout=20)[0]
    writer.kill()
    writer.wait()
    assert follower.returncode == 128 + signal.SIGINT, log
    ds = open_live(out)
    state = json.loads(ds.attrs[LIVE_ATTR])
    assert not state["complete"] and ds["scan"].values.tolist() == state["scans"]

    # the run as it stands: completed by --follow --until-idle 0 (every scan, offline) ...
    offline = reduce(open_run(live, missing="exclude"), CONFIG)
    config = ["--config", str(tmp_path / "config.toml"), "-q"]
    assert main(["reduce", str(live), "-o", str(out), "--follow", "--every", "0.2",
                 "--until-idle", "0", *config]) == 0
    state = json.loads(open_live(out).attrs[LIVE_ATTR])
    assert state["complete"] and state["method"] == "offline"
    _same(open_live(out), offline)
    # ... or by a plain reduce (--overwrite: the store was made from fewer files)
    assert main(["reduce", str(live), "-o", str(out), "--missing", "exclude", "--overwrite",
                 *config]) in (0, None)
    _same(open_reduced(out), offline)


def test_a_frame_is_taken_once_whole_and_given_up_after_the_timeout(staged, tmp_path):
    live = tmp_path / "run"
    (live / "scan_0001").mkdir(parents=True)
    (live / "scan_0002").mkdir()
    frames = sorted((staged / "scan_0001").glob("*.tif"))
    data = frames[0].read_bytes()
    follower = Follower(live, {}, settle=0.5, timeout=10.0)
    path = live / "scan_0001" / frames[0].name
    path.write_bytes(data[: len(data) // 2])
    follower.poll(now=0.0)
    follower.poll(now=1.0)  # unchanged for 1 s, but truncated: not taken
    assert not follower.taken(path)
    path.write_bytes(data)
    follower.poll(now=2.0)
    assert not follower.taken(path)  # changed: must settle first
    follower.poll(now=2.6)
    assert follower.taken(path)

    for frame in frames[1:]:  # scan 1 whole; scan 2 has begun, with one frame
        (live / "scan_0001" / frame.name).write_bytes(frame.read_bytes())
    (live / "scan_0002" / frames[0].name).write_bytes(data)
    listing = follower.poll(now=3.0)
    listing = follower.poll(now=4.0)
    assert follower.closed_scans(listing, ended=False, now=4.0) == [1]
    assert follower.closed_scans(listing, ended=False, now=13.0) == [1]  # no scan 3 yet
    assert not follower.given_up
    assert follower.closed_scans(listing, ended=True, now=13.0) == [1, 2]
    assert sorted(follower.given_up) == [(d, 2) for d in DELAYS if d != 0.0]  # +000 written
    assert not follower.ended(until_idle=10.0, now=12.5)  # the last change: at 3 s
    assert follower.ended(until_idle=10.0, now=13.5)

    late = frames[1]  # a frame given up comes after all: no longer reported
    (live / "scan_0002" / late.name).write_bytes(late.read_bytes())
    follower.poll(now=14.0)
    listing = follower.poll(now=15.0)
    follower.closed_scans(listing, ended=True, now=15.0)
    assert len(follower.given_up) == 2 and (float(late.stem[7:-2]), 2) not in follower.given_up


def test_follow_refuses_what_it_cannot_follow(tmp_path):
    from uedflow.pipeline.live import follow

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a live store"):
        follow(tmp_path, tmp_path / "out")
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
    with pytest.raises(NotADirectoryError, match="notes.txt' is not a directory"):
        follow(tmp_path / "out" / "notes.txt", tmp_path / "other")
    (tmp_path / "empty").mkdir()
    lines = []
    with pytest.raises(FileNotFoundError, match="is empty .for --until-idle 0.3 s"):
        follow(tmp_path / "empty", tmp_path / "other", every=0.1, until_idle=0.3,
               log=lines.append)
    assert lines == [f"follow: waiting for frames: The run directory "
                     f"'{tmp_path / 'empty'}' is empty"]
    assert not os.path.exists(tmp_path / "other")
    assert not os.path.exists(versions_dir(tmp_path / "other"))

    run = _tiny_run(tmp_path)  # a live store of one run is not taken over by another
    assert follow(run, tmp_path / "live.zarr", every=0.1, until_idle=0, log=len)["complete"]
    (tmp_path / "copy").mkdir()
    for path in run.rglob("*.tif"):
        (tmp_path / "copy" / path.relative_to(run)).parent.mkdir(exist_ok=True)
        (tmp_path / "copy" / path.relative_to(run)).write_bytes(path.read_bytes())
    with pytest.raises(FileExistsError, match="another run .* use --overwrite"):
        follow(tmp_path / "copy", tmp_path / "live.zarr", every=0.1, until_idle=0, log=len)
    assert follow(tmp_path / "copy", tmp_path / "live.zarr", every=0.1, until_idle=0,
                  overwrite=True, log=len)["complete"]
    assert json.loads(open_live(tmp_path / "live.zarr").attrs["uedflow"])["source"] == str(
        tmp_path / "copy")


def test_scaled_partial_sums_equal_sums_of_scaled_frames():
    from scipy import sparse

    from uedflow.pipeline.partials import PixelSums

    rng = np.random.default_rng(1)
    frames = rng.poisson(50, (6, 8, 8)).astype(np.float32)
    frames[2, 3, 3] = 900  # an outlier the cut takes out
    frames[4, 0, :2] = np.nan
    profile = sparse.csc_matrix(np.full((1, 64), 1 / 64, np.float32))
    work, flag = np.empty((8, 8), np.float32), np.empty((8, 8), bool)
    plain, scaled = PixelSums((8, 8), profile), PixelSums((8, 8), profile)
    for s, frame in enumerate(frames):
        plain.add(frame * np.float32(2.5), s, work, flag)
        scaled.add(frame.copy(), s, work, flag)
    noise = np.ones((8, 8))
    expected = plain.result(3.0, noise, 6)
    got = scaled.scaled(2.5).result(3.0, noise, 6)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    assert expected[2][2] >= 1  # the outlier cut, in both (cuts compared above)
    assert scaled.profiles == 6  # the original is left as it was


def test_old_versions_are_deleted_after_the_grace_period_only_if_uedflow_wrote_them(tmp_path):
    from uedflow.pipeline.live import GRACE, KEEP, _prune
    from uedflow.pipeline.store import write_reduced

    ds = reduce(open_run(_tiny_run(tmp_path)))
    folder = tmp_path / "out.live"
    for k in range(1, 6):
        write_reduced(ds, folder / f"v{k:06d}")
    (folder / "v000002" / "notes.txt").write_text("mine")  # not uedflow's: kept
    _prune(folder, folder / "v000005", now=time.time())  # all too young
    assert len(list(folder.glob("v*"))) == 5
    _prune(folder, folder / "v000005", now=time.time() + GRACE + 1)
    left = sorted(p.name for p in folder.glob("v*"))
    assert left == ["v000002", "v000003", "v000004", "v000005"] and KEEP == 3  # v1 gone
    assert (folder / "v000002" / "notes.txt").read_text() == "mine"


def _tiny_run(tmp_path):
    path = tmp_path / "tiny"
    make_run(path, shape=SHAPE, delays=[-1.0, 1.0], n_scans=2, layout="lab")
    return path


@pytest.mark.parametrize("mode", ["delay", "run", "none"])
def test_partials_in_any_order_equal_the_offline_reduction(staged, mode):
    from uedflow.pipeline.config import ReduceConfig

    config = ReduceConfig.from_dict({**CONFIG, "normalize": {"mode": mode}})
    run = open_run(staged)
    partials = Partials(run.sel(scan=[1]), config)
    for scans in ([1], [1, 3], [1, 2, 3, 4]):  # scan 2 comes after scan 3
        _close(partials.update(run.sel(scan=scans)).load(),
               reduce(run.sel(scan=scans), config).load())
    assert partials.reads["frames"] == SCANS * (len(DELAYS) + 1)  # each frame, pump-off too
