"""A small cache of plans for the drop-in functions, so that calling one again with the same
geometry (the usual case: every frame of a run) reuses its plan instead of rebuilding it."""

import hashlib
import threading
from collections import OrderedDict

import numpy as np


class PlanCache:
    """The latest ``size`` plans of one plan class, keyed by a digest of their arguments.

    Arrays among the arguments are keyed by their dtype, shape and bytes, so that an array
    changed in place is a new key; the plan is built from a copy of them. Cached plans are
    shared by threads: only plans that keep no state between calls belong here.

    Parameters
    ----------
    factory : callable
        Plan class (or function) called with the arguments.
    size : int
        Number of plans kept.
    """

    def __init__(self, factory, size):
        self.factory = factory
        self.size = size
        self._plans = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self):
        return len(self._plans)

    def clear(self):
        """Forget every plan."""
        with self._lock:
            self._plans.clear()

    def __call__(self, *args, **kwargs):
        """The plan ``factory(*args, **kwargs)``, built only if not cached."""
        digest = hashlib.blake2b(digest_size=16)
        for value in (*args, *sorted(kwargs.items())):
            if isinstance(value, np.ndarray):
                digest.update(repr((value.dtype.str, value.shape)).encode())
                digest.update(np.ascontiguousarray(value))
            else:
                digest.update(repr(value).encode())
        key = digest.digest()
        with self._lock:
            plan = self._plans.get(key)
            if plan is not None:
                self._plans.move_to_end(key)
                return plan
        args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        plan = self.factory(*args, **kwargs)
        with self._lock:
            self._plans[key] = plan
            while len(self._plans) > self.size:
                self._plans.popitem(last=False)
        return plan
