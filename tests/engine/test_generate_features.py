"""attach() inside the generate features users combine it with, and the settings it must refuse."""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import DynamicCache, LogitsProcessorList, StaticCache
from transformers.generation.streamers import BaseStreamer

import vreason_hooks as vreason
from vreason_hooks import transformers_seam
from vreason_hooks.apps import testing as T

ACTIVE = vreason.VReasonConfig(lr=0.05, step_interval=2)


@pytest.fixture(scope="module")
def qwen():
    return T.tiny_qwen2_5_vl()


@pytest.fixture(scope="module")
def qwen_inputs(qwen):
    return T.qwen_video_inputs(qwen, batch=2, pad=[0, 3])


def test_controller_changes_the_output(qwen, qwen_inputs):
    plain = qwen.generate(**qwen_inputs, max_new_tokens=16, min_new_tokens=16)
    with vreason.attach(qwen, vreason.VReasonConfig(lr=0.2, step_interval=1)):
        controlled = qwen.generate(**qwen_inputs, max_new_tokens=16, min_new_tokens=16)
    assert not torch.equal(plain, controlled)


def test_sampling_with_objective_none_matches_plain_sampling(qwen, qwen_inputs):
    torch.manual_seed(3)
    plain = qwen.generate(**qwen_inputs, max_new_tokens=10, do_sample=True, temperature=1.3, top_p=0.9)
    with vreason.attach(qwen, vreason.VReasonConfig(objective="none")):
        torch.manual_seed(3)
        same = qwen.generate(**qwen_inputs, max_new_tokens=10, do_sample=True, temperature=1.3, top_p=0.9)
    assert torch.equal(plain, same)
    with vreason.attach(qwen, ACTIVE) as session:
        qwen.generate(**qwen_inputs, max_new_tokens=10, do_sample=True, temperature=1.3)
    assert session.traces[0].update_steps


def test_streamer_and_logits_processor_see_every_token(qwen, qwen_inputs):
    class Collect(BaseStreamer):
        def __init__(self):
            self.chunks = []

        def put(self, value):
            self.chunks.append(value.clone())

        def end(self):
            self.ended = True

    calls = []

    def count(input_ids, scores):
        calls.append(input_ids.shape[1])
        return scores

    streamer = Collect()
    single = {k: v[:1] if v.dim() and k != "pixel_values_videos" else v for k, v in qwen_inputs.items()}
    single = T.qwen_video_inputs(qwen, batch=1)
    with vreason.attach(qwen, ACTIVE) as session:
        out = qwen.generate(
            **single,
            max_new_tokens=9,
            min_new_tokens=9,
            streamer=streamer,
            logits_processor=LogitsProcessorList([count]),
        )
    streamed = torch.cat([c.flatten() for c in streamer.chunks[1:]])
    assert torch.equal(streamed, out[0, single["input_ids"].shape[1] :])
    assert streamer.ended and len(calls) == 9 == session.traces[0].num_tokens


def test_finished_sequence_stops_recording_and_updating():
    model = T.tiny_llama()
    inputs = T.text_inputs(batch=2, pad=[0, 2])

    def eos_for_first_at_step_4(input_ids, scores):
        step = input_ids.shape[1] - inputs["input_ids"].shape[1]
        scores = scores.clone()
        scores[:, T.EOS] = -float("inf")
        if step == 4:
            scores[0] = -float("inf")
            scores[0, T.EOS] = 0.0
        return scores

    with vreason.attach(model, vreason.VReasonConfig(lr=0.05, step_interval=2)) as session:
        out = model.generate(
            **inputs, max_new_tokens=12, logits_processor=LogitsProcessorList([eos_for_first_at_step_4])
        )
    first, second = session.traces
    assert out[0, inputs["input_ids"].shape[1] + 4] == T.EOS
    assert first.num_tokens == 5 and max(first.update_steps) <= 4
    assert second.num_tokens == 12 and second.update_steps[-1] == 11


def test_user_supplied_dynamic_cache_gets_original_span_values_back(qwen):
    inputs = T.qwen_video_inputs(qwen, batch=1)
    plain_cache, cache = DynamicCache(config=qwen.config), DynamicCache(config=qwen.config)
    qwen.generate(**inputs, max_new_tokens=8, **transformers_seam.cache_kwargs(qwen, plain_cache))
    with vreason.attach(qwen, ACTIVE) as session:
        qwen.generate(**inputs, max_new_tokens=8, **transformers_seam.cache_kwargs(qwen, cache))
    span = torch.tensor(session.traces[0].span)
    last = session.adapter.cache_layer_index
    assert session.traces[0].update_steps
    assert torch.equal(
        transformers_seam.layer_values(cache, last)[:, :, span],
        transformers_seam.layer_values(plain_cache, last)[:, :, span],
    )


def test_generate_under_inference_mode_updates(qwen, qwen_inputs):
    with torch.inference_mode(), vreason.attach(qwen, ACTIVE) as session:
        qwen.generate(**qwen_inputs, max_new_tokens=8, min_new_tokens=8)
    assert session.traces[0].update_steps == [1, 3, 5, 7]
    assert all(p.grad is None for p in qwen.parameters())


def test_peft_lora_model(tmp_path):
    peft = pytest.importorskip("peft")
    base = T.tiny_llama()
    model = peft.get_peft_model(
        base, peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    inputs = T.text_inputs(batch=2, pad=[0, 1])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    plain = model.generate(**inputs, max_new_tokens=8, min_new_tokens=8)
    with vreason.attach(model, vreason.VReasonConfig(objective="none")):
        assert torch.equal(plain, model.generate(**inputs, max_new_tokens=8, min_new_tokens=8))
    with vreason.attach(model, ACTIVE) as session:
        model.generate(**inputs, max_new_tokens=8, min_new_tokens=8)
    assert session.adapter.spec.name == "llama" and session.traces[0].update_steps
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_model_dispatched_with_a_device_map(tmp_path):
    """accelerate wraps forwards for a device_map; ΔV must live where the last layer's cache lives."""
    from accelerate import dispatch_model

    model = T.tiny_llama(layers=3)
    inputs = T.text_inputs(batch=1)
    plain = model.generate(**inputs, max_new_tokens=8, min_new_tokens=8)
    device_map = {
        "model.embed_tokens": "cpu",
        "model.layers.0": "cpu",
        "model.layers.1": "disk",
        "model.layers.2": "cpu",
        "model.norm": "cpu",
        "model.rotary_emb": "cpu",
        "lm_head": "cpu",
    }
    model = dispatch_model(model, device_map=device_map, offload_dir=str(tmp_path))
    with vreason.attach(model, vreason.VReasonConfig(objective="none")):
        assert torch.equal(plain, model.generate(**inputs, max_new_tokens=8, min_new_tokens=8))
    with vreason.attach(model, ACTIVE) as session:
        model.generate(**inputs, max_new_tokens=8, min_new_tokens=8)
    assert session.traces[0].update_steps


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_beams=2), "beam search"),
        (dict(cache_implementation="static"), "cache_implementation='static'"),
        (dict(cache_implementation="quantized"), "cache_implementation='quantized'"),
        (dict(cache_implementation="offloaded"), "cache_implementation='offloaded'"),
        (dict(prompt_lookup_num_tokens=3), "speculative"),
        (dict(use_cache=False), "use_cache=True"),
    ],
)
def test_unsupported_settings_are_refused_in_one_line(kwargs, message):
    model = T.tiny_llama()
    with vreason.attach(model):
        with pytest.raises(vreason.UnsupportedSettingError, match=message) as err:
            model.generate(**T.text_inputs(), max_new_tokens=4, **kwargs)
    assert "\n" not in str(err.value)


def test_static_and_offloaded_cache_objects_are_refused():
    model = T.tiny_llama()
    inputs = T.text_inputs()
    offloaded = DynamicCache(config=model.config)
    offloaded.offloading = True  # what DynamicCache(offloading=True) sets; building one for real needs CUDA
    for cache in (StaticCache(config=model.config, max_cache_len=64), offloaded):
        with vreason.attach(model), pytest.raises(vreason.UnsupportedSettingError, match="DynamicCache"):
            model.generate(**inputs, max_new_tokens=4, **transformers_seam.cache_kwargs(model, cache))


def test_second_attach_is_refused_and_first_stays_usable():
    model = T.tiny_llama()
    with vreason.attach(model) as first:
        with pytest.raises(vreason.AlreadyAttachedError, match="detach"):
            vreason.attach(model)
        assert first.attached
    assert not first.attached
    vreason.attach(model).detach()  # attachable again after detach


def test_unknown_model_lists_adapters_and_how_to_add_one():
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64))
    with pytest.raises(vreason.NoAdapterError) as err:
        vreason.attach(model)
    text = str(err.value)
    assert "gpt2" in text and "qwen2_5_vl" in text and "llava_onevision" in text and "adding-a-model" in text
    assert "\n" not in text


def test_text_prompt_to_a_video_model_warns_once_and_runs_unmodified(qwen):
    inputs = T.text_inputs(batch=1)
    plain = qwen.generate(**inputs, max_new_tokens=6)
    with vreason.attach(qwen) as session, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = qwen.generate(**inputs, max_new_tokens=6)
        qwen.generate(**inputs, max_new_tokens=6)
    assert torch.equal(plain, out)
    assert sum("no span tokens" in str(w.message) for w in caught) == 1
    assert session.traces[0].update_steps == [] and session.traces[0].span == []


def test_state_resets_at_every_generate_call(qwen):
    inputs = T.qwen_video_inputs(qwen, batch=1)
    with vreason.attach(qwen, ACTIVE) as session:
        first = qwen.generate(**inputs, max_new_tokens=8, min_new_tokens=8)
        second = qwen.generate(**inputs, max_new_tokens=8, min_new_tokens=8)
    assert torch.equal(first, second)  # ΔV, optimiser, EMA and peak start from scratch each time
    assert [t.call for t in session.traces] == [1, 2]
    assert session.traces[0].to_dict() | {"call": 0} == session.traces[1].to_dict() | {"call": 0}


def test_missing_required_input_warns_once(qwen):
    inputs = T.qwen_video_inputs(qwen, batch=1)
    inputs.pop("mm_token_type_ids")
    with vreason.attach(qwen) as session, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qwen.generate(**inputs, max_new_tokens=3)
        qwen.generate(**inputs, max_new_tokens=3)
    assert sum("mm_token_type_ids" in str(w.message) for w in caught) == 1
    assert session.traces[0].span


def test_bfloat16_model_lr0_is_bit_identical_and_updates_move_bf16_cache():
    model = T.tiny_qwen2_5_vl(dtype=torch.bfloat16)
    inputs = T.qwen_video_inputs(model, batch=2, pad=[0, 2])
    plain = model.generate(**inputs, max_new_tokens=8, min_new_tokens=8)
    with vreason.attach(model, vreason.VReasonConfig(lr=0.0, step_interval=2)):
        assert torch.equal(plain, model.generate(**inputs, max_new_tokens=8, min_new_tokens=8))
    with vreason.attach(model, vreason.VReasonConfig(lr=0.05, step_interval=2)) as session:
        model.generate(**inputs, max_new_tokens=8, min_new_tokens=8)
    assert session.traces[0].delta_norm[-1] > 0


def test_every_step_sees_the_calls_own_cache_of_transformers_layers(qwen, qwen_inputs):
    """No stand-in for the cache: every decoder layer of every step receives the cache object of the generate
    call, and each of its layers is a transformers layer class or the documented ControlledLayer; after the
    call the cache holds plain layers only."""
    from vreason_hooks.grad_path import ControlledLayer

    cache, seen = DynamicCache(config=qwen.config), []

    def record(module, args, kwargs):
        given = transformers_seam.forward_cache(kwargs)
        seen.append((given, [type(layer) for layer in transformers_seam.cache_layers(given)]))

    layers = qwen.get_submodule(vreason.adapters.find_adapter(qwen).modules.decoder_layers)
    with vreason.attach(qwen, ACTIVE) as session:
        handles = [layer.register_forward_pre_hook(record, with_kwargs=True) for layer in layers]
        try:
            qwen.generate(
                **qwen_inputs,
                max_new_tokens=8,
                min_new_tokens=8,
                **transformers_seam.cache_kwargs(qwen, cache),
            )
        finally:
            for handle in handles:
                handle.remove()
    assert session.traces[0].update_steps == [1, 3, 5, 7]
    assert seen and all(given is cache for given, _ in seen)
    kinds = {kind for _, types in seen for kind in types}
    assert ControlledLayer in kinds, "the controlled steps ran through the documented subclass"
    assert all(kind is ControlledLayer or kind.__module__.startswith("transformers.") for kind in kinds)
    assert not any(isinstance(layer, ControlledLayer) for layer in transformers_seam.cache_layers(cache))


def test_no_class_is_faked_in_the_library():
    """``__class__`` is never overridden (no proxy that lies about its type)."""
    import pathlib

    library = pathlib.Path(vreason.__file__).parent
    assert not [p for p in library.rglob("*.py") if "__class__" in p.read_text()]


def test_paused_session_decodes_plainly_and_pop_traces_forgets(qwen, qwen_inputs):
    plain = qwen.generate(**qwen_inputs, max_new_tokens=8, min_new_tokens=8)
    with vreason.attach(qwen, vreason.VReasonConfig(lr=0.2, step_interval=1)) as session:
        with session.paused():
            baseline = qwen.generate(**qwen_inputs, max_new_tokens=8, min_new_tokens=8)
        assert session.traces == []
        controlled = qwen.generate(**qwen_inputs, max_new_tokens=8, min_new_tokens=8)
        popped = session.pop_traces()
        assert len(popped) == 2 and session.traces == []
    assert torch.equal(plain, baseline) and not torch.equal(plain, controlled)


def test_sequences_of_a_batch_are_controlled_independently(qwen):
    """Sequence 0 decodes and updates the same whatever its neighbour is (per-sequence ΔV, clipping, α)."""
    a, b = T.qwen_video_inputs(qwen, batch=2, seed=1), T.qwen_video_inputs(qwen, batch=2, seed=2)
    pair_ab = {k: torch.cat([a[k][:1], b[k][1:]]) for k in a}
    pair_ab["pixel_values_videos"] = torch.cat(
        [
            a["pixel_values_videos"][: len(a["pixel_values_videos"]) // 2],
            b["pixel_values_videos"][len(b["pixel_values_videos"]) // 2 :],
        ]
    )
    config = vreason.VReasonConfig(lr=0.1, step_interval=2, max_grad_norm=1e-4)
    with vreason.attach(qwen, config) as session:
        out_aa = qwen.generate(**a, max_new_tokens=10, min_new_tokens=10)
        out_ab = qwen.generate(**pair_ab, max_new_tokens=10, min_new_tokens=10)
    first_aa, _, first_ab, other_ab = session.traces
    assert torch.equal(out_aa[0], out_ab[0])
    assert first_aa.entropy == first_ab.entropy and first_aa.grad_norm == first_ab.grad_norm
    assert first_ab.delta_norm == first_aa.delta_norm and other_ab.delta_norm != first_ab.delta_norm


def test_lite_on_a_prompt_span_warns():
    with pytest.warns(UserWarning, match="of the prompt itself"):
        vreason.attach(T.tiny_llama(), vreason.VReasonConfig(lite=True)).detach()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vreason.attach(T.tiny_qwen2_5_vl(), vreason.VReasonConfig(lite=True)).detach()
