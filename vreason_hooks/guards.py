"""What V-Reason refuses, and the loud failures that replace silent no-ops.

* :func:`check_generation_settings`: the ``generate`` settings V-Reason cannot run under (beam search,
  assisted decoding, no cache, a cache it cannot edit), refused before the call starts;
* :func:`check_controlled`: after the call, a generation whose settings imply updates but that made none
  (the controller never saw the model's cache) is an error, not a normal-looking run.
"""

from __future__ import annotations

import functools

from . import transformers_seam
from .config import VReasonConfig
from .errors import UncontrolledGenerationError, UnsupportedSettingError
from .trace import Trace

SUPPORTED_CACHE_IMPLEMENTATIONS = (None, "dynamic")


def check_generation_settings(kwargs: dict, generation_config, cache_layer_index: int) -> None:
    """Refuse, in one line each, the settings of a ``generate(**kwargs)`` call V-Reason cannot run under."""
    setting = functools.partial(transformers_seam.generation_setting, kwargs, generation_config)
    beams = setting("num_beams") or 1
    if beams > 1:
        raise UnsupportedSettingError(
            f"V-Reason does not support beam search (num_beams={beams}): use greedy or sampling (num_beams=1)"
        )
    if setting("assistant_model") is not None or setting("prompt_lookup_num_tokens"):
        raise UnsupportedSettingError(
            "V-Reason does not support assisted / speculative decoding: it needs one token per forward pass"
        )
    if setting("use_cache") is False:
        raise UnsupportedSettingError(
            "V-Reason controls the KV cache and needs use_cache=True (drop use_cache=False)"
        )
    implementation = setting("cache_implementation")
    if implementation not in SUPPORTED_CACHE_IMPLEMENTATIONS:
        raise UnsupportedSettingError(
            f"V-Reason needs a DynamicCache; cache_implementation={implementation!r} is not supported "
            "(drop it, or pass cache_implementation='dynamic')"
        )
    cache = transformers_seam.forward_cache(kwargs)
    if cache is not None:
        transformers_seam.check_dynamic_cache(
            cache, [cache_layer_index], needed_by="V-Reason (controlled layer)"
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
            "sequence(s) "
            f"with a span ran {len(silent[0].entropy)} tokens at step_interval={config.step_interval}): "
            f"the controller did not see the model's cache; {transformers_seam.version_note()}"
        )
