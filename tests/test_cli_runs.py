"""Runs named the way labs name them, reduced from the command line alone (flags, or a
``[run]`` section in the config), equal to the Python path (``open_run`` then ``reduce``)."""

import contextlib
import io
import shutil

import numpy as np
import pytest
import xarray as xr

import uedflow
from uedflow.cli import main
from uedflow.datasets import make_run

DELAYS = [-1.0, -0.5, 0.5, 1.0, 2.0]
N_SCANS = 2
#: Variables compared between the command line and the Python path.
COMPARED = ("diffraction", "diffraction_error", "radial", "radial_change", "center", "shifts",
            "rejected", "equilibrium")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A synthetic run in the "lab" layout (frames, darks, pump-off), 48² frames."""
    path = tmp_path_factory.mktemp("source") / "run"
    make_run(path, shape=(48, 48), delays=DELAYS, n_scans=N_SCANS, n_darks=2, seed=4,
             layout="lab", drift=0.3)
    return path


def relabel(source, target, frame_name, darks="darks/dark_{i}.tif",
            pump_off="pumpoff/off_{i}.tif"):
    """Copy ``source`` to ``target`` under new names: ``frame_name(index, delay, scan)``
    (scan from 1) for the frames, the darks and pump-off frames numbered ``i``."""
    for scan in range(1, N_SCANS + 1):
        for index, delay in enumerate(DELAYS):
            old = source / f"scan_{scan:04d}" / f"pumpon_{delay:+08.3f}ps.tif"
            new = target / frame_name(index, delay, scan)
            new.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(old, new)
    for pattern, folder in ((darks, "dark_image"), (pump_off, "pump_off")):
        for i, old in enumerate(sorted((source / folder).iterdir())):
            new = target / pattern.format(i=i)
            new.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(old, new)
    return target


def cli(*argv, code=0):
    """``uedflow ARGV``: its exit status must be ``code``; return stdout + stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main([str(a) for a in argv])
    assert status == code, (status, out.getvalue(), err.getvalue())
    return out.getvalue() + err.getvalue()


def python_path(path, config=None, **open_kwargs):
    """The reduction through the library: ``open_run(path, **open_kwargs)``, ``reduce``."""
    run = uedflow.open_run(path, **open_kwargs)
    return uedflow.reduce(run, config or uedflow.ReduceConfig()).compute()


def assert_same_reduction(store, expected):
    got = uedflow.open_reduced(store)
    np.testing.assert_array_equal(got["delay"], expected["delay"])
    np.testing.assert_array_equal(got["scan"], expected["scan"])
    for name in COMPARED:
        xr.testing.assert_allclose(got[name].compute(), expected[name], rtol=1e-6, atol=1e-6)


def test_fs_delays_scan_folders_one_frame_missing_from_flags(source, tmp_path):
    run = relabel(source, tmp_path / "lab",
                  lambda i, t, s: f"run{s}/img_{i:03d}_{round(t * 1000):+d}fs.tif")
    (run / "run2" / "img_003_+1000fs.tif").unlink()
    store = tmp_path / "r.zarr"
    flags = ["--pattern", "run{scan}/img_*_{delay:fs}fs.tif", "--darks", "darks/*.tif",
             "--pump-off", "pumpoff/*.tif"]

    # without a pattern: the error names the flag, and suggests a pattern from the names
    for command in (["reduce", run, "-o", store], ["info", run],
                    ["ingest", run, "-o", tmp_path / "s.zarr"]):
        err = cli(*command, code=2)
        assert "--pattern" in err and "(such as 'run{scan}/img_*_{delay:fs}fs.tif')" in err
        assert "pattern=..." not in err and err.count("\n") == 1
    # the missing frame stops the run, naming the flag that goes on
    err = cli("reduce", run, "-o", store, *flags, code=2)
    assert "(1 ps, scan 2)" in err and "--missing exclude" in err and err.count("\n") == 1
    assert not store.exists()

    out = cli("reduce", run, "-o", store, *flags, "--missing", "exclude", "-q")
    assert "present: 9 of 10 frames (1 missing, 0 bad)" in out
    assert "2 darks, 0 flats, 2 pump-off frames" in out
    expected = python_path(run, pattern={"frames": "run{scan}/img_*_{delay:fs}fs.tif",
                                         "darks": "darks/*.tif", "pump_off": "pumpoff/*.tif"},
                           missing="exclude")
    np.testing.assert_array_equal(expected["delay"], DELAYS)
    np.testing.assert_array_equal(expected["scan"], [1, 2])
    assert_same_reduction(store, expected)


def test_stage_positions_through_a_table_and_a_frame_that_is_a_folder(source, tmp_path):
    position = {t: 100.0 + 0.15 * t for t in DELAYS}  # mm, as a delay stage reads
    run = relabel(source, tmp_path / "lab",
                  lambda i, t, s: f"scan{s:02d}_stage{position[t]:.4f}mm.tif",
                  darks="bg/bg{i}.tif", pump_off="off/off{i}.tif")
    table = tmp_path / "stage.csv"
    table.write_text("position_mm, delay_ps\n" + "".join(
        f"{position[t]:.4f}, {t}\n" for t in DELAYS))
    frame = run / f"scan02_stage{position[0.5]:.4f}mm.tif"
    frame.unlink()
    frame.mkdir()  # a folder where a frame should be
    store = tmp_path / "r.zarr"
    flags = ["--pattern", "scan{scan}_stage{position}mm.tif", "--darks", "bg/*.tif",
             "--pump-off", "off/*.tif"]

    err = cli("reduce", run, "-o", store, *flags, code=2)
    assert "--delays" in err and err.count("\n") == 1
    err = cli("reduce", run, "-o", store, *flags, "--delays", table, code=2)
    assert str(frame) in err and "folders, not files" in err and "--skip-bad" in err

    out = cli("reduce", run, "-o", store, *flags, "--delays", table, "--skip-bad", "-q")
    assert "present: 9 of 10 frames (0 missing, 1 bad)" in out
    expected = python_path(run, pattern={"frames": "scan{scan}_stage{position}mm.tif",
                                         "darks": "bg/*.tif", "pump_off": "off/*.tif"},
                           delays=table, skip_bad=True)
    np.testing.assert_array_equal(expected["delay"], DELAYS)
    assert_same_reduction(store, expected)
    provenance = uedflow.open_reduced(store).attrs["uedflow"]
    assert f"{frame}" in provenance and "a folder, not a frame file" in provenance


def test_ps_delays_and_scans_in_the_names_with_a_preset_for_the_rest(source, tmp_path):
    run = relabel(source, tmp_path / "lab", lambda i, t, s: f"data/s{s}_t{t:.2f}ps.tif",
                  darks="dark_image/d{i}.tif", pump_off="pump_off/p{i}.tif")
    store = tmp_path / "r.zarr"
    out = cli("reduce", run, "-o", store, "--pattern", "data/s{scan}_t{delay}ps.tif",
              "--preset", "lab", "-q")
    assert "present: 10 of 10 frames" in out and "2 darks, 0 flats, 2 pump-off" in out
    assert_same_reduction(store, python_path(run, pattern="data/s{scan}_t{delay}ps.tif",
                                             preset="lab"))


def test_a_run_section_alone_reduces_with_paths_from_the_toml_folder(source, tmp_path,
                                                                     monkeypatch):
    run = relabel(source, tmp_path / "lab", lambda i, t, s: f"S{s}/frame{i:02d}.tif",
                  darks="dark/{i}.tif", pump_off="off/{i}.tif")
    folder = tmp_path / "settings"
    folder.mkdir()
    (folder / "delays.txt").write_text("# delay (ps) of each frame index\n" + "\n".join(
        map(str, DELAYS)))
    (folder / "reduce.toml").write_text(
        '[run]\npattern = "S{scan}/frame{delay_index}.tif"\ndarks = "dark/*.tif"\n'
        'pump_off = "off/*.tif"\ndelays = "delays.txt"\n\n[dynamics]\nt0 = 0.2\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the table is found beside the TOML, not here
    out = cli("reduce", run, "-o", "r.zarr", "--config", "../settings/reduce.toml", "-q")
    assert "present: 10 of 10 frames" in out and "2 darks, 0 flats, 2 pump-off" in out
    config = uedflow.ReduceConfig.from_toml(folder / "reduce.toml")
    expected = python_path(run, config, **config.run.open_kwargs())
    np.testing.assert_array_equal(expected["delay"], DELAYS)
    assert_same_reduction(elsewhere / "r.zarr", expected)
    # a flag overrides the key: no table, so the indices have no delays
    err = cli("info", run, "--config", folder / "reduce.toml", "--preset", "uedflow",
              "--delays", folder / "nowhere.txt", code=2)
    assert "nowhere.txt" in err and err.count("\n") == 1


def test_config_prints_the_whole_default_that_reads_back(tmp_path):
    text = cli("config")
    assert text == uedflow.ReduceConfig().to_toml()
    path = tmp_path / "full.toml"
    path.write_text(text)
    assert uedflow.ReduceConfig.from_toml(path) == uedflow.ReduceConfig()
    assert cli("config", path) == text
    (tmp_path / "bad.toml").write_text("[run]\nmissing = true\n")
    err = cli("config", tmp_path / "bad.toml", code=2)
    assert "bad.toml: [run] missing: expected one of" in err and err.count("\n") == 1


def test_info_lists_the_run_and_reaches_the_verdict_of_reduce(source, tmp_path):
    run = relabel(source, tmp_path / "lab",
                  lambda i, t, s: f"run{s}/img_{i:03d}_{round(t * 1000):+d}fs.tif")
    (run / "run2" / "img_003_+1000fs.tif").unlink()
    flags = ["--pattern", "run{scan}/img_*_{delay:fs}fs.tif", "--darks", "darks/*.tif",
             "--pump-off", "pumpoff/*.tif"]
    info = cli("info", run, *flags)
    assert "found  : the given pattern; frames 'run{scan}/img_*_{delay:fs}fs.tif'" in info
    assert "darks 'darks/*.tif'" in info and "pump-off 'pumpoff/*.tif'" in info
    assert "delays : 5: -1, -0.5, 0.5, 1, 2 ps" in info and "scans  : 2: 1, 2" in info
    assert "missing: 1 ps, scan 2" in info and "2 darks, 0 flats, 2 pump-off frames" in info
    _, stop = info.split("verdict: reduce would stop: ")
    err = cli("reduce", run, "-o", tmp_path / "r.zarr", *flags, code=2)
    assert err.split(": error: ")[1] == stop  # the same words, the same reason
    assert "--missing exclude" in stop

    info = cli("info", run, *flags, "--missing", "exclude")
    assert "verdict: reduce would run on 9 of 10 frames (1 missing or bad left out)" in info
    # a configuration that does not fit the run: the check reduce makes before reading pixels
    toml = tmp_path / "late.toml"
    toml.write_text("[dynamics]\nt0 = -5\n")
    info = cli("info", run, *flags, "--missing", "exclude", "--config", toml)
    _, stop = info.split("verdict: reduce would stop: ")
    assert "[dynamics] t0: no delay before time zero" in stop
    err = cli("reduce", run, "-o", tmp_path / "r.zarr", *flags, "--missing", "exclude",
              "--config", toml, code=2)
    assert err.split(": error: ")[1] == stop


def test_bad_flag_values_are_one_line_naming_the_flag(source, tmp_path):
    run = relabel(source, tmp_path / "lab", lambda i, t, s: f"s{s}/t{t:.2f}ps.tif")
    err = cli("info", run, "--pattern", "", code=2)
    assert err.startswith("uedflow info: error: --pattern '': expected a non-empty string")
    err = cli("info", run, "--pattern", "s{scan}/t{delay}ps.tif", "--delays",
              tmp_path / "none.csv", code=2)  # a table the pattern has no use for
    assert "reads the delays from the names" in err and "--delays" in err
    assert err.count("\n") == 1
    err = cli("reduce", run, "-o", tmp_path / "r.zarr", "--pattern", "s{scan}/t{when}ps.tif",
              code=2)
    assert "Unknown field {when}" in err and err.count("\n") == 1
    (tmp_path / "table.txt").write_text("1.0\nlate\n")
    err = cli("info", run, "--pattern", "s{scan}/t{position}ps.tif", "--delays",
              tmp_path / "table.txt", code=2)
    assert "table.txt', line 2: 'late' is not numbers" in err


def test_info_verdict_on_a_truncated_frame_is_what_reduce_says(source, tmp_path):
    run = relabel(source, tmp_path / "lab", lambda i, t, s: f"s{s}/t{t:.2f}ps.tif")
    frame = run / "s1" / "t0.50ps.tif"
    frame.write_bytes(frame.read_bytes()[:-100])
    flags = ["--pattern", "s{scan}/t{delay}ps.tif", "--darks", "darks/*.tif", "--pump-off",
             "pumpoff/*.tif"]
    info = cli("info", run, *flags)
    assert f"bad    : {frame}: " in info
    _, stop = info.split("verdict: reduce would stop: ")
    err = cli("reduce", run, "-o", tmp_path / "r.zarr", *flags, code=2)
    assert err.split(": error: ")[1] == stop and str(frame) in stop
    info = cli("info", run, *flags, "--skip-bad")
    assert "verdict: reduce would run on 9 of 10 frames (1 missing or bad left out)" in info
