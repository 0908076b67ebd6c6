"""Run stack computations on worker processes or a cluster: :func:`connect`.

Without any set-up, uedflow computes on dask's threaded scheduler: no server, no
configuration. :func:`connect` returns a :class:`distributed.Client` for when threads are not
enough: a cluster of local worker processes, an existing scheduler, or a cluster object from
a job-queue system (e.g. ``dask_jobqueue.SLURMCluster``). While the client is open, every
``.compute()`` (and :func:`uedflow.to_zarr`) runs on it; closing it, or leaving its ``with``
block, returns to threads. :func:`slurm_cluster` starts a SLURM cluster (dask-jobqueue) whose
workers run as fast as threads.

Worker processes that uedflow starts get the environment :data:`WORKER_ENVIRON`: glibc's own
memory trimming (distributed's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536``, which makes every
large temporary array a fresh memory map and a worker process about 1.5 times slower than a
thread doing the same work) and single-threaded BLAS/OpenMP.

Stacks opened with :func:`uedflow.open_stack` hold file names and offsets in their task
graphs, never pixel data or open files, so workers read the frames themselves: they need
the files at the same paths (a shared file system), not the process that opened them.
"""

import asyncio
import contextlib
import numbers
import os
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor

import dask
from dask.system import CPU_COUNT
from dask.utils import parse_bytes

__all__ = ["WORKER_ENVIRON", "connect", "slurm_cluster", "worker_environment",
           "worker_prologue"]

#: Environment variables that a nanny sets (a value) or leaves unset (None) before it starts
#: its worker process, as distributed's ``distributed.nanny.pre-spawn-environ``: the
#: allocator's defaults (no ``MALLOC_TRIM_THRESHOLD_``, whose fixed value also fixes glibc's
#: memory-map threshold at 128 KiB) and one BLAS/OpenMP thread per worker thread.
WORKER_ENVIRON = {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1,
                  "OPENBLAS_NUM_THREADS": 1}


def connect(address=None, *, cluster=None, n_workers=None, threads_per_worker=None,
            memory_limit=None, timeout=10, wait_workers=None):
    """Connect to a dask cluster, starting one of local worker processes if none is given.

    Parameters
    ----------
    address : str, optional
        Address of a running dask scheduler, e.g. ``"tcp://10.0.0.5:8786"``. By default a
        cluster of worker processes is started on this machine, reachable only on
        127.0.0.1.
    cluster : distributed cluster object, optional
        A cluster started elsewhere (``LocalCluster``, ``dask_jobqueue.SLURMCluster`` ...).
        Not with ``address``.
    n_workers : int, optional
        Local cluster only: number of worker processes (default: the number of cores
        available to this process).
    threads_per_worker : int, optional
        Local cluster only: threads per worker process (default 1). One thread per process
        suits uedflow's kernels: their Python-level work does not contend for one GIL, and
        kernels with threads of their own (FFTs) do not oversubscribe the cores.
    memory_limit : int or str, optional
        Local cluster only: memory per worker, in bytes or as a string such as
        ``"4 GiB"``. Workers spill to disk, then pause, as they approach it. The default
        shares the machine's memory evenly between the workers.
    timeout : float, optional
        Seconds to wait for the scheduler at ``address`` or of ``cluster`` to answer.
    wait_workers : float, optional
        Scheduler at ``address`` or ``cluster`` only: seconds to wait for at least one
        worker to join it. A scheduler without workers accepts work but never computes it;
        by default there is no wait (and no check).

    Returns
    -------
    client : distributed.Client
        Active client, also usable as a context manager: ``with connect() as client:``
        closes the client, and shuts down the local cluster if :func:`connect` started
        one. A scheduler or cluster object that was passed in is never shut down.

    Raises
    ------
    ValueError
        If ``n_workers``, ``threads_per_worker`` or ``memory_limit`` is not a positive
        size, if they are given together with ``address`` or ``cluster``, or if both
        ``address`` and ``cluster`` are given.
    ConnectionError
        If no dask scheduler answers at ``address`` within ``timeout`` seconds.
    TimeoutError
        If no worker joins within ``wait_workers`` seconds (the client is closed).

    Notes
    -----
    The local cluster's scheduler, workers and diagnostics pages listen on 127.0.0.1 only,
    on free ports (``client.dashboard_link`` gives the diagnostics address). Its worker
    processes start in :func:`worker_environment`: as fast as threads, with single-threaded
    BLAS/OpenMP libraries.

    Examples
    --------
    >>> with uedflow.cluster.connect(n_workers=4, memory_limit="8 GiB"):  # doctest: +SKIP
    ...     mean = uedflow.open_stack("run/").mean("scan").compute()
    """
    from distributed import Client

    if address is not None and cluster is not None:
        raise ValueError("Pass either address or cluster, not both")
    local = {"n_workers": n_workers, "threads_per_worker": threads_per_worker,
             "memory_limit": memory_limit}
    given = sorted(name for name, value in local.items() if value is not None)
    timeout = _positive_number(timeout, "timeout")
    if wait_workers is not None:
        wait_workers = _positive_number(wait_workers, "wait_workers")
        if address is None and cluster is None:
            raise ValueError("wait_workers applies to a scheduler at an address or a cluster "
                             "passed in, not to a local cluster (started with its workers)")

    if cluster is not None:
        if given:
            raise ValueError(f"{', '.join(given)} only apply to a local cluster, not to "
                             "a cluster that is passed in")
        return _with_workers(Client(cluster, timeout=timeout), wait_workers,
                             f"the cluster {type(cluster).__name__}")
    if address is not None:
        if given:
            raise ValueError(f"{', '.join(given)} only apply to a local cluster, not to "
                             f"the scheduler at {address!r}")
        if not isinstance(address, str):
            raise ValueError(f"address must be a string like 'tcp://host:8786', got "
                             f"{address!r}")
        _check_scheduler(address, timeout)
        return _with_workers(Client(address, timeout=timeout), wait_workers,
                             f"the dask scheduler at {address!r}")

    n_workers = CPU_COUNT if n_workers is None else _positive_int(n_workers, "n_workers")
    threads_per_worker = (1 if threads_per_worker is None
                          else _positive_int(threads_per_worker, "threads_per_worker"))
    memory_limit = "auto" if memory_limit is None else _memory_bytes(memory_limit)
    with worker_environment():
        return Client(n_workers=n_workers, threads_per_worker=threads_per_worker,
                      memory_limit=memory_limit, processes=True, host="127.0.0.1",
                      dashboard_address="127.0.0.1:0")


@contextlib.contextmanager
def worker_environment():
    """Context in which distributed's nannies start their workers with :data:`WORKER_ENVIRON`.

    A nanny takes its worker's environment when it is created: create local clusters (or
    nannies) inside this context. Within it, ``MALLOC_TRIM_THRESHOLD_`` is also taken out of
    this process's environment (restored on leaving), since worker processes inherit it: a
    nanny created earlier with distributed's defaults leaves it set here.

    Examples
    --------
    >>> with worker_environment():  # doctest: +SKIP
    ...     cluster = distributed.LocalCluster(n_workers=4, threads_per_worker=1)
    """
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_ENVIRON}
    removed = {name: os.environ.pop(name) for name, value in WORKER_ENVIRON.items()
               if value is None and name in os.environ}
    try:
        with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
            yield
    finally:
        os.environ.update(removed)


def worker_prologue():
    """Shell lines that give workers started by a job script :data:`WORKER_ENVIRON`.

    For batch scripts that run ``dask worker`` (with or without a nanny), e.g. as
    ``job_script_prologue`` of a dask-jobqueue cluster: they unset the variables that
    :data:`WORKER_ENVIRON` removes, export the others, and tell the nanny (through dask's
    configuration) to do the same.

    Returns
    -------
    lines : list of str
    """
    unset = [name for name, value in WORKER_ENVIRON.items() if value is None]
    exported = [f"{name}={value}" for name, value in WORKER_ENVIRON.items() if value is not None]
    return [f"unset {' '.join(unset)}", f"export {' '.join(exported)}",
            f'export DASK_DISTRIBUTED__NANNY__PRE_SPAWN_ENVIRON="{WORKER_ENVIRON!r}"']


def slurm_cluster(**options):
    """A ``dask_jobqueue.SLURMCluster`` whose workers start with :data:`WORKER_ENVIRON`.

    Parameters
    ----------
    **options
        Arguments of ``SLURMCluster`` (``queue``, ``account``, ``cores``, ``processes``,
        ``memory``, ``walltime``, ...); its defaults come from dask's ``jobqueue.slurm``
        configuration, as usual. Lines of ``job_script_prologue`` (given or configured) run
        after :func:`worker_prologue`'s, so they can override them.

    Returns
    -------
    cluster : dask_jobqueue.SLURMCluster
        Without jobs: ``cluster.scale(jobs=n)`` submits them. Close it when done
        (``with slurm_cluster(...) as cluster:``).

    Raises
    ------
    ImportError
        If dask-jobqueue is not installed (``pip install "uedflow[slurm]"``).
    ValueError
        If ``sbatch`` is missing or refuses the workers' job script (checked with
        ``sbatch --test-only``, which submits nothing): a bad partition, account, memory or
        time limit fails here instead of leaving the cluster without workers.
    """
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ImportError("a SLURM cluster needs dask-jobqueue: "
                          "python -m pip install 'uedflow[slurm]'") from None
    prologue = options.pop("job_script_prologue", None)
    deprecated = options.pop("env_extra", None)  # its old name, still taken by dask-jobqueue
    if prologue is None:
        prologue = deprecated
    if prologue is None:
        prologue = dask.config.get("jobqueue.slurm.job-script-prologue", None)
    cluster = SLURMCluster(job_script_prologue=[*worker_prologue(), *(prologue or [])],
                           **options)
    try:
        _check_job_script(cluster.job_script())
    except BaseException:
        cluster.close()
        raise
    return cluster


def _check_job_script(script):
    """Raise ValueError unless ``sbatch --test-only`` accepts the job ``script``."""
    with tempfile.NamedTemporaryFile("w", suffix=".sh") as file:
        file.write(script)
        file.flush()
        try:
            done = subprocess.run(["sbatch", "--test-only", file.name], capture_output=True,
                                  text=True, timeout=60, check=False)
        except FileNotFoundError:
            raise ValueError("sbatch not found: start a SLURM cluster on a machine with "
                             "SLURM's commands (a login node)") from None
    if done.returncode != 0:
        reason = "; ".join(line.strip() for line in done.stderr.splitlines() if line.strip())
        raise ValueError(f"sbatch refuses the workers' job script ({reason or 'no reason'}; "
                         "see the cluster's job_script())")


def _with_workers(client, wait, what):
    """``client``, once a worker has joined its scheduler (within ``wait`` seconds, if given);
    closed, and TimeoutError raised, if none does."""
    if wait is None:
        return client
    try:
        client.wait_for_workers(1, timeout=wait)
    except TimeoutError:
        client.close()
        raise TimeoutError(f"{what} has no worker after {wait:g} s of waiting: start workers "
                           "for it (dask worker ADDRESS), or wait longer (wait_workers, "
                           "--wait-workers SECONDS)") from None
    except BaseException:
        client.close()
        raise
    return client


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _positive_number(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value > 0:
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def _memory_bytes(value):
    """Bytes of a memory size given as an int or a string like ``"4 GiB"``."""
    if isinstance(value, str):
        try:
            nbytes = parse_bytes(value)
        except ValueError as exc:
            raise ValueError(f"memory_limit must be a size like '4 GiB', got {value!r}") from exc
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
        nbytes = int(value)
    else:
        raise ValueError(f"memory_limit must be bytes (int) or a size like '4 GiB', "
                         f"got {value!r}")
    if nbytes < 1:
        raise ValueError(f"memory_limit must be positive, got {value!r}")
    return nbytes


def _check_scheduler(address, timeout):
    """Raise ConnectionError unless a dask server completes a handshake at ``address``.

    ``distributed.Client`` bounds the TCP connection by its timeout but not the handshake
    that follows, so a port held by another kind of server (e.g. a dashboard's) would hang
    it. The check runs in a thread of its own so that it works under a running event loop
    (Jupyter) too.
    """
    from distributed.comm import connect as comm_connect

    async def handshake():
        comm = await comm_connect(address, timeout=timeout)
        await comm.close()

    def check():
        asyncio.run(asyncio.wait_for(handshake(), timeout))

    with ThreadPoolExecutor(1) as pool:
        try:
            pool.submit(check).result()
        except ValueError:  # malformed address: distributed's message says what is wrong
            raise
        except TimeoutError as exc:
            raise ConnectionError(
                f"No dask scheduler answered at {address!r} within {timeout:g} s") from exc
        except Exception as exc:
            raise ConnectionError(
                f"No dask scheduler answered at {address!r}: {exc}") from exc
