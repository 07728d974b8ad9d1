"""The invariants every adapter must keep, run over every shipped adapter family (see conftest.FAMILIES)."""

from __future__ import annotations

import pytest
import torch

import vreason_hooks as vreason
from vreason_hooks import adapters, transformers_seam
from vreason_hooks.apps.testing import FAMILIES
from vreason_hooks.controller import effective_values

GEN = dict(max_new_tokens=12, min_new_tokens=12, do_sample=False)


def test_every_shipped_adapter_is_in_the_matrix():
    assert {spec.name for spec in adapters.available()} <= set(FAMILIES)


def test_adapter_is_found_automatically(family):
    name, build, _ = family
    assert vreason.adapters.find_adapter(build()).name == name


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("switched_off", [dict(objective="none"), dict(lr=0.0, step_interval=2)])
def test_switched_off_controller_is_bit_identical_to_plain_generate(family, attn, batch, switched_off):
    name, build, make_inputs = family
    if attn not in adapters.get(name).attention:
        pytest.skip(f"spec {name!r} does not list attention {attn!r}")
    model = build(attn=attn)
    inputs = make_inputs(model, batch=batch, pad=[0, 3][:batch])
    plain = model.generate(**inputs, **GEN)
    with vreason.attach(model, vreason.VReasonConfig(**switched_off)) as session:
        controlled = model.generate(**inputs, **GEN)
    assert torch.equal(plain, controlled)
    assert len(session.traces) == batch
    if switched_off.get("lr") == 0.0:  # the optimiser really ran, it just could not move ΔV
        assert session.traces[0].update_steps == [1, 3, 5, 7, 9, 11]
        assert session.traces[0].delta_norm == [0.0] * 6


def _hook_count(model) -> int:
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()
    )


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("raise_inside", [False, True])
def test_model_is_left_exactly_as_it_was(family, raise_inside):
    _, build, make_inputs = family
    model = build()
    inputs = make_inputs(model, batch=2, pad=[0, 2])
    model.generate(
        **inputs, max_new_tokens=2
    )  # transformers adds its own output-recording hooks on first use
    before, hooks_before = _state(model), _hook_count(model)
    flags_before = [p.requires_grad for p in model.parameters()]

    class Boom(Exception):
        pass

    with pytest.raises(Boom) if raise_inside else _nullcontext():
        with vreason.attach(model, vreason.VReasonConfig(lr=0.05, step_interval=1)) as session:
            assert _hook_count(model) > hooks_before and "generate" in model.__dict__
            model.generate(**inputs, **GEN)
            if raise_inside:
                raise Boom()
    assert session.traces[0].update_steps, "the controller never updated: nothing was tested"
    assert _hook_count(model) == hooks_before
    assert "generate" not in model.__dict__
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags_before
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_exception_inside_generate_leaves_no_grad_mode_or_hook(family):
    _, build, make_inputs = family
    model = build()
    inputs = make_inputs(model)

    class Stop(Exception):
        pass

    def explode(input_ids, scores):
        if input_ids.shape[1] > inputs["input_ids"].shape[1] + 2:
            raise Stop()
        return scores

    from transformers import LogitsProcessorList

    flags = [p.requires_grad for p in model.parameters()]
    with vreason.attach(model, vreason.VReasonConfig(lr=0.05, step_interval=2)) as session:
        with pytest.raises(Stop):
            model.generate(**inputs, **GEN, logits_processor=LogitsProcessorList([explode]))
        assert session.generation is None  # the call's state is gone with it
        assert [p.requires_grad for p in model.parameters()] == flags  # the scope froze nothing for good
    assert torch.is_grad_enabled()  # the caller's grad mode is back (pytest runs with grad on)
    assert "generate" not in model.__dict__


def test_effective_span_values_keep_norms_and_turn(family):
    """While generating, the cache holds V_new: same per-vector norms as V, different directions."""
    _, build, make_inputs = family
    model = build()
    inputs = make_inputs(model, batch=2, pad=[0, 1])
    seen = []

    def inspect(input_ids, scores):
        state = session.generation
        if state is not None and state.controller is not None and state.traces[0].update_steps:
            values = transformers_seam.layer_values(state.cache, session.adapter.cache_layer_index)
            for b, seq in state.controller.sequences.items():
                now = values[b].index_select(1, seq.positions).float()
                seen.append((seq.original.float(), now, effective_values(seq.original, seq.delta.detach())))
        return scores

    from transformers import LogitsProcessorList

    with vreason.attach(model, vreason.VReasonConfig(lr=0.05, step_interval=2)) as session:
        model.generate(**inputs, **GEN, logits_processor=LogitsProcessorList([inspect]))
    assert seen
    for original, now, expected in seen:
        torch.testing.assert_close(now.norm(dim=-1), original.norm(dim=-1), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(now, expected.to(now.dtype), rtol=1e-5, atol=1e-6)
    original, now, _ = seen[-1]
    cosine = torch.nn.functional.cosine_similarity(now, original, dim=-1)
    assert cosine.min() < 1 - 1e-4, "ΔV != 0 must change the direction of the span values"


def test_traces_follow_the_switch_rule(family):
    _, build, make_inputs = family
    model = build()
    inputs = make_inputs(model, batch=2, pad=[0, 2])
    config = vreason.VReasonConfig(lr=0.02, step_interval=3)
    with vreason.attach(model, config) as session:
        model.generate(**inputs, max_new_tokens=16, min_new_tokens=16, do_sample=False)
    for trace in session.traces:
        ema, peak = 0.0, float("-inf")
        for t, h in enumerate(trace.entropy):
            ema = config.ema_beta * ema + (1 - config.ema_beta) * h
            peak = max(peak, ema)
            assert trace.ema[t] == pytest.approx(ema, rel=1e-12)
            assert trace.peak[t] == pytest.approx(peak, rel=1e-12)
            assert trace.alpha[t] == (1 if ema >= peak else -1)
        assert trace.update_steps == [t for t in range(trace.num_tokens) if t > 0 and (t + 1) % 3 == 0]
        assert len(trace.grad_norm) == len(trace.delta_norm) == len(trace.update_steps)
        assert trace.span, "every family's input has a span"


def test_ragged_batch_rows_are_controlled_at_their_own_span(family):
    """Left padding differs per row, so does the span's cache position: each trace records its row's span, and
    each row is updated."""
    name, build, make_inputs = family
    model = build()
    inputs = make_inputs(model, batch=2, pad=[0, 3])
    assert inputs["attention_mask"].sum(1).tolist() == [
        inputs["input_ids"].shape[1],
        inputs["input_ids"].shape[1] - 3,
    ]
    spans = adapters.get(name).span_positions(model.config, inputs["input_ids"], inputs["attention_mask"])
    assert spans[0].tolist() != spans[1].tolist()
    with vreason.attach(model, vreason.VReasonConfig(lr=0.05, step_interval=2)) as session:
        model.generate(**inputs, **GEN)
    assert [t.span for t in session.traces] == [s.tolist() for s in spans]
    assert all(t.update_steps and t.delta_norm[-1] > 0 for t in session.traces)
