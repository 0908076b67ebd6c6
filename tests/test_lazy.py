"""open_stack: lazy, labelled stacks from every kind of source."""

import json
import pickle
import shutil

import dask
import dask.array as da
import numpy as np
import pytest
import tifffile
import xarray as xr
import zarr

import uedflow.io.lazy as lazy
from uedflow import CorruptFileError, FrameMismatchError, mibread, open_stack, to_zarr
from uedflow.datasets import make_run
from uedflow.io import open_run


def test_tiff_directory(tiff_dir):
    folder, frames = tiff_dir
    stack = open_stack(folder)
    assert isinstance(stack, xr.DataArray) and isinstance(stack.data, da.Array)
    assert stack.dims == ("frame", "y", "x")
    assert stack.shape == frames.shape and stack.dtype == np.uint16
    assert stack.attrs["source"] == str(folder)
    assert list(stack.file.values) == [f"frame_{i}.tif" for i in range(12)]  # natural order
    np.testing.assert_array_equal(stack.values, frames)


def test_glob_and_list_sources(tiff_dir):
    folder, frames = tiff_dir
    by_glob = open_stack(str(folder / "frame_1*.tif"))  # frame_1, frame_10, frame_11
    np.testing.assert_array_equal(by_glob.values, frames[[1, 10, 11]])
    by_list = open_stack([folder / "frame_3.tif", folder / "frame_0.tif"])
    np.testing.assert_array_equal(by_list.values, frames[[3, 0]])


def test_nothing_to_open_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nomatch"):
        open_stack(str(tmp_path / "nomatch_*.tif"))
    with pytest.raises(FileNotFoundError, match="absent"):
        open_stack(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="missing.tif"):
        open_stack([tmp_path / "missing.tif"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="No image files"):
        open_stack(tmp_path / "empty")


def test_opening_reads_no_pixels_and_one_frame_reads_one_chunk(tmp_path, reads):
    folder = tmp_path / "many"
    folder.mkdir()
    frames = np.arange(200 * 16 * 16, dtype=np.uint16).reshape(200, 16, 16)
    for i, frame in enumerate(frames):
        tifffile.imwrite(folder / f"f{i:03d}.tif", frame)

    pixel_reads, files_read = reads.pixels, reads.files

    stack = open_stack(folder, chunks=20)
    assert pixel_reads == [] and files_read == []
    assert stack.data.chunks[0] == (20,) * 10

    np.testing.assert_array_equal(stack.isel(frame=137).values, frames[137])
    assert pixel_reads
    assert sorted(p.rsplit("/", 1)[-1] for p in files_read) == [
        f"f{i}.tif" for i in range(120, 140)]


def test_run_directory_has_scan_and_delay_dims(tmp_path):
    truth = make_run(tmp_path / "run", shape=(64, 64), delays=[-1.0, 0.0, 0.5, 2.0], n_scans=3)
    stack = open_stack(tmp_path / "run")
    assert stack.dims == ("delay", "scan", "y", "x")
    assert stack.shape == (4, 3, 64, 64)
    np.testing.assert_array_equal(stack.delay.values, truth["delays"])
    assert stack.delay.attrs["units"] == "ps"
    np.testing.assert_array_equal(stack.scan.values, [0, 1, 2])
    expected = tifffile.imread(tmp_path / "run" / truth["files"][2][1])
    np.testing.assert_array_equal(stack.sel(scan=2, delay=0.0).values, expected)
    assert stack.data.chunksize[:2] == (4, 3)


def test_corrupt_run_manifest(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "run.json").write_text("{ not json")
    with pytest.raises(CorruptFileError, match="run.json"):
        open_stack(run)


@pytest.mark.parametrize("name, nframes", [("test.mib", 1), ("test_multi.mib", 9)])
def test_mib_stack(skued_data, name, nframes):
    stack = open_stack(skued_data / name, chunks=4)
    assert stack.dims == ("frame", "y", "x") and stack.shape == (nframes, 256, 256)
    assert stack.dtype.isnative
    expected = mibread(skued_data / name).reshape(256, 256, nframes)
    np.testing.assert_array_equal(stack.values, np.moveaxis(expected, -1, 0))


def test_mib_stack_graph_holds_no_pixels(skued_data):
    stack = open_stack(skued_data / "test_multi.mib", chunks=3)
    graph = pickle.dumps(dict(stack.data.__dask_graph__()))
    assert len(graph) < stack.nbytes / 4  # file names and offsets, not pixel data


@pytest.mark.parametrize("name", ["bismuth.dm3", "bismuth.dm4"])
def test_dm_stack(skued_data, name):
    from uedflow import dmread

    stack = open_stack(skued_data / name)
    assert stack.shape == (1, 256, 256)
    np.testing.assert_array_equal(stack.values[0], dmread(skued_data / name))


def test_multipage_tiff_and_npy(tmp_path):
    data = np.random.default_rng(3).integers(0, 1000, size=(7, 20, 24), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "multi.tif", data)
    stack = open_stack(tmp_path / "multi.tif", chunks=3)
    assert stack.data.chunks[0] == (3, 3, 1)
    np.testing.assert_array_equal(stack.values, data)
    np.testing.assert_array_equal(stack[4].values, data[4])
    np.save(tmp_path / "multi.npy", data)
    np.testing.assert_array_equal(open_stack(tmp_path / "multi.npy").values, data)


def test_arrays():
    frame = np.ones((8, 9))
    assert open_stack(frame).dims == ("frame", "y", "x")
    assert open_stack(frame).shape == (1, 8, 9)
    four = open_stack(np.zeros((2, 3, 8, 9)))
    assert four.dims == ("dim_0", "frame", "y", "x")
    assert four.data.chunksize == (2, 3, 8, 9)  # small frames: one chunk
    assert open_stack(np.zeros((2, 3, 8, 9)), chunks=4).data.chunksize == (1, 3, 8, 9)
    assert open_stack(np.zeros((4, 3, 8, 9)), chunks=6).data.chunks[:2] == ((2, 2), (3,))
    with pytest.raises(ValueError, match="at least 2"):
        open_stack(np.zeros(5))
    labelled = open_stack(xr.DataArray(np.zeros((4, 8, 9)), dims=("t", "y", "x")), chunks=2)
    assert labelled.dims == ("t", "y", "x") and labelled.data.chunks[0] == (2, 2)


def test_default_chunks_are_whole_frames_of_about_64_MiB():
    shape = (100, 2048, 2048)
    assert lazy._leading_chunks(shape, None, 2) == (8, 2048, 2048)
    assert lazy._leading_chunks((3, 2048, 2048), None, 2) == (3, 2048, 2048)
    assert lazy._leading_chunks((5, 40, 2048, 2048), None, 4) == (1, 4, 2048, 2048)
    stack = open_stack(da.zeros(shape, dtype=np.uint16, chunks=(1, 2048, 2048)))
    assert stack.data.chunksize == (8, 2048, 2048)


def test_chunks_dict(tiff_dir):
    folder, frames = tiff_dir
    stack = open_stack(folder, chunks={"frame": 5})
    assert stack.data.chunks[0] == (5, 5, 2)
    np.testing.assert_array_equal(stack.values, frames)


def test_mixed_shapes_name_the_first_file_that_differs(tiff_dir):
    folder, _ = tiff_dir
    tifffile.imwrite(folder / "frame_7.tif", np.zeros((48, 63), np.uint16))
    tifffile.imwrite(folder / "frame_9.tif", np.zeros((10, 10), np.uint16))
    with pytest.raises(FrameMismatchError, match=r"frame_7\.tif.*\(48, 63\).*frame_0\.tif"):
        open_stack(folder)


def test_mixed_dtypes_are_an_error(tiff_dir):
    folder, _ = tiff_dir
    tifffile.imwrite(folder / "frame_4.tif", np.zeros((48, 64), np.float32))
    with pytest.raises(FrameMismatchError, match="frame_4.tif"):
        open_stack(folder)


def test_truncated_tiff_is_caught_at_open(tiff_dir):
    folder, _ = tiff_dir
    path = folder / "frame_5.tif"
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(CorruptFileError, match=r"frame_5\.tif.*truncated"):
        open_stack(folder)


def test_corrupt_pixels_are_caught_at_compute(tmp_path):
    folder = tmp_path / "z"
    folder.mkdir()
    for i in range(4):
        tifffile.imwrite(folder / f"f{i}.tif", np.full((32, 32), i, np.uint16),
                         compression="zlib")
    path = folder / "f2.tif"
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[0].dataoffsets[0]
    raw = bytearray(path.read_bytes())
    raw[offset:offset + 8] = b"\xff" * 8  # the header still describes valid data
    path.write_bytes(bytes(raw))
    stack = open_stack(folder, chunks=1)
    np.testing.assert_array_equal(stack[1].values, 1)
    with pytest.raises(CorruptFileError, match="f2.tif"):
        stack.compute()


def test_changed_file_is_caught_at_compute(tiff_dir):
    folder, _ = tiff_dir
    stack = open_stack(folder)
    tifffile.imwrite(folder / "frame_3.tif", np.zeros((5, 5), np.uint16))
    with pytest.raises(FrameMismatchError, match="frame_3.tif"):
        stack.compute()
    (folder / "frame_3.tif").unlink()
    with pytest.raises(FileNotFoundError, match="frame_3.tif"):
        stack.compute()


def test_processes_scheduler(tiff_dir, skued_data):
    """Graphs carry paths, not handles: they compute in other processes."""
    folder, frames = tiff_dir
    stack = open_stack(folder, chunks=4)
    mib = open_stack(skued_data / "test_multi.mib", chunks=4)
    total, mib_total = dask.compute(stack.sum(), mib.sum(), scheduler="processes",
                                    num_workers=2)
    assert int(total) == int(frames.sum())
    assert int(mib_total) == int(np.asarray(mibread(skued_data / "test_multi.mib"),
                                            dtype=np.int64).sum())


@pytest.mark.parametrize("name", ["../outside.tif", "{root}/../outside.tif", "/etc/hostname",
                                  "sub/../../outside.tif"])
def test_manifest_paths_stay_inside_the_run(tmp_path, name):
    run = tmp_path / "run"
    make_run(run, shape=(16, 16), delays=[0.0, 1.0], n_scans=1)
    tifffile.imwrite(tmp_path / "outside.tif", np.full((16, 16), 7, np.uint16))
    manifest = json.loads((run / "run.json").read_text())
    manifest["files"][0][1] = name.format(root=run)
    (run / "run.json").write_text(json.dumps(manifest))
    with pytest.raises(CorruptFileError, match=r"run\.json.*outside the run directory"):
        open_stack(run)


def test_manifest_paths_inside_the_run_may_take_detours(tmp_path):
    run = tmp_path / "run"
    make_run(run, shape=(16, 16), delays=[0.0, 1.0], n_scans=1)
    manifest = json.loads((run / "run.json").read_text())
    first = manifest["files"][0][0]
    manifest["files"][0][0] = f"dark_image/../{first}"
    (run / "run.json").write_text(json.dumps(manifest))
    np.testing.assert_array_equal(open_stack(run)[0, 0].values, tifffile.imread(run / first))


def test_run_layout_without_its_manifest_is_refused_like_open_run(tmp_path):
    run = tmp_path / "run"
    make_run(run, shape=(16, 16), delays=[0.0, 1.0], n_scans=2)
    (run / "run.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"named by delay index.*run\.json") as ours:
        open_stack(run)
    with pytest.raises(FileNotFoundError) as theirs:
        open_run(run)
    assert str(ours.value) == str(theirs.value)


# ---------------------------------------------------------------- damaged zarr stores

@pytest.fixture(scope="module")
def ingested(tmp_path_factory):
    """A run (3 delays x 2 scans of 16x20 frames), its frames, and its ingested store."""
    root = tmp_path_factory.mktemp("ingested")
    make_run(root / "run", shape=(16, 20), delays=[-1.0, 0.0, 1.0], n_scans=2, seed=4)
    run = open_run(root / "run")
    to_zarr(run, root / "raw.zarr")
    return run.values, root / "raw.zarr"


@pytest.fixture
def store(ingested, tmp_path):
    """A copy of the ingested store, free to damage."""
    shutil.copytree(ingested[1], tmp_path / "raw.zarr")
    return tmp_path / "raw.zarr"


CHUNK = "intensity/c/1/0/0/0"  # delay 0.0, scan 0


def test_deleted_chunk_is_a_frame_not_present(ingested, store):
    (store / CHUNK).unlink()
    stack = open_stack(store)
    assert stack.present.values.tolist() == [[True, True], [False, True], [True, True]]
    assert stack.attrs["bad_files"] == [[str(store / CHUNK), lazy.LOST_CHUNK]]
    values = stack.values  # the lost frame reads as zeros; the others as written
    assert not values[1, 0].any()
    values[1, 0] = ingested[0][1, 0]
    np.testing.assert_array_equal(values, ingested[0])


def test_truncated_chunk_is_a_frame_not_present(store):
    data = (store / CHUNK).read_bytes()
    (store / CHUNK).write_bytes(data[:-5])
    stack = open_stack(store)
    assert not stack.present.values[1, 0] and stack.present.values.sum() == 5
    (path, reason), = stack.attrs["bad_files"]
    assert path == str(store / CHUNK) and f"{len(data) - 5} bytes, {len(data)}" in reason


@pytest.mark.parametrize("damage", ["flip", "zeros"])
def test_damaged_chunk_raises_naming_store_chunk_and_frame(ingested, store, damage):
    data = bytearray((store / CHUNK).read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x10  # blosc decodes it without complaint: only the CRC sees it
    else:
        data[16:48] = bytes(32)
    (store / CHUNK).write_bytes(bytes(data))
    stack = open_stack(store, chunks=1)
    np.testing.assert_array_equal(stack[2].values, ingested[0][2])
    with pytest.raises(CorruptFileError) as info:
        stack.compute()
    message = str(info.value)
    assert str(store / CHUNK) in message and "delay=0.0, scan=0" in message
    assert "blosc" not in message.split(":")[0]


def test_damaged_chunk_of_an_unrecorded_store_raises_naming_it(tmp_path):
    """A zarr store without uedflow's records: the codec's error, named."""
    path = tmp_path / "plain.zarr"
    frames = np.arange(4 * 16 * 16, dtype=np.uint16).reshape(4, 16, 16)
    array = zarr.create_array(path, shape=frames.shape, chunks=(1, 16, 16), dtype=np.uint16)
    array[:] = frames
    chunk = path / "c" / "2" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-8])
    stack = open_stack(path, chunks=1)
    np.testing.assert_array_equal(stack[:2].values, frames[:2])
    with pytest.raises(CorruptFileError, match=r"c/2/0/0: chunk \(2, 0, 0\) \(frame frame=2\)"):
        stack.compute()


def test_frame_missing_from_an_older_store_is_reported_with_its_causes(tmp_path):
    """A uedflow store without records (written before checksums): a frame without a chunk
    file is not present, and the reason says that zarr also leaves out all-zero chunks."""
    path = tmp_path / "old.zarr"
    stack = open_stack(np.arange(3 * 8 * 8, dtype=np.uint16).reshape(3, 8, 8))
    stack.to_dataset(name="intensity").assign_attrs(uedflow={"complete": True}).to_zarr(
        path, zarr_format=3, consolidated=False, encoding={"intensity": {"chunks": (1, 8, 8)}})
    (path / "intensity" / "c" / "1" / "0" / "0").unlink()
    back = open_stack(path)
    assert back.present.values.tolist() == [True, False, True]
    assert back.attrs["bad_files"][0][1] == lazy.LOST_CHUNK_UNRECORDED


def test_broken_zarr_metadata_is_named(store):
    (store / "zarr.json").write_bytes((store / "zarr.json").read_bytes()[:40])
    with pytest.raises(CorruptFileError, match=r"raw\.zarr/zarr\.json: not valid zarr metadata"):
        open_stack(store)


def test_changed_dtype_is_found_at_open(store):
    meta = store / "intensity" / "zarr.json"
    meta.write_text(meta.read_text().replace('"uint16"', '"float64"'))
    with pytest.raises(CorruptFileError, match=r"intensity/c/0/0/0/0.*delay=-1.0, scan=0"):
        open_stack(store)
