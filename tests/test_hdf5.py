"""HDF5 and NeXus stacks: open_stack, diffread and open_run of HDF5 files, EIGER-style master
files with external links, Bitshuffle-compressed data, and errors that name file and dataset."""

import itertools
import pickle
import subprocess
import sys

import distributed
import h5py
import hdf5plugin
import numpy as np
import pytest

from uedflow import CorruptFileError, diffread, open_stack
from uedflow.cli import main
from uedflow.datasets import make_run
from uedflow.io import open_run
from uedflow.io.hdf5 import H5Frames, open_frames
from uedflow.pipeline.reduce import reduce
from uedflow.pipeline.store import open_reduced

DELAYS = [-1.0, 0.5, 1.0, 2.0]
BITSHUFFLE = hdf5plugin.Bitshuffle(nelems=0, cname="lz4")


def write_bitshuffle_run(path, frames, delays_fs):
    """One Bitshuffle/LZ4 dataset ``(delay, y, x)`` per scan, delays in fs."""
    with h5py.File(path, "w") as f:
        for scan in range(frames.shape[1]):
            f.create_dataset(f"entry/scan_{scan}/data", data=frames[:, scan],
                             chunks=(1, *frames.shape[2:]), **BITSHUFFLE)
        f["entry/delays"] = delays_fs
        f["entry/delays"].attrs["units"] = "fs"


def write_eiger(folder, frames, delays):
    """An EIGER-style series per scan: data files ``run_data_00000{k}.h5`` (``/entry/data/data``,
    Bitshuffle) and a master file whose ``/entry/data/data_00000{k}`` link to them."""
    for scan in range(frames.shape[1]):
        with h5py.File(folder / f"run_data_{scan + 1:06d}.h5", "w") as f:
            f.create_dataset("entry/data/data", data=frames[:, scan],
                             chunks=(1, *frames.shape[2:]), **BITSHUFFLE)
    master = folder / "run_master.h5"
    with h5py.File(master, "w") as f:
        group = f.create_group("entry/data")
        for scan in range(frames.shape[1]):
            group[f"data_{scan + 1:06d}"] = h5py.ExternalLink(f"run_data_{scan + 1:06d}.h5",
                                                              "/entry/data/data")
        group.attrs["delays"] = delays
    return master


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A 48 x 48 TIFF run (4 delays, 3 scans), and the same frames as a Bitshuffle HDF5 file
    and an EIGER-style master file with external links (in another folder)."""
    root = tmp_path_factory.mktemp("hdf5")
    meta = make_run(root / "tiff", shape=(48, 48), delays=DELAYS, n_scans=3, seed=5)
    tiff = open_run(root / "tiff")
    frames = tiff.values  # (delay, scan, y, x)
    write_bitshuffle_run(root / "run.h5", frames, np.array(DELAYS) * 1000)
    (root / "eiger").mkdir()
    master = write_eiger(root / "eiger", frames, DELAYS)
    return {"tiff": tiff, "frames": frames, "h5": root / "run.h5", "master": master,
            "config": {"mask": {"file": str(root / "tiff" / meta["mask_file"])}}}


def test_bitshuffle_run_opens_with_its_delays_lazily(runs):
    run = open_run(runs["h5"], "/entry/scan_{scan}/data", delays="/entry/delays")
    assert run.dims == ("delay", "scan", "y", "x")
    np.testing.assert_array_equal(run["delay"].values, DELAYS)  # fs converted to ps
    np.testing.assert_array_equal(run["scan"].values, [0, 1, 2])
    assert run["present"].values.all() and run.attrs["format"] == "hdf5"
    with h5py.File(runs["h5"]) as f:  # really compressed with Bitshuffle (filter 32008)
        assert "32008" in f["entry/scan_0/data"]._filters
    np.testing.assert_array_equal(run.values, runs["frames"])
    found = open_run(runs["h5"], "/entry/scan_{scan}/data")  # in a group above the frames
    assert found.attrs["delays_from"] == "/entry/delays"
    np.testing.assert_array_equal(found["delay"].values, DELAYS)
    # a task holds the path and the dataset names, never an open file
    graph = pickle.dumps(run.data.__dask_graph__())
    assert b"h5py" not in graph and len(graph) < 20_000


def test_master_file_reads_its_data_files_through_external_links(runs):
    stack = open_stack(runs["master"])  # /entry/data: the data_00000k concatenated
    assert stack.dims == ("frame", "y", "x")
    assert stack.attrs["datasets"] == [f"/entry/data/data_{k:06d}" for k in (1, 2, 3)]
    scan_major = runs["frames"].transpose(1, 0, 2, 3).reshape(-1, 48, 48)
    np.testing.assert_array_equal(stack.values, scan_major)
    # a chunk that straddles two data files
    np.testing.assert_array_equal(open_stack(runs["master"], chunks=3)[2:6].values,
                                  scan_major[2:6])
    one = open_stack(runs["master"], dataset="/entry/data/data_000002")
    np.testing.assert_array_equal(one.values, runs["frames"][:, 1])


def test_indexing_datasets_concatenated_or_stacked_as_numpy_does(tmp_path):
    rng = np.random.default_rng(0)
    parts = [rng.integers(0, 100, (n, 3, 4)).astype(np.int32) for n in (3, 1, 4)]
    with h5py.File(tmp_path / "parts.h5", "w") as f:
        for i, part in enumerate(parts):
            f[f"group/d{i}"] = part
    concatenated = open_frames(tmp_path / "parts.h5", "/group")
    stacked = H5Frames(tmp_path / "parts.h5", ["/group/d2", "/group/d0"],
                       [(4, 3, 4), (3, 3, 4)], np.dtype(np.int32), stack=True)
    truth = np.concatenate(parts)
    grid = np.zeros((4, 2, 3, 4), np.int32)  # the shorter scan: zeros past its end
    grid[:, 0], grid[:3, 1] = parts[2], parts[0]
    for start, stop, step in itertools.product(range(-1, 9), range(-1, 9), (None, 2, 3)):
        key = (slice(start, stop, step), slice(1, 3))
        np.testing.assert_array_equal(concatenated[key], truth[key], err_msg=str(key))
        key = (slice(start, stop, step), slice(1, 2))
        np.testing.assert_array_equal(stacked[key], grid[key], err_msg=str(key))
    np.testing.assert_array_equal(concatenated[5, 1], truth[5, 1])


def test_diffread_reads_one_frame(runs):
    frames = runs["frames"]
    np.testing.assert_array_equal(diffread(runs["master"]), frames[0, 0])  # the first
    np.testing.assert_array_equal(diffread(runs["master"], frame=-1), frames[-1, -1])
    np.testing.assert_array_equal(
        diffread(runs["h5"], dataset="/entry/scan_2/data", frame=1), frames[1, 2])
    with pytest.raises(ValueError, match=r"frame 12 is out of range.*holds 12 frames"):
        diffread(runs["master"], frame=12)
    with pytest.raises(ValueError, match="for HDF5 files"):
        diffread(runs["tiff"].attrs["mask_file"], frame=1)


@pytest.mark.parametrize("source", ["h5", "master"])
def test_reduces_to_the_values_of_the_tiff_run_on_threads_and_a_cluster(runs, source):
    opened = {"h5": lambda: open_run(runs["h5"], "/entry/scan_{scan}/data",
                                     delays="/entry/delays"),
              "master": lambda: open_run(runs["master"], "/entry/data/data_{scan}",
                                         delays="/entry/data@delays")}[source]
    run = opened()
    if source == "master":
        np.testing.assert_array_equal(run["scan"].values, [1, 2, 3])  # from data_00000k
        run = run.assign_coords(scan=run["scan"].values - 1)
    truth = reduce(runs["tiff"], runs["config"]).compute(scheduler="threads")
    threads = reduce(run, runs["config"]).compute(scheduler="threads")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster):
        remote = reduce(run, runs["config"]).compute()
    assert set(threads.data_vars) == set(truth.data_vars)
    for name, values in truth.data_vars.items():
        np.testing.assert_array_equal(threads[name].values, values.values, err_msg=name)
        np.testing.assert_array_equal(remote[name].values, values.values, err_msg=name)


def test_the_command_line_reduces_an_hdf5_run(runs, tmp_path, capsys):
    out = tmp_path / "reduced.zarr"
    config = tmp_path / "reduce.toml"  # the delays from the config, the pattern from a flag
    config.write_text(f'[run]\ndelays = "/entry/data@delays"\n\n'
                      f'[mask]\nfile = "{runs["config"]["mask"]["file"]}"\n')
    main(["reduce", str(runs["master"]), "--pattern", "/entry/data/data_{scan}", "--config",
          str(config), "-o", str(out)])
    assert "rejected" in capsys.readouterr().out
    run = open_run(runs["master"], "/entry/data/data_{scan}", delays="/entry/data@delays")
    expected = reduce(run, runs["config"]).compute(scheduler="threads")
    for name in ("diffraction", "radial", "radial_change", "shifts"):
        np.testing.assert_array_equal(open_reduced(out)[name].values, expected[name].values,
                                      err_msg=name)


def test_delays_from_an_attribute_by_default_and_a_4d_dataset(tmp_path, runs):
    path = tmp_path / "grid.nxs"
    with h5py.File(path, "w") as f:
        f["entry/data/data"] = runs["frames"]  # (delay, scan, y, x)
        f["entry/data/data"].attrs["delays"] = DELAYS
    run = open_run(path)
    np.testing.assert_array_equal(run["delay"].values, DELAYS)
    assert run.attrs["delays_from"] == "/entry/data/data@delays"
    np.testing.assert_array_equal(run.values, runs["frames"])
    with pytest.raises(ValueError, match=r"grid.nxs: 2 delays \(the delays given\) for the 4"):
        open_run(path, delays=[0.0, 1.0])


def test_nexus_default_names_the_signal(tmp_path):
    frames = np.arange(2 * 32 * 32, dtype=np.float32).reshape(2, 32, 32)
    path = tmp_path / "nexus.nxs"
    with h5py.File(path, "w") as f:
        f.attrs["default"] = "scan"
        f.create_group("scan").attrs["default"] = "plot"
        f.create_group("scan/plot").attrs["signal"] = "counts"
        f["scan/plot/counts"] = frames
        f["scan/plot/other"] = frames + 1  # another 3-D dataset: only 'default' tells
    np.testing.assert_array_equal(open_stack(path).values, frames)


def test_a_shorter_scan_is_missing_frames(tmp_path, runs):
    path = tmp_path / "short.h5"
    with h5py.File(path, "w") as f:
        f["s1/data"] = runs["frames"][:, 0]
        f["s2/data"] = runs["frames"][:2, 1]  # an aborted scan: 2 of the 4 delays
        f["delays"] = DELAYS
    with pytest.raises(ValueError, match=r"short.h5: .*'/s2/data' \(2 delays\).*--missing "
                       "exclude"):
        open_run(path, "s{scan}/data")
    run = open_run(path, "s{scan}/data", missing="exclude")
    np.testing.assert_array_equal(run["present"].values[:, 1], [True, True, False, False])
    assert run.attrs["missing"] == [[1.0, 2], [2.0, 2]]
    np.testing.assert_array_equal(run.values[:2, 1], runs["frames"][:2, 1])
    assert not run.values[2:, 1].any()


def test_errors_name_the_file_and_the_dataset(tmp_path, runs):
    path = tmp_path / "bad.h5"
    with h5py.File(path, "w") as f:
        f["image"] = np.zeros((32, 32), np.uint16)
        f["entry/data/data_000001"] = h5py.ExternalLink("gone_data.h5", "/entry/data/data")
    with pytest.raises(KeyError, match=r"bad.h5: no dataset or group '/nope'.*'/image'"):
        open_stack(path, dataset="/nope")
    with pytest.raises(CorruptFileError, match=r"bad.h5: '/entry/data/data_000001' is an "
                       r"external link to '/entry/data/data' in 'gone_data.h5'"):
        open_stack(path)
    with pytest.raises(ValueError, match=r"bad.h5: a run is one dataset .* got '/image' "
                       r"\(32, 32\)"):
        open_run(path, "/image", delays=[0.0])
    with pytest.raises(ValueError, match=r"run_data_000001.h5: where are the delays\?"):
        open_run(runs["master"].with_name("run_data_000001.h5"))
    assert open_stack(path, dataset="/image").shape == (1, 32, 32)  # one frame: a stack
    with pytest.raises(ValueError, match="dataset= is for an HDF5 file"):
        open_stack(runs["tiff"].attrs["mask_file"], dataset="/x")
    not_hdf5 = tmp_path / "text.h5"
    not_hdf5.write_text("not HDF5")
    with pytest.raises(CorruptFileError, match="text.h5: cannot be opened as HDF5"):
        open_stack(not_hdf5)


def test_a_missing_compression_filter_is_named_at_open(runs):
    code = ("import sys; sys.modules['hdf5plugin'] = None\n"  # as if not installed
            "from uedflow import open_stack\n"
            f"open_stack({str(runs['h5'])!r}, dataset='/entry/scan_1/data')\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 1
    assert ("run.h5: dataset '/entry/scan_1/data' is compressed with filter 32008 (bitshuffle)"
            ", which this HDF5 library cannot decode: install hdf5plugin") in result.stderr


def test_a_file_system_without_locks_gets_the_fix(runs, monkeypatch):
    def refuse(*args, **kwargs):  # what HDF5 raises where the file system has no locks
        raise OSError("Unable to synchronously open file (unable to lock file, errno = 37)")

    monkeypatch.setattr(h5py, "File", refuse)
    with pytest.raises(OSError, match="run.h5: HDF5 cannot lock the file .* "
                       "HDF5_USE_FILE_LOCKING=FALSE"):
        open_stack(runs["h5"])


def test_importing_uedflow_does_not_import_h5py():
    code = ("import sys, uedflow, uedflow.io.hdf5, uedflow.io.plugins; "
            "print(sorted({'h5py', 'hdf5plugin'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_info_lists_an_hdf5_run_named_by_its_pattern(runs, capsys):
    main(["info", str(runs["master"]), "--pattern", "/entry/data/data_{scan}",
          "--delays", "/entry/data@delays"])
    out = capsys.readouterr().out
    run = open_run(runs["master"], "/entry/data/data_{scan}", delays="/entry/data@delays")
    delays = ", ".join(f"{d:g}" for d in run["delay"].values)
    assert f"delays : {run.sizes['delay']}: {delays} ps" in out
    assert "frames '/entry/data/data_{scan}'" in out
