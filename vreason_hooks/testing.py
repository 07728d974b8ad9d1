"""Tiny random-weight models and inputs, built from config classes (no hub), for tests and benchmarks.

The token ids sit at the top of a small vocabulary so every family uses the same layout:
``VIDEO_TOKEN`` marks video positions, ``VISION_START`` / ``VISION_END`` bracket them (Qwen2.5-VL needs
them for its 3-D positions). Video inputs are random pixels of the right shapes.
"""

from __future__ import annotations

import torch

VOCAB = 256
IMAGE_TOKEN, VIDEO_TOKEN, VISION_START, VISION_END, EOS = 250, 251, 252, 253, 254
PAD = 0


def _common_text(hidden: int, layers: int, heads: int, kv_heads: int, vocab: int) -> dict:
    return dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=32768,
        eos_token_id=EOS,
        pad_token_id=PAD,
        bos_token_id=None,
    )


def tiny_qwen2_5_vl(attn: str = "sdpa", seed: int = 0, hidden: int = 64, layers: int = 2, vocab: int = VOCAB,
                    dtype=torch.float32, heads: int = 4, kv_heads: int = 2, **ids):
    """A Qwen2.5-VL with a 2-layer text model and a 2-block vision tower.

    ``ids`` overrides the special token ids (``video_token_id=...`` etc.) for a real-tokenizer layout.
    """
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    half = hidden // heads // 2
    section = [half - 2 * (half // 3), half // 3, half // 3]
    text = _common_text(hidden, layers, heads, kv_heads, vocab)
    text["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e6, "mrope_section": section}
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=dict(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=hidden,
            patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1],
        ),
        image_token_id=ids.get("image_token_id", IMAGE_TOKEN),
        video_token_id=ids.get("video_token_id", VIDEO_TOKEN),
        vision_start_token_id=ids.get("vision_start_token_id", VISION_START),
        vision_end_token_id=ids.get("vision_end_token_id", VISION_END),
        eos_token_id=ids.get("eos_token_id", EOS),
        pad_token_id=ids.get("pad_token_id", PAD),
        tie_word_embeddings=False,
    )
    return _instantiate(Qwen2_5_VLForConditionalGeneration, config, attn, seed, dtype,
                        ids.get("eos_token_id", EOS), ids.get("pad_token_id", PAD))


def tiny_qwen2_vl(attn: str = "sdpa", seed: int = 0, hidden: int = 64, layers: int = 2, vocab: int = VOCAB,
                  dtype=torch.float32):
    """A Qwen2-VL with a 2-layer text model and a 2-block vision tower (same input layout as Qwen2.5-VL)."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    heads = 4
    half = hidden // heads // 2
    text = _common_text(hidden, layers, heads, 2, vocab)
    text["rope_parameters"] = {
        "rope_type": "default", "rope_theta": 1e6, "mrope_section": [half - 2 * (half // 3), half // 3, half // 3]
    }
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=dict(depth=2, embed_dim=32, hidden_size=hidden, mlp_ratio=2, num_heads=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=IMAGE_TOKEN, video_token_id=VIDEO_TOKEN, vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END, eos_token_id=EOS, pad_token_id=PAD, tie_word_embeddings=False,
    )
    return _instantiate(Qwen2VLForConditionalGeneration, config, attn, seed, dtype)


def tiny_llava_onevision(attn: str = "sdpa", seed: int = 0, hidden: int = 64, layers: int = 2, vocab: int = VOCAB,
                         dtype=torch.float32, **ids):
    """A LLaVA-OneVision (the transformers class of LLaVA-Video) with a tiny SigLIP tower and Qwen2 LM."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    config = LlavaOnevisionConfig(
        text_config={"model_type": "qwen2", **_common_text(hidden, layers, 4, 2, vocab)},
        vision_config=dict(
            model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, image_size=28, patch_size=14,
        ),
        image_token_index=ids.get("image_token_index", IMAGE_TOKEN),
        video_token_index=ids.get("video_token_index", VIDEO_TOKEN),
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
        image_grid_pinpoints=[[28, 28]],
        tie_word_embeddings=False,
    )
    return _instantiate(LlavaOnevisionForConditionalGeneration, config, attn, seed, dtype,
                        ids.get("eos_token_id", EOS), ids.get("pad_token_id", PAD))


def tiny_llama(attn: str = "sdpa", seed: int = 0, hidden: int = 64, layers: int = 2, vocab: int = VOCAB,
               dtype=torch.float32):
    """A 2-layer Llama (the text-only adapter's family; SmolLM2 is one)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**_common_text(hidden, layers, 4, 2, vocab), tie_word_embeddings=False)
    return _instantiate(LlamaForCausalLM, config, attn, seed, dtype)


def tiny_qwen2(attn: str = "sdpa", seed: int = 0, hidden: int = 64, layers: int = 2, vocab: int = VOCAB,
               dtype=torch.float32):
    """A 2-layer Qwen2 text model (the ``qwen2`` adapter's family)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(**_common_text(hidden, layers, 4, 2, vocab), tie_word_embeddings=False)
    return _instantiate(Qwen2ForCausalLM, config, attn, seed, dtype)


def _instantiate(model_cls, config, attn: str, seed: int, dtype, eos: int = EOS, pad: int = PAD):
    """Seeded random weights for ``config`` with attention ``attn`` in every sub-model, in eval mode."""
    for sub in (config, getattr(config, "text_config", None), getattr(config, "vision_config", None)):
        if sub is not None:
            sub._attn_implementation = attn
    torch.manual_seed(seed)
    model = model_cls(config).to(dtype).eval()
    _set_generation_defaults(model, eos, pad)
    return model


def _set_generation_defaults(model, eos: int, pad: int) -> None:
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model.generation_config.do_sample = False
    model.generation_config.bos_token_id = None


def text_inputs(batch: int = 1, length: int = 12, seed: int = 0, pad: list[int] | None = None) -> dict:
    """Random prompt ids ``(batch, length)`` with left padding of ``pad[b]`` tokens per sequence."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, IMAGE_TOKEN, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    for b, n in enumerate(pad or []):
        ids[b, :n], mask[b, :n] = PAD, 0
    return {"input_ids": ids, "attention_mask": mask}


def qwen_video_inputs(model, batch: int = 1, frames: int = 2, grid: int = 4, prefix: int = 5, suffix: int = 6,
                      seed: int = 0, pad: list[int] | None = None) -> dict:
    """Qwen2.5-VL inputs with one video of ``frames`` frames of ``grid x grid`` patches per sequence.

    The video contributes ``(frames / 2) * grid * grid / 4`` tokens (temporal patch 2, 2x2 merge);
    ``pad[b]`` extra left-padding tokens make a ragged batch.
    """
    config = model.config
    vision = config.vision_config
    g = torch.Generator().manual_seed(seed)
    t = frames // vision.temporal_patch_size
    n_video = t * grid * grid // vision.spatial_merge_size**2
    rows, length = [], prefix + n_video + suffix + 2
    pad = pad or [0] * batch
    width = length + max(pad)
    input_ids = torch.full((batch, width), PAD)
    mask = torch.zeros((batch, width), dtype=torch.long)
    types = torch.zeros((batch, width), dtype=torch.long)
    for b in range(batch):
        seq = (
            torch.randint(1, IMAGE_TOKEN, (prefix,), generator=g).tolist()
            + [config.vision_start_token_id] + [config.video_token_id] * n_video + [config.vision_end_token_id]
            + torch.randint(1, IMAGE_TOKEN, (suffix,), generator=g).tolist()
        )
        start = width - len(seq)
        input_ids[b, start:] = torch.tensor(seq)
        mask[b, start:] = 1
        rows.append(seq)
    types[input_ids == config.video_token_id] = 2
    patch_dim = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    pixels = torch.randn(batch * t * grid * grid, patch_dim, generator=g).to(model.dtype)
    inputs = {
        "input_ids": input_ids,
        "attention_mask": mask,
        "mm_token_type_ids": types,
        "pixel_values_videos": pixels,
        "video_grid_thw": torch.tensor([[t, grid, grid]] * batch),
    }
    if config.model_type == "qwen2_5_vl":  # Qwen2-VL has no temporal spacing input
        inputs["second_per_grid_ts"] = torch.tensor([1.0] * batch)
    return inputs


def llava_video_inputs(model, batch: int = 1, frames: int = 2, prefix: int = 5, suffix: int = 6, seed: int = 0,
                       pad: list[int] | None = None) -> dict:
    """LLaVA-OneVision inputs with one ``frames``-frame video per sequence (pooled to 1 token per frame here)."""
    config = model.config
    vision = config.vision_config
    g = torch.Generator().manual_seed(seed)
    side = vision.image_size // vision.patch_size
    pooled = -(-side // 2)  # bilinear 2x pooling, rounded up
    n_video = frames * pooled * pooled + 1  # + the newline token appended after the frames
    pad = pad or [0] * batch
    length = prefix + n_video + suffix
    width = length + max(pad)
    input_ids = torch.full((batch, width), PAD)
    mask = torch.zeros((batch, width), dtype=torch.long)
    for b in range(batch):
        seq = (
            torch.randint(1, IMAGE_TOKEN, (prefix,), generator=g).tolist()
            + [config.video_token_index] * n_video
            + torch.randint(1, IMAGE_TOKEN, (suffix,), generator=g).tolist()
        )
        input_ids[b, width - len(seq):] = torch.tensor(seq)
        mask[b, width - len(seq):] = 1
    pixels = torch.randn(batch, frames, 3, vision.image_size, vision.image_size, generator=g).to(model.dtype)
    return {"input_ids": input_ids, "attention_mask": mask, "pixel_values_videos": pixels}


def _text_family_inputs(model, batch: int = 1, pad: list[int] | None = None, seed: int = 0) -> dict:
    return text_inputs(batch=batch, pad=pad, seed=seed)


FAMILIES = {
    "qwen2_5_vl": (tiny_qwen2_5_vl, qwen_video_inputs),
    "qwen2_vl": (tiny_qwen2_vl, qwen_video_inputs),
    "llava_onevision": (tiny_llava_onevision, llava_video_inputs),
    "llama": (tiny_llama, _text_family_inputs),
    "qwen2": (tiny_qwen2, _text_family_inputs),
}
"""Adapter name -> (build(attn=..., seed=...), make_inputs(model, batch=, pad=, seed=)). One line per shipped
adapter: the test matrix (tests/test_matrix.py) runs every check over this table."""
