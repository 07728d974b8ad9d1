"""Adapters: which modules and which cache positions V-Reason uses in each model family.

A model family is described by one small TOML spec file (see ``specs/`` and ``docs/adding-a-model.md``).
"""

from .plugins import ENTRY_POINT_GROUP, PluginProblem
from .registry import (
    ResolvedAdapter,
    adapter_for_config,
    available,
    builtin_spec_paths,
    find_adapter,
    get,
    plugin_problems,
    refresh,
    refused,
    resolve,
    unwrap_model,
)
from .spec import AdapterSpec, load_spec

__all__ = [
    "ENTRY_POINT_GROUP",
    "AdapterSpec",
    "PluginProblem",
    "ResolvedAdapter",
    "adapter_for_config",
    "available",
    "builtin_spec_paths",
    "find_adapter",
    "get",
    "load_spec",
    "plugin_problems",
    "refresh",
    "refused",
    "resolve",
    "unwrap_model",
]
