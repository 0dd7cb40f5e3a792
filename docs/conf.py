"""Sphinx configuration of the hepnn_coffea documentation.

Build (warnings are errors, as in CI: ``tests/test_docs.py``)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

The API pages (``api/*.rst``) document each subpackage's ``__all__`` from its numpydoc
docstrings (napoleon); ``tutorial.ipynb`` is rendered as stored (tests/test_docs.py executes it).
"""

from __future__ import annotations

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))  # a source tree without `pip install -e .`

from hepnn_coffea import __version__  # noqa: E402

project = "hepnn_coffea"
author = "hepnn_coffea developers"
copyright = "hepnn_coffea developers"
release = version = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_nb",  # Markdown pages (MyST) and the tutorial notebook
]

#: API pages (``api/<name>.rst``, e.g. ``"calo"``) left out of the build while a module's docstrings
#: still break it with warnings as errors; say which warning next to each. Empty it once they are fixed.
EXCLUDED_API_PAGES: list[str] = []

exclude_patterns = [
    "_build",
    "jupyter_execute",
    "variations",
    "**.ipynb_checkpoints",
    *(f"api/{name}.rst" for name in EXCLUDED_API_PAGES),
]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}

# numpydoc docstrings through napoleon (numpy style only)
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_default_options = {"show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_class_signature = "separated"
autodoc_preserve_defaults = True

# the notebook is rendered with the outputs it is stored with; tests/test_docs.py executes it
nb_execution_mode = "off"
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = f"hepnn_coffea {release}"


def _drop_excluded_pages(app: object, docname: str, source: list[str]) -> None:
    """Remove the excluded API pages from the API index's toctree (a missing entry is a warning)."""
    if docname == "api/index" and EXCLUDED_API_PAGES:
        lines = source[0].splitlines()
        source[0] = "\n".join(line for line in lines if line.strip() not in EXCLUDED_API_PAGES)


def setup(app: object) -> None:
    """Sphinx hook: connect :func:`_drop_excluded_pages`."""
    app.connect("source-read", _drop_excluded_pages)
