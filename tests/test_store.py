"""Reduced stores: round trip, resume after an interrupted write, refusals."""

import json
import threading
from collections import Counter
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr

import uedflow
from uedflow.errors import IncompleteStoreError
from uedflow.pipeline.store import open_reduced, read_state, write_reduced

NDELAY, NSCAN, SHAPE, NRADIUS = 6, 2, (32, 40), 20


def reduced(config=None, fail=(), calls=None, ndelay=NDELAY):
    """A small reduced Dataset of the documented shape; lazy variables one delay per chunk.

    Chunk ``i`` of ``diffraction`` raises if ``i`` is in ``fail``; ``calls`` counts how often
    each chunk is computed.
    """
    lock = threading.Lock()

    def diffraction_block(block_info=None):
        (i, _, _) = block_info[None]["chunk-location"]
        with lock:
            if calls is not None:
                calls[i] += 1
        if i in fail:
            raise RuntimeError(f"chunk {i} fails")
        if i == 1:  # a chunk that is all fill value (NaN) is stored all the same
            return np.full((1, *SHAPE), np.nan)
        return np.random.default_rng(i).random((1, *SHAPE))

    diffraction = da.map_blocks(diffraction_block, dtype=float,
                                chunks=((1,) * ndelay, (SHAPE[0],), (SHAPE[1],)))
    radial = da.from_array(np.linspace(0, 1, ndelay * NRADIUS).reshape(ndelay, NRADIUS),
                           chunks=(1, NRADIUS))
    mask = np.ones(SHAPE, bool)
    mask[:4] = False
    provenance = {"config": {"align": {"max_shift": 4.0 if config is None else config}},
                  "timing": {"analysis_s": 1.5}}
    return xr.Dataset(
        {"diffraction": (("delay", "y", "x"), diffraction),
         "radial": (("delay", "radius"), radial),
         "mask": (("y", "x"), mask),
         "center": ("coord", np.array([15.5, 20.25])),
         "shifts": (("delay", "scan", "coord"), np.full((ndelay, NSCAN, 2), 0.25)),
         "rejected": (("delay", "scan"), np.eye(ndelay, NSCAN, dtype=bool))},
        coords={"delay": np.linspace(-1, 4, ndelay), "scan": np.arange(NSCAN),
                "radius": np.arange(NRADIUS) * 1.5, "coord": ["row", "col"]},
        attrs={"uedflow": json.dumps(provenance)})


def files(store):
    """Every file of a store and its bytes, but the seconds its write took."""
    return {p.relative_to(store).as_posix(): p.read_bytes()
            for p in sorted(Path(store).rglob("*"))
            if p.is_file() and p.relative_to(store).as_posix() != ".uedflow/timing.json"}


def untimed(ds):
    """``ds`` without the time of its write in its provenance (it differs from run to run)."""
    provenance = json.loads(ds.attrs["uedflow"])
    assert provenance["timing"].pop("write") >= 0
    return ds.assign_attrs(uedflow=json.dumps(provenance))


@pytest.fixture(autouse=True)
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


def test_round_trip(tmp_path):
    ds = reduced()
    report = write_reduced(ds, tmp_path / "out.zarr")
    assert (report.written, report.skipped) == (2 * NDELAY, 0)
    back = open_reduced(tmp_path / "out.zarr")
    assert back["diffraction"].chunks is not None  # opened lazily
    assert back["diffraction"].data.chunksize == (1, *SHAPE)
    xr.testing.assert_identical(untimed(back).compute(), ds.compute())
    assert np.isnan(back["diffraction"][1]).all()
    state = read_state(tmp_path / "out.zarr")
    assert state["state"] == "complete"
    assert state["chunks_written"] == state["chunks_total"] == 2 * NDELAY


def test_open_stack_points_to_open_reduced(tmp_path):
    write_reduced(reduced(), tmp_path / "out.zarr")
    with pytest.raises(ValueError, match="reduced uedflow store.*open_reduced"):
        uedflow.open_stack(tmp_path / "out.zarr")


def test_irregular_chunks_are_made_regular(tmp_path):
    ds = reduced()
    ds["radial"] = ds["radial"].chunk({"delay": (2, 1, 3)})
    write_reduced(ds, tmp_path / "out.zarr")
    back = open_reduced(tmp_path / "out.zarr")
    assert back["radial"].data.chunks[0] == (3, 3)
    np.testing.assert_array_equal(back["radial"], ds["radial"])


def test_resume_writes_only_missing_chunks_and_ends_identical(tmp_path):
    store = tmp_path / "out.zarr"
    calls = Counter()
    with pytest.raises(RuntimeError, match="chunk 4 fails"):
        write_reduced(reduced(fail={4}, calls=calls), store)
    state = read_state(store)
    assert state["state"] == "writing"
    assert 0 < state["chunks_written"] < state["chunks_total"]
    with pytest.raises(IncompleteStoreError, match="uedflow reduce RAW -o .*out.zarr"):
        open_reduced(store)
    # a killed zarr write leaves a temporary file, never a partial chunk file
    (store / "diffraction" / "c" / "4").mkdir(parents=True, exist_ok=True)
    (store / "diffraction" / "c" / "4" / "0.1234.partial").write_bytes(b"torn")

    done_before = {i for i in range(NDELAY) if (store / "diffraction" / "c" / str(i)).is_dir()
                   and (store / "diffraction" / "c" / str(i) / "0" / "0").exists()}
    calls.clear()
    report = write_reduced(reduced(calls=calls), store, progress=True)
    assert report.skipped == state["chunks_written"]
    assert report.written == state["chunks_total"] - state["chunks_written"]
    assert set(calls) == set(range(NDELAY)) - done_before  # done chunks not recomputed
    assert not list(store.rglob("*.partial"))

    write_reduced(reduced(), tmp_path / "straight.zarr")
    assert files(store) == files(tmp_path / "straight.zarr")  # byte for byte
    xr.testing.assert_identical(untimed(open_reduced(store)).compute(), reduced().compute())


def test_complete_store_with_the_same_config_is_left_as_is(tmp_path):
    store = tmp_path / "out.zarr"
    write_reduced(reduced(), store)
    before = files(store)
    calls = Counter()
    report = write_reduced(reduced(calls=calls), store)
    assert (report.written, report.skipped) == (0, 2 * NDELAY)
    assert not calls and files(store) == before
    with pytest.raises(FileExistsError, match="resume=True"):
        write_reduced(reduced(), store, resume=False)


def test_a_different_config_is_refused_unless_overwriting(tmp_path):
    store = tmp_path / "out.zarr"
    with pytest.raises(RuntimeError):
        write_reduced(reduced(fail={3}), store)
    before = files(store)
    with pytest.raises(ValueError, match="different reduction config"):
        write_reduced(reduced(config=2.0), store)
    with pytest.raises(ValueError, match="shapes"):
        write_reduced(reduced(ndelay=NDELAY + 1), store)
    assert files(store) == before

    write_reduced(reduced(config=2.0), store, overwrite=True)
    back = open_reduced(store)
    assert json.loads(back.attrs["uedflow"])["config"]["align"]["max_shift"] == 2.0


def test_a_store_killed_while_starting_is_started_again(tmp_path):
    store = tmp_path / "out.zarr"
    write_reduced(reduced(), store)
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"]["uedflow_reduced"]["state"] = "started"
    (store / "zarr.json").write_text(json.dumps(meta))
    (store / "radial" / "zarr.json").unlink()  # metadata that was never written
    report = write_reduced(reduced(config=3.0), store)
    assert report.skipped == 0 and report.written == 2 * NDELAY
    assert open_reduced(store)["radial"].shape == (NDELAY, NRADIUS)


@pytest.mark.parametrize("kind", ["file", "folder", "raw store"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_paths_that_are_not_reduced_stores_are_never_touched(tmp_path, kind, overwrite):
    target = tmp_path / "target"
    if kind == "file":
        target.write_text("precious")
    elif kind == "folder":
        target.mkdir()
        (target / "notes.txt").write_text("precious")
    else:
        uedflow.to_zarr(np.zeros((2, 8, 8), np.uint16), target)
    before = files(target) if target.is_dir() else target.read_bytes()
    with pytest.raises(FileExistsError, match="target' exists and is not a reduced uedflow"):
        write_reduced(reduced(), target, overwrite=overwrite)
    assert (files(target) if target.is_dir() else target.read_bytes()) == before


def test_an_empty_directory_is_written_into(tmp_path):
    (tmp_path / "empty.zarr").mkdir()
    write_reduced(reduced(), tmp_path / "empty.zarr")
    assert read_state(tmp_path / "empty.zarr")["state"] == "complete"


def test_open_reduced_refuses_what_is_not_a_complete_reduced_store(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.zarr"):
        open_reduced(tmp_path / "nowhere.zarr")
    uedflow.to_zarr(np.zeros((2, 8, 8), np.uint16), tmp_path / "raw.zarr")
    with pytest.raises(ValueError, match="raw.zarr' is not a reduced uedflow store"):
        open_reduced(tmp_path / "raw.zarr")
    assert read_state(tmp_path / "raw.zarr") is None


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="xarray.Dataset"):
        write_reduced(reduced()["diffraction"], tmp_path / "out.zarr")
    ds = reduced().assign_attrs(uedflow="{not json")
    with pytest.raises(ValueError, match="must be a JSON object"):
        write_reduced(ds, tmp_path / "out.zarr")
    assert not (tmp_path / "out.zarr").exists()
