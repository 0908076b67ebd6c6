"""The documentation's code uses public names of ``uedflow``: every name it imports or calls
from uedflow or one of its modules is exported by ``uedflow`` itself, and the pages of the
command line and of reading data import from ``uedflow`` alone."""

import re
from pathlib import Path

import pytest

import uedflow

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([*ROOT.glob("docs/*.md"), *ROOT.glob("docs/*.rst"), ROOT / "README.md"])
#: Pages that import from ``uedflow`` only (no ``uedflow.io``, ``uedflow.pipeline``, ...).
TOP_LEVEL_ONLY = ("README.md", "io.md", "getting-started.md", "pipeline.md", "analysis.md",
                  "scaling.md", "stacks.md", "tutorial.rst", "migrating.md")

IMPORT = re.compile(r"from (uedflow(?:\.\w+)*) import (?:\(([\w\s,]+)\)|([\w ,]+))")
DOTTED = re.compile(r"\buedflow((?:\.[a-z_]\w*)+)\.(\w+)\(")  # uedflow.io.runs.open_run(
CODE = re.compile(r"```(?:python|pycon|py)\n(.*?)```|^ *(?:>>>|\.\.\.) .*$", re.S | re.M)


def code_of(page):
    """The Python code of a page: its python/pycon blocks and doctest lines."""
    text = page.read_text()
    if page.suffix == ".rst":
        return text  # code blocks by indentation: the whole page
    return "\n".join(m[1] or m[0] for m in CODE.finditer(text))


def names_used(code):
    """``(module, name)`` of every name imported from uedflow or called through a module."""
    found = [(module, name.split()[0]) for module, inner, line in IMPORT.findall(code)
             for name in (inner or line).split(",") if name.strip()]
    return found + [("uedflow" + module, name) for module, name in DOTTED.findall(code)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_name_the_docs_use_is_exported_by_uedflow(page):
    missing = [f"{module}.{name}" for module, name in names_used(code_of(page))
               if name not in uedflow.__all__]
    assert not missing, f"{page.name} uses names uedflow does not export: {missing}"


@pytest.mark.parametrize("name", TOP_LEVEL_ONLY)
def test_pages_of_the_command_line_and_reading_import_from_uedflow_only(name):
    page = next(p for p in PAGES if p.name == name)
    deep = [f"{module}.{n}" for module, n in names_used(code_of(page)) if module != "uedflow"]
    assert not deep, f"{name} imports from modules of uedflow: {deep}"


def test_the_pattern_finds_imports_and_dotted_calls():
    code = ("from uedflow.io.runs import open_run\nfrom uedflow import (diffread,\n  autocenter)\n"
            "run = uedflow.io.open_run('raw/')\nx = uedflow.reduce(run)\n")
    assert names_used(code) == [("uedflow.io.runs", "open_run"), ("uedflow", "diffread"),
                                ("uedflow", "autocenter"), ("uedflow.io", "open_run")]
