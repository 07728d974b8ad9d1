"""The vLLM gradient path (plain torch) against transformers' own last layer, norm and head: same logits of
the newest token, same gradient of its entropy with respect to the span's values. Runs without vLLM."""

from __future__ import annotations

import pytest
import torch
from vreason_vllm.grad_path import DecoderTail, Linear, RMSNorm, attention

from vreason_hooks.controller import entropy

transformers = pytest.importorskip("transformers")


def _tiny(family: str):
    text = dict(
        vocab_size=96, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, initializer_range=0.3, tie_word_embeddings=False,
    )  # fmt: skip
    torch.manual_seed(0)
    if family == "qwen2":
        config = transformers.Qwen2Config(**text)
        model = transformers.Qwen2ForCausalLM(config)
    else:
        config = transformers.LlamaConfig(**text)
        model = transformers.LlamaForCausalLM(config)
    model.set_attn_implementation("eager")
    return model.eval()


def _tail(model) -> DecoderTail:
    layer, head = model.model.layers[-1], model.lm_head
    mlp = layer.mlp
    return DecoderTail(
        o_proj=Linear(layer.self_attn.o_proj.weight, layer.self_attn.o_proj.bias),
        post_norm=RMSNorm(
            layer.post_attention_layernorm.weight, layer.post_attention_layernorm.variance_epsilon
        ),
        gate_up=Linear(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight])),
        down=Linear(mlp.down_proj.weight),
        final_norm=RMSNorm(model.model.norm.weight, model.model.norm.variance_epsilon),
        lm_head=Linear(head.weight),
        vocab_size=head.weight.shape[0],
    )


@pytest.mark.parametrize("family", ["qwen2", "llama"])
def test_logits_and_span_gradient_match_transformers(family, monkeypatch):
    model = _tiny(family)
    ids = torch.randint(0, 96, (1, 10), generator=torch.Generator().manual_seed(1))
    span = torch.tensor([1, 2, 3, 6])
    last = model.model.layers[-1]
    captured = {}
    module = type(last.self_attn).__module__
    eager = __import__(module, fromlist=["eager_attention_forward"]).eager_attention_forward

    def capture(attn_module, query, key, value, *args, **kwargs):
        if attn_module is last.self_attn:
            captured.update(query=query, key=key, value=value)
        return eager(attn_module, query, key, value, *args, **kwargs)

    monkeypatch.setattr(f"{module}.eager_attention_forward", capture)
    span_values = torch.randn(1, len(span), 2 * 16, requires_grad=True)  # (1, n_span, kv_heads * head_dim)

    def replace_span(mod, args, output):
        output = output.clone()
        output[:, span] = span_values
        return output

    handles = [
        last.self_attn.v_proj.register_forward_hook(replace_span),
        last.register_forward_pre_hook(
            lambda m, a, k: captured.update(residual=(a or [None])[0]), with_kwargs=True
        ),
    ]
    try:
        reference = model(input_ids=ids).logits[0, -1]
    finally:
        for handle in handles:
            handle.remove()
    expected_grad = torch.autograd.grad(entropy(reference[None])[0], span_values)[0]

    values = captured["value"][0].detach().clone()  # (kv_heads, seq, head_dim)
    grad_leaf = span_values.detach().clone().requires_grad_(True)
    values = values.index_copy(1, span, grad_leaf[0].view(len(span), 2, 16).transpose(0, 1))
    out = attention(captured["query"][0, :, -1].detach(), captured["key"][0].detach(), values, 16**-0.5)
    assert captured["residual"] is not None  # the decoder layer's positional hidden_states
    logits = _tail(model).logits(out, captured["residual"][0, -1].detach())
    torch.testing.assert_close(logits, reference.detach(), rtol=1e-4, atol=1e-4)
    grad = torch.autograd.grad(entropy(logits[None])[0], grad_leaf)[0]
    torch.testing.assert_close(grad, expected_grad, rtol=1e-3, atol=1e-6)
    assert grad.abs().sum() > 0  # a gradient that can fail: zero would match a zero reference too
