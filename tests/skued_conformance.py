"""Run scikit-ued's own tests against uedflow.

The test modules are copied at run time out of the installed scikit-ued package (none of their
code is committed here); every ``from skued... import name`` whose name uedflow provides is
switched to ``from uedflow import name`` (or ``--provider MODULE``); other names (simulation
helpers such as ``kinematicsim``) still come from scikit-ued. Then pytest runs the copies.

Usage::

    python tests/skued_conformance.py       # image (but calibration), io, baseline
    python tests/skued_conformance.py image/test_alignment.py --provider uedflow.image.alignment
"""

import argparse
import ast
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

#: scikit-ued test modules that uedflow must pass (calibration is out of scope), each with the
#: uedflow module that provides its names. ``test_algorithms`` also imports three private
#: helpers of scikit-ued's: ``skued_private`` (beside this file) adapts uedflow's plans to
#: them, so that those tests exercise uedflow's code too.
DEFAULT_TESTS = {
    "image/test_alignment.py": "uedflow",
    "image/test_brillouin.py": "uedflow",
    "image/test_center.py": "uedflow",
    "image/test_indexing.py": "uedflow",
    "image/test_indexing_persistence.py": "uedflow",
    "image/test_metrics.py": "uedflow",
    "image/test_powder.py": "uedflow",
    "image/test_symmetry.py": "uedflow",
    "io/test_io.py": "uedflow",
    "baseline/test_algorithms.py": "skued_private",
    "baseline/test_dtcwt.py": "uedflow",
}


def skued_root():
    spec = importlib.util.find_spec("skued")
    if spec is None:
        raise SystemExit("scikit-ued is not installed: pip install -e '.[test]'")
    return Path(spec.submodule_search_locations[0])


def rewrite(source, provider):
    """Switch the imports of names that ``provider`` has from skued to ``provider``."""
    module = importlib.import_module(provider)
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    edits = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "skued":
            ours = [a for a in node.names if hasattr(module, a.name)]
            theirs = [a for a in node.names if not hasattr(module, a.name)]
            if not ours:
                continue

            def clause(aliases):
                return ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in aliases)

            new = f"from {provider} import {clause(ours)}\n"
            if theirs:
                new += f"from {node.module} import {clause(theirs)}\n"
            edits.append((node.lineno - 1, node.end_lineno, new))
    for start, end, new in reversed(edits):
        lines[start:end] = [new]
    return "".join(lines)


def prepare(tests, workdir):
    """Copy the test modules (with their data folders) into ``workdir``, rewritten.

    ``tests`` maps each test module (``area/test_x.py``) to its provider module.
    """
    root = skued_root()
    copied = []
    for test, provider in tests.items():
        area, name = test.split("/")
        src_dir = root / area / "tests"
        dst_dir = workdir / area
        if not dst_dir.exists():
            dst_dir.mkdir(parents=True)
            if (src_dir / "data").is_dir():
                shutil.copytree(src_dir / "data", dst_dir / "data")
        target = dst_dir / name
        target.write_text(rewrite((src_dir / name).read_text(), provider))
        copied.append(target)
    return copied


def run(tests=DEFAULT_TESTS, pytest_args=()):
    """Copy, rewrite and run; returns pytest's exit code."""
    with tempfile.TemporaryDirectory(prefix="skued-conformance-") as tmp:
        workdir = Path(tmp)
        files = prepare(tests, workdir)
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "--rootdir", str(workdir), *map(str, files), *pytest_args]
        here = str(Path(__file__).resolve().parent)  # for provider modules beside this file
        path = os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")]))
        return subprocess.run(cmd, cwd=workdir, env={**os.environ, "PYTHONPATH": path}).returncode


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tests", nargs="*", default=list(DEFAULT_TESTS))
    parser.add_argument("--provider", help="take the names from this module for every test")
    args, rest = parser.parse_known_args(argv)
    tests = {t: args.provider or DEFAULT_TESTS.get(t, "uedflow") for t in args.tests}
    return run(tests, rest)


if __name__ == "__main__":
    sys.exit(main())
