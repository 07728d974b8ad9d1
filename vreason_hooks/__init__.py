"""vreason-hooks: V-Reason (arXiv 2510.17045) for Hugging Face transformers models.

    import vreason_hooks as vreason
    with vreason.attach(model, vreason.VReasonConfig(lr=3e-4)) as session:
        out = model.generate(**inputs)
    session.traces  # entropy, EMA, α and updates of every generated sequence
"""

from . import adapters
from .config import VReasonConfig
from .errors import (
    AlreadyAttachedError,
    NoAdapterError,
    SpecError,
    UnsupportedSettingError,
    VReasonError,
)
from .session import Session, attach
from .trace import Trace, load_traces, save_traces

__version__ = "0.1.0"

__all__ = [
    "AlreadyAttachedError",
    "NoAdapterError",
    "Session",
    "SpecError",
    "Trace",
    "UnsupportedSettingError",
    "VReasonConfig",
    "VReasonError",
    "adapters",
    "attach",
    "load_traces",
    "save_traces",
]
