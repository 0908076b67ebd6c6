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
