"""Shared timing harness of the kernel benchmarks: uedflow against scikit-ued, as ratios.

Each ``benchmarks/kernels_<area>.py`` defines ``cases(size)``, returning a list of
``Case(name, uedflow=callable, skued=callable)``; ``benchmarks/kernels.py`` runs them all.
A case's callables take no argument and do the whole per-frame call (inputs prepared outside).
"""

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Case:
    name: str
    uedflow: Callable
    skued: Callable
    note: str = ""


def best_seconds(fn, repeat=3, min_time=0.2):
    """Best wall time of one call of ``fn``, after a warm-up call."""
    fn()
    best = float("inf")
    total = 0.0
    runs = 0
    while runs < repeat or (total < min_time and runs < 50):
        gc.collect()
        start = time.perf_counter()
        fn()
        elapsed = time.perf_counter() - start
        best = min(best, elapsed)
        total += elapsed
        runs += 1
    return best


def run_cases(cases, size, repeat=3, label=""):
    """Time every case and print one row each: times and the skued/uedflow speed-up."""
    rows = []
    for case in cases:
        ours = best_seconds(case.uedflow, repeat)
        theirs = best_seconds(case.skued, repeat)
        rows.append((case.name, size, ours, theirs, case.note))
        print(f"{case.name:34s} {size:5d}  uedflow {ours * 1e3:9.1f} ms  skued "
              f"{theirs * 1e3:9.1f} ms  speed-up {theirs / ours:7.1f}x  {label}{case.note}",
              flush=True)
    return rows


def main_for(cases_fn, sizes=(1024, 2048), argv=None):
    """Command-line entry of one area's benchmark."""
    import argparse
    import warnings

    warnings.simplefilter("ignore", RuntimeWarning)  # scikit-ued's casts and sqrt of negatives
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=list(sizes))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    for size in args.sizes:
        run_cases(cases_fn(size), size, args.repeat)
