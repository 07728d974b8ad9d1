"""What V-Reason refuses, the loud failures that replace silent no-ops, and every warning a session gives.

* :func:`check_generation_settings`: the ``generate`` settings V-Reason cannot run under (beam search,
  assisted decoding, no cache, a cache it cannot edit, activation checkpointing in training mode, a compiled
  model), refused before the call starts;
* :func:`check_caller` and :func:`check_decode_cache`: a forward that would share a running generation from
  another thread, bypass the attached ``generate``, or arrive without the prefill's cache;
* :func:`check_controlled`: after the call, a generation whose settings imply updates but that made none
  (the controller never saw the model's cache) is an error, not a normal-looking run;
* :class:`SessionWarnings`: the warnings, each given once per session.
"""

from __future__ import annotations

import threading
import warnings
from typing import Any

from torch import nn

from . import transformers_seam
from .config import VReasonConfig
from .errors import (
    ConcurrentUseError,
    UncontrolledGenerationError,
    UnsupportedSettingError,
    UpstreamError,
    VReasonError,
)
from .trace import Trace

SUPPORTED_CACHE_IMPLEMENTATIONS = (None, "dynamic")
LITE_ON_TEXT_DOC = "docs/benchmarks/reasoning-study.md"
BEAM_MODES = ("beam_search", "beam_sample", "group_beam_search", "constrained_beam_search")


def check_generation_settings(
    settings: transformers_seam.GenerationSettings, controlled_layer: nn.Module, cache_layer_index: int
) -> None:
    """Refuse, in one line each, the settings of a ``generate`` call V-Reason cannot run under."""
    if settings.mode in BEAM_MODES:
        raise UnsupportedSettingError(
            f"V-Reason does not support beam search (num_beams={settings.num_beams}, {settings.mode}): use "
            "greedy or sampling (num_beams=1)"
        )
    if settings.mode == "assisted_generation":
        raise UnsupportedSettingError(
            "V-Reason does not support assisted / speculative decoding (assistant_model, "
            "prompt_lookup_num_tokens, assistant_early_exit): it needs one token per forward pass"
        )
    if settings.mode not in transformers_seam.SUPPORTED_MODES:
        raise UnsupportedSettingError(
            f"V-Reason runs under greedy decoding and sampling only, not {settings.mode}: drop the settings "
            "that select it (e.g. penalty_alpha, dola_layers)"
        )
    if not settings.use_cache:
        raise UnsupportedSettingError(
            "V-Reason controls the KV cache and needs use_cache=True (drop use_cache=False)"
        )
    if settings.cache_implementation not in SUPPORTED_CACHE_IMPLEMENTATIONS:
        raise UnsupportedSettingError(
            f"V-Reason needs a DynamicCache; cache_implementation={settings.cache_implementation!r} is not "
            "supported (drop it, or pass cache_implementation='dynamic')"
        )
    if settings.cache is not None:
        needed = "V-Reason (controlled layer)"
        transformers_seam.check_dynamic_cache(settings.cache, [cache_layer_index], needed_by=needed)
    check_model_state(controlled_layer)


def check_model_state(controlled_layer: nn.Module) -> None:
    """Refuse a controlled layer that runs under activation checkpointing (the update step's backward
    cannot go through it)."""
    if transformers_seam.checkpointed(controlled_layer):
        raise UnsupportedSettingError(
            "V-Reason cannot update ΔV through a layer under gradient checkpointing in training mode: call "
            "model.eval() before generate (or model.activation_checkpointing_disable())"
        )


def check_not_compiled(model: nn.Module) -> None:
    """Refuse a ``torch.compile``-d model (its traced forward never runs the hooks again)."""
    if transformers_seam.compiled(model):
        raise UnsupportedSettingError(
            f"V-Reason cannot run a torch.compile-d model ({type(model).__name__}): its compiled forward "
            "skips the hooks; attach to the model before compiling, and do not compile it (generate does "
            "not need it)"
        )


def check_caller(model: nn.Module, owner: int | None, in_generate: bool) -> None:
    """Refuse a forward that would share the session with a running ``generate`` or bypass its checks.

    Args:
        owner: the thread id of the ``generate`` running under V-Reason (``None``: none runs).
        in_generate: whether this thread is inside the attached ``generate``.
    """
    if owner is not None and owner != threading.get_ident():
        raise ConcurrentUseError(
            f"V-Reason: {type(model).__name__} is generating under V-Reason in another thread; a forward "
            "from this thread would share its controller state. Call model.generate (calls are serialised), "
            "or attach a separate model copy per thread"
        )
    if not in_generate and transformers_seam.inside_generate(model):
        raise UnsupportedSettingError(
            "V-Reason: this generate call bypassed the attached model.generate (a `generate` bound before "
            "attach, e.g. gen = model.generate); its settings were not checked and its cache would keep the "
            "edited values. Call model.generate after attach"
        )


def check_decode_cache(model: nn.Module, cache: Any, past: int, prefill_cache: Any, keyword: str) -> None:
    """Inside one ``generate`` call there is one prefill; every later forward must carry the cache it filled.

    A forward that arrives without it would otherwise look like a new prefill: V-Reason would restart at
    every token and never update (what transformers 5.24's keyword rename did to the first release).
    """
    if cache is None or past == 0 or (prefill_cache is not None and cache is not prefill_cache):
        raise UpstreamError(
            f"V-Reason: a decode step of {type(model).__name__} arrived without the KV cache the prefill "
            f"created (looked for keyword {keyword!r}); {transformers_seam.version_note()}"
        )


def check_controlled(traces: list[Trace], config: VReasonConfig) -> None:
    """Raise if a live sequence with a span ran long enough for an update and got none.

    The first update falls after token ``max(step_interval, 2)``; fewer tokens, an empty span, a diverged
    sequence, ``objective='none'`` or ``lr=0`` legitimately make none.
    """
    if not config.updates or config.lr == 0:
        return
    due = max(config.step_interval, 2)
    silent = [t for t in traces if t.span and len(t.entropy) >= due and not t.update_steps and not t.diverged]
    if silent:
        raise UncontrolledGenerationError(
            f"V-Reason made no update in a generate call that should have made some ({len(silent)} "
            f"sequence(s) with a span ran {len(silent[0].entropy)} tokens at "
            f"step_interval={config.step_interval}): the controller did not see the model's cache; "
            f"{transformers_seam.version_note()}"
        )


def refuse_copy(*_: Any) -> Any:
    """``copy.deepcopy`` / ``pickle`` of a model with a session attached (they reach its hooks): one line."""
    raise VReasonError(
        "cannot copy or pickle a model while V-Reason is attached to it (its hooks would follow the copy): "
        "copy or save it before attach, or after the session's `with` block ends (session.detach())"
    )


class SessionWarnings:
    """The warnings of one session, each given at most once (a long evaluation logs each problem once)."""

    def __init__(self, adapter_name: str):
        self.adapter_name = adapter_name
        self._given: set[str] = set()

    def lite_on_text(self, ratio: float) -> None:
        self._warn(
            "lite_on_text",
            f"V-Reason Lite with the text adapter {self.adapter_name!r} prunes {ratio:.0%} of the prompt "
            f"itself (question included), which costs accuracy ({LITE_ON_TEXT_DOC}). Lite is meant for video "
            "spans; use lite=False for text models",
            stacklevel=5,  # the caller of attach()
        )

    def no_span(self, past: int) -> None:
        if past:  # a continuation of a returned cache: the video, if any, is in the cached prefix
            self._warn(
                "continuation",
                f"V-Reason: this generate continues a cache that already holds {past} tokens and its new "
                f"input has no span tokens for adapter {self.adapter_name!r} (the video is in the cached "
                "prefix): the continuation runs uncontrolled. Generate from the full prompt to control it",
            )
            return
        self._warn(
            "no_span",
            f"V-Reason: no span tokens in this input for adapter {self.adapter_name!r} (e.g. a text-only "
            "prompt to a video model); generating without control",
        )

    def missing_inputs(self, missing: list[str]) -> None:
        self._warn(
            "inputs",
            f"V-Reason: adapter {self.adapter_name!r} expects {', '.join(missing)} in the generate inputs "
            "(pass the processor's output unchanged); without it the model's positions are wrong, with or "
            "without V-Reason",
        )

    def diverged(self, sequence: int, step: int, what: str, lr: float, prefill: bool) -> None:
        cause = (
            "the model's own prefill logits were not finite (not caused by V-Reason: check the model and "
            "inputs)"
            if prefill
            else f"lower lr (now {lr}) or keep max_grad_norm set"
        )
        self._warn(
            "diverged",
            f"V-Reason: sequence {sequence} diverged at token {step} ({what}); its updates stopped and its "
            f"span values were restored (trace.diverged). Cause: {cause}",
        )

    def _warn(self, key: str, message: str, stacklevel: int = 4) -> None:
        if key not in self._given:
            self._given.add(key)
            warnings.warn(message, stacklevel=stacklevel)
