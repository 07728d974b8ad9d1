"""Never silently wrong: generate from several threads, a generate bound before attach, divergence to NaN."""

from __future__ import annotations

import json
import threading

import pytest
import torch
from transformers import DynamicCache, LogitsProcessorList

import vreason_hooks as vreason
from vreason_hooks import transformers_seam
from vreason_hooks.apps import testing as T
from vreason_hooks.errors import ConcurrentUseError, UnsupportedSettingError

GEN = dict(max_new_tokens=10, min_new_tokens=10, do_sample=False)
ACTIVE = vreason.VReasonConfig(lr=0.05, step_interval=2)


class _AtStep:
    """A logits processor that runs ``action`` once, inside generate, when ``step`` tokens were generated."""

    def __init__(self, prompt_length: int, step: int, action):
        self.prompt_length, self.step, self.action, self.done = prompt_length, step, action, False

    def __call__(self, input_ids, scores):
        if not self.done and input_ids.shape[1] - self.prompt_length == self.step:
            self.done = True
            self.action()
        return scores


def _in_thread(fn):
    """Run ``fn`` in a thread, return (result, exception)."""
    box = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as err:  # noqa: BLE001 - handed back to the test
            box["error"] = err

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(timeout=120)
    assert not thread.is_alive()
    return box.get("result"), box.get("error")


# ---------------------------------------------------------------------------------------------- threads
def test_concurrent_generates_on_one_session_equal_their_solo_runs():
    model = T.tiny_llama()
    prompts = [T.text_inputs(seed=s) for s in range(4)]
    with vreason.attach(model, ACTIVE) as session:
        solo = [model.generate(**p, **GEN) for p in prompts]
        solo_norms = [t.delta_norm for t in session.pop_traces()]
        barrier = threading.Barrier(len(prompts))
        results = [None] * len(prompts)

        def run(i):
            barrier.wait()
            results[i] = model.generate(**prompts[i], **GEN)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        traces = session.pop_traces()
    assert all(torch.equal(a, b) for a, b in zip(results, solo))
    assert len(traces) == len(prompts) and all(
        t.num_tokens == 10 and len(t.update_steps) == 5 for t in traces
    )
    assert sorted(map(tuple, (t.delta_norm for t in traces))) == sorted(map(tuple, solo_norms))


def test_forward_from_another_thread_during_generate_is_refused_and_harms_nothing():
    model = T.tiny_llama()
    inputs = T.text_inputs()
    with vreason.attach(model, ACTIVE) as session:
        alone = model.generate(**inputs, **GEN)
        errors = []
        intruder = _AtStep(
            inputs["input_ids"].shape[1],
            3,
            lambda: errors.append(_in_thread(lambda: model(**T.text_inputs(seed=5)))[1]),
        )
        out = model.generate(**inputs, **GEN, logits_processor=LogitsProcessorList([intruder]))
    assert isinstance(errors[0], ConcurrentUseError) and "another thread" in str(errors[0])
    assert torch.equal(out, alone)
    first, second = session.traces
    assert second.num_tokens == 10 and second.update_steps == first.update_steps
    assert second.delta_norm == first.delta_norm


def test_paused_baseline_in_another_thread_does_not_pause_the_running_generate():
    model = T.tiny_llama()
    inputs, other = T.text_inputs(), T.text_inputs(seed=3)
    plain_other = model.generate(**other, **GEN)
    with vreason.attach(model, ACTIVE) as session:
        alone = model.generate(**inputs, **GEN)
        baseline = []

        def paused_generate():
            with session.paused():
                return model.generate(**other, **GEN)

        side = _AtStep(inputs["input_ids"].shape[1], 3, lambda: baseline.append(_in_thread(paused_generate)))
        out = model.generate(**inputs, **GEN, logits_processor=LogitsProcessorList([side]))
    result, error = baseline[0]
    assert error is None and torch.equal(result, plain_other)
    assert torch.equal(out, alone)
    assert session.traces[1].update_steps == session.traces[0].update_steps


def test_two_models_in_two_threads_stay_independent():
    models = [T.tiny_llama(seed=0), T.tiny_qwen2(seed=1)]
    inputs = T.text_inputs()
    solo = []
    for m in models:
        with vreason.attach(m, ACTIVE):
            solo.append(m.generate(**inputs, **GEN))

    def run(m):
        with vreason.attach(m, ACTIVE):
            return m.generate(**inputs, **GEN)

    outs = [None, None]
    threads = [threading.Thread(target=lambda i=i: outs.__setitem__(i, run(models[i]))) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(torch.equal(a, b) for a, b in zip(outs, solo))


# ---------------------------------------------------------------------------------------------- bypassed
# wrapper
def test_generate_bound_before_attach_is_refused_and_leaves_the_users_cache_alone():
    model = T.tiny_llama()
    inputs = T.text_inputs()
    gen = model.generate  # bound before attach: does not pass the session's wrapper
    cache, plain_cache = DynamicCache(config=model.config), DynamicCache(config=model.config)
    gen(**inputs, **GEN, **transformers_seam.cache_kwargs(model, plain_cache))
    with vreason.attach(model, ACTIVE):
        with pytest.raises(UnsupportedSettingError, match=r"bypassed the attached model\.generate"):
            gen(**inputs, **GEN, num_beams=2)
        with pytest.raises(UnsupportedSettingError, match="bypassed"):
            gen(**inputs, **GEN, **transformers_seam.cache_kwargs(model, cache))
        model.generate(**inputs, **GEN)  # the attached one still works
    assert (
        transformers_seam.cache_length(cache) == 0
    )  # refused at the first forward: nothing written or edited


def test_direct_forward_calls_outside_generate_still_work():
    model = T.tiny_llama()
    with vreason.attach(model, vreason.VReasonConfig(objective="none")) as session:
        out = model(**T.text_inputs(), use_cache=True)
    assert out.logits.shape[1] == 12 and session.traces[0].num_tokens == 1


# ---------------------------------------------------------------------------------------------- divergence
def _nan_logits_for(row: int, at_call: int):
    """A forward hook on the LM head that makes row ``row``'s logits NaN on its ``at_call``-th call."""
    calls = {"n": 0}

    def hook(module, args, output):
        calls["n"] += 1
        if calls["n"] == at_call:
            output = output.clone()
            output[row] = float("nan")
        return output

    return hook


def test_non_finite_entropy_stops_that_sequence_restores_its_values_and_warns_once(tmp_path):
    model = T.tiny_llama()
    inputs = T.text_inputs(batch=2, pad=[0, 3])
    handle = model.lm_head.register_forward_hook(_nan_logits_for(row=1, at_call=4))
    seen = {}

    def snapshot(module, args, kwargs, output):
        session_state = session.generation
        if session_state is not None and session_state.step == 6:
            values = transformers_seam.layer_values(session_state.cache, session.adapter.cache_layer_index)
            seen["values"] = values[1].clone()

    try:
        with vreason.attach(model, ACTIVE) as session:
            hook = model.register_forward_hook(snapshot, with_kwargs=True)
            with pytest.warns(UserWarning, match=r"sequence 1 diverged at token 3 \(entropy nan\)") as caught:
                model.generate(**inputs, **GEN)
            hook.remove()
    finally:
        handle.remove()
    assert sum("diverged" in str(w.message) for w in caught) == 1
    healthy, broken = session.traces
    assert not healthy.diverged and len(healthy.update_steps) == 5
    assert broken.diverged and broken.entropy[3] is None and broken.alpha[3] is None
    assert broken.update_steps == [1] and all(h is not None for h in broken.entropy[4:])
    plain_cache = DynamicCache(config=model.config)
    model.generate(
        **inputs, max_new_tokens=1, do_sample=False, **transformers_seam.cache_kwargs(model, plain_cache)
    )
    original = transformers_seam.layer_values(plain_cache, session.adapter.cache_layer_index)[1]
    span = torch.tensor(broken.span)
    assert torch.equal(seen["values"][:, span], original[:, span])  # restored, not left edited
    path = vreason.save_traces(session.traces, tmp_path / "t.json")
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert vreason.load_traces(path)[1].diverged
    from vreason_hooks.apps.plotting import plot_traces

    assert (
        plot_traces(session.traces, tmp_path / "t.png").stat().st_size > 0
    )  # the gap is drawn, not an error


def test_non_finite_update_is_not_written_to_the_cache(monkeypatch):
    from vreason_hooks.controller import ValueController

    real_step = ValueController.step

    def exploding_step(self, losses):
        report = real_step(self, losses)
        if 0 in report:
            with torch.no_grad():
                self.sequences[0].delta.fill_(float("inf"))
            report[0] = (report[0][0], float("inf"))
        return report

    monkeypatch.setattr(ValueController, "step", exploding_step)
    model = T.tiny_llama()
    inputs = T.text_inputs()
    with vreason.attach(model, vreason.VReasonConfig(objective="none")):
        plain = model.generate(**inputs, **GEN)
    with vreason.attach(model, ACTIVE) as session, pytest.warns(UserWarning, match="diverged"):
        out = model.generate(**inputs, **GEN)
    trace = session.traces[0]
    assert trace.diverged and trace.update_steps == [] and all(h is not None for h in trace.entropy)
    assert torch.equal(out, plain)  # the first update diverged: nothing was ever written
