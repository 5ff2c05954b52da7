"""docs/reliability.md stays true: every test it names exists, and every fault test has its row.

The rule (stated in the document too):

* **Every test reference in the document exists.** A reference is any inline code span (in a
  table or in the text; code blocks are skipped) that names a test or a test file:

  - ``tests/x/test_y.py::test_z``: that file defines ``test_z``;
  - ``test_y.py::test_z``: a file of that name under ``tests/`` defines ``test_z``;
  - ``test_z``: some test file under ``tests/`` defines ``test_z``;
  - ``tests/x/test_y.py``, ``tests/x/`` (any path under ``tests/``): it exists.

  A parametrisation suffix (``test_z[poke/deferrable]``) is ignored, and so are patterns and
  placeholders (``tests/**/test_*.py``, ``test_<name>``).
* **Every fault test is named in the document**: each test function of
  :data:`COVERED` (``tests/reliability/``, ``tests/storage/``, every ``test_*_faults.py`` and
  ``test_security*.py`` under ``tests/``, and webhook completion's) is referenced, by its bare
  name or qualified with its own file.

Test files are read with :mod:`ast`, never imported, so a row may name a test in a file another
change adds later: the check resolves it as soon as the file is there, and fails until then.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "reliability.md"
TESTS = REPO / "tests"
#: The files whose every test function must be named in the document (globs under the repository).
COVERED = (
    "tests/reliability/test_*.py",
    "tests/storage/test_*.py",
    "tests/**/test_*_faults.py",
    "tests/**/test_security*.py",
    "tests/webhooks/test_route.py",
    "tests/webhooks/test_completion.py",
    "tests/distributed/test_webhooks.py",
)
#: Not a fault test: this file.
NOT_COVERED = frozenset({"tests/reliability/test_reliability_doc.py"})

_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_PARAMS = re.compile(r"\[[^\]]*\]$")
_TEST_NAME = re.compile(r"^test_\w+$")
_TEST_FILE = re.compile(r"^test_\w+\.py$")
_PATTERN = re.compile(r"[*?<>…]")


@dataclass(frozen=True)
class Reference:
    """One test reference in the document."""

    line: int
    text: str
    path: str | None  # "tests/x/test_y.py", "test_y.py", "tests/x/" or None
    name: str | None  # "test_z" or None

    def __str__(self) -> str:
        return f"docs/reliability.md:{self.line}: `{self.text}`"


def references(markdown: str) -> list[Reference]:
    """Every test reference outside fenced code blocks (see the module doc for the forms)."""
    found: list[Reference] = []
    fenced = False
    for number, line in enumerate(markdown.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        for span in _CODE_SPAN.findall(line):
            reference = _parse(span.strip(), number)
            if reference is not None:
                found.append(reference)
    return found


def _parse(text: str, line: int) -> Reference | None:
    bare = _PARAMS.sub("", text)
    path, _, name = bare.partition("::") if "::" in bare else ("", "", "")
    if not path and not name:
        if _TEST_NAME.match(bare):
            name = bare
        elif bare.startswith("tests/") or _TEST_FILE.match(bare):
            path = bare
        else:
            return None  # not about tests: a class, an option, a message...
    if path and not (path.startswith("tests/") or _TEST_FILE.match(path)):
        return None
    if path and _PATTERN.search(path):
        return None  # a pattern or a placeholder (`tests/**/test_*.py`, `tests/<dir>/`), not a name
    if name and not _TEST_NAME.match(name):
        return None
    return Reference(line, text, path or None, name or None)


def defined_tests(path: Path) -> set[str]:
    """Names of the test functions ``path`` defines (module level, and in ``Test*`` classes)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_"):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            names.update(
                item.name
                for item in node.body
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name.startswith("test_")
            )
    return names


def build_index() -> dict[str, set[str]]:
    """Every test file under ``tests/`` (relative path) and the test functions it defines."""
    return {str(path.relative_to(REPO)): defined_tests(path) for path in sorted(TESTS.rglob("test_*.py"))}


def resolve(reference: Reference, index: dict[str, set[str]]) -> list[str]:
    """The test files ``reference`` points at (empty: it names nothing that exists)."""
    path, name = reference.path, reference.name
    if path is None:
        return [file for file, names in index.items() if name in names]
    if "/" in path:
        candidates = [path] if (REPO / path).is_file() else []
        if name is None:
            return [path] if (REPO / path).exists() else []
    else:
        candidates = [file for file in index if file.rpartition("/")[2] == path]
        if name is None:
            return candidates
    return [
        file for file in candidates if name in (index[file] if file in index else defined_tests(REPO / file))
    ]


def covered_tests() -> dict[str, set[str]]:
    """The test functions that must be named in the document, by file (see :data:`COVERED`)."""
    files = {path for pattern in COVERED for path in REPO.glob(pattern) if path.is_file()}
    return {
        str(path.relative_to(REPO)): defined_tests(path)
        for path in sorted(files)
        if str(path.relative_to(REPO)) not in NOT_COVERED
    }


@pytest.fixture(autouse=True)
def _db() -> None:
    """No metadata DB here (the suite's fixture of the same name makes one): only files are read."""
    return None


# ------------------------------------------------------------------------------------------ tests
def test_every_test_the_document_names_exists() -> None:
    index = build_index()
    refs = references(DOC.read_text(encoding="utf-8"))
    assert len([ref for ref in refs if ref.name]) > 30, "the document names its tests"  # not vacuous
    missing = [str(ref) for ref in refs if not resolve(ref, index)]
    assert not missing, "the document names tests or files that do not exist:\n" + "\n".join(missing)


def test_every_fault_test_is_named_in_the_document() -> None:
    index = build_index()
    refs = references(DOC.read_text(encoding="utf-8"))
    named: set[tuple[str, str]] = set()
    for ref in refs:
        if ref.name is not None:
            named.update((file, ref.name) for file in resolve(ref, index))
    covered = covered_tests()
    assert "tests/reliability/test_fault_matrix.py" in covered and "tests/storage/test_s3.py" in covered
    unnamed = [
        f"{file}::{name}"
        for file, names in covered.items()
        for name in sorted(names)
        if (file, name) not in named
    ]
    assert not unnamed, (
        "fault tests without a row (or a mention) in docs/reliability.md; add one naming each:\n"
        + "\n".join(unnamed)
    )


# ------------------------------------------------------------------------- the checker, checked
SAMPLE = """\
| fault | test |
|---|---|
| a | `test_alpha[one/two]`, `test_beta` |
| b | `tests/x/test_file.py::test_gamma` |
| c | `test_file.py::test_delta`, `tests/x/` |
| d | `LotImageError`, `retries=2`, `tests/x/conftest.py`, `tests/**/test_*.py`, `test_<name>` |

```bash
.venv/bin/pytest tests/nowhere/test_ignored.py
```
"""


def test_references_are_read_in_every_form() -> None:
    got = [(ref.line, ref.path, ref.name) for ref in references(SAMPLE)]
    assert got == [
        (3, None, "test_alpha"),
        (3, None, "test_beta"),
        (4, "tests/x/test_file.py", "test_gamma"),
        (5, "test_file.py", "test_delta"),
        (5, "tests/x/", None),
        (6, "tests/x/conftest.py", None),
    ]


def test_resolution_finds_only_what_exists(tmp_path: Path) -> None:
    this = str(Path(__file__).resolve().relative_to(REPO))
    index = {this: {"test_resolution_finds_only_what_exists"}, "tests/other/test_x.py": {"test_y"}}
    exists = Reference(1, "", this, "test_resolution_finds_only_what_exists")
    assert resolve(exists, index) == [this]
    assert resolve(Reference(1, "", "test_reliability_doc.py", exists.name), index) == [this]
    assert resolve(Reference(1, "", None, "test_y"), index) == ["tests/other/test_x.py"]
    assert resolve(Reference(1, "", None, "test_gone"), index) == []
    assert resolve(Reference(1, "", this, "test_gone"), index) == []
    assert resolve(Reference(1, "", "tests/nowhere/test_x.py", "test_y"), index) == []
    assert resolve(Reference(1, "", "tests/reliability/", None), index) == ["tests/reliability/"]
    assert resolve(Reference(1, "", "tests/nowhere/", None), index) == []
