"""``benchmarks/gpu_overhead.py --smoke``: the GPU benchmark's own code, on CPU at tiny sizes, so that it runs
the first time a GPU is there. What it measures on CPU means nothing; that every variant did what it is
named for, and that the identity check can tell equal from unequal, is what is checked."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import gpu_overhead

from vreason_hooks import VReasonConfig


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu")
    result = gpu_overhead.main(
        ["--smoke", "--json", str(out / "gpu.json"), "--markdown", str(out / "gpu.md")]
    )
    return result, out


def test_every_variant_ran_at_every_span_and_did_its_work(smoke):
    result, _ = smoke
    rows = {(r["span"], r["variant"]): r for r in result["results"]}
    spans, new_tokens = gpu_overhead.SMOKE["spans"], gpu_overhead.SMOKE["new_tokens"]
    assert set(rows) == {(s, v) for s in spans for v in gpu_overhead.VARIANTS}
    assert result["meta"]["rounds"] == gpu_overhead.SMOKE["repeats"] and result["meta"]["smoke"]
    for span in spans:
        assert rows[span, "plain"]["ms_per_token_ratio"] == 1.0
        for name, row in ((v, rows[span, v]) for v in gpu_overhead.VARIANTS):
            assert row["tokens"] == new_tokens and row["ms_per_token"] > 0 and row["rounds"] == 2
            config = gpu_overhead.VARIANTS[name]
            updating = config is not None and config.objective != "none"
            assert row["updates"] == (len(range(3, new_tokens, 4)) if updating else 0), name
            assert row["controlled"] == (0 if config is None else span), name  # the marker run is the span
            assert row["pruned"] == (span // 2 if config is not None and config.lite else 0), name
            assert row["generate_peak_mb"] is None  # CUDA's counters only: nothing is made up on CPU


def test_objective_none_is_bit_identical_and_the_check_can_fail(smoke):
    result, _ = smoke
    assert result["identity"]["sdpa"] == {"tokens_equal": True, "logits_equal": True}
    assert result["identity"]["flash_attention_2"] == "CUDA only"
    model = gpu_overhead.build_model(gpu_overhead.SMOKE_CONFIG, "cpu", "sdpa")
    spec = gpu_overhead.marker_spec(model.config)
    moved = gpu_overhead.identity(model, spec, 64, 8, "sdpa", config=VReasonConfig(lr=5.0, step_interval=1))
    assert moved["sdpa"]["logits_equal"] is False  # a controller that moves ΔV is caught


def test_results_are_written_as_json_and_markdown(smoke):
    result, out = smoke
    data = json.loads((out / "gpu.json").read_text())
    assert (
        data["results"] == json.loads(json.dumps(result["results"]))
        and data["identity"]["sdpa"]["tokens_equal"]
    )
    assert data["meta"]["command"].startswith("python benchmarks/gpu_overhead.py --smoke")
    table = (out / "gpu.md").read_text()
    assert table.count("\n| 64 |") == len(gpu_overhead.VARIANTS) and "| 128 | lite_prefill |" in table


def test_the_default_model_has_qwen2_5_vl_7b_language_model_shapes():
    from transformers import AutoConfig

    fields = json.loads(gpu_overhead.DEFAULT_CONFIG.read_text())
    config = AutoConfig.for_model(**{k: v for k, v in fields.items() if not k.startswith("_")})
    shapes = (config.hidden_size, config.intermediate_size, config.num_hidden_layers)
    assert shapes == (3584, 18944, 28) and (config.num_attention_heads, config.num_key_value_heads) == (28, 4)
    assert config.vocab_size == 152064 and config.video_token_id == 151656 and not config.tie_word_embeddings
