"""to_zarr: streaming, compressed, labelled, and never silently incomplete."""

import json

import numpy as np
import pytest
import tifffile
import zarr

from uedflow import CorruptFileError, IncompleteStoreError, open_stack, to_zarr
from uedflow.datasets import make_run


@pytest.fixture
def run(tmp_path):
    make_run(tmp_path / "run", shape=(96, 96), delays=[-1.0, 0.0, 1.0, 5.0], n_scans=2)
    return tmp_path / "run"


def test_round_trip_keeps_values_dims_and_coords(run, tmp_path):
    stack = open_stack(run)
    report = to_zarr(stack, tmp_path / "run.zarr")
    back = open_stack(tmp_path / "run.zarr")
    assert back.dims == stack.dims == ("delay", "scan", "y", "x")
    assert back.dtype == stack.dtype
    np.testing.assert_array_equal(back.values, stack.values)
    np.testing.assert_array_equal(back.delay.values, stack.delay.values)
    assert back.delay.attrs["units"] == "ps"
    assert report.shape == stack.shape and report.nbytes == stack.nbytes
    assert report.ratio > 1.5  # Poisson counts in uint16 compress well with bit-shuffle
    assert "compression ratio" in str(report)


def test_store_layout_codec_and_chunks(run, tmp_path):
    to_zarr(open_stack(run), tmp_path / "run.zarr", clevel=3)
    meta = json.loads((tmp_path / "run.zarr" / "intensity" / "zarr.json").read_text())
    assert meta["zarr_format"] == 3
    assert meta["dimension_names"] == ["delay", "scan", "y", "x"]
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [1, 1, 96, 96]
    blosc = [c for c in meta["codecs"] if c["name"] == "blosc"]
    assert blosc and blosc[0]["configuration"]["cname"] == "zstd"
    assert blosc[0]["configuration"]["shuffle"] == "bitshuffle"
    assert blosc[0]["configuration"]["clevel"] == 3
    group = zarr.open_group(tmp_path / "run.zarr", mode="r")
    assert group.attrs["uedflow"]["complete"] is True
    assert group.attrs["uedflow"]["source"] == str(run)


def test_numpy_and_tiff_sources(tiff_dir, tmp_path):
    folder, frames = tiff_dir
    to_zarr(folder, tmp_path / "a.zarr")
    back = open_stack(tmp_path / "a.zarr")
    np.testing.assert_array_equal(back.values, frames)
    assert list(back.file.values) == [f"frame_{i}.tif" for i in range(12)]
    to_zarr(open_stack(frames.astype(np.float32)), tmp_path / "b.zarr")
    np.testing.assert_array_equal(open_stack(tmp_path / "b.zarr").values, frames)


def test_existing_store_is_not_overwritten(tiff_dir, tmp_path):
    folder, frames = tiff_dir
    to_zarr(folder, tmp_path / "a.zarr")
    with pytest.raises(FileExistsError, match="a.zarr"):
        to_zarr(folder, tmp_path / "a.zarr")
    to_zarr(open_stack(frames[:3]), tmp_path / "a.zarr", overwrite=True)
    assert open_stack(tmp_path / "a.zarr").shape == (3, 48, 64)


def test_interrupted_write_is_never_mistaken_for_complete(tiff_dir, tmp_path):
    folder, _ = tiff_dir
    stack = open_stack(folder, chunks=2)
    path = folder / "frame_9.tif"
    path.write_bytes(path.read_bytes()[:500])  # damaged after opening
    with pytest.raises(CorruptFileError, match="frame_9.tif"):
        to_zarr(stack, tmp_path / "partial.zarr")
    assert (tmp_path / "partial.zarr").exists()
    with pytest.raises(IncompleteStoreError, match="partial.zarr"):
        open_stack(tmp_path / "partial.zarr")


def test_write_streams_in_chunks(tmp_path, monkeypatch):
    """Each task reads one chunk and writes it: no task ever holds the whole stack."""
    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(16):
        tifffile.imwrite(folder / f"{i}.tif", np.full((64, 64), i, np.uint16))
    stack = open_stack(folder, chunks=2)
    largest = []
    import uedflow.io.lazy as lazy

    read = lazy.FrameFiles.read

    def recording_read(self, *key):
        block = read(self, *key)
        largest.append(block.nbytes)
        return block

    monkeypatch.setattr(lazy.FrameFiles, "read", recording_read)
    to_zarr(stack, tmp_path / "f.zarr")
    assert len(largest) == 8 and max(largest) == 2 * 64 * 64 * 2
