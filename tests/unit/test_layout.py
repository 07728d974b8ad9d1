"""The package layout shows the architecture: the library (``vreason_hooks/``) apart from the applications
(``vreason_hooks/apps/``), imports going one way, the library's dependencies its own, its functions short."""

from __future__ import annotations

import ast
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
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


# ---------------------------------------------------------------------------------------------- seams
TRANSFORMERS_INTERNALS = frozenset(
    """past_key_values cache_position _attn_implementation DynamicLayer DynamicSlidingWindowLayer
    DynamicIndexedLayer LinearAttentionLayer LinearAttentionCacheLayerMixin CacheLayerMixin DummyLayer
    cache_utils masking_utils video_utils create_causal_mask get_seq_length get_mask_sizes lazy_initialization
    layer_class_to_replicate layer_idx is_sliding is_linear is_dummy recurrent_states conv_states
    _model_mapping _prepare_generation_config _get_stopping_criteria get_generation_mode GenerationMixin
    _from_config gradient_checkpointing _orig_mod _compiled_call_impl _torchdynamo_orig_callable""".split()
)
"""transformers (and torch) internals: named only in vreason_hooks/transformers_seam.py."""
LMMS_EVAL_INTERNALS = frozenset(
    """_model _tokenizer _config _device _rank _world_size _max_length batch_size_per_gpu _resolve_model_class
    _get_model_name sanitize_model_name _enable_reentrant_filelocks _api task_manager datetime_str""".split()
)
"""lmms-eval internals (in files that import lmms_eval): named only in vreason_lmms_eval/lmms_eval_seam.py."""
VLLM_INTERNALS = frozenset(
    """do_kv_cache_update query_start_loc seq_lens attn_metadata input_batch req_ids execute_model
    sample_tokens compute_logits SchedulerOutput ModelRunnerOutput get_forward_context""".split()
)
"""vLLM internals: named only in vreason_vllm/vllm_seam.py."""
SEAMS = {
    "transformers_seam": (TRANSFORMERS_INTERNALS, "vreason_hooks/transformers_seam.py"),
    "lmms_eval_seam": (LMMS_EVAL_INTERNALS, "integrations/vreason_lmms_eval/lmms_eval_seam.py"),
    "vllm_seam": (VLLM_INTERNALS, "integrations/vreason_vllm/vllm_seam.py"),
}
SEAM_TESTS = (
    "tests/engine/test_transformers_seam.py",
    "tests/integrations/test_lmms_eval_seam.py",
    "tests/integrations/vllm/test_vllm_seam.py",
)
"""The seams' own tests exercise the internals directly (that is how they catch a move)."""


def _names(tree: ast.AST):
    """``(line, name)`` of every identifier, attribute, keyword, definition, import part and exact string in
    ``tree``; an attribute read through a seam module (``transformers_seam.DynamicLayer``) is the seam's."""
    seams = set(SEAMS) | {  # a seam imported under another name (``from . import vllm_seam as seam``)
        alias.asname
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
        if alias.asname and alias.name.split(".")[-1] in SEAMS
    }
    through_seam = {
        id(node)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in seams
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            yield node.lineno, node.id
        elif isinstance(node, ast.Attribute) and id(node) not in through_seam:
            yield node.lineno, node.attr
        elif isinstance(node, ast.keyword) and node.arg:
            yield node.value.lineno, node.arg
        elif isinstance(node, ast.arg):
            yield node.lineno, node.arg
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield node.lineno, node.name
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for part in [
                *(m for module in modules for m in module.split(".")),
                *(a.name for a in node.names),
            ]:
                yield node.lineno, part.split(".")[-1]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def _imports_lmms_eval(tree: ast.AST) -> bool:
    return any(
        (isinstance(n, ast.Import) and any(a.name.split(".")[0] == "lmms_eval" for a in n.names))
        or (isinstance(n, ast.ImportFrom) and (n.module or "").split(".")[0] == "lmms_eval")
        for n in ast.walk(tree)
    )


def upstream_leaks(path: Path) -> list[str]:
    """``file:line: name (seam)`` for every upstream internal ``path`` names outside its seam module."""
    tree = ast.parse(path.read_text(), filename=str(path))
    forbidden = {name: "transformers_seam" for name in TRANSFORMERS_INTERNALS}
    forbidden.update({name: "vllm_seam" for name in VLLM_INTERNALS})
    if _imports_lmms_eval(tree):
        forbidden.update({name: "lmms_eval_seam" for name in LMMS_EVAL_INTERNALS})
    found = sorted((line, name) for line, name in _names(tree) if name in forbidden)
    return [f"{path.name}:{line}: {name} (belongs in {forbidden[name]})" for line, name in found]


PROJECT_SOURCES = sorted(
    p
    for folder in ("vreason_hooks", "integrations", "benchmarks", "tests", ".ci")
    for p in (ROOT / folder).rglob("*.py")
    if str(p.relative_to(ROOT)) not in {seam for _, seam in SEAMS.values()} | set(SEAM_TESTS)
)


@pytest.mark.parametrize("path", PROJECT_SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_upstream_internals_are_named_only_in_their_seam(path):
    leaks = upstream_leaks(path)
    assert not leaks, "name upstream internals only through their seam module: " + "; ".join(leaks)


def test_the_seam_check_catches_a_planted_name(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(
        "from lmms_eval.api.model import lmms\n"
        "def step(kwargs, model, wrapper):\n"
        "    cache = kwargs['past_key_values']\n"
        "    model.config._attn_implementation = 'eager'\n"
        "    wrapper._model = model\n"
        "    runner.execute_model = None\n"
        "    return transformers_seam.DynamicLayer, cache.get_seq_length()\n"
    )
    leaks = upstream_leaks(planted)
    assert [leak.split(": ")[1] for leak in leaks] == [
        "past_key_values (belongs in transformers_seam)",
        "_attn_implementation (belongs in transformers_seam)",
        "_model (belongs in lmms_eval_seam)",
        "execute_model (belongs in vllm_seam)",
        "get_seq_length (belongs in transformers_seam)",
    ], leaks
