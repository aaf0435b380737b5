"""The house's arrows: no module imports another in a loop, none imports another's private
names. (Which room may import which is import-linter's, in `make lint`: pyproject.toml.)"""

import ast
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "bugtracker",
    "reports",
    "dedup",
    "telemetry",
    "remediation",
    "legacy",
    "webhooks",
    "ingest",
)


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph(*PACKAGES, cache_dir=None)


def project_modules(graph) -> list[str]:
    return sorted(m for m in graph.modules if ".migrations" not in m)


def test_no_module_imports_another_in_a_loop(graph):
    loops = set()
    for module in project_modules(graph):
        for imported in graph.find_modules_directly_imported_by(module):
            if ".migrations" in imported:
                continue
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                loops.add(tuple(sorted({module, *back})))
    assert not loops, "\n".join(" <-> ".join(loop) for loop in sorted(loops))


def test_no_module_imports_a_private_name_of_another():
    found = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom):
                    for alias in node.names:
                        if alias.name.startswith("_"):
                            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {alias.name}")
    assert not found, "\n".join(found)


def test_the_import_contracts_hold():
    """pyproject.toml's import-linter contracts (bugtracker imports no domain app,
    reports.lifecycle neither dedup nor legacy, the layers), here too so CI holds them."""
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(ROOT / "pyproject.toml")) == 0


def test_an_import_inside_a_function_says_why():
    """Imports belong at the top; the few that must wait (start-up ordering, an optional
    platform module) say why in a comment on the line before or their own line."""
    silent = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            lines = path.read_text().splitlines()
            for node in ast.walk(ast.parse("\n".join(lines), str(path))):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import | ast.ImportFrom):
                        n = inner.lineno - 1
                        context = lines[max(0, n - 3) : n + 1]
                        if not any("#" in line for line in context):
                            silent.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    assert not silent, "\n".join(silent)
