"""The version: we continue the PyPI ``multiprocess`` 0.70 line (DESIGN.md, section 2).

pathos requires ``multiprocess>=0.70.19`` and HuggingFace datasets
``multiprocess<0.70.20``: a version outside that window makes ``pip install pathos``
(or ``datasets``) replace this package with the PyPI one.  CI checks it with real pip
(.ci/run, client section); this test keeps the number in the window and in sync.
"""

from __future__ import annotations

import importlib.metadata
import re

import multiprocess


def _release(version: str) -> tuple[int, ...]:
    """The release segment of a PEP 440 version: "0.70.19.1.dev0" -> (0, 70, 19, 1)."""
    match = re.match(r"\d+(?:\.\d+)*", version)
    assert match, f"not a PEP 440 version: {version!r}"
    return tuple(int(part) for part in match.group().split("."))


def test_version_matches_the_installed_metadata():
    assert multiprocess.__version__ == importlib.metadata.version("multiprocess")


def test_version_meets_what_pathos_and_datasets_require():
    release = _release(multiprocess.__version__)
    # A pre-release of 0.70.19.1 still sorts after 0.70.19, and pip accepts an
    # installed pre-release for "multiprocess>=0.70.19" (checked with pip 23.2 and 26.3).
    assert (0, 70, 19) < release < (0, 70, 20), multiprocess.__version__
