"""Exceptions with one-line messages that say what to do."""


class VReasonError(Exception):
    """Base class of every error raised by vreason_hooks."""


class UnsupportedSettingError(VReasonError, ValueError):
    """A generation setting V-Reason cannot run under (beam search, quantized or offloaded caches, ...)."""


class NoAdapterError(VReasonError, LookupError):
    """No adapter spec matches the model."""


class SpecError(VReasonError, ValueError):
    """An adapter spec file is invalid (the message names the file and the key)."""


class AlreadyAttachedError(VReasonError, RuntimeError):
    """``attach`` was called on a model that already has a V-Reason session."""


class UpstreamError(VReasonError, RuntimeError):
    """transformers (or lmms-eval) moved an internal V-Reason relies on; the message names the installed
    version, the supported range and ``vreason doctor``."""


class UncontrolledGenerationError(UpstreamError):
    """A controlled ``generate`` ended without the updates its settings imply: V-Reason did not run."""


class ConcurrentUseError(VReasonError, RuntimeError):
    """A forward from a second thread while an attached model is generating under V-Reason in another."""
