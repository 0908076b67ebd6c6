"""Every drop-in kernel against scikit-ued, side by side, as speed-ups, from one run.

Runs each ``benchmarks/kernels_<area>.py`` in a child process twice: with glibc's defaults,
and with glibc keeping freed memory (``MALLOC_MMAP_MAX_=0``, a large
``MALLOC_TRIM_THRESHOLD_``), so that the comparison is of compute, not of page faults: on these
VMs every fresh 4 KiB page costs ~2 µs and some scikit-ued kernels allocate gigabytes of
temporaries per frame. Both rows are printed; quote the speed-ups, not the milliseconds.

Usage: ``python benchmarks/kernels.py [--sizes 1024 2048] [--areas alignment center ...]``
(``pip install -e '.[bench]'`` first).
"""

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
KEEP_MEMORY = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40)}


def areas():
    return sorted(p.stem.removeprefix("kernels_") for p in HERE.glob("kernels_*.py"))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1024", "2048"])
    parser.add_argument("--areas", nargs="+", default=areas(), choices=areas())
    parser.add_argument("--repeat", default="3")
    parser.add_argument("--malloc", choices=["default", "keep", "both"], default="both")
    args = parser.parse_args()
    modes = {"default": {}, "keep": KEEP_MEMORY}
    chosen = ["default", "keep"] if args.malloc == "both" else [args.malloc]
    for mode in chosen:
        print(f"\n=== glibc malloc: {mode}"
              f"{' (MALLOC_MMAP_MAX_=0, MALLOC_TRIM_THRESHOLD_=2**40)' if mode == 'keep' else ''}",
              flush=True)
        env = {**os.environ, **modes[mode]}
        for area in args.areas:
            subprocess.run([sys.executable, str(HERE / f"kernels_{area}.py"), "--sizes",
                            *args.sizes, "--repeat", args.repeat], env=env, check=True)


if __name__ == "__main__":
    main()
