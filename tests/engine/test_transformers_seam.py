"""The seam to transformers (vreason_hooks.transformers_seam): what it resolves on the installed release, and
the loud failures when an internal moves (an unknown cache keyword, a cache the hooks cannot see)."""

from __future__ import annotations

import pytest
import torch
import transformers
from packaging.version import Version
from transformers import LlamaForCausalLM

import vreason_hooks as vreason
from vreason_hooks import transformers_seam
from vreason_hooks.apps import testing as T
from vreason_hooks.errors import NoAdapterError, UncontrolledGenerationError, UpstreamError

RENAMED_IN = Version("5.24.0")
"""transformers renamed the cache keyword of model and decoder-layer forward to `cache` here."""
ACTIVE = vreason.VReasonConfig(lr=0.05, step_interval=2)
GEN = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False)


def _expected_keyword() -> str:
    return "cache" if Version(transformers.__version__) >= RENAMED_IN else "past_key_values"


def test_cache_keyword_of_every_family_matches_the_installed_release(family):
    name, build, _ = family
    model = build()
    adapter = vreason.adapters.resolve(model, name)
    assert transformers_seam.cache_keyword(model) == _expected_keyword()
    assert transformers_seam.cache_keyword(adapter.controlled_layer) == _expected_keyword()
    vreason.attach(model).detach()  # attach resolves both the same way, and refuses neither


def test_supported_range_is_read_from_the_package_metadata():
    ranges = transformers_seam.supported_ranges()
    assert ranges["transformers"].startswith(">=") and "<" in ranges["transformers"]
    assert transformers_seam.in_supported_range("transformers") is True, transformers_seam.version_note()
    note = transformers_seam.version_note()
    assert transformers.__version__ in note and ranges["transformers"] in note and "vreason doctor" in note


def test_deprecated_cache_keyword_is_an_error_in_this_test_suite():
    """pyproject.toml turns transformers' FutureWarnings into errors: the next rename fails a release
    early."""
    if Version(transformers.__version__) < RENAMED_IN:
        pytest.skip("the old keyword is the current one before 5.24")
    model = T.tiny_llama()
    with pytest.raises(FutureWarning, match="deprecated"):
        model(**T.text_inputs(), **{"past_key_" + "values": None})


# ---------------------------------------------------------------------------------------------- injected
# moves
class _UnknownKeywordLayer(torch.nn.Module):
    """A stand-in decoder layer that takes its cache under a keyword no transformers release used."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, hidden_states, kv_store=None, **kwargs):
        return self.inner(hidden_states, **kwargs)


def test_decoder_layer_with_an_unknown_cache_keyword_is_refused_at_attach():
    model = T.tiny_llama()
    model.model.layers[-1] = _UnknownKeywordLayer(model.model.layers[-1])
    with pytest.raises(
        UpstreamError, match=r"_UnknownKeywordLayer\.forward .*none of the keywords.*vreason doctor"
    ):
        vreason.attach(model)
    assert not any(m._forward_pre_hooks or m._forward_hooks for m in model.modules()), (
        "a refused attach left hooks"
    )


class _SmuggledCacheLlama(LlamaForCausalLM):
    """Declares the usual cache keyword but receives the cache from ``generate`` under another name: what a
    rename between the signature and the calling convention looks like to forward hooks."""

    smuggle_at_decode = True
    """False: only the prefill's cache is hidden from the hooks."""

    def prepare_inputs_for_generation(self, *args, **kwargs):
        inputs = super().prepare_inputs_for_generation(*args, **kwargs)
        key = transformers_seam.cache_keyword(LlamaForCausalLM)
        if self.smuggle_at_decode or transformers_seam.cache_length(inputs.get(key)) == 0:
            inputs["smuggled_cache"] = inputs.pop(key, None)
        return inputs

    def forward(self, input_ids=None, attention_mask=None, cache=None, smuggled_cache=None, **kwargs):
        # `cache` in the signature: what V-Reason reads at attach. The cache really comes as smuggled_cache.
        cache = smuggled_cache if smuggled_cache is not None else cache
        if cache is not None:
            kwargs[transformers_seam.cache_keyword(LlamaForCausalLM)] = cache
        return super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)


def _smuggling_model(at_decode: bool = True):
    model = T.tiny_llama()
    model.__class__ = _SmuggledCacheLlama
    model.smuggle_at_decode = at_decode
    return model


def test_decode_step_without_the_prefill_cache_raises():
    model = _smuggling_model()
    inputs = T.text_inputs()
    plain = model.generate(**inputs, **GEN)  # the model itself works
    assert plain.shape[1] == inputs["input_ids"].shape[1] + 8
    with vreason.attach(model, ACTIVE):
        with pytest.raises(UpstreamError, match=r"without the KV cache the prefill created.*supported range"):
            model.generate(**inputs, **GEN)


def test_generate_that_ends_without_updates_raises(monkeypatch):
    """The hooks miss the prefill's cache (in its input and its output): no controller, no update."""
    monkeypatch.setattr(transformers_seam, "output_cache", lambda output: None)
    model = _smuggling_model(at_decode=False)
    with vreason.attach(model, ACTIVE):
        with pytest.raises(
            UncontrolledGenerationError, match=r"no update.*transformers .* installed.*vreason doctor"
        ):
            model.generate(**T.text_inputs(), **GEN)


@pytest.mark.parametrize("config", [dict(objective="none"), dict(lr=0.0)])
def test_settings_that_make_no_update_do_not_raise(monkeypatch, config):
    monkeypatch.setattr(transformers_seam, "output_cache", lambda output: None)
    model = _smuggling_model(at_decode=False)
    with vreason.attach(model, vreason.VReasonConfig(step_interval=2, **config)):
        model.generate(**T.text_inputs(), **GEN)


def test_too_few_tokens_for_an_update_do_not_raise():
    model = T.tiny_llama()
    with vreason.attach(model, vreason.VReasonConfig(step_interval=8)) as session:
        model.generate(**T.text_inputs(), max_new_tokens=7, min_new_tokens=7, do_sample=False)
    assert session.traces[0].num_tokens == 7 and not session.traces[0].update_steps


# ---------------------------------------------------------------------------------------------- unknown
# models
@pytest.mark.parametrize("thing", [torch.nn.Linear(2, 2), object()], ids=["plain-module", "not-a-module"])
def test_object_without_config_gets_the_unknown_model_error(thing):
    with pytest.raises(NoAdapterError, match=r"no \.config.*Available: .*qwen2_5_vl.*spec file"):
        vreason.attach(thing)
