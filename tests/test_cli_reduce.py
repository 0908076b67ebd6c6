"""``uedflow reduce``, ``info`` and ``quicklook``, called as users call them.

The resume test kills a reduction (a subprocess, SIGKILL) while it writes its store, runs it
again, and compares the store with that of an uninterrupted run, file by file.
"""

import builtins
import contextlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import xarray as xr

import uedflow.cli
from uedflow.cli import main
from uedflow.datasets import make_run
from uedflow.pipeline.store import open_reduced, read_state

DELAYS = [-1.0, -0.5, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]

#: ``uedflow reduce`` with every chunk write slowed down, so that a kill lands mid-write.
SLOW_REDUCE = """
import sys, time
import uedflow.pipeline.store as store
from uedflow.cli import main
write = store._write_chunk
def slow_write(block, path, name, block_info=None):
    time.sleep(0.2)
    return write(block, path, name, block_info=block_info)
store._write_chunk = slow_write
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A small run: 8 delays x 3 scans of 128² frames, with dark frames."""
    path = tmp_path_factory.mktemp("raw") / "run"
    make_run(path, shape=(128, 128), delays=DELAYS, n_scans=3, n_darks=2, seed=3)
    return path


@pytest.fixture(scope="module")
def reference(run, tmp_path_factory):
    """The store of an uninterrupted reduction of ``run``, and what the command printed."""
    store = tmp_path_factory.mktemp("reference") / "reduced.zarr"
    out = _run_main(["reduce", str(run), "-o", str(store), "-q"])
    return store, out


def _run_main(argv, code=0):
    """``main(argv)`` with its output captured; check its exit code."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    assert status == code, (status, out.getvalue(), err.getvalue())
    return out.getvalue() + err.getvalue()


def files(store, skip=("zarr.json", ".uedflow/timing.json")):
    """Every file of a store and its bytes (the root metadata and the write's time, with
    timings, left out)."""
    return {p.relative_to(store).as_posix(): p.read_bytes()
            for p in sorted(Path(store).rglob("*"))
            if p.is_file() and p.relative_to(store).as_posix() not in skip}


def start_slow_reduce(argv, folder):
    """``uedflow argv`` with slow chunk writes, in a subprocess (output in ``proc.log``)."""
    log = folder / "reduce.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", SLOW_REDUCE, *argv], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    proc.log = log
    return proc


def wait_for_chunks(proc, store, at_least, timeout=90):
    """Wait until ``store`` has ``at_least`` chunks written (the process still writing)."""
    deadline = time.monotonic() + timeout
    while True:
        state = read_state(store)
        if state is not None and state["chunks_written"] >= at_least:
            return state
        assert proc.poll() is None, f"the reduction ended first:\n{proc.log.read_text()}"
        assert time.monotonic() < deadline, \
            f"no chunks after {timeout} s:\n{proc.log.read_text()}"
        time.sleep(0.02)


def test_reduce_writes_a_complete_store(run, reference):
    store, out = reference
    assert "present: 24 of 24 frames (0 missing, 0 bad)" in out
    assert "2 darks, 0 flats, 0 pump-off frames" in out
    assert re.search(r"\d+ chunks written, 0 already written", out)
    assert "reduced run, complete" in out
    ds = open_reduced(store)
    assert ds["diffraction"].shape == (len(DELAYS), 128, 128)
    assert ds["radial"].dims == ("delay", "radius")
    np.testing.assert_array_equal(ds["delay"], DELAYS)
    assert read_state(store)["chunks_written"] == read_state(store)["chunks_total"]

    info = _run_main(["info", str(store)])
    assert "reduced run, complete" in info and "diffraction" in info
    assert "rejected: " in info and "bad files: 0" in info
    info = _run_main(["info", str(run)])
    assert "dims   : delay=8, scan=3, y=128, x=128" in info
    assert "present: 24 of 24 frames" in info


def test_reduce_reads_the_lab_layout_and_recovers_the_centre(tmp_path):
    run = tmp_path / "lab"
    truth = make_run(run, shape=(128, 128), delays=DELAYS[:5], n_scans=3, n_darks=2, seed=5,
                     layout="lab")
    (run / "run.json").unlink()  # a lab run has only its file names
    out = _run_main(["reduce", str(run), "-o", str(tmp_path / "r.zarr"), "-q"])
    assert "2 darks, 0 flats, 3 pump-off frames" in out and "reduced run, complete" in out
    ds = open_reduced(tmp_path / "r.zarr")
    np.testing.assert_array_equal(ds["delay"], DELAYS[:5])
    np.testing.assert_array_equal(ds["scan"], [1, 2, 3])
    provenance = json.loads(ds.attrs["uedflow"])
    assert sum("dark_image" in name for name in provenance["inputs"]["files"]) == 2
    # the movie is aligned onto the first frame: its centre is that frame's true centre
    np.testing.assert_allclose(ds["center"], truth["truth"]["centers"][0][0], atol=0.25)


def test_reduce_reads_an_ingested_store(run, reference, tmp_path):
    _run_main(["ingest", str(run), "-o", str(tmp_path / "raw.zarr"), "-q"])
    out = _run_main(["reduce", str(tmp_path / "raw.zarr"), "-o", str(tmp_path / "r.zarr"),
                     "-q"])
    assert "(zarr)" in out and "reduced run, complete" in out
    ds = open_reduced(tmp_path / "r.zarr")
    # the store keeps the run's coordinates and its dark frames: the same reduction as raw
    raw = open_reduced(reference[0])
    for name in ("diffraction", "radial", "shifts", "rejected", "mask"):
        np.testing.assert_array_equal(ds[name].values, raw[name].values, err_msg=name)


def test_killed_mid_write_then_resumed_equals_an_uninterrupted_run(run, reference, tmp_path):
    store = tmp_path / "killed.zarr"
    proc = start_slow_reduce(["reduce", str(run), "-o", str(store), "-q"], tmp_path)
    try:
        wait_for_chunks(proc, store, at_least=4)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    state = read_state(store)
    assert state["state"] == "writing"
    assert 4 <= state["chunks_written"] < state["chunks_total"]

    info = _run_main(["info", str(store)])
    assert "incomplete" in info and f"uedflow reduce RAW -o {store}" in info
    err = _run_main(["quicklook", str(store)], code=2)
    assert "incomplete" in err and "Traceback" not in err
    config = tmp_path / "other.toml"
    config.write_text("[align]\nmax_shift = 6\n")
    err = _run_main(["reduce", str(run), "-o", str(store), "--config", str(config)], code=2)
    assert "different reduction config" in err and "killed.zarr" in err
    assert "uedflow reduce: warning: Took over the stale lock" in err  # one line, no source

    out = _run_main(["reduce", str(run), "-o", str(store), "-q"])
    skipped = int(re.search(r"(\d+) already written", out)[1])
    assert skipped >= state["chunks_written"]
    assert "reduced run, complete" in out
    assert files(store) == files(reference[0])  # every chunk, byte for byte
    xr.testing.assert_equal(open_reduced(store).compute(), open_reduced(reference[0]).compute())


def test_demo_prints_the_truth_comparison(tmp_path, monkeypatch):
    monkeypatch.setattr(uedflow.cli, "DEMO_SIZE", 128)
    out = _run_main(["reduce", "--demo", "-o", str(tmp_path / "demo.zarr"), "-q",
                     "--quicklook"])
    assert (tmp_path / "demo-run" / "run.json").exists()
    assert "recovered vs ground truth" in out
    center_error = float(re.search(r"centre : .* error (\S+) px", out)[1])
    shift_rms = float(re.search(r"shifts : RMS error (\S+) px over 24 frames", out)[1])
    assert center_error < 0.5 and shift_rms < 0.2
    pngs = sorted((tmp_path / "demo-quicklook").glob("*.png"))
    assert [p.name for p in pngs] == ["pattern.png", "peaks.png", "radial.png"]
    out = _run_main(["reduce", "--demo", "-o", str(tmp_path / "demo.zarr"), "-q"])
    assert "Using the demo run" in out and "0 chunks written" in out


def test_quicklook_writes_pngs_that_read_back(reference, tmp_path):
    out = _run_main(["quicklook", str(reference[0]), "-o", str(tmp_path / "plots")])
    paths = [Path(line.removeprefix("wrote ")) for line in out.splitlines()]
    assert [p.name for p in paths] == ["pattern.png", "radial.png", "peaks.png"]
    for path in paths:
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 400
        assert image[..., :3].std() > 0.05  # drawn, not blank


def test_bad_frame_stops_the_run_or_is_skipped(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    bad = copy / "scan_001_delay_004.tif"
    bad.write_bytes(bad.read_bytes()[:1000])
    err = _run_main(["reduce", str(copy), "-o", str(tmp_path / "a.zarr")], code=2)
    assert "scan_001_delay_004.tif" in err and "Traceback" not in err
    assert not (tmp_path / "a.zarr").exists()

    out = _run_main(["reduce", str(copy), "-o", str(tmp_path / "b.zarr"), "-q", "--skip-bad"])
    assert "present: 23 of 24 frames (0 missing, 1 bad)" in out
    assert "bad files: 1" in out
    ds = open_reduced(tmp_path / "b.zarr")
    assert ds["rejected"].sel(delay=DELAYS[4], scan=1)
    assert str(bad) in ds.attrs["uedflow"]


@pytest.mark.parametrize("argv, name", [
    (["reduce", "{tmp}/nowhere", "-o", "{tmp}/out.zarr"], "nowhere"),
    (["reduce", "{run}", "-o", "{tmp}/out.zarr", "--config", "{tmp}/bad.toml"], "max_shfit"),
    (["reduce", "{run}", "-o", "{tmp}/out.zarr", "--config", "{tmp}/missing.toml"],
     "missing.toml"),
    (["reduce", "{run}", "-o", "{tmp}/taken"], "taken"),
    (["reduce", "-o", "{tmp}/out.zarr"], "RAW or --demo"),
    (["reduce", "{run}", "--demo", "-o", "{tmp}/out.zarr"], "RAW or --demo"),
    (["reduce", "{run}", "-o", "{tmp}/out.zarr", "--cluster", "slurm"], "--cluster slurm"),
    (["reduce", "{run}", "-o", "{tmp}/out.zarr", "--cluster-option", "cores=2"],
     "--cluster-option needs --cluster"),
    (["reduce", "{run}", "-o", "{tmp}/out.zarr", "--scheduler", "tcp://127.0.0.1:1",
      "--workers", "2"], "--scheduler does not go with --workers"),
    (["reduce", "{run}", "-o", "{tmp}/out.zarr", "--wait-workers", "5"],
     "--wait-workers needs --scheduler or --cluster"),
    (["reduce", "{run}", "-o", "{tmp}/taken/out.zarr"], "is a file, not a folder"),
    (["verify", "{tmp}/taken"], "taken"),
    (["quicklook", "{tmp}/nowhere.zarr"], "nowhere.zarr"),
    (["info", "{tmp}/nowhere"], "nowhere"),
])
def test_bad_input_exits_2_naming_it(run, tmp_path, argv, name):
    (tmp_path / "bad.toml").write_text("[align]\nmax_shfit = 3\n")
    (tmp_path / "taken").write_text("precious")
    err = _run_main([a.format(tmp=tmp_path, run=run) for a in argv], code=2)
    assert name in err and "Traceback" not in err
    assert (tmp_path / "taken").read_text() == "precious"
    assert not (tmp_path / "out.zarr").exists()


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["reduce", "run", "-o", "out.zarr", "--cluster", "pbs"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'pbs'" in capsys.readouterr().err


def test_info_of_a_reduced_store_shows_the_masked_fraction(reference):
    store, _ = reference
    parts = json.loads(open_reduced(store).attrs["uedflow"])["mask"]
    info = _run_main(["info", str(store)])
    line, = [line for line in info.splitlines() if line.startswith("masked : ")]
    assert line.startswith(f"masked : {100 * parts['total']:.2f}% of the frame (")
    for name, value in parts.items():
        if name != "total":
            assert f"{name.replace('_', ' ')} {100 * value:.2f}%" in line


def test_info_says_where_errors_are_unknown(reference, tmp_path):
    store, _ = reference
    assert "errors : " not in _run_main(["info", str(store)])  # every delay has its errors
    make_run(tmp_path / "one", shape=(128, 128), delays=[-1.0, 0.5, 1.0], n_scans=1, seed=2)
    _run_main(["reduce", str(tmp_path / "one"), "-o", str(tmp_path / "one.zarr")])
    assert np.isnan(open_reduced(tmp_path / "one.zarr")["radial_change_error"].values).all()
    info = _run_main(["info", str(tmp_path / "one.zarr")])
    assert "errors : unknown (NaN) at 3 of 3 delays, which kept fewer than 2 frames" in info


def test_signal_mid_reduction_prints_the_command_that_resumes(run, reference, tmp_path):
    store = tmp_path / "stopped.zarr"
    argv = ["reduce", str(run), "-o", str(store), "-q"]
    proc = start_slow_reduce(argv, tmp_path)
    try:
        wait_for_chunks(proc, store, at_least=2)
        # a second writer stops at once, before its analysis pass, naming the first
        start = time.monotonic()
        err = _run_main(argv, code=2)
        assert time.monotonic() - start < 2 and err.count("\n") == 1
        assert f"'{store}' is being written by another process (pid {proc.pid}" in err
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    log = proc.log.read_text()
    assert proc.returncode == 143, log
    assert "Traceback" not in log and "present: 24 of 24 frames" in log  # stdout, then
    assert log.endswith(f"\npresent: 24 of 24 frames (0 missing, 0 bad)\n2 darks, 0 flats, "
                        f"0 pump-off frames\nuedflow reduce: interrupted (SIGTERM); resume "
                        f"with: uedflow {' '.join(argv)}\n")  # one line on stderr
    assert read_state(store)["state"] == "writing"
    out = _run_main(argv)  # the command it printed finishes the store
    assert "reduced run, complete" in out
    assert files(store) == files(reference[0])


def test_quicklook_never_overwrites_pngs_silently(reference, tmp_path):
    folder = tmp_path / "plots"
    folder.mkdir()
    (folder / "radial.png").write_bytes(b"mine")
    err = _run_main(["quicklook", str(reference[0]), "-o", str(folder)], code=2)
    assert "radial.png" in err and "--overwrite" in err and err.count("\n") == 1
    assert (folder / "radial.png").read_bytes() == b"mine"
    assert sorted(p.name for p in folder.iterdir()) == ["radial.png"]
    _run_main(["quicklook", str(reference[0]), "-o", str(folder), "--overwrite"])
    assert matplotlib.image.imread(folder / "radial.png").ndim == 3


def test_verify_lists_damaged_chunks(reference, tmp_path):
    store = tmp_path / "copy.zarr"
    shutil.copytree(reference[0], store)
    out = _run_main(["verify", str(store)])
    assert "no problem" in out
    chunk = next(p for p in sorted((store / "diffraction" / "c").rglob("*")) if p.is_file())
    data = bytearray(chunk.read_bytes())
    data[len(data) // 2] ^= 1
    chunk.write_bytes(bytes(data))
    out = _run_main(["verify", str(store)], code=1)
    index = tuple(int(i) for i in chunk.relative_to(store / "diffraction" / "c").parts)
    assert f"diffraction chunk {index}" in out and "1 missing or damaged" in out
    err = _run_main(["verify", str(tmp_path / "nowhere.zarr")], code=2)
    assert "nowhere.zarr" in err and err.count("\n") == 1


def test_skip_bad_records_unreadable_folders_and_files_in_the_provenance(tmp_path,
                                                                        monkeypatch):
    path = tmp_path / "lab"
    make_run(path, shape=(128, 128), delays=DELAYS[:4], n_scans=3, n_darks=1, seed=5,
             layout="lab")
    folder, frame = path / "scan_0003", path / "scan_0001" / "pumpon_-000.500ps.tif"
    scandir, open_ = os.scandir, builtins.open

    def denied(p):  # as after chmod 000 (the tests run as root, who may read anything)
        if os.path.abspath(p) in (str(folder), str(frame)):
            raise PermissionError(13, "Permission denied", str(p))

    monkeypatch.setattr(os, "scandir", lambda p=".": denied(p) or scandir(p))
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: (
        denied(f) if isinstance(f, str | os.PathLike) else None) or open_(f, *a, **k))
    err = _run_main(["reduce", str(path), "-o", str(tmp_path / "a.zarr")], code=2)
    assert str(folder) in err and "--skip-bad" in err
    out = _run_main(["reduce", str(path), "-o", str(tmp_path / "b.zarr"), "-q", "--skip-bad"])
    assert "present: 7 of 8 frames (0 missing, 2 bad)" in out and "bad files: 2" in out
    provenance = json.loads(open_reduced(tmp_path / "b.zarr").attrs["uedflow"])
    assert provenance["bad_files"] == [
        [str(folder), "cannot list the folder (Permission denied)"],
        [str(frame), "cannot be read (Permission denied)"]]
    assert str(frame) not in provenance["inputs"]["files"]
