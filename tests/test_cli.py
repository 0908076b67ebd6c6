"""The command line, called as users call it: every failure one line on standard error."""

import contextlib
import importlib
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import uedflow.cli
import uedflow.io.zarrstore
from uedflow import open_reduced, open_stack
from uedflow.cli import main
from uedflow.datasets import make_run


def test_demo_does_the_main_job_and_reuses_what_it_made(tmp_path, capsys):
    demo = tmp_path / "demo"
    assert main(["demo", "--dir", str(demo), "--size", "64", "-q"]) == 0
    out = capsys.readouterr().out
    assert "dims   : delay=12, scan=2, y=64, x=64" in out and "found  : preset" in out
    assert "reduced run, complete" in out and "recovered vs ground truth" in out
    assert float(re.search(r"centre : .* error (\S+) px", out)[1]) < 0.5
    assert sorted(p.name for p in (demo / "reduced-quicklook").glob("*.png")) == [
        "pattern.png", "peaks.png", "radial.png"]
    assert open_reduced(demo / "reduced.zarr")["diffraction"].shape == (12, 64, 64)
    files = {p: p.stat().st_mtime_ns for p in demo.rglob("*") if p.is_file()}
    assert main(["demo", "--dir", str(demo), "--size", "64", "-q"]) == 0
    out = capsys.readouterr().out
    assert "Using the demo run" in out and "Using the reduced store" in out
    assert "recovered vs ground truth" in out
    assert files == {p: p.stat().st_mtime_ns for p in demo.rglob("*") if p.is_file()}


def test_ingest_and_info(tiff_dir, tmp_path, capsys):
    folder, frames = tiff_dir
    store = tmp_path / "out.zarr"
    assert main(["ingest", str(folder), "-o", str(store), "-q", "--clevel", "1"]) == 0
    assert "compression ratio" in capsys.readouterr().out
    np.testing.assert_array_equal(open_stack(store).values, frames)
    assert main(["ingest", str(folder), "-o", str(store), "-q"]) == 2
    err = capsys.readouterr().err
    assert "already exists (use --overwrite)" in err and "overwrite=True" not in err
    assert main(["info", str(store)]) == 0
    assert "frame=12, y=48, x=64" in capsys.readouterr().out


def test_errors_name_the_source(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nowhere.tif")]) == 2
    err = capsys.readouterr().err
    assert "nowhere.tif" in err and "Traceback" not in err


COMMANDS = sorted(uedflow.cli.build_parser()._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_describes_it_with_examples_that_parse(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    text, examples = uedflow.cli.HELP[command]
    assert " ".join(out.split()).count(" ".join(text.split())) == 1  # the paragraph
    assert 2 <= len(examples) <= 3 and out.count(f"\n  uedflow {command}") == len(examples)
    assert "`" not in out
    for example in examples:  # each example is a valid command line
        argv = shlex.split(example, comments=True)
        argv = argv[1:min([argv.index(op) for op in ("&&", ">", "|") if op in argv] or [None])]
        assert uedflow.cli.build_parser().parse_args(argv).command == command


def test_top_level_help_is_plain_text_naming_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "`" not in out and "thin layer" not in out and "uedflow demo" in out
    for command in COMMANDS:
        assert f"\n    {command} " in out


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "uedflow.cli", "--version"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.startswith("uedflow ")


# ---------------------------------------------------------------- one line per error

def _main(argv, code):
    """``main(argv)``: its exit status must be ``code``; return (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    assert status == code, (status, out.getvalue(), err.getvalue())
    return out.getvalue(), err.getvalue()


def _one_line(err, *names):
    """``err`` is one line that names every one of ``names``."""
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for name in names:
        assert str(name) in err, (name, err)


@pytest.fixture
def run(tmp_path):
    """A small run: 3 delays x 2 scans of 32x32 frames, with a dark frame."""
    make_run(tmp_path / "run", shape=(32, 32), delays=[-1.0, 0.0, 1.0], n_scans=2,
             n_darks=1, seed=2)
    return tmp_path / "run"


def test_unreadable_folder_is_reported_by_info_and_stops_reduce(tmp_path, monkeypatch):
    path = tmp_path / "lab"
    make_run(path, shape=(32, 32), delays=[-1.0, 0.0, 1.0], n_scans=3, layout="lab", seed=1)
    folder = path / "scan_0003"
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p=".": (_ for _ in ()).throw(
        PermissionError(13, "Permission denied", str(p))) if os.path.abspath(p) == str(folder)
        else scandir(p))
    out, _ = _main(["info", path], 0)
    assert "present: 6 of 6 frames (0 missing, 1 bad)" in out
    assert f"bad    : {folder}: cannot list the folder (Permission denied)" in out
    _, err = _main(["reduce", path, "-o", tmp_path / "r.zarr", "-q"], 2)
    _one_line(err, folder, "--skip-bad")
    assert not (tmp_path / "r.zarr").exists()


def test_info_lists_duplicate_delays_and_stops_where_reduce_does(tmp_path):
    path = tmp_path / "lab"
    make_run(path, shape=(32, 32), delays=[-1.0, 1.0], n_scans=1, layout="lab", seed=1)
    frame = path / "scan_0001" / "pumpon_+001.000ps.tif"
    shutil.copy(frame, frame.with_name("pumpon_+1.0ps.tif"))
    info, _ = _main(["info", path], 0)
    _, reduce = _main(["reduce", path, "-o", tmp_path / "r.zarr"], 2)
    _one_line(reduce, "pumpon_+1.0ps.tif", "pumpon_+001.000ps.tif", "delay 1 ps, scan 1")
    assert (f"duplicate: delay 1 ps, scan 1: '{frame.with_name('pumpon_+1.0ps.tif')}' and "
            f"'{frame}'") in info
    assert "delays : 2: -1, 1 ps" in info and "found  : preset 'lab'" in info
    assert f"verdict: reduce would stop: {reduce.split(': error: ')[1]}" in info


def test_delay_index_frames_without_manifest_are_refused_alike(run, tmp_path):
    (run / "run.json").unlink()
    messages = set()
    for argv in (["info", run], ["ingest", run, "-o", tmp_path / "s.zarr"],
                 ["reduce", run, "-o", tmp_path / "r.zarr"]):
        _, err = _main(argv, 2)
        _one_line(err, run / "run.json", "delay index")
        messages.add(err.split(": error: ")[1])
    assert len(messages) == 1
    with pytest.raises(FileNotFoundError) as info:
        open_stack(run)
    assert f"{info.value}\n" in messages
    assert not (tmp_path / "s.zarr").exists() and not (tmp_path / "r.zarr").exists()


def test_broken_stores_and_files_are_one_line_errors(run, tmp_path):
    store = tmp_path / "raw.zarr"
    _main(["ingest", run, "-o", store, "-q"], 0)
    root = (store / "zarr.json").read_bytes()
    (store / "zarr.json").write_bytes(root[:30])
    _, err = _main(["info", store], 2)
    _one_line(err, store / "zarr.json")
    (store / "zarr.json").write_bytes(root)
    meta = store / "intensity" / "zarr.json"
    meta.write_text(meta.read_text().replace('"uint16"', '"float32"'))
    _, err = _main(["info", store], 2)
    _one_line(err, store / "intensity" / "c" / "0" / "0" / "0" / "0", "delay=-1.0, scan=0")

    first = run / "scan_000_delay_000.tif"
    first.write_bytes(bytes(first.stat().st_size))  # a first frame of zero bytes
    out, _ = _main(["info", run], 0)
    assert f"bad    : {first}: cannot be read as TIFF" in out
    _, err = _main(["reduce", run, "-o", tmp_path / "r.zarr"], 2)
    _one_line(err, first)
    _, err = _main(["info", first], 2)
    _one_line(err, first)


def test_internal_errors_are_one_line_with_a_hint_and_debug_shows_them(run, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise ZeroDivisionError("an unexpected bug")

    monkeypatch.setattr(uedflow.cli, "describe_run", broken)
    _, err = _main(["info", run], 3)
    _one_line(err, "internal error: ZeroDivisionError: an unexpected bug", "--debug")
    for argv in (["--debug", "info", run], ["info", run, "--debug"]):
        _, err = _main(argv, 3)
        assert "Traceback" in err and "def broken" not in err and "raise ZeroDivisionError" in err


# ---------------------------------------------------------------- outputs

def test_outputs_are_checked_before_any_work(run, tmp_path, monkeypatch):
    reduce_module = importlib.import_module("uedflow.pipeline.reduce")

    def no_analysis(*args, **kwargs):
        raise AssertionError("the analysis ran")

    monkeypatch.setattr(reduce_module, "reduce", no_analysis)
    monkeypatch.setattr(uedflow.io.zarrstore, "compute", no_analysis)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage._replace(free=1000))
    for command in ("ingest", "reduce"):
        out = tmp_path / f"{command}.zarr"
        _, err = _main([command, run, "-o", out, "-q"], 2)
        _one_line(err, out, "1000 bytes free", "Not enough free space")
        assert not out.exists()
    monkeypatch.undo()
    monkeypatch.setattr(reduce_module, "reduce", no_analysis)
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: access(p, mode) and Path(p) != tmp_path)
    _, err = _main(["reduce", run, "-o", tmp_path / "r.zarr", "-q"], 2)
    _one_line(err, tmp_path / "r.zarr", "not writable")
    (tmp_path / "file").write_text("a file")
    _, err = _main(["ingest", run, "-o", tmp_path / "file" / "s.zarr", "-q"], 2)
    _one_line(err, tmp_path / "file")


#: ``uedflow ARGS`` whose zarr chunk writes fail, after a few, with a full disk.
FULL_DISK = """
import asyncio, errno, sys
import zarr.storage
from uedflow.cli import main
write, count = zarr.storage.LocalStore.set, [0]
async def full(self, key, value, *args, **kwargs):
    if "/c/" in key:
        await asyncio.sleep(0.01)
        count[0] += 1
        if count[0] > 5:
            raise OSError(errno.ENOSPC, "No space left on device")
    return await write(self, key, value, *args, **kwargs)
zarr.storage.LocalStore.set = full
sys.exit(main(sys.argv[1:]))
"""


def test_full_disk_is_one_line_naming_the_output_and_its_free_space(tmp_path):
    path = tmp_path / "run"
    make_run(path, shape=(32, 32), delays=[float(d) for d in range(12)], n_scans=2, seed=3)
    store = tmp_path / "full.zarr"
    result = subprocess.run([sys.executable, "-c", FULL_DISK, "ingest", str(path), "-o",
                             str(store), "-q"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    _one_line(result.stderr, f"no space left on the device of '{store}'", "free)")


def test_demo_never_replaces_a_store_it_did_not_make(tmp_path):
    demo = tmp_path / "demo"
    (demo / "reduced.zarr").mkdir(parents=True)
    (demo / "reduced.zarr" / "notes.txt").write_text("precious")
    for extra in ([], ["--overwrite"]):
        _, err = _main(["demo", "--dir", demo, "--size", 64, "-q", *extra], 2)
        _one_line(err, demo / "reduced.zarr")
        assert (demo / "reduced.zarr" / "notes.txt").read_text() == "precious"


# ---------------------------------------------------------------- signals

#: ``uedflow ARGS`` with every frame read slowed down, so that a signal lands mid-run.
SLOW_READS = """
import sys, time
import uedflow.io.lazy as lazy
from uedflow.cli import main
read = lazy.read_tiff_frame
def slow(*args):
    time.sleep(0.1)
    return read(*args)
lazy.read_tiff_frame = slow
print("started", flush=True)
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_ends_with_one_line_and_the_command_to_run_again(tmp_path, signum, status):
    path = tmp_path / "run"
    make_run(path, shape=(32, 32), delays=[float(d) for d in range(10)], n_scans=2, seed=3)
    argv = ["ingest", str(path), "-o", str(tmp_path / "s.zarr"), "-q", "--chunk-frames", "1"]
    proc = subprocess.Popen([sys.executable, "-c", SLOW_READS, *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "started\n"
    deadline = time.monotonic() + 60
    while not list((tmp_path / "s.zarr").glob("intensity/c/*/*/0/0")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status
    _one_line(err, f"interrupted ({signal.Signals(signum).name}); run it again with: "
                   f"{shlex.join(['uedflow', *argv, '--overwrite'])}")


# ---------------------------------------------------------------- progress

def test_progress_in_a_log_is_one_line_per_step_with_its_duration(tmp_path):
    run = tmp_path / "run"
    make_run(run, shape=(48, 48), delays=[-1.0, 0.5, 1.0], n_scans=2, seed=4, drift=0.3)
    out, _ = _main(["reduce", run, "-o", tmp_path / "r.zarr"], 0)  # not a terminal
    assert "\r" not in out and "Completed" not in out
    steps = [line for line in out.splitlines() if line.startswith("reduce: ")]
    assert len(steps) >= 3 and steps[-1].startswith("reduce: writing the store (")
    assert all(re.fullmatch(r"reduce: \S.* \(\d+\.\d s\)", line) for line in steps), steps
    out, _ = _main(["ingest", run, "-o", tmp_path / "s.zarr"], 0)
    assert re.search(r"^ingest: writing the store \(\d+\.\d s\)$", out, re.M)
    out, _ = _main(["reduce", run, "-o", tmp_path / "q.zarr", "-q"], 0)
    assert "reduce: " not in out  # quiet


def test_progress_on_a_terminal_is_one_labelled_bar_per_step_that_fits(monkeypatch):
    import dask
    import dask.array as da
    from dask.diagnostics import ProgressBar

    monkeypatch.setattr(shutil, "get_terminal_size", lambda *a: os.terminal_size((50, 20)))
    out = io.StringIO()
    steps = uedflow.cli.StepProgress(out, tty=True)
    with contextlib.redirect_stdout(steps):
        for label in ("reduce: a step whose name is longer than the terminal", "reduce: b"):
            print(label, flush=True)
            with ProgressBar(dt=0.01):
                dask.compute(da.ones(100, chunks=10).sum())
        print("done")
    steps.close()
    lines = out.getvalue().split("\n")
    assert lines[-2:] == ["done", ""] and len(lines) == 4  # one line per step, then "done"
    for line, label in zip(lines[:2], ("reduce: a step whose", "reduce: b"), strict=True):
        draws = [d for d in line.split("\r") if d]
        assert all(len(d) <= 50 and d.startswith(label) for d in draws), draws
        assert re.search(r"\[#+\] 100% \d+\.\d s$", draws[-1])


def test_a_line_between_a_step_and_its_bar_comes_first_and_steps_keep_their_order():
    out = io.StringIO()
    steps = uedflow.cli.StepProgress(out)  # a StringIO: not a terminal
    for text in ("reduce: a", "\n", "dask dashboard: http://x", "\n", "\r[##  ] | 50% Completed |"
                 " 1s", "\r[####] | 100% Completed | 2s", "\n", "reduce: b\n", "reduce: c\n",
                 "\r[####] | 100% Completed | 1s", "\33[2K\r", "end"):
        steps.write(text)
    steps.close()
    lines = out.getvalue().split("\n")
    assert lines[0] == "dask dashboard: http://x" and lines[4:] == ["end"]
    assert re.fullmatch(r"reduce: a \(\d\.\d s\)", lines[1])
    assert lines[2] == "reduce: b"  # no bar: its line as it is
    assert re.fullmatch(r"reduce: c \(\d\.\d s\)", lines[3])  # distributed's end of a bar
