"""The text scenario of the vLLM tests: one plugin engine (tiny Qwen2) and one stock run, shared by
test_vllm_engine_text.py and test_vllm_constrained.py through the session-scoped ``text_runs`` fixture."""

from __future__ import annotations

import pytest
from engines import Request, close_engine, make_engine, prompt, run_calls, start_stock, stock_results

PLAIN: dict = {"max_tokens": 20}
ZERO = {"max_tokens": 20, "extra_args": {"vreason": {"lr": 0.0}}}
NONE = {"max_tokens": 20, "extra_args": {"vreason": {"objective": "none"}}}
STRONG = {"max_tokens": 20, "extra_args": {"vreason": {"lr": 2.0}}}
SAMPLED = {"temperature": 0.8, "seed": 5}

P = {name: prompt(seed, length) for seed, (name, length) in enumerate(
    [("a", 300), ("b", 280), ("c", 290), ("d", 310), ("e", 270), ("f", 300), ("g", 150),
     ("h1", 250), ("h2", 240), ("h3", 245)]
)}  # fmt: skip
"""Prompts longer than two 128-token blocks: prefix caching shares their full blocks."""

CALLS = [
    [Request("c_first", P["c"], STRONG)],  # controlled, the first time the engine sees this prompt
    [Request(n, P[n[0]], PLAIN) for n in ("a_before", "c_plain", "d_before")],
    # controlled requests whose prompts are in the prefix cache now (their baselines ran first)
    [Request("a_zero", P["a"], ZERO), Request("c_again", P["c"], STRONG), Request("b_none", P["b"], NONE)],
    [Request("d_strong", P["d"], STRONG), Request("d_during", P["d"], PLAIN)],  # same prompt, same batch
    [Request("e_n2", P["e"], {**STRONG, **SAMPLED, "n": 2}), Request("e_plain", P["e"], PLAIN)],
    [Request("e_s0", P["e"], {**STRONG, **SAMPLED})],
    [Request("e_s1", P["e"], {**STRONG, "temperature": 0.8, "seed": 6})],
    [Request(n, P[n[0]], PLAIN) for n in ("a_after", "c_after", "d_after")],
    [Request("f_long", P["f"], {**STRONG, "max_tokens": 24}),
     Request("g_short", P["g"], {**STRONG, "max_tokens": 12})],
    [Request("f_solo", P["f"], {**STRONG, "max_tokens": 24})],
    [Request("g_solo", P["g"], {**STRONG, "max_tokens": 12})],
    [Request("bad", P["a"], {"max_tokens": 4, "extra_args": {"vreason": {"lr": -1}}}, expect_error=True)],
    [Request("lite", P["a"], {"max_tokens": 4, "extra_args": {"vreason": {"lite": True}}},
             expect_error=True)],
    [Request("regex", P["b"], {"max_tokens": 16, "extra_args": {"vreason": {"lr": 2.0}},
                               "structured_outputs": {"regex": "[a-z]{40,80}"}})],
    [Request("a_final", P["a"], PLAIN)],  # the engine kept serving after the refusals
    # uninterrupted references of test_vllm_constrained.py (one request at a time, prompt in one chunk)
    [Request("h1", P["h1"], {**STRONG, "max_tokens": 40})],
    [Request("h2", P["h2"], {**ZERO, "max_tokens": 40})],
    [Request("h3", P["h3"], {**PLAIN, "max_tokens": 40})],
]  # fmt: skip


@pytest.fixture(scope="session")
def text_runs(checkpoint, tmp_path_factory):
    """The scenario's results in the plugin engine and in stock vLLM (session-scoped: the constrained
    engine's tests compare with it)."""
    model = checkpoint("qwen2")
    out = tmp_path_factory.mktemp("stock") / "text.json"
    stock = start_stock(model, CALLS, out)
    llm = make_engine(model)
    try:
        mine = run_calls(llm, CALLS)
    finally:
        close_engine(llm)
    return mine, stock_results(stock, out)
