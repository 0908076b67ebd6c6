"""Store integrity: every chunk recorded with its size and CRC-32 as it is written; damage found
when opening, reading and verifying; a resume rewrites what is missing or damaged."""

import json
import zlib
from collections import Counter
from pathlib import Path

import dask
import numpy as np
import pytest
import xarray as xr
import zarr
from test_store import NDELAY, files, reduced, untimed

from uedflow import open_stack, to_zarr
from uedflow.errors import DamagedStoreError
from uedflow.io import verify_store
from uedflow.pipeline.store import open_reduced, read_state, write_reduced


@pytest.fixture(autouse=True)
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


@pytest.fixture
def store(tmp_path):
    """A complete reduced store."""
    write_reduced(reduced(), tmp_path / "out.zarr")
    return tmp_path / "out.zarr"


def chunk_files(store):
    """Every chunk file of every array of ``store``, from zarr's own view of the arrays."""
    group = zarr.open_group(store, mode="r")
    return {f"{name}/{array.metadata.encode_chunk_key(index)}"
            for name, array in group.arrays() for index in np.ndindex(*array.cdata_shape)}


def flip(path, at=-20):
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path):
    path.write_bytes(path.read_bytes()[:-7])


def test_every_chunk_of_every_array_is_recorded(store):
    keys = chunk_files(store)
    assert {"diffraction/c/1/0/0", "mask/c/0/0", "center/c/0", "delay/c/0", "coord/c/0"} <= keys
    sealed = json.loads((store / ".uedflow" / "checksums.json").read_text())["chunks"]
    assert set(sealed) == keys
    for key, (size, crc) in sealed.items():  # as computed independently from the files
        assert [size, crc] == [(store / key).stat().st_size, zlib.crc32((store / key).read_bytes())]
    assert not list((store / ".uedflow" / "journal").iterdir())  # sealed: journals removed
    assert not (store / ".uedflow" / "lock").exists()
    check = verify_store(store)
    assert check.ok and not check and check.chunks == len(keys) and check.complete
    assert "no problem" in str(check)


@pytest.mark.parametrize(("key", "variable", "chunk"), [
    ("diffraction/c/3/0/0", "diffraction", (3, 0, 0)),
    ("mask/c/0/0", "mask", (0, 0)),
    ("center/c/0", "center", (0,)),
])
def test_a_deleted_chunk_is_found_when_opening(store, key, variable, chunk):
    (store / key).unlink()
    with pytest.raises(DamagedStoreError, match=rf"out.zarr' is damaged: variable '{variable}', "
                       rf"chunk \({chunk[0]},.*missing.*uedflow reduce RAW -o"):
        open_reduced(store)
    state = read_state(store)
    lazy = variable == "diffraction"
    assert state["chunks_written"] == state["chunks_total"] - lazy
    (problem,) = verify_store(store)
    assert (problem.variable, problem.chunk, problem.problem) == (variable, chunk, "missing")


@pytest.mark.parametrize("damage", [flip, truncate])
def test_a_corrupt_chunk_is_named_when_read_and_verified(store, damage):
    damage(store / "diffraction" / "c" / "2" / "0" / "0")
    if damage is truncate:  # a size check when opening finds it
        with pytest.raises(DamagedStoreError, match=r"'diffraction', chunk \(2, 0, 0\).*trunc"):
            open_reduced(store)
        assert read_state(store)["chunks_written"] == 2 * NDELAY - 1
    else:  # the same size: found when the chunk is read
        ds = open_reduced(store)
        np.testing.assert_array_equal(ds["diffraction"][3], reduced()["diffraction"][3])
        with pytest.raises(DamagedStoreError, match=r"out.zarr' is damaged: variable "
                           r"'diffraction', chunk \(2, 0, 0\): corrupt"):
            ds["diffraction"][2].compute()
    (problem,) = verify_store(store)
    assert (problem.variable, problem.chunk, problem.key) == (
        "diffraction", (2, 0, 0), "diffraction/c/2/0/0")
    assert "1 missing or damaged" in str(verify_store(store))


def test_resume_rewrites_missing_and_damaged_chunks(store, tmp_path):
    write_reduced(reduced(), tmp_path / "straight.zarr")
    (store / "diffraction" / "c" / "0" / "0" / "0").unlink()
    flip(store / "diffraction" / "c" / "4" / "0" / "0")
    truncate(store / "radial" / "c" / "5" / "0")
    (store / "mask" / "c" / "0" / "0").unlink()
    flip(store / "delay" / "c" / "0", at=-3)
    assert len(verify_store(store)) == 5
    calls = Counter()
    report = write_reduced(reduced(calls=calls), store)
    assert (report.written, report.skipped) == (5, 2 * NDELAY - 3)
    assert set(calls) == {0, 4}  # only the damaged diffraction chunks were computed again
    assert files(store) == files(tmp_path / "straight.zarr")  # byte for byte
    assert verify_store(store).ok
    xr.testing.assert_identical(untimed(open_reduced(store)).compute(), reduced().compute())


def test_the_journal_tells_a_resume_what_was_written(tmp_path):
    store = tmp_path / "out.zarr"
    with pytest.raises(RuntimeError, match="chunk 3 fails"):
        write_reduced(reduced(fail={3}), store)
    (journal,) = (store / ".uedflow" / "journal").iterdir()
    recorded = {json.loads(line)[0] for line in journal.read_text().splitlines() if line}
    written = {p.relative_to(store).as_posix() for p in store.glob("diffraction/c/*/0/0")}
    assert written == {"diffraction/c/4/0/0", "diffraction/c/5/0/0"}  # before chunk 3 failed
    assert written <= recorded and "mask/c/0/0" in recorded
    lazy = {key for key in recorded if key.startswith(("diffraction/", "radial/"))}
    assert read_state(store)["chunks_written"] == len(lazy)
    # damage after the write; a chunk file without a record (a torn, unfinished line)
    flip(store / "diffraction/c/4/0/0")
    unrecorded = store / "diffraction/c/2/0/0"
    unrecorded.parent.mkdir(parents=True)
    unrecorded.write_bytes((store / "diffraction/c/5/0/0").read_bytes())
    with journal.open("a") as file:
        file.write(json.dumps(["diffraction/c/2/0/0", unrecorded.stat().st_size])[:-1])
    assert read_state(store)["chunks_written"] == len(lazy)

    calls = Counter()
    write_reduced(reduced(calls=calls), store)
    assert {2, 3, 4} <= set(calls) and 5 not in calls
    write_reduced(reduced(), tmp_path / "straight.zarr")
    assert files(store) == files(tmp_path / "straight.zarr")


def test_processes_record_their_own_journals(tmp_path):
    frames = np.arange(6 * 16 * 16, dtype=np.uint16).reshape(6, 16, 16)
    with dask.config.set(scheduler="processes", num_workers=2):
        to_zarr(open_stack(frames, chunks=1), tmp_path / "p.zarr")
    to_zarr(open_stack(frames), tmp_path / "t.zarr")
    assert files(tmp_path / "p.zarr") == files(tmp_path / "t.zarr")  # checksums.json too
    assert verify_store(tmp_path / "p.zarr").ok


def test_an_ingested_store_is_verified(tmp_path):
    frames = np.arange(4 * 16 * 16, dtype=np.uint16).reshape(2, 2, 16, 16)
    frames[1, 0] = 0  # an all-zero frame has its chunk file too
    raw = xr.DataArray(frames, dims=("delay", "scan", "y", "x"),
                       coords={"delay": [0.0, 1.0], "scan": [0, 1]})
    store = tmp_path / "raw.zarr"
    to_zarr(raw, store)
    assert (store / "intensity" / "c" / "1" / "0" / "0" / "0").exists()
    check = verify_store(store)
    assert check.ok and check.kind == "raw" and check.chunks == 4 + 2
    (store / "intensity" / "c" / "1" / "0" / "0" / "0").unlink()
    flip(store / "intensity" / "c" / "0" / "1" / "0" / "0")
    check = verify_store(store)
    assert [(p.variable, p.chunk, p.problem.split(":")[0]) for p in check] == [
        ("intensity", (0, 1, 0, 0), "corrupt"), ("intensity", (1, 0, 0, 0), "missing")]
    assert "uedflow ingest RAW -o" in str(check)
    with pytest.raises(DamagedStoreError, match=r"'intensity', chunk \(0, 1, 0, 0\): corrupt"):
        check.raise_if_damaged()


def test_a_store_without_checksums_opens_with_a_warning(store):
    meta = json.loads((store / "zarr.json").read_text())
    meta["attributes"]["uedflow_reduced"]["format"] = 1
    (store / "zarr.json").write_text(json.dumps(meta))
    (store / ".uedflow" / "checksums.json").unlink()
    with pytest.warns(UserWarning, match="older uedflow, without chunk checksums"):
        ds = open_reduced(store)
    np.testing.assert_array_equal(ds["radial"], reduced()["radial"])
    assert Path(store, "diffraction", "c", "0", "0", "0").exists()
    assert all("no record" in p.problem for p in verify_store(store))
