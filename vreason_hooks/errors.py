"""Exceptions with one-line messages that say what to do."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class VReasonError(Exception):
    """Base class of every error raised by vreason_hooks."""


class UnsupportedSettingError(VReasonError, ValueError):
    """A generation setting V-Reason cannot run under (beam search, quantized or offloaded caches, ...)."""


class NoAdapterError(VReasonError, LookupError):
    """No adapter spec matches the model."""


class SpecError(VReasonError, ValueError):
    """An adapter spec file is invalid (the message names the file and the key)."""


class UnsupportedModelError(VReasonError, ValueError):
    """A model V-Reason cannot run on (its controlled layer keeps no per-token values, or the installed
    transformers predates its classes); the message names the layer and its kind, or the release needed."""


class AlreadyAttachedError(VReasonError, RuntimeError):
    """``attach`` was called on a model that already has a V-Reason session."""


class UpstreamError(VReasonError, RuntimeError):
    """transformers (or lmms-eval) moved an internal V-Reason relies on; the message names the installed
    version, the supported range and ``vreason doctor``."""


class UncontrolledGenerationError(UpstreamError):
    """A controlled ``generate`` ended without the updates its settings imply: V-Reason did not run."""


class ConcurrentUseError(VReasonError, RuntimeError):
    """A forward from a second thread while an attached model is generating under V-Reason in another."""


class ConfigError(VReasonError, ValueError):
    """A V-Reason setting or config file is invalid (the message names the field and its valid range).

    ``validation``: the pydantic ``ValidationError`` behind it, when there is one (callers that know more
    context, such as a file name, rephrase it with :func:`validation_message`)."""

    def __init__(self, message: str, validation: Any = None):
        super().__init__(message)
        self.validation = validation


class TraceError(VReasonError, ValueError):
    """A trace file or trace value is invalid (the message names the file, the trace and the field)."""


class ConfigTypeError(ConfigError, TypeError):
    """Something that is not a V-Reason config was passed where one is expected (the message says what to
    pass)."""


def validation_message(
    err: Any, *, noun: str = "field", values: Mapping | None = None, known: Iterable[str] | None = None
) -> str:
    """One line for a pydantic ``ValidationError``: every problem, joined by ``"; "``.

    Args:
        err: the ``pydantic.ValidationError``.
        noun: what a location is called for the reader (``"field"``, ``"key"``; ``""`` for none).
        values: the mapping that was validated; when given, a problem shows the value as typed (``lr=-1.0``).
        known: the accepted names, listed once after an unknown one.

    Returns:
        e.g. ``"field 'lr': must be a finite number in [0, 10], got inf"``.
    """
    label = f"{noun} " if noun else ""
    parts, unknown = [], False
    for problem in err.errors():
        loc = ".".join(str(part) for part in problem["loc"])
        message = " ".join(
            problem["msg"].removeprefix("Value error, ").split()
        )  # pydantic's prefix, newlines
        if problem["type"] == "extra_forbidden":
            parts.append(f"unknown {label}{loc!r}")
            unknown = True
        elif problem["type"] == "json_invalid":
            parts.append(f"not valid JSON ({message})")
        elif not loc:  # a model-level check: its message names the fields
            parts.append(message)
        elif values is not None and len(problem["loc"]) == 1 and problem["loc"][0] in values:
            parts.append(f"{label}{loc}={values[problem['loc'][0]]!r}: {message}")
        else:
            parts.append(f"{label}{loc!r}: {message}")
    if unknown and known is not None:
        parts.append(f"known {noun or 'name'}s: {', '.join(known)}")
    return "; ".join(parts)
