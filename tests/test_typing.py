"""Static types (issue 16): what mypy --strict infers for user code, and mypy on the package.

``typing/user_code.py`` uses the public API with ``reveal_type(...)`` lines
that end with a comment ``R: <type>``; ``typing/bad_code.py`` holds calls mypy
must reject (a comment ``E: <code>``).
Both are checked against the tree under test (``src/``, through MYPYPATH),
whatever version of the package is installed.  These checks are static: no
start method is involved, hence no ``ctx`` fixture.

mypy is in the ``test`` extra, which CI installs: without it this module
fails to import (it does not skip), so CI cannot pass without checking types.
"""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import get_origin

import pytest
from mypy import api as mypy_api

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
CASES = Path(__file__).resolve().parent / "typing"

# path:line: error|note: message  [code]
_LINE = re.compile(
    r"^(?P<path>[^:]+):(?P<line>\d+): (?P<kind>error|note): (?P<msg>.*?)(?:  \[(?P<code>[a-z-]+)\])?$"
)
_REVEALED = re.compile(r'^Revealed type is "(?P<type>.*)"$')


def _normal(text: str) -> str:
    """A type as mypy prints it, in the spelling of recent versions.

    Older mypy versions (the newest on Python 3.9) print ``builtins.list[builtins.int]``
    and ``Union[int, None]`` where recent ones print ``list[int]`` and ``int | None``.
    """
    text = text.replace("builtins.", "")
    for head in ("Union[", "Optional["):
        start = text.find(head)
        while start != -1:
            depth, parts, begin = 0, [], start + len(head)
            for i in range(begin, len(text)):
                if text[i] == "[":
                    depth += 1
                elif text[i] == "]":
                    if depth == 0:
                        parts.append(text[begin:i])
                        end = i + 1
                        break
                    depth -= 1
                elif text[i] == "," and depth == 0:
                    parts.append(text[begin:i])
                    begin = i + 1
            parts = [_normal(p.strip()) for p in parts]
            if head == "Optional[":
                parts.append("None")
            text = text[:start] + " | ".join(parts) + text[end:]
            start = text.find(head)
    return text


def _run_mypy(args: list[str], cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Run mypy in this process from the project root (its [tool.mypy] config); its messages."""
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("MYPYPATH", str(SRC))
    stdout, stderr, status = mypy_api.run(
        [*args, "--cache-dir", str(cache_dir), "--show-error-codes", "--no-pretty"]
    )
    assert not stderr, stderr
    assert status in (0, 1), stdout  # 2: mypy itself failed (bad option, crash)
    return [m.groupdict() for m in map(_LINE.match, stdout.splitlines()) if m]


@pytest.fixture(scope="module")
def strict_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Shared by the two --strict runs: the second reuses what the first
    # learnt of the package and the standard library.
    return tmp_path_factory.mktemp("mypy-cache-strict")


def _expectations(path: Path, marker: str) -> dict[int, str]:
    expected = {}
    for number, text in enumerate(path.read_text().splitlines(), 1):
        _, found, value = text.partition(f"# {marker}: ")
        if found:
            expected[number] = value.strip()
    return expected


def _check_strict(path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    # --follow-imports=silent: the package is analysed as an installed one is,
    # its own messages left to test_package_type_checks.
    messages = _run_mypy(
        ["--strict", "--follow-imports=silent", str(path.relative_to(ROOT))], cache, monkeypatch
    )
    return [m for m in messages if Path(m["path"]).name == path.name]


def test_user_code_gets_precise_types(strict_cache, monkeypatch):
    path = CASES / "user_code.py"
    expected = _expectations(path, "R")
    lines = path.read_text().splitlines()
    assert len(expected) > 80
    unmarked = [n for n, t in enumerate(lines, 1) if "reveal_type(" in t and n not in expected]
    assert not unmarked, f"reveal_type lines without an expected type: {unmarked}"

    messages = _check_strict(path, strict_cache, monkeypatch)
    errors = [f"{m['line']}: {m['msg']} [{m['code']}]" for m in messages if m["kind"] == "error"]
    assert not errors, "mypy --strict rejects user code:\n" + "\n".join(errors)
    revealed = {}
    for m in messages:
        found = _REVEALED.match(m["msg"])
        if m["kind"] == "note" and found:
            revealed[int(m["line"])] = _normal(found["type"])
    wrong = [
        f"line {n}: expected {want}, mypy says {revealed.get(n)}"
        for n, want in expected.items()
        if revealed.get(n) != want
    ]
    assert not wrong, "\n".join(wrong)


def test_wrong_code_is_rejected(strict_cache, monkeypatch):
    path = CASES / "bad_code.py"
    expected = _expectations(path, "E")
    assert len(expected) >= 15
    messages = _check_strict(path, strict_cache, monkeypatch)
    errors: dict[int, list[str]] = {}
    for m in messages:
        if m["kind"] == "error":
            errors.setdefault(int(m["line"]), []).append(f"{m['code']}: {m['msg']}")
    missed = [
        f"line {n}: expected an error [{codes}], got {errors.get(n)}"
        for n, codes in expected.items()
        if not any(e.split(":")[0] in codes.split("|") for e in errors.get(n, []))
    ]
    unexpected = [f"line {n}: {e}" for n, e in errors.items() if n not in expected]
    assert not missed and not unexpected, "\n".join(missed + unexpected)


def test_package_type_checks(tmp_path, monkeypatch):
    # The files and settings are pyproject.toml's [tool.mypy]; Python's version
    # is that of the interpreter running the test (CI runs it on each one).
    messages = _run_mypy([], tmp_path / "mypy-cache", monkeypatch)
    errors = [f"{m['path']}:{m['line']}: {m['msg']} [{m['code']}]" for m in messages]
    assert not errors, "mypy finds errors in the package:\n" + "\n".join(errors)


def _generic_classes() -> list[tuple[type, int]]:
    from multiprocess.connection import Connection
    from multiprocess.managers import DictProxy, ListProxy, SetProxy, ValueProxy
    from multiprocess.pool import ApplyResult, AsyncResult, IMapIterator, MapResult
    from multiprocess.queues import JoinableQueue, Queue, SimpleQueue
    from multiprocess.sharedctypes import Synchronized, SynchronizedArray

    return [
        (ApplyResult, 1),
        (AsyncResult, 1),
        (MapResult, 1),
        (IMapIterator, 1),
        (Queue, 1),
        (JoinableQueue, 1),
        (SimpleQueue, 1),
        (Connection, 2),
        (ValueProxy, 1),
        (ListProxy, 1),
        (DictProxy, 2),
        (SetProxy, 1),
        (Synchronized, 1),
        (SynchronizedArray, 1),
    ]


@pytest.mark.parametrize("cls, arity", _generic_classes(), ids=lambda v: getattr(v, "__name__", v))
def test_generic_classes_subscript_at_run_time(cls, arity):
    # Annotations such as AsyncResult[int] are evaluated by some code
    # (typing.get_type_hints, pydantic...): they must work at run time too.
    alias = cls[(int,) * arity if arity > 1 else int]
    assert get_origin(alias) is cls


@pytest.mark.parametrize(
    "name", ["pool.ApplyResult", "queues.Queue", "queues.SimpleQueue", "managers.ValueProxy"]
)
def test_subscripts_are_types_generic_alias_as_in_the_stdlib(name):
    import importlib

    module, _, attr = name.partition(".")
    cls = getattr(importlib.import_module(f"multiprocess.{module}"), attr)
    assert type(cls[int]) is types.GenericAlias
