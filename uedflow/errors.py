"""Exceptions raised by uedflow.

Every error that concerns a file names it; every error that concerns a frame of a
stack names the frame (and its file, where there is one).
"""


class UedflowError(Exception):
    """Base class of uedflow's own exceptions."""


class CorruptFileError(UedflowError, ValueError):
    """A file exists but cannot be decoded: truncated, corrupt or inconsistent.

    Parameters
    ----------
    path : path-like
        The offending file.
    reason : str
        What is wrong with it.
    """

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class FrameMismatchError(UedflowError, ValueError):
    """A frame of a stack differs in shape or dtype from the first frame."""


class IncompleteStoreError(UedflowError, ValueError):
    """A zarr store written by uedflow was not completed (interrupted write)."""


class StoreLockedError(UedflowError, RuntimeError):
    """Another process is writing the store (its lock file names it).

    Parameters
    ----------
    store : path-like
        The store.
    owner : dict
        The lock's content: ``pid``, ``host``, ``started`` (ISO time) and ``command``.
    lock : path-like
        The lock file.
    """

    def __init__(self, store, owner, lock):
        self.store, self.owner, self.lock = str(store), dict(owner), str(lock)
        who = (f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')!r}, since "
               f"{owner.get('started', '?')}, command: {owner.get('command', '?')}")
        super().__init__(
            f"The store '{self.store}' is being written by another process ({who}); wait for "
            f"it to finish. If that process is gone (another host, or a crash), delete the lock "
            f"file '{self.lock}' and run again.")


class DamagedStoreError(UedflowError, ValueError):
    """Chunk files of a store written by uedflow are missing, truncated or corrupt.

    Parameters
    ----------
    store : path-like
        The store.
    problems : sequence
        The damaged chunks, each with attributes ``variable``, ``chunk`` (index tuple) and
        ``problem`` (what is wrong), as :func:`uedflow.io.verify_store` lists them.
    hint : str, optional
        How to repair the store.
    """

    def __init__(self, store, problems, hint=""):
        self.store, self.problems = str(store), list(problems)
        first = self.problems[0]
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        super().__init__(
            f"The store '{self.store}' is damaged: variable '{first.variable}', chunk "
            f"{tuple(first.chunk)}: {first.problem}{more}. {hint}".rstrip())


class UnsafeDeleteError(UedflowError, FileExistsError):
    """uedflow refuses to delete something it cannot prove it wrote (nothing is deleted)."""


class InputOverlapError(UedflowError, ValueError):
    """An output path is, contains or is inside one of the inputs it is written from."""
