"""The README and ARCHITECTURE.md name only files and tests that exist.

Both documents cite tests as proof (``tests/files/test_checkpoint.py::test_name``, and further
names of the same file as ``::test_other``) and point at source files and scripts. When code
moves or a test is renamed, these references would rot silently; this test makes them fail.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ("README.md", "ARCHITECTURE.md")
SUBPACKAGES = tuple(sorted(p.name for p in (ROOT / "src" / "trainwell").iterdir() if (p / "__init__.py").exists()))

TEST_REFERENCE = re.compile(r"(?<![\w/.])(tests/[\w/]+\.py)((?:::\w+)?)")
# "`::test_other`" after a test file in the same line: another test of that file.
CONTINUATION = re.compile(r"(?<![\w.])::(\w+)")
SOURCE_PATH = re.compile(r"(?<![\w/.])((?:src/)?trainwell/[\w/]*\w(?:\.py)?/?)")
SCRIPT_PATH = re.compile(r"(?<![\w/.])((?:benchmarks|examples)/\w+\.py)")
# "loop/batch_check.py": a module named by its subpackage, inside src/trainwell.
PACKAGE_MODULE = re.compile(r"(?<![\w/.])((?:" + "|".join(SUBPACKAGES) + r")/\w+\.py)")


@cache
def defined_names(path: Path) -> frozenset[str]:
    """Every function and class a test module defines, at any depth (tests inside classes too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return frozenset(
        node.name for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    )


def reference_problems(text: str) -> list[str]:
    """What is wrong with the ``tests/...py[::name]`` references of ``text``, one line each."""
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        current = None
        # Walk the line's references in order, so that "::name" attaches to the file before it.
        references = sorted(
            [(m.start(), m.group(1), m.group(2)[2:] or None) for m in TEST_REFERENCE.finditer(line)]
            + [(m.start(), None, m.group(1)) for m in CONTINUATION.finditer(line) if not _inside_reference(line, m)]
        )
        for _, file, name in references:
            if file is not None:
                current = ROOT / file
                if not current.is_file():
                    problems.append(f"line {number}: {file} does not exist")
                    current = None
                    continue
            if name is None:
                continue
            if current is None:
                problems.append(f"line {number}: ::{name} follows no test file")
            elif name not in defined_names(current):
                problems.append(f"line {number}: {current.relative_to(ROOT)} defines no {name}")
    return problems


def _inside_reference(line: str, match: re.Match[str]) -> bool:
    """Whether a "::name" is the tail of a "tests/x.py::name" (already read with its file)."""
    return line[: match.start()].endswith(".py")


def path_problems(text: str) -> list[str]:
    """What is wrong with the source, benchmark and example paths of ``text``, one line each."""
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        found = [(m.group(1), ROOT / "src" / m.group(1).removeprefix("src/")) for m in SOURCE_PATH.finditer(line)]
        found += [(m.group(1), ROOT / m.group(1)) for m in SCRIPT_PATH.finditer(line)]
        found += [(m.group(1), ROOT / "src" / "trainwell" / m.group(1)) for m in PACKAGE_MODULE.finditer(line)]
        problems += [f"line {number}: {shown} does not exist" for shown, path in found if not path.exists()]
    return problems


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_cited_test_exists(document: str) -> None:
    assert reference_problems((ROOT / document).read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_named_file_exists(document: str) -> None:
    assert path_problems((ROOT / document).read_text(encoding="utf-8")) == []


def test_the_checks_catch_broken_references() -> None:
    good = "`tests/files/test_checkpoint.py::test_manifest_commits_the_file_with_its_sha256`"
    assert reference_problems(good + ", `::test_latest_means_highest_committed_step_not_newest_file`") == []
    assert reference_problems(good.replace("sha256", "sha512")) == [
        "line 1: tests/files/test_checkpoint.py defines no test_manifest_commits_the_file_with_its_sha512"
    ]
    assert reference_problems(good + ", `::test_that_was_renamed`") == [
        "line 1: tests/files/test_checkpoint.py defines no test_that_was_renamed"
    ]
    assert reference_problems("`tests/loop/test_gone.py`") == ["line 1: tests/loop/test_gone.py does not exist"]
    assert reference_problems("a `::test_alone` with no file") == ["line 1: ::test_alone follows no test file"]
    assert path_problems("`trainwell/observe/doctor.py`, `loop/step.py`, benchmarks/doctor.py, src/trainwell/") == []
    assert path_problems("`trainwell/observe/doctors.py` and `loop/stepper.py`\nbenchmarks/gone.py") == [
        "line 1: trainwell/observe/doctors.py does not exist",
        "line 1: loop/stepper.py does not exist",
        "line 2: benchmarks/gone.py does not exist",
    ]
