"""The documentation builds without warnings, and every ``>>>`` example in it runs.

Examples are collected from the docstrings of every uedflow module and from every page of
``docs/`` (reStructuredText as it is; in Markdown pages, the code-fence lines are blanked so
that an example's expected output ends with its block).
"""

import doctest
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest

import uedflow

matplotlib.use("Agg")

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted([*DOCS.glob("*.md"), *DOCS.glob("*.rst")])
MODULES = sorted(
    m.name for m in pkgutil.walk_packages(uedflow.__path__, "uedflow.")
    if m.name != "uedflow.__main__"
)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
#: Public functions whose docstrings must show an example.
WITH_EXAMPLES = [
    "align", "ialign", "autocenter", "auto_masking", "diffread", "supported_formats",
    "to_zarr", "combine_masks", "mask_image", "isnr", "triml", "trimr", "baseline_dwt",
    "baseline_dt", "dtcwt", "brillouin_zones", "AlignPlan", "RunningStats",
]


def run_examples(text, name):
    """Run the examples of ``text``; return (number of examples, failure report)."""
    test = doctest.DocTestParser().get_doctest(text, {"__name__": name}, name, name, 0)
    out = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    runner.run(test, out=out.append)
    return len(test.examples), "".join(out)


def page_text(path):
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        text = re.sub(r"(?m)^\s*```.*$", "", text)
    return text


def test_site_builds_without_warnings(tmp_path):
    out = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr and "ERROR" not in result.stderr, result.stderr
    for page in PAGES:
        assert (out / page.with_suffix(".html").name).is_file(), page.name
    # the tutorial's figures are computed at build time
    figures = list((out / "_images").glob("tutorial-*.png"))
    assert len(figures) >= 9, figures
    # the API reference documents every public name (aliases under their first name)
    api = (out / "api.html").read_text(encoding="utf-8")
    documented = {}
    for name in uedflow.__all__:
        obj = getattr(uedflow, name)
        if name != "__version__" and id(obj) not in documented:
            documented[id(obj)] = name
            assert f'id="uedflow.{name}"' in api, name
    for name in ("cluster.connect", "datasets.make_run", "datasets.make_frame"):
        assert f'id="uedflow.{name}"' in api, name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_page_examples(page):
    _, failures = run_examples(page_text(page), page.name)
    assert not failures, failures


def test_pages_have_examples():
    counts = {p.name: run_examples(page_text(p), p.name)[0]
              for p in PAGES if p.name in {"tutorial.rst", "stacks.md", "migrating.md"}}
    assert len(counts) == 3 and min(counts.values()) >= 10, counts


@pytest.mark.parametrize("name", MODULES)
def test_module_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    out = []
    for test in finder.find(module, name):            # globals: the module's, as testmod
        runner.run(test, out=out.append)
    assert runner.failures == 0, "".join(out)


@pytest.mark.parametrize("name", WITH_EXAMPLES)
def test_public_docstrings_have_examples(name):
    docstring = getattr(uedflow, name).__doc__
    assert re.search(r"(?m)^\s*>>> ", docstring), f"{name} has no example"
