"""Reader plug-ins: the toy package of tests/plugins, installed for a test through the real
entry-point machinery (a ``.dist-info`` with the entry points of its pyproject.toml on
sys.path), read through diffread, open_stack and open_run."""

import pickle
import sys
import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest

from uedflow import CorruptFileError, diffread, open_stack, supported_formats
from uedflow.datasets import make_run
from uedflow.io import open_run, plugins

PLUGINS = Path(__file__).parent / "plugins"


def install(site, name, entry_points):
    """Install a distribution's metadata in the folder ``site`` (on sys.path), as pip would:
    ``NAME-0.1.dist-info`` with METADATA and entry_points.txt (group -> {name: value})."""
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items())
        for group, points in entry_points.items()))


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy plug-in installed: its code (tests/plugins) and its metadata on sys.path."""
    project = tomllib.loads((PLUGINS / "pyproject.toml").read_text())["project"]
    site = tmp_path / "site-packages"
    install(site, project["name"], project["entry-points"])
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(PLUGINS))
    plugins.refresh()
    import uedflow_toy

    yield uedflow_toy
    monkeypatch.undo()
    sys.modules.pop("uedflow_toy", None)
    plugins.refresh()


def frames_of(seed, shape=(5, 32, 40)):
    return np.random.default_rng(seed).integers(0, 4000, size=shape, dtype=np.uint16)


def test_without_the_plugin_the_format_is_unknown(tmp_path):
    plugins.refresh()
    (tmp_path / "a.toy").write_bytes(b"TOY1")
    assert ".toy" not in supported_formats()
    with pytest.raises(ValueError, match=r"Unsupported image format for .*a.toy"):
        diffread(tmp_path / "a.toy")


def test_diffread_reads_a_frame_through_the_plugin(tmp_path, toy):
    assert plugins.readers()[".toy"].name == "toy" and ".toy" in supported_formats()
    assert plugins.readers()[".toy"].open_frames is toy.open_frames
    frames = frames_of(1)
    toy.write(tmp_path / "stack.TOY", frames)  # suffixes compare in lower case
    image = diffread(tmp_path / "stack.TOY")
    assert image.dtype == np.uint16
    np.testing.assert_array_equal(image, frames[0])


def test_open_stack_uses_the_lazy_opener_and_the_frame_reader(tmp_path, toy):
    frames = frames_of(2)
    toy.write(tmp_path / "stack.toy", frames)
    stack = open_stack(tmp_path / "stack.toy", chunks=2)
    assert stack.dims == ("frame", "y", "x") and stack.attrs["format"] == "toy"
    assert stack.data.numblocks == (3, 1, 1)
    assert len(pickle.dumps(stack.data.__dask_graph__())) < 10_000  # paths, not pixels
    np.testing.assert_array_equal(stack.values, frames)
    folder = tmp_path / "frames"  # one frame per file: read with the frame reader
    folder.mkdir()
    for i, frame in enumerate(frames):
        toy.write(folder / f"f{i}.toy", frame)
    by_file = open_stack(folder)
    assert list(by_file["file"].values) == [f"f{i}.toy" for i in range(5)]
    np.testing.assert_array_equal(by_file.values, frames)


def test_open_run_reads_a_run_of_toy_frames(tmp_path, toy):
    make_run(tmp_path / "tiff", shape=(32, 32), delays=[-1.0, 1.0, 2.0], n_scans=2, seed=4)
    tiff = open_run(tmp_path / "tiff")
    for i, delay in enumerate(tiff["delay"].values):
        for scan in tiff["scan"].values:
            folder = tmp_path / "toy" / f"scan_{scan}"
            folder.mkdir(parents=True, exist_ok=True)
            toy.write(folder / f"img_{delay * 1000:+.0f}fs.toy", tiff.values[i, scan])
    run = open_run(tmp_path / "toy", "scan_{scan}/img_{delay:fs}fs.toy")
    np.testing.assert_array_equal(run["delay"].values, tiff["delay"].values)
    np.testing.assert_array_equal(run.values, tiff.values)


def test_plugin_errors_name_the_file_and_the_plugin(tmp_path, toy):
    (tmp_path / "bad.toy").write_bytes(b"JUNK" + bytes(20))
    with pytest.raises(CorruptFileError, match=r"bad.toy: the reader plug-in 'toy' cannot "
                       r"read it \(ValueError\('not a toy file"):
        diffread(tmp_path / "bad.toy")
    with pytest.raises(CorruptFileError, match=r"bad.toy: the reader plug-in 'toy' cannot "
                       "open it"):
        open_stack(tmp_path / "bad.toy")


def test_broken_and_greedy_plugins_are_left_out_with_a_warning(tmp_path, toy, monkeypatch):
    site = tmp_path / "more"
    (site / "greedy_reader.py").parent.mkdir()
    (site / "greedy_reader.py").write_text(  # a Reader object, not a module
        "from uedflow.io.plugins import Reader\n"
        "reader = Reader(('.tif', '.gre'), read=lambda path: [[1, 2], [3, 4]])\n")
    install(site, "lab-readers", {"uedflow.readers": {"broken": "no_such_module:reader",
                                                     "greedy": "greedy_reader:reader"}})
    monkeypatch.syspath_prepend(str(site))
    plugins.refresh()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = plugins.readers()
    messages = [str(w.message) for w in caught]
    assert any("'broken' (no_such_module:reader) cannot be loaded" in m for m in messages)
    assert any("'greedy' (greedy_reader:reader) claims '.tif', which uedflow reads" in m
               for m in messages)
    assert sorted(found) == [".gre", ".toy"]
    (tmp_path / "x.gre").write_bytes(b"")
    np.testing.assert_array_equal(diffread(tmp_path / "x.gre"), [[1, 2], [3, 4]])
