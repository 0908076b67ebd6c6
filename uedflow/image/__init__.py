"""Per-frame image kernels (pure NumPy/SciPy/scikit-image, no dask).

Kernels work on one frame ``(y, x)`` and, where natural, on a batch ``(..., y, x)``; the
lifting onto lazy stacks lives in :mod:`uedflow.stack`.
"""
