"""Per-request V-Reason settings, read from vLLM's ``SamplingParams.extra_args``.

Two spellings, one meaning:

* offline: ``SamplingParams(extra_args={"vreason": {"lr": 3e-4, "trace_dir": "traces/"}})`` (``{}`` or
  ``True``: the paper's defaults);
* OpenAI server: flat ``vllm_xargs`` keys, which vLLM copies into ``extra_args`` unchanged:
  ``{"vreason_lr": 3e-4, "vreason_trace_dir": "traces/"}`` (``{"vreason": 1}``: the defaults).

A request without either is a plain request: vLLM serves it exactly as without the plugin. Every field is a
:class:`~vreason_hooks.config.VReasonConfig` field, plus ``trace_dir`` (where the worker writes the request's
trace). A bad value fails that request alone with the one-line :class:`~vreason_hooks.errors.ConfigError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from vreason_hooks.config import VReasonConfig, coerce_config
from vreason_hooks.errors import ConfigError

KEY = "vreason"
PREFIX = "vreason_"
ON_WORDS = (True, 1, "1", "true", "on", "yes")
NONE_WORDS = ("none", "null")


@dataclass(frozen=True)
class RequestSettings:
    """What one controlled request asked for."""

    config: VReasonConfig
    trace_dir: str | None = None
    """Folder where the worker writes ``<request key>.json`` (see :mod:`vreason_vllm.traces`)."""


def is_controlled(extra_args: Mapping[str, Any] | None) -> bool:
    """Whether ``extra_args`` opts in (cheap: no validation; used on every request)."""
    if not extra_args:
        return False
    return KEY in extra_args or any(isinstance(k, str) and k.startswith(PREFIX) for k in extra_args)


def request_settings(extra_args: Mapping[str, Any] | None) -> RequestSettings | None:
    """The settings of a request, ``None`` for a plain one.

    Raises:
        ConfigError: one line naming the bad key or value.
    """
    if not is_controlled(extra_args):
        return None
    fields = _fields(extra_args)
    trace_dir = fields.pop("trace_dir", None)
    if trace_dir is not None and not isinstance(trace_dir, str):
        raise ConfigError(f"bad V-Reason config: trace_dir must be a folder path, got {trace_dir!r}")
    for name, value in fields.items():  # xargs cannot carry null: 'none' means None where a field allows it
        if isinstance(value, str) and value.lower() in NONE_WORDS and name in _OPTIONAL:
            fields[name] = None
    return RequestSettings(coerce_config(fields), trace_dir)


def _fields(extra_args: Mapping[str, Any]) -> dict[str, Any]:
    """The V-Reason fields of ``extra_args``, from the nested or the flat spelling (not both)."""
    nested = extra_args.get(KEY)
    flat = {k[len(PREFIX) :]: v for k, v in extra_args.items() if isinstance(k, str) and k.startswith(PREFIX)}
    if nested is not None and flat:
        raise ConfigError(
            f"bad V-Reason config: give either extra_args[{KEY!r}] = {{...}} or flat {PREFIX}<field> keys, "
            f"not both (got {KEY!r} and {', '.join(PREFIX + k for k in flat)})"
        )
    if nested is None:
        return flat
    if isinstance(nested, Mapping):
        return dict(nested)
    if nested in ON_WORDS or (isinstance(nested, str) and nested.lower() in ON_WORDS):
        return {}
    raise ConfigError(
        f"bad V-Reason config: extra_args[{KEY!r}] must be a dict of VReasonConfig fields (or true for the "
        f"defaults), got {nested!r}"
    )


_OPTIONAL = {
    name
    for name, info in VReasonConfig.model_fields.items()
    if info.default is None or "None" in str(info.annotation)
}
