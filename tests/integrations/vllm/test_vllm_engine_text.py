"""V-Reason in one stock-configured vLLM engine (tiny Qwen2, prefix caching and chunked prefill on): the
contract of issue 21 for text models, against stock vLLM running the same scenario.

One engine and one stock run serve every test (scenario_text.py: engine starts cost ~17-40 s): the scenario
below runs once, the tests read its results.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture
def runs(text_runs):
    return text_runs


def sample(results, name, index=0):
    return results[name]["samples"][index]


def trace(results, name, index=0):
    return results[name + ":traces"][index]


@pytest.mark.parametrize(
    "name",
    ["a_before", "c_plain", "d_before", "d_during", "e_plain", "a_after", "c_after", "d_after", "a_final"],
)
def test_plain_requests_get_exactly_stock_tokens(runs, name):
    """Before, during and after controlled requests sharing their prompts, with prefix caching on."""
    mine, stock = runs
    assert sample(mine, name) == sample(stock, name)  # tokens, and the sampled tokens' logprobs bit for bit
    assert mine[name + ":traces"] == [None]  # and no V-Reason state at all


def test_plain_requests_after_controlled_ones_hit_the_prefix_cache(runs):
    """The leak tests above are not vacuous: the plain requests did share cached blocks."""
    mine, _ = runs
    assert all(mine[name]["cached_tokens"] >= 256 for name in ("a_after", "c_after", "d_after"))


def test_controlled_requests_never_read_another_requests_cache_blocks(runs):
    mine, _ = runs
    for name in ("c_again", "a_zero", "b_none", "d_strong", "e_n2"):
        assert mine[name]["cached_tokens"] == 0, name


@pytest.mark.parametrize("name", ["a_zero", "b_none"])
def test_lr_zero_and_objective_none_are_bit_identical_to_stock(runs, name):
    mine, stock = runs
    assert sample(mine, name) == sample(stock, name)
    t = trace(mine, name)
    assert t["num_tokens"] == 20 and all(h is not None and h > 0 for h in t["entropy"])
    if name == "a_zero":  # lr=0 still takes (zero) steps: the machinery ran, the values did not move
        assert t["update_steps"] == [3, 7, 11, 15, 19] and set(t["delta_norm"]) == {0.0}
    else:
        assert t["update_steps"] == []


def test_lr_above_zero_changes_tokens(runs):
    mine, stock = runs
    for name in ("c_first", "d_strong"):
        t = trace(mine, name)
        assert t["update_steps"] == [3, 7, 11, 15, 19] and min(t["delta_norm"]) > 0
        assert sample(mine, name)["tokens"] != sample(stock, name)["tokens"], name


def test_a_controlled_request_on_a_cached_prompt_is_controlled_from_the_original_values(runs):
    """``c_again`` ran after ``c_plain`` cached its prompt: same tokens and signals as ``c_first``, which ran
    before the prompt was ever cached."""
    mine, _ = runs
    assert sample(mine, "c_again")["tokens"] == sample(mine, "c_first")["tokens"]
    first, again = trace(mine, "c_first"), trace(mine, "c_again")
    assert again["entropy"] == pytest.approx(first["entropy"], abs=1e-4)
    assert again["grad_norm"] == pytest.approx(first["grad_norm"], rel=1e-3)


def test_n_samples_are_controlled_separately(runs):
    """Each sample of ``n=2`` has a ΔV of its own: it equals a solo request with its seed."""
    mine, _ = runs
    assert sample(mine, "e_n2", 0)["tokens"] == sample(mine, "e_s0")["tokens"]
    assert sample(mine, "e_n2", 1)["tokens"] == sample(mine, "e_s1")["tokens"]
    assert trace(mine, "e_n2", 1)["entropy"] == pytest.approx(trace(mine, "e_s1")["entropy"], abs=1e-4)
    assert sample(mine, "e_s0")["tokens"] != sample(mine, "e_s1")["tokens"]


def test_controlled_requests_of_different_lengths_equal_their_solo_runs(runs):
    mine, _ = runs
    for name, solo in (("f_long", "f_solo"), ("g_short", "g_solo")):
        assert sample(mine, name)["tokens"] == sample(mine, solo)["tokens"], name
        together, alone = trace(mine, name), trace(mine, solo)
        assert together["update_steps"] == alone["update_steps"]
        assert together["entropy"] == pytest.approx(alone["entropy"], abs=1e-4)
    assert trace(mine, "g_short")["num_tokens"] == 12 and trace(mine, "f_long")["num_tokens"] == 24


def test_traces_are_the_hf_trace_format(runs):
    from vreason_hooks.trace import Trace

    mine, _ = runs
    t = Trace.from_dict(trace(mine, "c_first"))  # checked: types and lengths as the HF path writes them
    assert t.span == list(range(290)) and t.adapter == "qwen2" and t.num_tokens == 20
    assert len(t.grad_norm) == len(t.delta_norm) == len(t.update_steps) == 5


def test_a_bad_setting_fails_that_request_alone_with_the_config_error(runs):
    mine, _ = runs
    line = mine["bad"]
    assert line.startswith("ConfigError: bad V-Reason config: field lr=-1") and "\n" not in line
    assert "[0, 10]" in line


def test_lite_is_refused_in_one_line(runs):
    mine, _ = runs
    assert mine["lite"].startswith("UnsupportedSettingError: V-Reason Lite") and "\n" not in mine["lite"]


def test_structured_outputs_do_not_conflict(runs):
    """The grammar masks the sampled distribution; V-Reason's entropy is of the raw logits: both apply."""
    import re

    mine, _ = runs
    assert re.fullmatch("[a-z]+", sample(mine, "regex")["text"])  # a match, or a prefix of one (max_tokens)
    assert len(sample(mine, "regex")["tokens"]) >= 8
    assert trace(mine, "regex")["update_steps"][:2] == [3, 7]
