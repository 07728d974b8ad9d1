"""Split lmms-eval's ``--model_args`` into the V-Reason config, the integration's options and the upstream
wrapper's own arguments, and check all three at start-up.

    lr=3e-4,step_interval=4,objective=switch,lite=true,pretrained=DIR,max_num_frames=16
      -> VReasonConfig(lr=3e-4, ...), IntegrationOptions(...), {"pretrained": DIR, "max_num_frames": 16}

lmms-eval has already turned ``true`` / numbers into Python values (``handle_arg_string``); the rest is
validated here, and every error names the argument as the user typed it.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass, fields
from typing import Any

from vreason_hooks import VReasonConfig
from vreason_hooks.errors import ConfigError, VReasonError, validation_message

NONE_WORDS = ("none", "null")


@dataclass(frozen=True)
class IntegrationOptions:
    """Options of the lmms-eval integration itself (not of V-Reason, not of the upstream wrapper)."""

    trace_dir: str | None = None
    """Where the per-document JSONL and the summary go. Default: next to lmms-eval's samples
    (``--output_path/<model name>/``) when run from the lmms-eval CLI; nowhere otherwise."""
    prompt_model: str | None = None
    """The model name task YAMLs see when they pick prompts and generation kwargs
    (``lmms_eval_specific_kwargs``). Default: the upstream wrapper's name, so V-Reason gets the baseline's
    prompts; ``prompt_model=own`` keeps the name given to ``--model``."""


class ModelArgsError(VReasonError, ValueError):
    """A ``--model_args`` key or value that cannot be used; the message names it."""


def _allows_none(annotation) -> bool:
    origin = typing.get_origin(annotation)
    return (origin is typing.Union or origin is types.UnionType) and type(None) in typing.get_args(annotation)


def split_model_args(
    model: str, kwargs: dict[str, Any], upstream_keys: set[str]
) -> tuple[VReasonConfig, IntegrationOptions, dict]:
    """``(config, options, upstream_kwargs)`` from the keyword arguments lmms-eval passed to the model.

    Raises :class:`ModelArgsError` for an unknown key or a bad value, naming it.
    """
    config_fields = VReasonConfig.model_fields
    option_fields = {f.name for f in fields(IntegrationOptions)}
    clash = (set(config_fields) | option_fields) & upstream_keys
    if clash:  # would make a key ambiguous; only an lmms-eval upgrade can cause it
        raise ModelArgsError(f"{model}: upstream argument(s) {sorted(clash)} collide with V-Reason arguments")
    config_args, options, upstream = {}, {}, {}
    for key, value in kwargs.items():
        if key in config_fields:
            if (
                isinstance(value, str)
                and value.lower() in NONE_WORDS
                and _allows_none(config_fields[key].annotation)
            ):
                value = None
            config_args[key] = value
        elif key in option_fields:
            options[key] = None if value is None else str(value)
        elif key in upstream_keys:
            upstream[key] = value
        else:
            raise ModelArgsError(
                f"{model}: unknown --model_args key {key!r}. V-Reason keys: {', '.join(config_fields)}; "
                f"integration keys: {', '.join(sorted(option_fields))}; upstream keys: "
                f"{', '.join(sorted(upstream_keys))}"
            )
    try:
        config = VReasonConfig.model_validate(config_args)
    except ConfigError as err:
        raise ModelArgsError(
            f"{model}: bad --model_args value: "
            f"{validation_message(err.validation, noun='', values=config_args)}"
        ) from None
    return config, IntegrationOptions(**options), upstream


def check_prompt_model(model: str, prompt_model: str | None, baseline: str) -> str:
    """The model name tasks should pick prompts for: ``prompt_model`` if it is ``own`` or a name lmms-eval's
    ``--model`` accepts, ``baseline`` (the upstream wrapper's name) when it is not given.

    A name lmms-eval does not know would make every task fall back to its ``default:`` prompts while the log
    said they match the baseline's, so it is a :class:`ModelArgsError` naming the closest known names."""
    if prompt_model is None:
        return baseline
    if prompt_model == "own":
        return prompt_model
    from .lmms_eval_seam import registered_model_names

    known = registered_model_names()
    if prompt_model in known:
        return prompt_model
    import difflib

    close = difflib.get_close_matches(prompt_model, sorted(known), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(map(repr, close))}? " if close else ""
    raise ModelArgsError(
        f"{model}: prompt_model={prompt_model!r} is not an lmms-eval model name; {hint}pass the --model name "
        f"whose prompts the tasks should use (default: {baseline!r}, the baseline's), or prompt_model=own"
    )
