"""House rules that CI checks: import isolation, layering, lint."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_import_uedflow_does_not_import_test_extras():
    code = ("import sys, uedflow, uedflow.cli, uedflow.datasets; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'skued', 'npstreams', 'pyFAI'}))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("package", ["image", "baseline"])
def test_kernels_do_not_import_dask(package):
    for path in (ROOT / "uedflow" / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] in {"dask", "distributed"} for n in names), path


def test_ruff_is_clean():
    ruff = shutil.which("ruff")
    assert ruff, "ruff is a test requirement"
    result = subprocess.run([ruff, "check", "uedflow", "tests", "benchmarks"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
