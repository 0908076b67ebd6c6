"""connect() and stacks computed on threads, local worker processes and a real scheduler.

The "scheduler" cluster is started the way it is on a cluster: ``dask scheduler`` and two
``dask worker`` processes, on 127.0.0.1 only, found through a scheduler file.
"""

import http.server
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time

import cloudpickle
import dask
import dask.array as da
import distributed
import numpy as np
import psutil
import pytest

import uedflow
import uedflow.cli
import uedflow.cluster
from uedflow.cluster import connect
from uedflow.datasets import make_run

SHAPE = (64, 64)

# functions of this module run on workers, which cannot import it: send them by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


# ---------------------------------------------------------------- data and reference results

@pytest.fixture(scope="module")
def sources(tmp_path_factory, skued_data):
    """A synthetic run, a multi-frame MIB file and a zarr store of the run."""
    tmp = tmp_path_factory.mktemp("sources")
    truth = make_run(tmp / "run", shape=SHAPE, delays=[-1, 0, 0.5, 1, 2, 4], n_scans=2)
    with dask.config.set(scheduler="threads"):
        uedflow.to_zarr(uedflow.open_stack(tmp / "run"), tmp / "run.zarr")
    mask = uedflow.diffread(tmp / "run" / truth["mask_file"]).astype(bool)
    plan = uedflow.AzimuthalPlan(SHAPE, truth["truth"]["center"], mask, trim=False)
    return {"run": tmp / "run", "mib": skued_data / "test_multi.mib", "zarr": tmp / "run.zarr",
            "plan": plan, "tmp": tmp}


def open_all(sources):
    """The three sources opened lazily, a few frames per chunk (several tasks each)."""
    return {name: uedflow.open_stack(sources[name], chunks=2) for name in ("run", "mib", "zarr")}


def azimuthal_profiles(stack, plan):
    """Azimuthal averages of every frame: the plan applied to each chunk of frames."""
    nbins = plan(np.zeros(plan.shape))[1].size

    def batch(block):
        return plan(block.reshape(-1, *plan.shape))[1].reshape(*block.shape[:-2], nbins)

    data = stack.data
    return da.map_blocks(batch, data, drop_axis=data.ndim - 1,
                         chunks=(*data.chunks[:-2], (nbins,)), dtype=float)


def reductions(sources):
    """Everything compared between schedulers, computed on the current one."""
    stacks = open_all(sources)
    run, mib, store = stacks["run"], stacks["mib"], stacks["zarr"]
    lazy = {
        "run mean": run.mean("scan").data,
        "run std": run.std("delay", ddof=1).data,
        "run frame sums": run.sum(["y", "x"]).data,
        "run total": run.data.astype(np.int64).sum(),
        "mib mean": mib.mean("frame").data,
        "mib std": mib.std("frame").data,
        "mib sum": mib.sum("frame").data,
        "zarr mean": store.mean("scan").data,
        "zarr std": store.std(["delay", "scan"]).data,
        "azimuthal": azimuthal_profiles(run, sources["plan"]),
        "azimuthal mib": azimuthal_profiles(
            mib, uedflow.AzimuthalPlan(mib.shape[-2:], (128, 128), trim=False)),
    }
    return dict(zip(lazy, dask.compute(*lazy.values()), strict=True))


@pytest.fixture(scope="module")
def expected(sources):
    with dask.config.set(scheduler="threads"):
        return reductions(sources)


# ---------------------------------------------------------------- clusters

def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(args, folder, name):
    """Start a dask command in ``folder``, in a process group of its own (stopped as a whole)."""
    with open(folder / f"{name}.log", "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "dask", *args], cwd=folder, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _stop(processes):
    for proc in processes:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in processes:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def scheduler_address(tmp_path_factory):
    """Address of a ``dask scheduler`` with two ``dask worker`` processes (1 thread each)."""
    folder = tmp_path_factory.mktemp("dask-cluster")
    scheduler_file = folder / "scheduler.json"
    common = ["--host", "127.0.0.1", "--no-dashboard", "--dashboard-address", "127.0.0.1:0"]
    processes = []
    try:
        # idle/death timeouts: the processes end themselves should this fixture be killed
        processes.append(_start(["scheduler", "--port", "0", "--scheduler-file",
                                 str(scheduler_file), "--idle-timeout", "300", *common],
                                folder, "scheduler"))
        deadline = time.monotonic() + 30
        while not scheduler_file.exists():
            log = (folder / "scheduler.log").read_text()
            assert processes[0].poll() is None, f"dask scheduler exited:\n{log}"
            assert time.monotonic() < deadline, f"no scheduler file after 30 s:\n{log}"
            time.sleep(0.1)
        for i in range(2):
            processes.append(_start(["worker", "--scheduler-file", str(scheduler_file),
                                     "--nthreads", "1", "--death-timeout", "60",
                                     "--local-directory", str(folder), *common],
                                    folder, f"worker{i}"))
        address = json.loads(scheduler_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        with distributed.Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        _stop(processes)


@pytest.fixture(params=["processes", "scheduler"])
def client(request):
    """A client of 2 local worker processes, or of the dask scheduler with 2 dask workers."""
    if request.param == "processes":
        with connect(n_workers=2) as client:
            yield client
    else:
        with connect(request.getfixturevalue("scheduler_address")) as client:
            yield client


# ---------------------------------------------------------------- same results everywhere

def test_results_identical_to_threads(client, sources, expected):
    assert distributed.default_client() is client  # plain .compute() goes to the cluster
    assert len(client.scheduler_info()["workers"]) == 2
    got = reductions(sources)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    assert got["azimuthal"].shape == (6, 2, sources["plan"].nbins - 1)


def test_to_zarr_on_cluster_writes_the_same_store(client, sources, tmp_path):
    stack = open_all(sources)["run"]
    report = uedflow.to_zarr(stack, tmp_path / "cluster.zarr")
    reference = uedflow.open_stack(sources["zarr"])
    written = uedflow.open_stack(tmp_path / "cluster.zarr")  # refused were it incomplete
    assert written.dims == reference.dims == ("delay", "scan", "y", "x")
    np.testing.assert_array_equal(written.delay, reference.delay)
    with dask.config.set(scheduler="threads"):
        np.testing.assert_array_equal(written.values, reference.values)
    assert report.stored_bytes > 0 and report.nbytes == stack.nbytes


def test_workers_read_the_files_themselves(client, sources):
    stack = open_all(sources)["run"]
    with distributed.get_task_stream(client) as tasks:
        total = stack.sum().compute()
    assert total == stack.values.astype(np.int64).sum()
    workers = {task["worker"] for task in tasks.data}
    assert workers == set(client.scheduler_info()["workers"])  # both took part
    pids = client.run(os.getpid)
    assert os.getpid() not in pids.values() and len(set(pids.values())) == 2


def test_relative_paths_resolve_on_workers_elsewhere(scheduler_address, sources, expected,
                                                     monkeypatch):
    """Sources opened by relative path compute on workers whose working directory differs."""
    monkeypatch.chdir(sources["tmp"])
    with connect(scheduler_address):
        for name in ("run", "run.zarr"):
            stack = uedflow.open_stack(name, chunks=2)
            assert stack.data.astype(np.int64).sum().compute() == expected["run total"], name


@pytest.mark.parametrize("name", ["run", "mib", "zarr"])
def test_graphs_hold_no_pixels_and_no_memory_maps(sources, name):
    stack = open_all(sources)[name]
    graph = dict(stack.data.__dask_graph__())
    arrays = []

    class Recorder(pickle.Pickler):
        def reducer_override(self, obj):
            if isinstance(obj, np.ndarray):
                arrays.append(obj)
            return NotImplemented

    with open(os.devnull, "wb") as sink:
        Recorder(sink).dump(graph)
    assert not any(isinstance(a, np.memmap) for a in arrays)
    assert sum(a.nbytes for a in arrays) < 1024  # chunk indices, never frames
    frame_nbytes = stack[(0,) * (stack.ndim - 2)].nbytes
    assert len(cloudpickle.dumps(graph)) < min(8 * 1024, frame_nbytes)


# ---------------------------------------------------------------- connect()

def _worker_pids(client):
    return list(client.run(os.getpid).values())


def test_local_cluster_defaults_and_context_manager(sources, monkeypatch):
    stack = uedflow.open_stack(sources["run"], chunks=2)
    assert dask.base.get_scheduler(collections=[stack.data]) is dask.threaded.get
    monkeypatch.setattr(uedflow.cluster, "CPU_COUNT", 1)  # default n_workers: the cores
    with connect(memory_limit="300 MiB") as client:
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 1
        (address, worker), = workers.items()
        assert worker["nthreads"] == 1 and worker["memory_limit"] == 300 * 2**20
        for url in (address, client.scheduler.address, client.dashboard_link):
            assert "127.0.0.1" in url
        pids = _worker_pids(client)
        np.testing.assert_array_equal(stack.mean("scan").values,
                                      stack.mean("scan").compute(scheduler="threads").values)
    assert client.status == "closed" and client.cluster.status.name == "closed"
    deadline = time.monotonic() + 10
    while any(psutil.pid_exists(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(psutil.pid_exists(pid) for pid in pids)
    with pytest.raises(ValueError, match="No clients found"):
        distributed.default_client()  # back to threads


def page_faults_per_mib(n=100):
    """Page faults per allocation and release of a 1 MiB array in this process: about 256
    when glibc maps and unmaps every such array (``MALLOC_TRIM_THRESHOLD_`` set, which also
    fixes its memory-map threshold at 128 KiB), about 0 with glibc's defaults."""
    import resource

    np.ones(2**17)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        np.ones(2**17)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / n


def worker_environ():
    """The variables of :data:`uedflow.cluster.WORKER_ENVIRON` in this process."""
    return {name: os.environ.get(name) for name in uedflow.cluster.WORKER_ENVIRON}


def test_local_workers_start_with_the_allocator_defaults(monkeypatch):
    """connect()'s workers are as fast as threads: no MALLOC_TRIM_THRESHOLD_, even when this
    process has it (a nanny created here with distributed's defaults leaves it set), so large
    temporaries do not page-fault; distributed's defaults as the control."""
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    with (distributed.LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1",
                                   dashboard_address=None) as cluster,
          distributed.Client(cluster, set_as_default=False) as client):
        (control,) = client.run(page_faults_per_mib).values()
    with connect(n_workers=1) as client:
        (environ,) = client.run(worker_environ).values()
        (faults,) = client.run(page_faults_per_mib).values()
    assert environ == {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": "1",
                       "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    assert faults < 16 < 128 < control
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"  # this process's, restored


def test_closing_never_shuts_down_what_was_passed_in(scheduler_address):
    with connect(scheduler_address) as client:
        pids = _worker_pids(client)
    assert client.status == "closed"
    with distributed.Client(scheduler_address, timeout=10) as other:
        # the same scheduler and workers, still running
        assert sorted(_worker_pids(other)) == sorted(pids)

    with distributed.LocalCluster(n_workers=1, processes=False, dashboard_address=None) as lc:
        with connect(cluster=lc) as client:
            assert client.submit(sum, [1, 2]).result() == 3
        assert client.status == "closed" and lc.status.name == "running"


def test_unreachable_address_fails_fast_naming_it():
    address = f"tcp://127.0.0.1:{_free_port()}"
    start = time.monotonic()
    with pytest.raises(ConnectionError, match=address):
        connect(address, timeout=1)
    assert time.monotonic() - start < 5


def test_server_that_is_not_a_scheduler_fails_fast_instead_of_hanging():
    class Quiet(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"tcp://127.0.0.1:{server.server_address[1]}"
    try:
        start = time.monotonic()
        with pytest.raises(ConnectionError, match=address):
            connect(address, timeout=1)
        assert time.monotonic() - start < 5
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def no_workers():
    """Address of a dask scheduler (in this process) that has no worker."""
    with distributed.LocalCluster(n_workers=0, processes=False, protocol="tcp",
                                  host="127.0.0.1", dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def test_scheduler_without_workers_fails_after_the_wait_instead_of_hanging(no_workers,
                                                                           sources, capsys):
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=rf"{no_workers}.*no worker after 0.5 s"):
        connect(no_workers, wait_workers=0.5)
    assert time.monotonic() - start < 5
    with pytest.raises(ValueError, match="wait_workers"):
        connect(wait_workers=1)  # a local cluster starts with its workers

    # the command line: one line, exit 2, before anything is read or written
    store = sources["tmp"] / "never.zarr"
    start = time.monotonic()
    status = uedflow.cli.main(["reduce", str(sources["run"]), "-o", str(store),
                               "--scheduler", no_workers, "--wait-workers", "0.5"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1 and no_workers in err
    assert "--wait-workers" in err and not store.exists()
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("kwargs, name", [
    ({"wait_workers": 0, "address": "tcp://127.0.0.1:1"}, "wait_workers"),
    ({"n_workers": 0}, "n_workers"),
    ({"n_workers": -2}, "n_workers"),
    ({"n_workers": 1.5}, "n_workers"),
    ({"n_workers": True}, "n_workers"),
    ({"n_workers": "2"}, "n_workers"),
    ({"threads_per_worker": 0}, "threads_per_worker"),
    ({"memory_limit": "lots"}, "memory_limit"),
    ({"memory_limit": 0}, "memory_limit"),
    ({"memory_limit": "-1 GiB"}, "memory_limit"),
    ({"memory_limit": 0.5}, "memory_limit"),
    ({"timeout": 0}, "timeout"),
    ({"address": "tcp://127.0.0.1:1", "n_workers": 2}, "n_workers"),
    ({"address": "tcp://127.0.0.1:1", "memory_limit": "1 GiB"}, "memory_limit"),
    ({"address": 8786}, "address"),
    ({"address": "tcp://127.0.0.1:1", "cluster": object()}, "address or cluster"),
    ({"cluster": object(), "threads_per_worker": 2}, "threads_per_worker"),
    ({"address": "no-port-here"}, "no-port-here"),
])
def test_bad_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name):
        connect(**kwargs)
