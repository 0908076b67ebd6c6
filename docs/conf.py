"""Sphinx configuration of the uedflow documentation.

Build with ``sphinx-build -W -b html docs docs/_build/html``. The figures of the tutorial are
computed at build time by matplotlib's plot directive.
"""

import matplotlib

import uedflow

matplotlib.use("Agg")

project = "uedflow"
author = "uedflow developers"
copyright = "uedflow developers"
release = uedflow.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "numpydoc",
    "matplotlib.sphinxext.plot_directive",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"

myst_heading_anchors = 3

autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_xref_param_type = False

plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 90)]
plot_rcparams = {"figure.dpi": 90, "image.cmap": "inferno", "axes.titlesize": "medium"}

html_theme = "alabaster"
html_title = f"uedflow {release}"
html_theme_options = {"description": "UED image analysis on lazy, chunked, parallel stacks"}
