"""Never lose data: one writer per store, deletion of only what uedflow wrote, never an input."""

import json
import os
import socket
import subprocess
import sys
import threading
import time

import dask
import numpy as np
import pytest
import tifffile
from test_store import files, reduced

from uedflow import open_run, open_stack, to_zarr
from uedflow.datasets import load_run_metadata, make_run
from uedflow.errors import InputOverlapError, StoreLockedError, UnsafeDeleteError
from uedflow.io import writer_lock
from uedflow.pipeline.store import open_reduced, read_state, write_reduced

#: A process that holds the writer lock of ``argv[1]`` until its stdin closes.
HOLD = """
import sys
from uedflow.io import writer_lock
with writer_lock(sys.argv[1], command="holder of the lock"):
    print("locked", flush=True)
    sys.stdin.read()
"""


@pytest.fixture(autouse=True)
def synchronous():
    with dask.config.set(scheduler="synchronous"):
        yield


@pytest.fixture
def hold(tmp_path):
    """``hold(store)``: another process takes the store's writer lock (until the test ends)."""
    procs = []

    def start(store):
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(store)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"
        return proc

    yield start
    for proc in procs:
        proc.stdin.close()
        proc.wait(timeout=30)


def snapshot(path):
    """Every file under ``path`` (or ``path`` itself) and its bytes."""
    return files(path) if path.is_dir() else path.read_bytes()


def stack(n=3):
    return open_stack(np.arange(n * 8 * 8, dtype=np.uint16).reshape(n, 8, 8))


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- one writer at a time ---------------------------------------------------------------------

def test_a_second_writer_fails_at_once_naming_the_owner(tmp_path, hold):
    store = tmp_path / "out.zarr"
    write_reduced(reduced(), store)
    holder = hold(store)
    before = files(store)
    started = time.monotonic()
    with pytest.raises(StoreLockedError, match=rf"pid {holder.pid} on host .*holder of the lock"):
        write_reduced(reduced(config=2.0), store, overwrite=True)
    with pytest.raises(StoreLockedError, match="out.zarr"):
        to_zarr(stack(), tmp_path / "out.zarr", overwrite=True)
    assert time.monotonic() - started < 5  # at once, no waiting
    assert files(store) == before  # the second writer changed nothing


def test_the_lock_is_removed_on_exit_and_reentrant(tmp_path):
    store = tmp_path / "out.zarr"
    lock = store / ".uedflow" / "lock"
    with writer_lock(store, command="analysis") as path:
        owner = json.loads(lock.read_text())
        assert (owner["pid"], owner["host"], owner["command"]) == (
            os.getpid(), socket.gethostname(), "analysis")
        assert path == store.resolve()
        write_reduced(reduced(), store)  # takes the same lock again
        assert lock.exists()
        failure = []
        thread = threading.Thread(target=lambda: failure.append(_try_lock(store)))
        thread.start()
        thread.join()
        assert isinstance(failure[0], StoreLockedError)  # re-entrant in its thread only
    assert not lock.exists()
    assert read_state(store)["state"] == "complete"

    with writer_lock(tmp_path / "unused.zarr"):
        assert (tmp_path / "unused.zarr").is_dir()
    assert not (tmp_path / "unused.zarr").exists()  # nothing written: no trace left


def _try_lock(store):
    try:
        with writer_lock(store):
            return None
    except StoreLockedError as exc:
        return exc


def test_a_stale_lock_of_this_host_is_taken_over_with_a_warning(tmp_path):
    store = tmp_path / "out.zarr"
    with pytest.raises(RuntimeError, match="chunk 2 fails"):
        write_reduced(reduced(fail={2}), store)
    gone = {"pid": dead_pid(), "host": socket.gethostname(), "started": "earlier",
            "time": time.time() - 60, "command": "uedflow reduce (killed)"}
    reused = {**gone, "pid": os.getpid(), "time": 0.0}  # a live pid, started after the lock
    for stale in (gone, reused):
        (store / ".uedflow" / "lock").write_text(json.dumps(stale))
        with pytest.warns(UserWarning, match=rf"stale lock .*pid {stale['pid']}.*killed"):
            write_reduced(reduced(), store)
        assert not (store / ".uedflow" / "lock").exists()
    assert read_state(store)["state"] == "complete"


def test_a_lock_of_another_host_is_never_taken_over(tmp_path):
    store = tmp_path / "out.zarr"
    (store / ".uedflow").mkdir(parents=True)
    other = {"pid": dead_pid(), "host": "another-host", "started": "x", "command": "reduce"}
    (store / ".uedflow" / "lock").write_text(json.dumps(other))
    with pytest.raises(StoreLockedError, match="'another-host'.*delete the lock file"):
        write_reduced(reduced(), store)
    assert sorted(p.name for p in store.rglob("*")) == [".uedflow", "lock"]


# -- deletion: only what uedflow wrote --------------------------------------------------------

@pytest.mark.parametrize("content", ["folder", "file"])
def test_to_zarr_overwrite_never_deletes_what_is_not_a_store(tmp_path, content):
    target = tmp_path / "D"
    if content == "folder":
        target.mkdir()
        (target / "thesis.tex").write_text("precious")
    else:
        target.write_text("precious")
    before = snapshot(target)
    with pytest.raises(FileExistsError, match="D'.* not a"):
        to_zarr(stack(), target, overwrite=True)
    assert snapshot(target) == before


@pytest.mark.parametrize(("extra", "named"), [
    ("notes.txt", "notes.txt"), ("intensity/notes.txt", "intensity/notes.txt"),
    ("intensity/c/0/x.npy", "intensity/c/0/x.npy"), ("backup/zarr.json", "backup/zarr.json"),
    (".git/HEAD", ".git"), ("link", "link")])
def test_overwrite_refuses_a_store_holding_anything_uedflow_does_not_write(tmp_path, extra,
                                                                          named):
    store = tmp_path / "run.zarr"
    to_zarr(stack(), store)
    if extra == "link":
        (store / "link").symlink_to(tmp_path)
    else:
        (store / extra).parent.mkdir(parents=True, exist_ok=True)
        (store / extra).write_text("precious")
    before = files(store)
    with pytest.raises(UnsafeDeleteError, match=f"holds '{named}'.*nothing was deleted"):
        to_zarr(stack(5), store, overwrite=True)
    assert files(store) == before


def test_overwrite_replaces_stores_uedflow_wrote(tmp_path):
    raw, red = tmp_path / "run.zarr", tmp_path / "reduced.zarr"
    to_zarr(stack(), raw)
    (raw / "intensity" / "c" / "0" / "0" / "0.1234abcd.partial").write_bytes(b"torn")
    to_zarr(stack(5), raw, overwrite=True)
    assert open_stack(raw).shape == (5, 8, 8)
    assert not list(raw.rglob("*.partial"))

    write_reduced(reduced(), red)
    (red / "diffraction" / "notes.txt").write_text("precious")
    with pytest.raises(UnsafeDeleteError, match="holds 'diffraction/notes.txt'"):
        write_reduced(reduced(config=2.0), red, overwrite=True)
    (red / "diffraction" / "notes.txt").unlink()
    write_reduced(reduced(config=2.0), red, overwrite=True)
    assert json.loads(open_reduced(red).attrs["uedflow"])["config"]["align"]["max_shift"] == 2


@pytest.mark.parametrize("where", ["the run", "inside the run", "around the run"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_to_zarr_never_writes_over_into_or_around_its_inputs(tmp_path, where, overwrite):
    run = tmp_path / "outer" / "run"
    make_run(run, shape=(32, 32), delays=[-1.0, 1.0], n_scans=1, n_darks=1)
    output, relation = {"the run": (run, "is"), "inside the run": (run / "run.zarr", "is inside"),
                        "around the run": (tmp_path / "outer", "contains")}[where]
    before = files(tmp_path)
    with pytest.raises(InputOverlapError, match=f"it {relation} the input '.*run'"):
        to_zarr(open_run(run), output, overwrite=overwrite)
    assert files(tmp_path) == before


def test_a_source_file_is_an_input(tmp_path):
    frames = tmp_path / "frames.tif"
    tifffile.imwrite(frames, np.zeros((2, 8, 8), np.uint16))
    with pytest.raises(InputOverlapError, match="it is the input '.*frames.tif'"):
        to_zarr(frames, frames, overwrite=True)
    np.testing.assert_array_equal(tifffile.imread(frames), 0)


def test_a_glob_source_is_an_input_too(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        (folder / f"{i}.npy").write_bytes(b"")
    stack_ = stack(2).assign_attrs(source=str(folder / "*.tif"))
    with pytest.raises(InputOverlapError, match="is inside the input"):
        to_zarr(stack_, folder / "out.zarr")


# -- make_run: only its own files ---------------------------------------------------------------

def test_make_run_overwrite_deletes_only_its_own_files_inside_the_run(tmp_path):
    run = tmp_path / "run"
    make_run(run, shape=(32, 32), delays=[-1.0, 1.0, 2.0], n_scans=2, n_darks=1)
    outside = tmp_path / "elsewhere" / "thesis.tif"
    outside.parent.mkdir()
    outside.write_text("precious")
    (run / "notes.tif").write_text("precious")
    (run / "dark_image" / "dark_mine.tif").write_text("precious")
    meta = json.loads((run / "run.json").read_text())
    meta["files"][0] += ["../elsewhere/thesis.tif", str(outside), "notes.tif"]
    meta["mask_file"] = str(outside)
    (run / "run.json").write_text(json.dumps(meta))

    new = make_run(run, shape=(32, 32), delays=[-1.0, 1.0], n_scans=1, overwrite=True)
    assert outside.read_text() == "precious"
    assert (run / "notes.tif").read_text() == "precious"
    assert (run / "dark_image" / "dark_mine.tif").read_text() == "precious"
    left = sorted(p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file())
    assert left == sorted([*new["files"][0], "mask.tif", "run.json", "notes.tif",
                           "dark_image/dark_mine.tif"])  # the old frames and dark are gone
    assert load_run_metadata(run) == new
