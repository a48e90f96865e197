"""The documents name only tests that exist.

SECURITY.md says which tests hold each promise and the README points at test
files; a renamed or never-written test would leave a promise that nothing
checks. Every `tests/...` path and every `test_...` name they mention must be
in tests/.
"""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = ("SECURITY.md", "README.md")
# tests/<path>[::test_name], as the documents write them (in backticks or plain).
TEST_PATH = re.compile(r"\btests/[\w./-]*[\w/](?:::[\w\[\]-]+)?")
TEST_NAME = re.compile(r"(?<![\w/.])(test_\w+)(?![\w.])")


def _test_functions():
    names = set()
    for path in (REPO / "tests").rglob("*.py"):
        names.update(re.findall(r"^\s*(?:async\s+)?def (test_\w+)", path.read_text(), re.MULTILINE))
        names.update(re.findall(r"^class (Test\w+)", path.read_text(), re.MULTILINE))
    return names


def references(text):
    """(test paths, bare test names) a document mentions."""
    paths = set(TEST_PATH.findall(text))
    mentioned = set(TEST_NAME.findall(TEST_PATH.sub(" ", text)))
    return paths, mentioned


def test_references_are_found_in_both_forms():
    paths, names = references(
        "held by `tests/test_deploy.py::test_x` and `tests/labeling/api/`, "
        "see test_concurrent_undo and tests/e2e/test_map_xss.py."
    )
    assert paths == {"tests/test_deploy.py::test_x", "tests/labeling/api/", "tests/e2e/test_map_xss.py"}
    assert names == {"test_concurrent_undo"}


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_test_a_document_names_exists(document):
    paths, names = references((REPO / document).read_text())
    functions = _test_functions()
    missing = []
    for ref in sorted(paths):
        file_part, _, function = ref.partition("::")
        target = REPO / file_part
        if not target.exists():
            missing.append(ref)
        elif function:
            base = function.split("[")[0]
            if not re.search(
                rf"^\s*(?:async\s+)?def {re.escape(base)}\b|^class {re.escape(base)}\b",
                target.read_text(),
                re.MULTILINE,
            ):
                missing.append(ref)
    for name in sorted(names):
        if name not in functions and not list((REPO / "tests").rglob(f"{name}.py")):
            missing.append(name)
    assert not missing, f"{document} names tests that do not exist: {missing}"
