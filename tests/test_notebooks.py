"""The notebooks run: each executes in a Jupyter kernel, as a user runs it, without error.

The notebooks check their results against the truth of the synthetic runs they make (their
``assert`` statements), so a notebook that runs is also a notebook whose numbers are right.
"""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
#: Seconds a cell may run before the notebook fails (each notebook takes about 10 s).
CELL_TIMEOUT = 60


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 3


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean(path):
    """Valid nbformat 4, the python3 kernel, and no outputs (they are made in CI)."""
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    assert notebook.metadata.kernelspec.name == "python3"
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, f"{path.name} has no code"
    dirty = [i for i, cell in enumerate(notebook.cells)
             if cell.cell_type == "code" and (cell.outputs or cell.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} hold outputs; clear them before committing"


def run_notebook(path, workdir):
    """Execute the notebook at ``path`` in a fresh kernel working in ``workdir``; fail the test
    with the failing cell's source and error."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(workdir)}})
    try:
        client.execute()
    except CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{exc}", pytrace=False)
    return notebook


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path, tmp_path, monkeypatch):
    """Every cell executes, in order, in a fresh kernel working in a temporary directory."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel's and its workers' temp files
    notebook = run_notebook(path, tmp_path)
    executed = [cell.execution_count for cell in notebook.cells if cell.cell_type == "code"]
    assert all(executed), f"{path.name}: cells were not executed"


def test_failing_notebook_names_cell_and_error(tmp_path):
    cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("x / 0  # broken")]
    path = tmp_path / "broken.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)
    with pytest.raises(pytest.fail.Exception) as failure:
        run_notebook(path, tmp_path)
    message = str(failure.value)
    assert "broken.ipynb failed" in message
    assert "x / 0  # broken" in message and "ZeroDivisionError" in message
