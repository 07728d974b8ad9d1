"""The maths of V-Reason, checked against its definitions."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import vreason_hooks as vreason
from vreason_hooks.apps import testing as T
from vreason_hooks.controller import EntropySwitch, ValueController, effective_values, entropy


def test_entropy_matches_definition_and_bounds():
    logits = torch.randn(3, 50)
    p = logits.softmax(-1)
    torch.testing.assert_close(entropy(logits), -(p * p.log()).sum(-1))
    assert entropy(torch.zeros(1, 50)).item() == pytest.approx(math.log(50), rel=1e-6)
    assert entropy(torch.tensor([[0.0, -1e4, -1e4]])).item() == pytest.approx(0.0, abs=1e-6)


@given(
    st.integers(1, 3),
    st.integers(1, 9),
    st.sampled_from([torch.float32, torch.bfloat16]),
    st.integers(0, 10**6),
)
@settings(max_examples=30, deadline=None)
def test_effective_values_keep_norms_and_are_exact_at_zero(heads, n, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(heads, n, 8, generator=g).to(dtype)
    assert torch.equal(effective_values(v, torch.zeros(heads, n, 8)).to(dtype), v)
    delta = torch.randn(heads, n, 8, generator=g)
    moved = effective_values(v, delta)
    torch.testing.assert_close(moved.norm(dim=-1), v.float().norm(dim=-1), rtol=1e-5, atol=1e-6)
    direction = torch.nn.functional.normalize(v.float() + delta, dim=-1)
    torch.testing.assert_close(torch.nn.functional.normalize(moved, dim=-1), direction, rtol=1e-5, atol=1e-5)


def test_zero_value_vector_stays_finite():
    out = effective_values(torch.zeros(1, 1, 4), torch.ones(1, 1, 4))
    assert torch.isfinite(out).all() and out.abs().max() == 0


@given(
    st.lists(st.floats(0, 12, allow_nan=False), min_size=1, max_size=60), st.sampled_from(["zero", "first"])
)
def test_switch_follows_ema_peak_rule(entropies, init):
    beta = 0.9
    switch = EntropySwitch(beta=beta, ema_init=init)
    ema, peak = 0.0, -math.inf
    for t, h in enumerate(entropies):
        alpha = switch.observe(h)
        ema = h if (t == 0 and init == "first") else beta * ema + (1 - beta) * h  # (1 - β), not 0.1: rounding
        peak = max(peak, ema)
        assert switch.ema == pytest.approx(ema) and switch.peak == pytest.approx(peak)
        assert alpha == (1 if ema >= peak else -1)


def test_ablation_objectives_fix_alpha():
    assert {EntropySwitch(0.98, "max").observe(h) for h in (3, 1, 0.5)} == {1}
    assert {EntropySwitch(0.98, "min").observe(h) for h in (3, 1, 0.5)} == {-1}


def test_ema_from_zero_does_not_peak_at_the_uncertain_first_token():
    """The reason for the zero start (docs/method.md): H_0 is the largest entropy of a typical answer."""
    entropies = [4.5] + [1.0, 1.5, 0.8, 1.2] * 10
    zero, first = EntropySwitch(0.98), EntropySwitch(0.98, ema_init="first")
    alphas_zero = [zero.observe(h) for h in entropies]
    alphas_first = [first.observe(h) for h in entropies]
    assert alphas_first[1:] == [-1] * (len(entropies) - 1)  # seeded with H_0: never explores again
    assert alphas_zero.count(1) > 1


def test_controller_steps_only_the_sequences_it_is_given():
    values = torch.randn(2, 2, 10, 8)
    spans = [torch.tensor([1, 2, 3]), torch.tensor([4, 5])]
    controller = ValueController.from_cache_values(values, spans, vreason.VReasonConfig(lr=0.1))
    losses = {0: -(controller.sequences[0].delta.sum() ** 2 + controller.sequences[0].delta.sum() + 1)}
    report = controller.step(losses)
    assert set(report) == {0}
    assert controller.sequences[0].delta.abs().sum() > 0
    assert controller.sequences[1].delta.abs().sum() == 0
    assert controller.sequences[0].delta.grad is None


def test_controller_clips_per_sequence():
    values = torch.randn(2, 1, 4, 8)
    controller = ValueController.from_cache_values(
        values, [torch.arange(4), torch.arange(4)], vreason.VReasonConfig(lr=0.0, max_grad_norm=0.5)
    )
    losses = {b: 100.0 * controller.sequences[b].delta.sum() * (b + 1) for b in (0, 1)}
    report = controller.step(losses)
    assert report[0][0] == pytest.approx(100 * math.sqrt(32), rel=1e-5)
    assert report[1][0] == pytest.approx(200 * math.sqrt(32), rel=1e-5)


def test_max_objective_ends_with_higher_entropy_than_min():
    model = T.tiny_qwen2_5_vl(seed=1)
    inputs = T.qwen_video_inputs(model, frames=4, grid=8)
    final = {}
    for objective in ("max", "min"):
        with vreason.attach(
            model, vreason.VReasonConfig(objective=objective, lr=0.05, step_interval=1)
        ) as session:
            model.generate(**inputs, max_new_tokens=20, min_new_tokens=20)
        trace = session.traces[0]
        assert set(trace.alpha) == {1 if objective == "max" else -1}
        final[objective] = sum(trace.entropy[-5:]) / 5
    assert final["max"] > final["min"]
