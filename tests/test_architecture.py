"""
The import rules of shared/spec/architecture.md, checked on the source.

`compiler` may import everything and nothing imports it; `passes` and
`backends` import `dialects` but not each other; `dialects` import only xDSL
(and the standard library).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
PACKAGES = ("compiler", "dialects", "passes", "backends")
FORBIDDEN = {
    "dialects": {"compiler", "passes", "backends", "numpy", "lark"},
    "passes": {"compiler", "backends"},
    "backends": {"compiler", "passes"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_rules(package):
    for path in (ROOT / package).rglob("*.py"):
        bad = _imports(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def test_nothing_imports_compiler():
    for package in ("dialects", "passes", "backends"):
        for path in (ROOT / package).rglob("*.py"):
            assert "compiler" not in _imports(path), path
