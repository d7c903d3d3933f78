"""Sphinx configuration of the multiprocess documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (needs the
``docs`` extra: ``pip install -e ".[docs]"``).  The API reference is generated
from the package's docstrings (autodoc), so it follows the code.
"""

from __future__ import annotations

import os
import sys

# Document the checkout's sources even when the package is not installed.
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "src")))

import multiprocess

project = "multiprocess"
author = "the multiprocess developers"
copyright = "the multiprocess developers, BSD-3-Clause"
release = multiprocess.__version__
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # Google-style docstrings (STYLE.md)
]
# No intersphinx: the build must work offline (CI, a laptop on a train).

autodoc_default_options = {
    "members": True,
    "show-inheritance": True,
}
autodoc_member_order = "bysource"
# Signatures carry the annotations; the descriptions stay readable.
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False

templates_path: list[str] = []
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = f"multiprocess {release}"
html_static_path: list[str] = []
