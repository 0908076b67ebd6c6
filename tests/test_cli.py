"""The command line, called as users call it."""

import subprocess
import sys

import numpy as np

from uedflow import open_stack
from uedflow.cli import main


def test_demo_generates_opens_and_ingests(tmp_path, capsys):
    assert main(["demo", "--dir", str(tmp_path / "demo"), "--size", "128"]) == 0
    out = capsys.readouterr().out
    assert "dims   : delay=12, scan=2, y=128, x=128" in out
    assert "compression ratio" in out
    assert "identical to the raw run: True" in out
    assert open_stack(tmp_path / "demo" / "run.zarr").shape == (12, 2, 128, 128)
    assert main(["demo", "--dir", str(tmp_path / "demo"), "--size", "128"]) == 0
    assert "Using the demo run" in capsys.readouterr().out


def test_ingest_and_info(tiff_dir, tmp_path, capsys):
    folder, frames = tiff_dir
    store = tmp_path / "out.zarr"
    assert main(["ingest", str(folder), "-o", str(store), "-q", "--clevel", "1"]) == 0
    assert "compression ratio" in capsys.readouterr().out
    np.testing.assert_array_equal(open_stack(store).values, frames)
    assert main(["ingest", str(folder), "-o", str(store), "-q"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["info", str(store)]) == 0
    assert "frame=12, y=48, x=64" in capsys.readouterr().out


def test_errors_name_the_source(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nowhere.tif")]) == 2
    err = capsys.readouterr().err
    assert "nowhere.tif" in err and "Traceback" not in err


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "uedflow.cli", "--version"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.startswith("uedflow ")
