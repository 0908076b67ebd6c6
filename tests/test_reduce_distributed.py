"""``uedflow reduce --scheduler``: a dask scheduler and two workers on 127.0.0.1, one of them
killed while the store is written; the store is still complete and identical, file by file, to
the store of the same reduction on threads."""

import json
import os
import signal
import time

import distributed
import pytest
from test_cli_reduce import _run_main, files, start_slow_reduce, wait_for_chunks
from test_cluster import _start, _stop

from uedflow.datasets import make_run
from uedflow.pipeline.store import read_state


@pytest.fixture
def cluster(tmp_path):
    """Address of a ``dask scheduler`` and its two ``dask worker`` processes (1 thread each)."""
    scheduler_file = tmp_path / "scheduler.json"
    common = ["--host", "127.0.0.1", "--no-dashboard"]
    processes = []
    try:
        processes.append(_start(["scheduler", "--port", "0", "--scheduler-file",
                                 str(scheduler_file), "--idle-timeout", "300", *common],
                                tmp_path, "scheduler"))
        deadline = time.monotonic() + 30
        while not scheduler_file.exists():
            assert processes[0].poll() is None and time.monotonic() < deadline, \
                (tmp_path / "scheduler.log").read_text()
            time.sleep(0.1)
        workers = [_start(["worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                           "--death-timeout", "60", "--local-directory", str(tmp_path),
                           *common], tmp_path, f"worker{i}") for i in range(2)]
        processes += workers
        address = json.loads(scheduler_file.read_text())["address"]
        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address, workers
    finally:
        _stop(processes)


def test_worker_killed_mid_write_same_store(cluster, tmp_path):
    address, workers = cluster
    run = tmp_path / "run"
    make_run(run, shape=(128, 128), delays=[-1.0, -0.5, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0],
             n_scans=3, n_darks=2, seed=5)
    _run_main(["reduce", str(run), "-o", str(tmp_path / "threads.zarr"), "-q"])

    store = tmp_path / "distributed.zarr"
    proc = start_slow_reduce(["reduce", str(run), "-o", str(store), "--scheduler", address],
                             tmp_path)
    try:
        state = wait_for_chunks(proc, store, at_least=2)
        os.killpg(workers[0].pid, signal.SIGKILL)  # the nanny and its worker process
        assert proc.wait(timeout=120) == 0, proc.log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert state["chunks_written"] < state["chunks_total"]  # the kill landed mid-write
    assert "dask dashboard: http://127.0.0.1:" in proc.log.read_text()
    with distributed.Client(address, timeout=30) as client:
        assert len(client.scheduler_info()["workers"]) == 1  # the reduction ended on one
    assert read_state(store)["state"] == "complete"
    assert files(store) == files(tmp_path / "threads.zarr")
