"""``uedflow reduce --cluster slurm`` on a real one-node SLURM cluster on 127.0.0.1.

The cluster is the one of ``.ci/slurm`` (slurmctld and slurmd bound to 127.0.0.1, its own
slurm.conf, state and ports): ``.ci/run`` installs and starts it before the tests, and sets
``UEDFLOW_TEST_SLURM=1`` so that the tests fail, never skip, without it. Elsewhere the module
fixture starts it when SLURM is installed and this is root (and stops it afterwards), and the
tests are skipped when SLURM is not installed. The dask scheduler, its dashboard and the
workers listen on 127.0.0.1 (``interface=lo``); the jobs are cancelled when the command ends.
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import distributed
import numpy as np
import pytest
from test_cluster import page_faults_per_mib, worker_environ

import uedflow.cluster
from uedflow.cli import main
from uedflow.cluster import connect, slurm_cluster
from uedflow.datasets import make_run
from uedflow.pipeline.store import open_reduced

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "slurm"
REQUIRED = os.environ.get("UEDFLOW_TEST_SLURM") == "1"


def _unavailable(reason):
    if REQUIRED:
        pytest.fail(f"{reason} (UEDFLOW_TEST_SLURM=1: these tests must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def slurm():
    """``SLURM_CONF`` of the running test cluster (set in os.environ while the module runs)."""
    if not all(shutil.which(c) for c in ("slurmctld", "slurmd", "munged", "sbatch")):
        _unavailable("SLURM is not installed (sudo .ci/slurm install)")
    name, _, conf = subprocess.check_output([SCRIPT, "env"], text=True).strip().partition("=")
    saved = os.environ.get(name)
    os.environ[name] = conf
    started = False
    try:
        if subprocess.run([SCRIPT, "status"], check=False).returncode != 0:
            if os.geteuid() != 0:
                _unavailable("the test SLURM cluster is not running and starting it needs "
                             "root: sudo .ci/slurm start")
            done = subprocess.run([SCRIPT, "start"], capture_output=True, text=True,
                                  timeout=120, check=False)
            assert done.returncode == 0, f".ci/slurm start failed:\n{done.stdout}{done.stderr}"
            started = True
        yield conf
    finally:
        if started:
            subprocess.run([SCRIPT, "stop"], timeout=60, check=False)
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved


def _options(logs):
    """SLURMCluster arguments: 1-core jobs of one worker, everything on 127.0.0.1."""
    return {"cores": 1, "processes": 1, "memory": "1GB", "walltime": "00:10:00",
            "interface": "lo", "scheduler_options": {"dashboard_address": "127.0.0.1:0"},
            "log_directory": str(logs)}


def _cli_options(logs, workers=2):
    argv = ["--cluster", "slurm", "--workers", str(workers), "--wait-workers", "60", "--quiet"]
    for key, value in _options(logs).items():
        argv += ["--cluster-option", f"{key}={json.dumps(value)}"]
    return argv


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """A small run (4 delays x 3 scans of 256², 2 darks) and its reduction on threads."""
    tmp = tmp_path_factory.mktemp("slurm-run")
    make_run(tmp / "run", shape=(256, 256), delays=[-1, 0, 1, 2], n_scans=3, n_darks=2, seed=3)
    assert main(["reduce", tmp / "run", "-o", tmp / "threads.zarr", "--quiet"]) == 0
    return tmp / "run", tmp / "threads.zarr"


def assert_same_store(store, expected):
    """Every variable and coordinate equal value for value (NaN where NaN), and the same
    provenance but for the timing."""
    got, want = open_reduced(store), open_reduced(expected)
    assert sorted(got.variables) == sorted(want.variables)
    for name in want.variables:
        np.testing.assert_array_equal(got[name].values, want[name].values, err_msg=name)
        assert got[name].dtype == want[name].dtype, name
    provenance = [json.loads(ds.attrs["uedflow"]) for ds in (got, want)]
    for p in provenance:
        p.pop("timing")
    assert provenance[0] == provenance[1]


def test_reduce_on_slurm_equals_threads(slurm, reference, tmp_path):
    run, expected = reference
    start = time.monotonic()
    assert main(["reduce", run, "-o", tmp_path / "slurm.zarr", *_cli_options(tmp_path)]) == 0
    print(f"reduce on 2 SLURM jobs: {time.monotonic() - start:.1f} s")
    assert_same_store(tmp_path / "slurm.zarr", expected)
    # the work ran in the SLURM jobs' workers, whose logs are here
    logs = sorted(tmp_path.glob("dask-worker-*.err"))
    assert len(logs) == 2 and all("127.0.0.1" in log.read_text() for log in logs)


def test_slurm_workers_run_as_fast_as_threads(slurm, tmp_path):
    with slurm_cluster(**_options(tmp_path)) as cluster:
        assert "unset MALLOC_TRIM_THRESHOLD_" in cluster.job_script()
        cluster.scale(1)
        with connect(cluster=cluster, wait_workers=60) as client:
            (address, _), = client.scheduler_info()["workers"].items()
            assert address.startswith("tcp://127.0.0.1:")
            env = client.run(lambda: {**worker_environ(), "job": os.environ.get("SLURM_JOB_ID")})
            faults = client.run(page_faults_per_mib)
    env, = env.values()
    assert env.pop("job") is not None  # a SLURM job's worker
    assert env == {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1",
                   "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    assert next(iter(faults.values())) < 16  # 256 with distributed's default environment


def test_a_worker_killed_mid_run_gives_the_same_store(slurm, reference, tmp_path, monkeypatch):
    """One of the two jobs is killed (SIGKILL to the worker and its nanny) while its worker
    computes; the command finishes on the other job, and the store is the same."""
    run, expected = reference
    clusters, killed, finished = [], {}, threading.Event()

    def recorded(**options):
        clusters.append(slurm_cluster(**options))
        return clusters[-1]

    def kill_a_busy_worker():
        while not clusters and not finished.is_set():
            time.sleep(0.01)
        if finished.is_set():
            return
        cluster = clusters[0]
        with distributed.Client(cluster.scheduler_address, timeout=30,
                                set_as_default=False) as client:
            while not finished.is_set():
                busy = {a: keys for a, keys in client.processing().items() if keys}
                if busy:
                    address, keys = next(iter(busy.items()))
                    name = client.scheduler_info()["workers"][address]["name"]
                    job = cluster.workers[name].job_id
                    subprocess.run(["scancel", "--signal=KILL", "--full", job], check=True)
                    killed.update(address=address, keys=keys, job=job)
                    break
                time.sleep(0.01)
            while not finished.is_set():  # the scheduler sees the worker go
                if killed["address"] not in client.scheduler_info()["workers"]:
                    killed["gone"] = True
                    return
                time.sleep(0.05)

    monkeypatch.setattr(uedflow.cluster, "slurm_cluster", recorded)
    monitor = threading.Thread(target=kill_a_busy_worker, daemon=True)
    monitor.start()
    try:
        status = main(["reduce", run, "-o", tmp_path / "slurm.zarr", *_cli_options(tmp_path)])
    finally:
        finished.set()
        monitor.join(30)
    assert killed.get("keys"), "no worker was busy while the command ran"
    assert killed.get("gone"), f"worker {killed['address']} was killed, but not before the end"
    assert status == 0
    assert_same_store(tmp_path / "slurm.zarr", expected)


def test_job_script_that_sbatch_refuses_fails_fast_naming_why(slurm, reference, tmp_path,
                                                              capsys):
    run, _ = reference
    start = time.monotonic()
    status = main(["reduce", run, "-o", tmp_path / "out.zarr", *_cli_options(tmp_path),
                   "--cluster-option", "queue=no-such-partition"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert "--cluster slurm" in err and "invalid partition" in err.lower()
    assert not (tmp_path / "out.zarr").exists()
    assert time.monotonic() - start < 30


def test_without_dask_jobqueue_the_error_says_what_to_install(reference, tmp_path, capsys,
                                                              monkeypatch):
    run, _ = reference
    monkeypatch.setitem(sys.modules, "dask_jobqueue", None)  # import fails as if not installed
    status = main(["reduce", run, "-o", tmp_path / "out.zarr", "--cluster", "slurm"])
    err = capsys.readouterr().err
    assert status == 2 and "dask-jobqueue" in err and "uedflow[slurm]" in err
    assert not (tmp_path / "out.zarr").exists()
