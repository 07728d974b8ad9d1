"""Adapters: which modules and which cache positions V-Reason uses in each model family.

A model family is described by one small TOML spec file (see ``specs/`` and ``docs/adding-a-model.md``).
"""

from .registry import (
    ENTRY_POINT_GROUP,
    ResolvedAdapter,
    adapter_for_config,
    available,
    builtin_spec_paths,
    find_adapter,
    get,
    refresh,
    refused,
    resolve,
    unwrap_model,
)
from .spec import AdapterSpec, load_spec

__all__ = [
    "ENTRY_POINT_GROUP",
    "AdapterSpec",
    "ResolvedAdapter",
    "adapter_for_config",
    "available",
    "builtin_spec_paths",
    "find_adapter",
    "get",
    "load_spec",
    "refresh",
    "refused",
    "resolve",
    "unwrap_model",
]
