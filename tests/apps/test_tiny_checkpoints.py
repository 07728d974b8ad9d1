"""Tiny offline checkpoints (real Qwen tokenizer, random weights) and the synthetic clip generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vreason_hooks import attach
from vreason_hooks.apps.tiny_checkpoints import (
    IM_END,
    IMAGE_PAD,
    VIDEO_PAD,
    VISION_START,
    write_tiny_checkpoint,
)
from vreason_hooks.apps.video_clips import COLOURS, KINDS, make_clip, read_frames, write_clips


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    out = tmp_path_factory.mktemp("clips")
    return out, write_clips(out, n=4, frames=8, size=64)


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return write_tiny_checkpoint("qwen2_5_vl", tmp_path_factory.mktemp("tiny-qwen"))


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    return write_tiny_checkpoint("llava_onevision", tmp_path_factory.mktemp("tiny-llava"))


# ---------------------------------------------------------------- checkpoints
def test_qwen_checkpoint_loads_offline_with_real_ids(qwen_dir, clips, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from qwen_vl_utils import process_vision_info
    from transformers import AutoProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration

    tokenizer = AutoTokenizer.from_pretrained(qwen_dir)
    assert tokenizer.convert_tokens_to_ids(
        ["<|vision_start|>", "<|image_pad|>", "<|video_pad|>", "<|im_end|>"]
    ) == [
        VISION_START,
        IMAGE_PAD,
        VIDEO_PAD,
        IM_END,
    ]
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(qwen_dir).eval()
    assert model.config.video_token_id == VIDEO_PAD and model.config.vision_start_token_id == VISION_START
    assert len(tokenizer) <= model.config.get_text_config().vocab_size < len(tokenizer) + 64
    assert model.config.get_text_config().hidden_size == 64

    folder, items = clips
    processor = AutoProcessor.from_pretrained(qwen_dir)
    messages = [
        {
            "role": "user",
            "content": [
                {
                    "type": "video",
                    "video": str(folder / items[0].video),
                    "min_pixels": 3136,
                    "max_pixels": 12544,
                    "nframes": 8,
                },
                {"type": "text", "text": items[0].prompt()},
            ],
        }
    ]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.startswith(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n<|vision_start|>"
    )
    _, videos, _ = process_vision_info(messages, return_video_kwargs=True, return_video_metadata=True)
    videos, metadata = zip(*videos)
    inputs = processor(text=[text], videos=list(videos), video_metadata=list(metadata), return_tensors="pt")
    # 8 frames of 56x56 -> 4 temporal groups of 2x2 merged patches.
    assert int((inputs["input_ids"] == VIDEO_PAD).sum()) == 4 * 2 * 2
    with attach(model) as session:
        out = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 6
    assert len(session.traces[0].span) == 16 and session.traces[0].num_tokens == 6


def test_llava_checkpoint_loads_offline(llava_dir, clips, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from decord import VideoReader
    from transformers import AutoProcessor, LlavaOnevisionForConditionalGeneration

    processor = AutoProcessor.from_pretrained(llava_dir)
    model = LlavaOnevisionForConditionalGeneration.from_pretrained(llava_dir).eval()
    video_id = processor.tokenizer.convert_tokens_to_ids("<video>")
    assert model.config.video_token_index == video_id > IM_END
    assert processor.tokenizer.convert_tokens_to_ids("<|video_pad|>") == VIDEO_PAD  # the real vocabulary
    text = processor.tokenizer.apply_chat_template(
        [{"role": "user", "content": "<video>\nWhat happens?"}], tokenize=False, add_generation_prompt=True
    )
    folder, items = clips
    frames = VideoReader(str(folder / items[0].video)).get_batch(list(range(8))).asnumpy()
    inputs = processor(videos=[frames], text=text, return_tensors="pt")
    assert int((inputs["input_ids"] == video_id).sum()) == 8 * 1 + 1  # one pooled token per frame + newline
    with attach(model) as session:
        model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert len(session.traces[0].span) == 9


def test_qwen3_vl_checkpoint_loads_offline_with_real_ids(tmp_path, clips, monkeypatch):
    """Real Qwen ids, Qwen3-VL's processor layout (a timestamp before each temporal group's token run) and
    the qwen3_vl adapter picked from the saved config."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    path = write_tiny_checkpoint("qwen3_vl", tmp_path / "tiny-qwen3")
    model = Qwen3VLForConditionalGeneration.from_pretrained(path).eval()
    processor = AutoProcessor.from_pretrained(path)
    assert (model.config.video_token_id, model.config.vision_start_token_id) == (VIDEO_PAD, VISION_START)
    assert processor.tokenizer.convert_tokens_to_ids("<|video_pad|>") == VIDEO_PAD
    folder, items = clips
    frames = read_frames(folder / items[0].video)  # 8 frames of 64x64
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>What happens?")
    inputs = processor(text=[text], videos=[frames], do_sample_frames=False, return_tensors="pt")
    # 4 temporal groups of (64/32)^2 merged patches, each run after its own "<t seconds>" timestamp.
    assert int((inputs["input_ids"] == VIDEO_PAD).sum()) == 4 * 2 * 2
    assert processor.decode(inputs["input_ids"][0]).count(" seconds>") == 4
    with attach(model) as session:
        model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert session.traces[0].adapter == "qwen3_vl" and len(session.traces[0].span) == 16


def test_checkpoints_are_deterministic(tmp_path):
    a = write_tiny_checkpoint("qwen2_5_vl", tmp_path / "a", seed=3)
    b = write_tiny_checkpoint("qwen2_5_vl", tmp_path / "b", seed=3)
    from safetensors.torch import load_file

    wa, wb = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    with pytest.raises(ValueError, match="unknown family"):
        write_tiny_checkpoint("gpt2", tmp_path / "c")


# ---------------------------------------------------------------- clips
def test_clips_are_deterministic_and_decodable(clips):
    from decord import VideoReader

    folder, items = clips
    assert [it.kind for it in items] == list(KINDS)
    for i, it in enumerate(items):
        assert it.answer in "ABCD" and len(it.options) == 4 and len(set(it.options)) == 4
        vr = VideoReader(str(folder / it.video))
        assert len(vr) == 8 and vr[0].shape == (64, 64, 3)
        pixels, fields = make_clip(i)
        # Lossy codec: the decoded clip is close to, not equal to, the drawn one.
        assert np.abs(read_frames(folder / it.video).astype(int) - pixels).mean() < 4
        assert fields["answer"] == it.answer and fields["question"] == it.question
    again, _ = make_clip(1)
    other, _ = make_clip(1, seed=1)
    assert np.array_equal(make_clip(1)[0], again) and not np.array_equal(again, other)


def _answer_text(fields: dict) -> str:
    return next(o[3:] for o in fields["options"] if o[0] == fields["answer"])


def _centroid(frame: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(frame.sum(-1))
    return np.array([xs.mean(), ys.mean()])


def _nearest_colour(rgb) -> str:
    return min(COLOURS, key=lambda c: sum((int(a) - b) ** 2 for a, b in zip(rgb, COLOURS[c])))


@pytest.mark.parametrize("index", range(16))
def test_answers_hold_by_construction(index):
    """Read the answer back from the pixels, independently of the generator's bookkeeping."""
    video, fields = make_clip(index, seed=7)
    answer = _answer_text(fields)
    kind = fields["kind"]
    if kind == "move":
        dx, dy = _centroid(video[-1]) - _centroid(video[0])
        seen = ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")
        assert seen == answer
    elif kind == "change":
        mid = video.shape[1] // 2
        assert _nearest_colour(video[-1, mid, mid]) == answer != _nearest_colour(video[0, mid, mid])
    elif kind == "count":
        size = video.shape[1]
        quadrants = [
            video[0, y : y + size // 2, x : x + size // 2].any()
            for y in (0, size // 2)
            for x in (0, size // 2)
        ]
        assert str(sum(quadrants)) == answer
    else:  # appear: the right half is empty at first and holds the answer's colour at the end
        size = video.shape[1]
        assert not video[0, :, size // 2 :].any() and video[-1, :, size // 2 :].any()
        assert _nearest_colour(video[-1, size // 2, 3 * size // 4]) == answer.split()[0]
