"""The distribution carries its license: a LICENSE file, declared and installed."""

from __future__ import annotations

import os
import re
from importlib.metadata import distribution

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def test_license_file_is_the_declared_bsd_3_clause():
    text = _read("LICENSE")
    assert text.startswith("BSD 3-Clause License\n")
    assert "Copyright (c) 2026, The multiprocess developers" in text
    assert "Neither the name of the copyright holder" in text  # the third clause
    pyproject = _read("pyproject.toml")
    assert re.search(r'^license = "BSD-3-Clause"$', pyproject, re.MULTILINE)
    assert re.search(r'^license-files = \["LICENSE"\]$', pyproject, re.MULTILINE)


def test_installed_distribution_ships_the_license():
    dist = distribution("multiprocess")
    assert dist.metadata.get("License-Expression") == "BSD-3-Clause"
    assert "LICENSE" in dist.metadata.get_all("License-File", [])
    # PEP 639: the file itself is in the .dist-info (wheels and editable installs alike).
    assert dist.read_text("licenses/LICENSE") == _read("LICENSE")
