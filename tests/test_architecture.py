"""
The architecture's rules, checked on the source.

Imports: `compiler` may import everything and nothing imports it; `passes`
and `backends` import `dialects` but not each other; `dialects` import only
xDSL (and the standard library); `dialects/vocabulary.py` is a leaf. Every
import of strata's own code goes through the one installed package,
`strata`. Packaging: every source folder is a package listed in
pyproject.toml under `strata`, so `pip install .` puts nothing else at the
top of site-packages.
"""

import ast
import tomllib
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
    """The strata packages (`compiler`, `passes`, ...) and third-party top-level names a file imports."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        modules = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules = [node.module]
        for module in modules:
            parts = module.split(".")
            names.add(parts[1] if parts[0] == "strata" and len(parts) > 1 else parts[0])
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


def test_vocabulary_is_a_leaf():
    assert not _imports(ROOT / "dialects" / "vocabulary.py") & set(PACKAGES)


@pytest.mark.parametrize("package", PACKAGES)
def test_strata_code_is_imported_through_the_strata_package(package):
    for path in (ROOT / package).rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else [])
            for module in modules:
                assert module.split(".")[0] not in PACKAGES, f"{path.relative_to(ROOT)}: import {module}"


def test_every_source_folder_is_a_listed_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    mapped = {folder: package for package, folder in config["package-dir"].items()}
    found = set()
    for package in PACKAGES:
        for init in (ROOT / package).rglob("__init__.py"):
            folder = init.parent.relative_to(ROOT).as_posix()
            if folder in mapped:
                found.add(mapped[folder])
                continue
            top = folder.split("/")[0]
            found.add(mapped[top] + "." + ".".join(folder.split("/")[1:]) if "/" in folder else mapped[top])
    assert found == listed
