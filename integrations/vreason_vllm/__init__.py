"""V-Reason inside vLLM, as a plugin (no fork): per-request ΔV control of the last layer's value cache.

Installed, it is registered in every vLLM process by the ``vllm.general_plugins`` entry point; requests opt
in one by one::

    from vllm import LLM, SamplingParams
    import vreason_vllm

    llm = LLM(model="Qwen/Qwen2.5-7B-Instruct", enforce_eager=True)
    plain = SamplingParams(max_tokens=256)                                  # served exactly as stock
    controlled = SamplingParams(max_tokens=256, extra_args={"vreason": {"lr": 3e-4}})
    outputs = llm.generate(["Q1", "Q2"], [plain, controlled])
    traces = vreason_vllm.traces(llm, outputs)                              # one Trace per sample

OpenAI server: ``vllm serve MODEL --enforce-eager``, then ``"vllm_xargs": {"vreason_lr": 3e-4,
"vreason_trace_dir": "/traces"}`` in the request body. See docs/vllm.md.

Importing this package does not import vLLM.
"""

from __future__ import annotations

from .request_config import RequestSettings, request_settings
from .traces import trace_path, traces


def register() -> None:
    """The ``vllm.general_plugins`` entry point (vLLM calls it in every process)."""
    from .plugin import register as _register

    _register()


__all__ = ["RequestSettings", "register", "request_settings", "trace_path", "traces"]
