"""Which requests V-Reason serves, decided in vLLM's front end before a request is queued.

A controlled request is refused, alone and in one line, when its settings are bad
(:class:`~vreason_hooks.errors.ConfigError`) or when V-Reason cannot serve it in this engine or in this shape
(:class:`~vreason_hooks.errors.UnsupportedSettingError`); both are ``ValueError``\\ s, which ``LLM.generate``
raises and the OpenAI server answers with HTTP 400. The engine keeps serving. Plain requests are never
looked at beyond the presence of ``vreason`` keys.
"""

from __future__ import annotations

from vreason_hooks.adapters import adapter_for_config
from vreason_hooks.errors import NoAdapterError, UnsupportedSettingError, UpstreamError

from . import vllm_seam as seam
from .request_config import RequestSettings, request_settings

ARCHITECTURES = (
    "Qwen2ForCausalLM",
    "LlamaForCausalLM",
    "Qwen2_5_VLForConditionalGeneration",
)
"""vLLM model classes whose last layer has the shape :mod:`vreason_vllm.grad_path` differentiates (tested)."""

PLUGIN_ERRORS: list[str] = []
"""One line per vLLM internal the plugin could not install in this process (then every controlled request is
refused with it)."""


def admit(params, vllm_config, lora_request=None) -> RequestSettings | None:
    """The settings of a request, ``None`` for a plain one; raises for a controlled request V-Reason cannot
    serve (see the module docstring)."""
    settings = request_settings(seam.extra_args(params))
    if settings is None:
        return None
    if PLUGIN_ERRORS:
        raise UpstreamError(PLUGIN_ERRORS[0])
    refusal = engine_refusal(vllm_config)
    if refusal:
        raise UnsupportedSettingError(refusal)
    if settings.config.lite:
        raise UnsupportedSettingError(
            "V-Reason Lite (lite=true) is not available inside vLLM: its paged KV blocks are shared and "
            "cannot shrink per request; use lite=false (or the HF path, vreason_hooks.attach)"
        )
    if lora_request is not None:
        raise UnsupportedSettingError(
            "V-Reason in vLLM does not control LoRA requests (the gradient path uses the base weights): "
            "drop the LoRA adapter or the vreason settings"
        )
    return settings


def engine_refusal(vllm_config) -> str | None:
    """Why this engine cannot serve controlled requests (``None``: it can); a few attribute reads."""
    facts = seam.engine_facts(vllm_config)
    if facts["runner_type"] != "generate":
        return "V-Reason controls text generation; this engine runs a pooling model"
    if facts["compiled"] or facts["cudagraphs"]:
        return (
            "V-Reason needs eager execution (its hooks do not run inside torch.compile / CUDA graphs): "
            "start the engine with enforce_eager=True (vllm serve --enforce-eager)"
        )
    if facts["v2_runner"]:
        return (
            "V-Reason needs vLLM's V1 model runner: set VLLM_USE_V2_MODEL_RUNNER=0 before starting the engine"
        )
    for name in ("tensor_parallel", "pipeline_parallel", "data_parallel"):
        if facts[name] != 1:
            return (
                f"V-Reason in vLLM runs on one device: {name.replace('_', ' ')} size {facts[name]} is not "
                "supported yet (docs/vllm.md: the tensor-parallel design)"
            )
    if facts["speculative"]:
        return "V-Reason does not support speculative decoding: it needs one token per forward pass"
    if facts["kv_cache_dtype"] not in ("auto", None) or facts["quantization"] is not None:
        return (
            "V-Reason in vLLM needs unquantized weights and KV cache (kv_cache_dtype='auto', no "
            "quantization): the original values it restores and edits must be the cached ones"
        )
    return _family_refusal(facts)


def _family_refusal(facts: dict) -> str | None:
    try:
        spec = adapter_for_config(facts["hf_config"])
    except NoAdapterError as err:
        return f"V-Reason cannot control this model: {err}"
    supported = [a for a in facts["architectures"] if a in ARCHITECTURES]
    if not supported:
        return (
            f"V-Reason in vLLM supports {', '.join(ARCHITECTURES)}; this model is "
            f"{'/'.join(facts['architectures'])} (adapter {spec.name!r} works on the HF path, "
            "vreason_hooks.attach)"
        )
    text = spec.text_config(facts["hf_config"])
    if getattr(text, "use_sliding_window", False) or getattr(text, "attn_logit_softcapping", None):
        return "V-Reason in vLLM does not model sliding-window or soft-capped attention (this model uses it)"
    return None


def refuse_beam_search(xargs) -> None:
    """Beam search in vLLM's OpenAI server builds its own sampling parameters and would drop the settings."""
    if request_settings(xargs) is not None:
        raise UnsupportedSettingError(
            "V-Reason does not support beam search (use_beam_search=true): use greedy or sampling"
        )
