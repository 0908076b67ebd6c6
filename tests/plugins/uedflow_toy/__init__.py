"""The "toy" detector format, and its uedflow reader plug-in: this module is the reader
(entry point ``toy = "uedflow_toy"`` in the group ``uedflow.readers``): ``suffixes``,
``read`` (one image) and ``open_frames`` (every frame of a file, lazily).

A ``.toy`` file is the magic ``b"TOY1"``, three little-endian uint32 (frames, rows,
columns), then the frames as little-endian uint16, one after the other.
"""

import os

import numpy as np

#: The suffixes this plug-in reads.
suffixes = (".toy",)

MAGIC = b"TOY1"
HEADER = len(MAGIC) + 3 * 4
DTYPE = np.dtype("<u2")


def write(path, frames):
    """Write ``frames`` (``(y, x)`` or ``(n, y, x)``, uint16) as a toy file."""
    frames = np.asarray(frames, DTYPE)
    frames = frames[None] if frames.ndim == 2 else frames
    with open(path, "wb") as f:
        f.write(MAGIC + np.array(frames.shape, "<u4").tobytes() + frames.tobytes())


def header(path):
    """``(frames, rows, columns)`` of a toy file."""
    with open(path, "rb") as f:
        head = f.read(HEADER)
    if len(head) < HEADER or head[:4] != MAGIC:
        raise ValueError("not a toy file (no TOY1 header)")
    shape = tuple(int(n) for n in np.frombuffer(head[4:], "<u4"))
    if os.path.getsize(path) < HEADER + int(np.prod(shape)) * DTYPE.itemsize:
        raise ValueError(f"truncated: the header says {shape} frames")
    return shape


def read(path):
    """The first frame of a toy file."""
    return np.array(ToyFrames(path)[0])


class ToyFrames:
    """Every frame of a toy file, lazily: pickles as its path, maps the file on each read."""

    def __init__(self, path):
        self.path = os.fspath(path)
        self.shape, self.dtype = header(path), DTYPE

    def __getitem__(self, key):
        data = np.memmap(self.path, DTYPE, "r", offset=HEADER, shape=self.shape)
        return np.array(data[key])


def open_frames(path):
    """Every frame of a toy file, lazily."""
    return ToyFrames(path)
