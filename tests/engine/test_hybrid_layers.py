"""Layer kinds, the controlled layer and V-Reason Lite on hybrid-attention models (Qwen3.5: Gated DeltaNet
linear attention + full attention; Gemma 4: sliding windows + full attention, KV sharing).

Tiny text models of both families, built from their config classes, with the prompt as the span (the layer
layout, not the vision tower, is what these tests are about; the multimodal families run the full matrix).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from lite_reference import generate_masked, max_logit_diff

import vreason_hooks as vreason
from vreason_hooks import transformers_seam
from vreason_hooks.adapters import AdapterSpec
from vreason_hooks.apps import testing as T

GEN = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False)
SCORES = dict(GEN, output_logits=True, return_dict_in_generate=True)


def _text_spec(model_type: str) -> AdapterSpec:
    return AdapterSpec.model_validate(
        dict(
            name=f"{model_type}_text",
            model_types=[model_type],
            span={"kind": "prompt"},
            modules=dict(decoder_layers="model.layers", final_norm="model.norm", lm_head="lm_head"),
        )
    )


def _common(layers: int) -> dict:
    return dict(
        vocab_size=T.VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=4096,
        eos_token_id=T.EOS,
        pad_token_id=T.PAD,
        bos_token_id=None,
        tie_word_embeddings=False,
    )


def qwen3_5(layers: int = 4, attn: str = "sdpa"):
    """Three Gated DeltaNet layers then one full-attention layer (Qwen3.5's pattern; 3 layers end on
    linear)."""
    from transformers import Qwen3_5ForCausalLM, Qwen3_5TextConfig

    config = Qwen3_5TextConfig(
        **_common(layers),
        linear_num_value_heads=4,
        linear_num_key_heads=2,
        linear_key_head_dim=16,
        linear_value_head_dim=16,
    )
    return _model(Qwen3_5ForCausalLM, config, attn)


def gemma4(layers: int = 4, attn: str = "sdpa", shared: int = 0, types: list[str] | None = None):
    """Sliding-window layers (window 4) and a last full-attention layer; ``shared`` KV-sharing layers."""
    from transformers import Gemma4ForCausalLM, Gemma4TextConfig

    config = Gemma4TextConfig(
        **_common(layers),
        global_head_dim=16,
        sliding_window=4,
        layer_types=types,
        num_kv_shared_layers=shared,
        hidden_size_per_layer_input=16,
        vocab_size_per_layer_input=T.VOCAB,
    )
    return _model(Gemma4ForCausalLM, config, attn)


def _model(cls, config, attn: str):
    torch.manual_seed(0)
    with warnings.catch_warnings():  # the reference kernels of linear attention announce themselves
        warnings.simplefilter("ignore")
        model = cls(config).eval()
    model.set_attn_implementation(attn)
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = T.EOS, T.PAD
    model.generation_config.do_sample = False
    return model


FAMILIES = {"qwen3_5": qwen3_5, "gemma4": gemma4}


def _attach(name, model, **config):
    return vreason.attach(model, vreason.VReasonConfig(**config), adapter=_text_spec(model.config.model_type))


# ---------------------------------------------------------------------------------------------- layer kinds
def test_layer_kinds_are_read_from_the_cache_layers():
    q, g = (transformers_seam.config_layer_kinds(m.config) for m in (qwen3_5(), gemma4()))
    assert [k.recurrent for k in q] == [True, True, True, False] and q[-1].plain
    assert [k.window for k in g] == [True, True, True, False] and g[-1].plain
    shared = transformers_seam.config_layer_kinds(
        gemma4(6, shared=2, types=["sliding_attention", "full_attention"] * 3).config
    )
    assert [k.shared for k in shared] == [False] * 4 + [True] * 2


@pytest.mark.parametrize(
    "build, says",
    [
        (lambda: qwen3_5(layers=3), r"controlled decoder layer 2 is recurrent state .*LinearAttentionLayer"),
        (
            lambda: gemma4(6, shared=2, types=["sliding_attention", "full_attention"] * 3),
            r"controlled decoder layer 5 is no cache of its own.*KV sharing",
        ),
    ],
)
def test_a_model_whose_controlled_layer_keeps_no_values_is_refused_at_attach(build, says):
    model = build()
    with pytest.raises(vreason.UnsupportedModelError, match=says):
        _attach(None, model)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


# ---------------------------------------------------------------------------------------------- V-Reason
@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_switched_off_is_bit_identical_and_on_it_updates(name, attn):
    model = FAMILIES[name](attn=attn)
    inputs = T.text_inputs(batch=2, pad=[0, 3])
    plain = model.generate(**inputs, **GEN)
    with _attach(name, model, objective="none"):
        assert torch.equal(plain, model.generate(**inputs, **GEN))
    with _attach(name, model, lr=0.0, step_interval=2):
        assert torch.equal(plain, model.generate(**inputs, **GEN))
    with _attach(name, model, lr=0.3, step_interval=2) as session:
        controlled = model.generate(**inputs, **SCORES)
    baseline = model.generate(**inputs, **SCORES)
    assert all(t.update_steps == [1, 3, 5, 7] for t in session.traces)
    assert max_logit_diff(controlled, baseline) > 0, "the updates must move the logits"
    assert session.adapter.cache_layer_index == model.config.num_hidden_layers - 1


# ---------------------------------------------------------------------------------------------- Lite
def _lite(name, model, inputs, **config):
    """(output, layout) of one Lite generate."""
    captured = {}

    def grab(module, args, kwargs, output):
        captured.setdefault("layout", session.generation.layout)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lite on a text span warns that it prunes the question
        with _attach(name, model, lite=True, **config) as session:
            handle = model.register_forward_hook(grab, with_kwargs=True)
            try:
                out = model.generate(**inputs, **SCORES)
            finally:
                handle.remove()
    return out, captured["layout"]


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("prune_at", ["after_prefill", "prefill"])
def test_lite_prunes_the_full_attention_layers_only_and_matches_the_masked_reference(name, prune_at):
    model = FAMILIES[name](attn="eager")
    inputs = T.text_inputs(batch=2, length=14, pad=[0, 5])
    scope = "per_layer" if prune_at == "prefill" else "last_layer"
    lite, layout = _lite(name, model, inputs, objective="none", prune_at=prune_at, prune_scope=scope)
    kinds = transformers_seam.config_layer_kinds(model.config)
    assert layout.pruned_layers == [i for i, kind in enumerate(kinds) if kind.plain] == [3]
    reference = generate_masked(model, inputs, layout.dropped, layers=model.model.layers, **SCORES)
    plain = model.generate(**inputs, **SCORES)
    assert max_logit_diff(lite, reference) < 1e-5
    assert max_logit_diff(plain, reference) > 1e-3, "the reference must differ from the full cache"


@pytest.mark.parametrize("name", sorted(FAMILIES))
@pytest.mark.parametrize("updates", [dict(objective="none"), dict(lr=0.3, step_interval=2)])
def test_a_padded_batch_under_lite_equals_its_rows_solo_runs(name, updates):
    """The silent mask bug: with one pruned 2-D mask for every layer, a padded Gemma 4 batch ran wrong
    (the sliding layers need the original coordinates); each layer type gets its own mask."""
    model = FAMILIES[name](attn="eager")
    rows = [T.text_inputs(length=14, seed=1), T.text_inputs(length=9, seed=2)]
    batch = T.stack_rows(rows)
    together, _ = _lite(name, model, batch, **updates)
    for b, row in enumerate(rows):
        alone, _ = _lite(name, model, row, **updates)
        assert torch.equal(together.sequences[b, -8:], alone.sequences[0, -8:]), b
        assert max((x[b] - y[0]).abs().max().item() for x, y in zip(together.logits, alone.logits)) < 1e-4


# ---------------------------------------------------------------------------------------------- spec choices
def test_a_spec_may_name_another_controlled_layer():
    """``modules.controlled_layer = 0``: ΔV edits layer 0 and its gradient flows through the later layers
    (their weights frozen, no .grad); off, it is bit-identical."""
    model = T.tiny_llama(layers=3)
    spec = vreason.adapters.get("llama").model_copy(
        update={"modules": vreason.adapters.get("llama").modules.model_copy(update={"controlled_layer": 0})}
    )
    inputs = T.text_inputs(batch=2, pad=[0, 3])
    plain = model.generate(**inputs, **GEN)
    with vreason.attach(model, vreason.VReasonConfig(objective="none"), adapter=spec):
        assert torch.equal(plain, model.generate(**inputs, **GEN))
    with vreason.attach(model, vreason.VReasonConfig(lr=0.3, step_interval=2), adapter=spec) as session:
        assert session.adapter.cache_layer_index == 0 and len(session.adapter.later_layers) == 2
        controlled = model.generate(**inputs, **GEN)
    assert all(t.update_steps == [1, 3, 5, 7] and t.delta_norm[-1] > 0 for t in session.traces)
    assert not torch.equal(plain, controlled)
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_a_named_controlled_layer_before_recurrent_layers_is_refused():
    model = qwen3_5(layers=4)
    spec = _text_spec("qwen3_5_text")
    spec = spec.model_copy(update={"modules": spec.modules.model_copy(update={"controlled_layer": -1})})
    vreason.attach(model, adapter=spec).detach()  # the last (full-attention) layer is fine
    with pytest.raises(vreason.UnsupportedModelError, match=r"controlled decoder layer 2 is recurrent"):
        vreason.attach(
            model,
            adapter=spec.model_copy(
                update={"modules": spec.modules.model_copy(update={"controlled_layer": 2})}
            ),
        )
