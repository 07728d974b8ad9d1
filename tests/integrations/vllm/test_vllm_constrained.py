"""Chunked prefill and preemption with recompute: a controlled request gives the same tokens as its
uninterrupted run (test_vllm_engine_text.py ran those: prompt in one chunk, no preemption).

The engine here splits every prompt into 64-token chunks and has 7 KV blocks of 128 tokens for three requests
that grow to 3 blocks each, so the scheduler preempts and later recomputes some of them (checked through
vLLM's own counter).
"""

from __future__ import annotations

import pytest
from engines import Request, close_engine, make_engine, run_calls
from scenario_text import CALLS

pytestmark = pytest.mark.slow

REFERENCES = {r.name: r for call in CALLS for r in call if r.name in ("h1", "h2", "h3")}


@pytest.fixture(scope="module")
def constrained(checkpoint):
    llm = make_engine(
        checkpoint("qwen2"), max_num_batched_tokens=64, max_num_seqs=8, num_gpu_blocks_override=7,
        max_model_len=512, disable_log_stats=False,
    )  # fmt: skip
    try:
        found = run_calls(llm, [[Request(r.name, r.prompt, r.params) for r in REFERENCES.values()]])
        preemptions = sum(m.value for m in llm.get_metrics() if m.name == "vllm:num_preemptions")
    finally:
        close_engine(llm)
    return found, preemptions


def test_the_engine_did_chunk_and_preempt(constrained):
    _, preemptions = constrained
    assert preemptions >= 1
    assert all(len(r.prompt) > 64 for r in REFERENCES.values())  # every prompt took several chunks


@pytest.mark.parametrize("name", ["h1", "h2", "h3"])
def test_tokens_equal_the_uninterrupted_run(constrained, text_runs, name):
    found, _ = constrained
    reference, _ = text_runs
    assert found[name]["samples"][0]["tokens"] == reference[name]["samples"][0]["tokens"]


@pytest.mark.parametrize("name", ["h1", "h2"])
def test_signals_equal_the_uninterrupted_run(constrained, text_runs, name):
    found, _ = constrained
    reference, _ = text_runs
    mine, theirs = found[name + ":traces"][0], reference[name + ":traces"][0]
    assert mine["update_steps"] == theirs["update_steps"] and len(mine["update_steps"]) == 10
    assert mine["entropy"] == pytest.approx(theirs["entropy"], abs=5e-3)
