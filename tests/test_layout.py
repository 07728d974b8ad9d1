"""The package layout shows the architecture: the library (``vreason_hooks/``) apart from the applications
(``vreason_hooks/apps/``), imports going one way, the library's dependencies its own, its functions short."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "vreason_hooks"
LIBRARY = sorted(p for p in PACKAGE.rglob("*.py") if "apps" not in p.relative_to(PACKAGE).parts)
LIBRARY_DEPENDENCIES = {"torch", "transformers", "pydantic", "packaging", "yaml"}
"""Third-party packages the library may import (``[project] dependencies`` of pyproject.toml)."""
MAX_FUNCTION_LINES = 40
"""Longest function of the library, counted from its ``def`` line to its last line (docstring, comments and
nested functions included, decorators not)."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path) -> list[tuple[int, str]]:
    """``(line, absolute module)`` of every import in ``path``, at any depth (function-level ones too), and of
    every ``importlib.import_module("...", __name__)``-style string target."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("."):
            if (
                node.value[1:].replace("_", "").replace(".", "").isalnum()
            ):  # a relative module name as a string
                found.append((node.lineno, f"{package}{node.value}"))
    return found


def test_the_scan_resolves_relative_imports():
    imports = dict((m, n) for n, m in _imported(PACKAGE / "adapters" / "registry.py"))
    assert "vreason_hooks.errors" in imports and "vreason_hooks.adapters.spec" in imports
    assert "vreason_hooks.transformers_seam" in imports  # a function-level `from .. import transformers_seam`
    lazy = {m for _, m in _imported(PACKAGE / "__init__.py")}
    assert "vreason_hooks.session" in lazy  # the lazy exports' string targets


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_library_never_imports_the_applications(path):
    bad = [
        f"{path.name}:{line} imports {name}"
        for line, name in _imported(path)
        if name == "vreason_hooks.apps" or name.startswith("vreason_hooks.apps.")
    ]
    assert not bad, "the library must not depend on vreason_hooks.apps: " + "; ".join(bad)


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_library_imports_only_its_own_dependencies(path):
    allowed = LIBRARY_DEPENDENCIES | set(sys.stdlib_module_names) | {"vreason_hooks", "__future__"}
    bad = sorted({name.split(".")[0] for _, name in _imported(path)} - allowed)
    assert not bad, f"{path.name} imports {bad}: not a library dependency (an application's belongs in apps/)"


def test_declared_dependencies_match_the_layout():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {d.split(">")[0].split("<")[0].split("=")[0].split("[")[0] for d in project["dependencies"]}
    assert core == {"torch", "pydantic", "packaging", "pyyaml"}  # what every engine shares
    extras = project["optional-dependencies"]
    assert [d.split(">")[0] for d in extras["hf"]] == ["transformers"]  # the HF path, its tested range
    assert {d.split(">")[0] for d in extras["cli"]} == {"vreason-hooks[hf]", "rich", "matplotlib"}
    assert "vreason-hooks[cli]" in extras["eval"] and "vreason-hooks[cli]" in extras["demo"]
    assert project["scripts"]["vreason"] == "vreason_hooks.apps.cli:main"


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: str(p.relative_to(ROOT)))
def test_library_functions_are_short(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    long = [
        f"{node.name} (line {node.lineno}): {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert not long, f"{path.name}: split functions longer than {MAX_FUNCTION_LINES} lines: " + "; ".join(
        long
    )


def test_a_command_without_the_cli_extra_names_the_install_line(tmp_path):
    """Without rich (or matplotlib) a command fails in one line that says how to install them."""
    import subprocess

    code = (
        "import sys; sys.modules['rich'] = None; sys.modules['matplotlib'] = None\n"
        "from vreason_hooks.apps.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    trace = tmp_path / "t.json"
    trace.write_text('[{"entropy": [1.0, 0.5], "ema": [0.1, 0.15], "peak": [0.1, 0.15], "alpha": [1, 1]}]')
    for args in (["adapters"], ["plot", str(trace)]):
        proc = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "pip install 'vreason-hooks[cli]'" in lines[0], proc.stderr


def test_the_cli_module_runs_as_a_script():
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "vreason_hooks.apps.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("vreason-hooks "), proc.stderr
