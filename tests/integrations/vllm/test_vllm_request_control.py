"""The per-request state machine without vLLM: the copy of the controlled layer, recompute after preemption,
the cache-hit guard, the token accounting and one update step (plain torch, a random tail)."""

from __future__ import annotations

import pytest
import torch
from vreason_vllm.grad_path import DecoderTail, Linear, RMSNorm
from vreason_vllm.request_config import RequestSettings
from vreason_vllm.request_control import RequestControl

from vreason_hooks.config import VReasonConfig
from vreason_hooks.errors import UpstreamError

HEADS, KV_HEADS, HEAD, HIDDEN, VOCAB = 4, 2, 8, 16, 50


def control(lr=0.5, objective="switch", prompt_len=6, span=(1, 2, 3)):
    settings = RequestSettings(VReasonConfig(lr=lr, objective=objective, step_interval=2))
    return RequestControl.create(
        "req", settings, "qwen2", list(span), prompt_len, 16, (KV_HEADS, HEAD), torch.float32
    )


def kv(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, KV_HEADS, HEAD, generator=g), torch.randn(n, KV_HEADS, HEAD, generator=g)


def tail(seed=0):
    g = torch.Generator().manual_seed(seed)
    w = lambda *shape: torch.randn(*shape, generator=g) * 0.3
    return DecoderTail(
        Linear(w(HIDDEN, HEADS * HEAD)), RMSNorm(torch.ones(HIDDEN), 1e-6), Linear(w(4 * HIDDEN, HIDDEN)),
        Linear(w(HIDDEN, 2 * HIDDEN)), RMSNorm(torch.ones(HIDDEN), 1e-6), Linear(w(VOCAB, HIDDEN)), VOCAB,
    )  # fmt: skip


def test_recomputed_positions_are_written_back_from_the_first_sight_copy():
    c = control()
    k, v = kv(6, 0)
    assert c.capture(0, k, v, torch.arange(6)) is None  # first sight: vLLM writes its own tensors
    k2, v2 = kv(7, 1)  # after a preemption vLLM recomputes all 6 positions and one new token, in new slots
    keys, values = c.capture(0, k2, v2, torch.arange(100, 107))
    assert torch.equal(keys[:6], k) and torch.equal(values[:6], v) and torch.equal(values[6], v2[6])
    assert c.captured == 7 and c.slots[:7].tolist() == list(range(100, 107))


def test_positions_never_seen_are_a_loud_error_not_a_silent_cache_hit():
    c = control()
    k, v = kv(2, 0)
    with pytest.raises(UpstreamError, match="prefix-cache hit at position 4"):
        c.capture(4, k, v, torch.arange(2))


def test_tokens_are_counted_once_and_partial_prefills_emit_none():
    c = control()
    assert not c.produces_token(4, 0)  # a chunk of the prompt
    assert c.produces_token(6, 0)  # the prompt's last chunk emits token 0
    assert not c.produces_token(7, 0)  # inconsistent counts: not this control's next token


def _prefill(c):
    k, v = kv(6, 0)
    c.capture(0, k, v, torch.arange(6))
    c.observe(torch.randn(VOCAB), tail(), HEAD**-0.5)


def test_an_update_step_moves_the_span_only_and_keeps_the_norms():
    c = control()
    _prefill(c)
    k, v = kv(1, 11)
    c.capture(6, k, v, torch.tensor([6]))  # token 0 goes through the layer; the forward emits token 1
    original = c.values.clone()
    assert c.update_now(7, 1)  # step_interval=2: token 1 is an update step
    c.set_grad_inputs(torch.randn(HEADS, HEAD), torch.randn(HIDDEN))
    write = c.observe(torch.randn(VOCAB), tail(), HEAD**-0.5)
    assert c.trace.update_steps == [1] and c.trace.delta_norm[0] > 0
    moved = (c.values[:7] != original[:7]).any(dim=(1, 2)).nonzero().flatten().tolist()
    assert moved == [1, 2, 3]  # the span, nothing else
    torch.testing.assert_close(c.values[[1, 2, 3]].norm(dim=-1), original[[1, 2, 3]].norm(dim=-1))
    assert torch.equal(write.values, c.values[[1, 2, 3]]) and write.slots.tolist() == [1, 2, 3]


def test_objective_none_makes_no_controller_and_no_update():
    c = control(objective="none")
    _prefill(c)
    assert c.controller is None and not c.update_now(7, 1)
