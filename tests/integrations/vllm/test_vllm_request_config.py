"""Per-request settings from ``extra_args`` (offline) and flat ``vllm_xargs`` (OpenAI server). Runs without
vLLM."""

from __future__ import annotations

import pytest
from vreason_vllm.request_config import is_controlled, request_settings

from vreason_hooks.errors import ConfigError


@pytest.mark.parametrize("extra", [None, {}, {"other_plugin": 1}, {"session_id": "x"}])
def test_requests_without_vreason_keys_are_plain(extra):
    assert not is_controlled(extra) and request_settings(extra) is None


def test_nested_and_flat_spellings_mean_the_same():
    nested = request_settings({"vreason": {"lr": 1e-3, "step_interval": 2, "trace_dir": "/t"}})
    flat = request_settings({"vreason_lr": 1e-3, "vreason_step_interval": 2, "vreason_trace_dir": "/t"})
    assert nested == flat and nested.config.lr == 1e-3 and nested.trace_dir == "/t"


@pytest.mark.parametrize("on", [True, 1, "true", {}])
def test_vreason_on_alone_gives_the_papers_defaults(on):
    settings = request_settings({"vreason": on})
    assert settings.config.lr == 3e-4 and settings.config.step_interval == 4 and settings.trace_dir is None


def test_xargs_spell_none_as_a_word():
    assert request_settings({"vreason_max_grad_norm": "none"}).config.max_grad_norm is None


@pytest.mark.parametrize(
    "extra, words",
    [
        ({"vreason": {"lr": -1}}, ["field lr=-1", "[0, 10]"]),
        ({"vreason_lrr": 1}, ["unknown field 'lrr'", "known fields"]),
        ({"vreason": {"lr": 1}, "vreason_lr": 2}, ["not both"]),
        ({"vreason": "sometimes"}, ["must be a dict"]),
        ({"vreason_trace_dir": 3}, ["trace_dir must be a folder path"]),
    ],
)
def test_bad_settings_are_one_config_error_line(extra, words):
    with pytest.raises(ConfigError) as info:
        request_settings(extra)
    message = str(info.value)
    assert message.startswith("bad V-Reason config") and "\n" not in message
    assert all(w in message for w in words), message
