"""vreason-hooks: V-Reason (arXiv 2510.17045) for Hugging Face transformers models.

    import vreason_hooks as vreason
    with vreason.attach(model, vreason.VReasonConfig(lr=3e-4)) as session:
        out = model.generate(**inputs)
    session.traces  # entropy, EMA, α and updates of every generated sequence

Exports are resolved lazily (PEP 562): importing the package, the config or the traces does not import
torch; ``attach`` and ``Session`` do.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "VReasonConfig": ".config",
    "coerce_config": ".config",
    "Trace": ".trace",
    "load_traces": ".trace",
    "save_traces": ".trace",
    "Session": ".session",
    "attach": ".session",
    "VReasonError": ".errors",
    "UnsupportedSettingError": ".errors",
    "UnsupportedModelError": ".errors",
    "NoAdapterError": ".errors",
    "SpecError": ".errors",
    "AlreadyAttachedError": ".errors",
    "ConfigError": ".errors",
    "TraceError": ".errors",
    "ConcurrentUseError": ".errors",
    "UpstreamError": ".errors",
    "UncontrolledGenerationError": ".errors",
    "adapters": ".adapters",
}

__all__ = [
    "AlreadyAttachedError",
    "ConcurrentUseError",
    "ConfigError",
    "NoAdapterError",
    "Session",
    "SpecError",
    "Trace",
    "TraceError",
    "UncontrolledGenerationError",
    "UnsupportedModelError",
    "UnsupportedSettingError",
    "UpstreamError",
    "VReasonConfig",
    "VReasonError",
    "adapters",
    "attach",
    "coerce_config",
    "load_traces",
    "save_traces",
]
"""The lazy exports, listed for static analysers (a test checks it equals ``_EXPORTS``)."""


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = importlib.import_module(_EXPORTS[name], __name__)
    value = module if name == "adapters" else getattr(module, name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:  # static analysers and IDEs see the real objects
    from . import adapters
    from .config import VReasonConfig, coerce_config
    from .errors import (
        AlreadyAttachedError,
        ConcurrentUseError,
        ConfigError,
        NoAdapterError,
        SpecError,
        TraceError,
        UncontrolledGenerationError,
        UnsupportedModelError,
        UnsupportedSettingError,
        UpstreamError,
        VReasonError,
    )
    from .session import Session, attach
    from .trace import Trace, load_traces, save_traces
