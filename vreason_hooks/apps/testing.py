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


def tiny_qwen2_5_vl(
    attn: str = "sdpa",
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    vocab: int = VOCAB,
    dtype=torch.float32,
    heads: int = 4,
    kv_heads: int = 2,
    **ids,
):
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
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=hidden,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            fullatt_block_indexes=[1],
        ),
        image_token_id=ids.get("image_token_id", IMAGE_TOKEN),
        video_token_id=ids.get("video_token_id", VIDEO_TOKEN),
        vision_start_token_id=ids.get("vision_start_token_id", VISION_START),
        vision_end_token_id=ids.get("vision_end_token_id", VISION_END),
        eos_token_id=ids.get("eos_token_id", EOS),
        pad_token_id=ids.get("pad_token_id", PAD),
        tie_word_embeddings=False,
    )
    return _instantiate(
        Qwen2_5_VLForConditionalGeneration,
        config,
        attn,
        seed,
        dtype,
        ids.get("eos_token_id", EOS),
        ids.get("pad_token_id", PAD),
    )


def tiny_qwen2_vl(
    attn: str = "sdpa",
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    vocab: int = VOCAB,
    dtype=torch.float32,
):
    """A Qwen2-VL with a 2-layer text model and a 2-block vision tower (same input layout as Qwen2.5-VL)."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    heads = 4
    half = hidden // heads // 2
    text = _common_text(hidden, layers, heads, 2, vocab)
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 1e6,
        "mrope_section": [half - 2 * (half // 3), half // 3, half // 3],
    }
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=dict(
            depth=2,
            embed_dim=32,
            hidden_size=hidden,
            mlp_ratio=2,
            num_heads=2,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        image_token_id=IMAGE_TOKEN,
        video_token_id=VIDEO_TOKEN,
        vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END,
        eos_token_id=EOS,
        pad_token_id=PAD,
        tie_word_embeddings=False,
    )
    return _instantiate(Qwen2VLForConditionalGeneration, config, attn, seed, dtype)


def tiny_llava_onevision(
    attn: str = "sdpa",
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    vocab: int = VOCAB,
    dtype=torch.float32,
    **ids,
):
    """A LLaVA-OneVision (the transformers class of LLaVA-Video) with a tiny SigLIP tower and Qwen2 LM."""
    from transformers import LlavaOnevisionConfig, LlavaOnevisionForConditionalGeneration

    config = LlavaOnevisionConfig(
        text_config={"model_type": "qwen2", **_common_text(hidden, layers, 4, 2, vocab)},
        vision_config=dict(
            model_type="siglip_vision_model",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=28,
            patch_size=14,
        ),
        image_token_index=ids.get("image_token_index", IMAGE_TOKEN),
        video_token_index=ids.get("video_token_index", VIDEO_TOKEN),
        vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9",
        image_grid_pinpoints=[[28, 28]],
        tie_word_embeddings=False,
    )
    return _instantiate(
        LlavaOnevisionForConditionalGeneration,
        config,
        attn,
        seed,
        dtype,
        ids.get("eos_token_id", EOS),
        ids.get("pad_token_id", PAD),
    )


def _mrope_text(hidden: int, layers: int, vocab: int, **extra) -> dict:
    """A text config with 4 heads of ``hidden / 4`` and 3-row M-RoPE sections summing to ``head_dim / 2``."""
    heads = 4
    half = hidden // heads // 2
    text = _common_text(hidden, layers, heads, 2, vocab)
    text["head_dim"] = hidden // heads
    text["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": 1e6,
        "mrope_section": [half - 2 * (half // 3), half // 3, half // 3],
        **extra,
    }
    return text


def tiny_qwen3_vl(
    attn: str = "sdpa",
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    vocab: int = VOCAB,
    dtype=torch.float32,
    moe: bool = False,
    **ids,
):
    """A Qwen3-VL (``moe=True``: Qwen3-VL-MoE, 4 experts) with a 2-layer text model and a 2-block vision
    tower."""
    import transformers

    text = _mrope_text(hidden, layers, vocab, mrope_interleaved=True)
    if moe:
        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=hidden, decoder_sparse_step=1)
    prefix = "Qwen3VLMoe" if moe else "Qwen3VL"
    config = getattr(transformers, f"{prefix}Config")(
        text_config=text,
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=hidden,
            patch_size=16,
            spatial_merge_size=2,
            temporal_patch_size=2,
            num_position_embeddings=16,
            deepstack_visual_indexes=[0],
        ),
        image_token_id=ids.get("image_token_id", IMAGE_TOKEN),
        video_token_id=ids.get("video_token_id", VIDEO_TOKEN),
        vision_start_token_id=ids.get("vision_start_token_id", VISION_START),
        vision_end_token_id=ids.get("vision_end_token_id", VISION_END),
        tie_word_embeddings=False,
    )
    model_cls = getattr(transformers, f"{prefix}ForConditionalGeneration")
    return _instantiate(
        model_cls, config, attn, seed, dtype, ids.get("eos_token_id", EOS), ids.get("pad_token_id", PAD)
    )


def tiny_qwen3_vl_moe(attn: str = "sdpa", seed: int = 0, **kwargs):
    """A Qwen3-VL-MoE (see :func:`tiny_qwen3_vl`)."""
    return tiny_qwen3_vl(attn=attn, seed=seed, moe=True, **kwargs)


def tiny_glm4v(
    attn: str = "sdpa",
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    vocab: int = VOCAB,
    dtype=torch.float32,
):
    """A GLM-4.1V with a 2-layer text model and a 2-block vision tower (video frames use the image token)."""
    from transformers import Glm4vConfig, Glm4vForConditionalGeneration

    text = _mrope_text(hidden, layers, vocab, partial_rotary_factor=0.5)
    text["rope_parameters"]["mrope_section"] = [2, 1, 1]  # GLM rotates half of head_dim: sections sum to 4
    config = Glm4vConfig(
        text_config=text,
        vision_config=dict(
            depth=2,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=hidden,
            patch_size=14,
            image_size=56,
            spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        image_token_id=IMAGE_TOKEN,
        video_token_id=VIDEO_TOKEN,
        image_start_token_id=VISION_START,
        image_end_token_id=VISION_END,
        video_start_token_id=VISION_START,
        video_end_token_id=VISION_END,
        tie_word_embeddings=False,
    )
    return _instantiate(Glm4vForConditionalGeneration, config, attn, seed, dtype)


def tiny_llava_next_video(
    attn: str = "sdpa",
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    vocab: int = VOCAB,
    dtype=torch.float32,
):
    """A LLaVA-NeXT-Video with a tiny CLIP tower (56 px, 4x4 patches pooled to 2x2 per frame) and Llama LM."""
    from transformers import LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration

    config = LlavaNextVideoConfig(
        text_config={"model_type": "llama", **_common_text(hidden, layers, 4, 2, vocab)},
        vision_config=dict(
            model_type="clip_vision_model",
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=56,
            patch_size=14,
            projection_dim=32,
        ),
        image_token_index=IMAGE_TOKEN,
        video_token_index=VIDEO_TOKEN,
        vision_feature_layer=-1,
        image_grid_pinpoints=[[56, 56]],
        tie_word_embeddings=False,
    )
    return _instantiate(LlavaNextVideoForConditionalGeneration, config, attn, seed, dtype)


def tiny_video_llama_3(
    attn: str = "sdpa",
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    vocab: int = VOCAB,
    dtype=torch.float32,
):
    """A VideoLLaMA3 with a 2-layer SigLIP-style tower (patch 14) and a 2-layer Qwen2 LM."""
    from transformers import VideoLlama3Config, VideoLlama3ForConditionalGeneration

    config = VideoLlama3Config(
        text_config={"model_type": "qwen2", **_common_text(hidden, layers, 4, 2, vocab)},
        vision_config=dict(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, patch_size=14
        ),
        image_token_id=IMAGE_TOKEN,
        video_token_id=VIDEO_TOKEN,
        tie_word_embeddings=False,
    )
    return _instantiate(VideoLlama3ForConditionalGeneration, config, attn, seed, dtype)


def tiny_internvl(
    attn: str = "sdpa",
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    vocab: int = VOCAB,
    dtype=torch.float32,
):
    """An InternVL3 with a 2-layer InternViT (56 px: 4x4 patches, pixel-shuffled to 4 tokens) and Qwen2 LM."""
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    config = InternVLConfig(
        text_config={"model_type": "qwen2", **_common_text(hidden, layers, 4, 2, vocab)},
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=[56, 56],
            patch_size=[14, 14],
        ),
        image_token_id=IMAGE_TOKEN,
        image_seq_length=4,
        tie_word_embeddings=False,
    )
    return _instantiate(InternVLForConditionalGeneration, config, attn, seed, dtype)


def tiny_smolvlm(
    attn: str = "sdpa",
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    vocab: int = VOCAB,
    dtype=torch.float32,
):
    """A SmolVLM2 with a 2-layer SigLIP-style tower (56 px: 4x4 patches, pixel-shuffled to 4 tokens) and Llama
    LM."""
    from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration

    config = SmolVLMConfig(
        text_config={"model_type": "llama", **_common_text(hidden, layers, 4, 2, vocab)},
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=56,
            patch_size=14,
        ),
        image_token_id=IMAGE_TOKEN,
        scale_factor=2,
        pad_token_id=PAD,
        tie_word_embeddings=False,
    )
    return _instantiate(SmolVLMForConditionalGeneration, config, attn, seed, dtype)


def tiny_perception_lm(
    attn: str = "sdpa",
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    vocab: int = VOCAB,
    dtype=torch.float32,
):
    """A PerceptionLM with a 2-block timm ViT (56 px: 4x4 patches + CLS, pooled 2x2 to 4 tokens) and Llama
    LM."""
    from transformers import PerceptionLMConfig, PerceptionLMForConditionalGeneration

    config = PerceptionLMConfig(
        text_config={"model_type": "llama", **_common_text(hidden, layers, 4, 2, vocab)},
        vision_config=dict(
            model_type="timm_wrapper",
            architecture="vit_base_patch16_224",
            num_classes=0,
            model_args=dict(embed_dim=32, depth=2, num_heads=2, img_size=56, patch_size=14, class_token=True),
        ),
        vision_use_cls_token=True,
        projector_pooling_ratio=2,
        image_token_id=IMAGE_TOKEN,
        video_token_id=VIDEO_TOKEN,
        tie_word_embeddings=False,
    )
    return _instantiate(PerceptionLMForConditionalGeneration, config, attn, seed, dtype)


def tiny_molmo2(
    attn: str = "sdpa",
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    vocab: int = VOCAB,
    dtype=torch.float32,
):
    """A Molmo2 with a 2-layer ViT (56 px: 4x4 patches of 14 px, attention-pooled 2x2 to 4 tokens per frame)
    and a 2-layer Molmo2 text model (no extra vocabulary: the special ids sit in ``VOCAB``)."""
    from transformers import Molmo2Config, Molmo2ForConditionalGeneration

    text = _common_text(hidden, layers, 4, 2, vocab)
    text.update(head_dim=hidden // 4, additional_vocab_size=0)
    config = Molmo2Config(
        text_config=text,
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=16,
            image_size=[56, 56],
            patch_size=14,
        ),
        adapter_config=dict(
            vision_feature_layer=[-1],
            hidden_size=32,
            num_attention_heads=2,
            num_key_value_heads=2,
            head_dim=16,
            intermediate_size=64,
            text_hidden_size=hidden,
        ),
        image_patch_id=VIDEO_TOKEN,
        image_start_token_id=VISION_START,
        image_end_token_id=VISION_END,
        low_res_image_start_token_id=VISION_START,
        frame_start_token_id=VISION_START,
        frame_end_token_id=VISION_END,
        tie_word_embeddings=False,
    )
    return _instantiate(Molmo2ForConditionalGeneration, config, attn, seed, dtype)


def tiny_llama(
    attn: str = "sdpa",
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    vocab: int = VOCAB,
    dtype=torch.float32,
):
    """A 2-layer Llama (the text-only adapter's family; SmolLM2 is one)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**_common_text(hidden, layers, 4, 2, vocab), tie_word_embeddings=False)
    return _instantiate(LlamaForCausalLM, config, attn, seed, dtype)


def tiny_qwen2(
    attn: str = "sdpa",
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    vocab: int = VOCAB,
    dtype=torch.float32,
):
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
    for b, n in enumerate(_row_pads(batch, pad)):
        ids[b, :n], mask[b, :n] = PAD, 0
    return {"input_ids": ids, "attention_mask": mask}


SEQUENCE_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")
"""Inputs laid out along the sequence (left-padded when rows are stacked); every other input is per row."""


def stack_rows(rows: list[dict]) -> dict:
    """One left-padded batch from single-row inputs of any family (rows may differ in length and in their
    videos): sequence inputs padded on the left to the longest row, the others concatenated."""
    width = max(row["input_ids"].shape[1] for row in rows)
    batch = {}
    for key in rows[0]:
        parts = [row[key] for row in rows]
        if key in SEQUENCE_KEYS:
            fill = PAD if key == "input_ids" else 0
            parts = [torch.cat([p.new_full((1, width - p.shape[1]), fill), p], dim=1) for p in parts]
        batch[key] = torch.cat(parts)
    return batch


def _row_pads(batch: int, pad: list[int] | None) -> list[int]:
    """``pad`` as one left-padding count per row (missing rows: 0)."""
    pad = list(pad or [])
    if len(pad) > batch or any(n < 0 for n in pad):
        raise ValueError(f"pad={pad}: give at most batch={batch} non-negative padding counts, one per row")
    return pad + [0] * (batch - len(pad))


def qwen_video_inputs(
    model,
    batch: int = 1,
    frames: int = 2,
    grid: int = 4,
    prefix: int = 5,
    suffix: int = 6,
    seed: int = 0,
    pad: list[int] | None = None,
) -> dict:
    """Qwen2.5-VL inputs with one video of ``frames`` frames of ``grid x grid`` patches per sequence.

    The video contributes ``(frames / 2) * grid * grid / 4`` tokens (temporal patch 2, 2x2 merge). Row ``b``
    starts with ``pad[b]`` left-padding tokens and its text suffix is ``max(pad) - pad[b]`` tokens longer, so
    the rows are ragged and their videos sit at different cache positions.
    """
    config = model.config
    vision = config.vision_config
    g = torch.Generator().manual_seed(seed)
    t = frames // vision.temporal_patch_size
    n_video = t * grid * grid // vision.spatial_merge_size**2
    rows, length = [], prefix + n_video + suffix + 2
    pad = _row_pads(batch, pad)
    width = length + max(pad)
    input_ids = torch.full((batch, width), PAD)
    mask = torch.zeros((batch, width), dtype=torch.long)
    types = torch.zeros((batch, width), dtype=torch.long)
    for b in range(batch):
        seq = (
            torch.randint(1, IMAGE_TOKEN, (prefix,), generator=g).tolist()
            + [config.vision_start_token_id]
            + [config.video_token_id] * n_video
            + [config.vision_end_token_id]
            + torch.randint(1, IMAGE_TOKEN, (suffix + max(pad) - pad[b],), generator=g).tolist()
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


def llava_video_inputs(
    model,
    batch: int = 1,
    frames: int = 2,
    prefix: int = 5,
    suffix: int = 6,
    seed: int = 0,
    pad: list[int] | None = None,
) -> dict:
    """LLaVA-OneVision inputs with one ``frames``-frame video per sequence (pooled to 1 token per frame here).

    Row ``b`` starts with ``pad[b]`` left-padding tokens and its text suffix is ``max(pad) - pad[b]`` tokens
    longer (a ragged batch, as in :func:`qwen_video_inputs`).
    """
    config = model.config
    vision = config.vision_config
    g = torch.Generator().manual_seed(seed)
    side = vision.image_size // vision.patch_size
    pooled = -(-side // 2)  # bilinear 2x pooling, rounded up
    n_video = frames * pooled * pooled + 1  # + the newline token appended after the frames
    pad = _row_pads(batch, pad)
    length = prefix + n_video + suffix
    width = length + max(pad)
    input_ids = torch.full((batch, width), PAD)
    mask = torch.zeros((batch, width), dtype=torch.long)
    for b in range(batch):
        seq = (
            torch.randint(1, IMAGE_TOKEN, (prefix,), generator=g).tolist()
            + [config.video_token_index] * n_video
            + torch.randint(1, IMAGE_TOKEN, (suffix + max(pad) - pad[b],), generator=g).tolist()
        )
        input_ids[b, width - len(seq) :] = torch.tensor(seq)
        mask[b, width - len(seq) :] = 1
    pixels = torch.randn(batch, frames, 3, vision.image_size, vision.image_size, generator=g).to(model.dtype)
    return {"input_ids": input_ids, "attention_mask": mask, "pixel_values_videos": pixels}


def _ragged_rows(batch: int, pad: list[int] | None, seed: int, middle: list[int], prefix: int, suffix: int):
    """``(input_ids, attention_mask)`` of ``batch`` rows ``text + middle + text``, row ``b`` left-padded by
    exactly ``pad[b]`` tokens (its text suffix is longer by ``max(pad) - pad[b]``): a really ragged batch
    whose rows hold ``middle`` at different cache positions, as :func:`qwen_video_inputs` does."""
    pad = _row_pads(batch, pad)
    g = torch.Generator().manual_seed(seed)
    width = prefix + max(pad) + len(middle) + suffix
    input_ids = torch.full((batch, width), PAD)
    mask = torch.zeros((batch, width), dtype=torch.long)
    for b in range(batch):
        head = torch.randint(1, IMAGE_TOKEN, (prefix,), generator=g).tolist()
        tail = torch.randint(1, IMAGE_TOKEN, (suffix + max(pad) - pad[b],), generator=g).tolist()
        seq = head + middle + tail
        input_ids[b, pad[b] :] = torch.tensor(seq)
        mask[b, pad[b] :] = 1
    return input_ids, mask, g


def _span_token(model) -> int:
    from ..adapters import find_adapter

    return find_adapter(model).span_token_id(model.config)


def grid_video_inputs(
    model,
    batch: int = 1,
    grid: int = 4,
    prefix: int = 5,
    suffix: int = 6,
    seed: int = 0,
    pad: list[int] | None = None,
) -> dict:
    """Inputs of the M-RoPE video families that split videos per frame group (Qwen3-VL, GLM-4V).

    One video of one temporal patch (2 frames) of ``grid x grid`` patches per sequence, i.e. ``grid**2 / 4``
    placeholder tokens (the adapter's span token) between ``VISION_START`` and ``VISION_END``, marked 2 in
    ``mm_token_type_ids``. Row ``b`` has exactly ``pad[b]`` left-padding tokens.
    """
    config = model.config
    vision = config.vision_config
    n_video = grid * grid // vision.spatial_merge_size**2
    middle = [VISION_START] + [_span_token(model)] * n_video + [VISION_END]
    input_ids, mask, g = _ragged_rows(batch, pad, seed, middle, prefix, suffix)
    types = torch.zeros_like(input_ids)
    for b in range(batch):
        start = int((input_ids[b] == VISION_START).nonzero()[0]) + 1
        types[b, start : start + n_video] = 2
    patch_dim = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    pixels = torch.randn(batch * grid * grid, patch_dim, generator=g).to(model.dtype)
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "mm_token_type_ids": types,
        "pixel_values_videos": pixels,
        "video_grid_thw": torch.tensor([[1, grid, grid]] * batch),
    }


def _first(value):
    """``value[0]`` of a per-axis ``[h, w]`` size, else ``value``."""
    return value[0] if isinstance(value, (list, tuple)) else value


def frame_video_inputs(
    model,
    batch: int = 1,
    frames: int = 2,
    prefix: int = 5,
    suffix: int = 6,
    seed: int = 0,
    pad: list[int] | None = None,
) -> dict:
    """Inputs of the families that encode a video as whole frames ``(frames, 3, H, W)`` per sequence.

    LLaVA-NeXT-Video: ``pixel_values_videos (batch, frames, 3, H, W)``, ``(side / 2)**2`` pooled tokens per
    frame (PerceptionLM the same, its patches average-pooled 2x2). InternVL and SmolVLM (frames as images, as
    their processors do): ``side**2 / 4`` pixel-shuffled
    tokens per frame, each frame between ``VISION_START`` / ``VISION_END``; InternVL takes ``pixel_values
    (batch * frames, 3, H, W)``, SmolVLM ``pixel_values (batch, frames, 3, H, W)`` (images per sequence).
    Row ``b`` has exactly ``pad[b]`` left-padding tokens.
    """
    config = model.config
    vision = config.vision_config
    timm_args = getattr(vision, "model_args", None)  # a timm tower (PerceptionLM) keeps its geometry here
    if timm_args:
        size, patch = timm_args["img_size"], timm_args["patch_size"]
    else:
        size, patch = _first(vision.image_size), _first(vision.patch_size)
    per_frame = (size // patch // 2) ** 2
    token = _span_token(model)
    # InternVL and SmolVLM have no video token: frames are images
    as_images = not (hasattr(config, "video_token_index") or hasattr(config, "video_token_id"))
    if as_images:
        middle = ([VISION_START] + [token] * per_frame + [VISION_END]) * frames
    else:
        middle = [token] * (frames * per_frame)
    input_ids, mask, g = _ragged_rows(batch, pad, seed, middle, prefix, suffix)
    pixels = torch.randn(batch, frames, 3, size, size, generator=g).to(model.dtype)
    if as_images:
        per_sequence = config.model_type == "smolvlm"  # SmolVLM keeps the images of each sequence together
        return {
            "input_ids": input_ids,
            "attention_mask": mask,
            "pixel_values": pixels if per_sequence else pixels.flatten(0, 1),
        }
    return {"input_ids": input_ids, "attention_mask": mask, "pixel_values_videos": pixels}


def patch_video_inputs(
    model,
    batch: int = 1,
    frames: int = 2,
    grid: int = 4,
    prefix: int = 5,
    suffix: int = 6,
    seed: int = 0,
    pad: list[int] | None = None,
) -> dict:
    """VideoLLaMA3 inputs: one video of ``frames x grid x grid`` patches per sequence, merged 2x2, i.e.
    ``frames * grid**2 / 4`` video tokens. Row ``b`` has exactly ``pad[b]`` left-padding tokens."""
    config = model.config
    vision = config.vision_config
    merge = 2
    middle = [_span_token(model)] * (frames * grid * grid // merge**2)
    input_ids, mask, g = _ragged_rows(batch, pad, seed, middle, prefix, suffix)
    patch_dim = vision.num_channels * vision.patch_size**2
    pixels = torch.randn(batch * frames * grid * grid, patch_dim, generator=g).to(model.dtype)
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "pixel_values_videos": pixels,
        "video_grid_thw": torch.tensor([[frames, grid, grid]] * batch),
        "video_merge_sizes": torch.tensor([merge] * batch),
    }


def pooled_video_inputs(
    model,
    batch: int = 1,
    frames: int = 2,
    prefix: int = 5,
    suffix: int = 6,
    seed: int = 0,
    pad: list[int] | None = None,
) -> dict:
    """Molmo2 inputs: one video of ``frames`` frames per sequence, each frame's ``side x side`` patches pooled
    2x2 into ``(side / 2)**2`` patch tokens between ``VISION_START`` / ``VISION_END`` (frame start / end).

    ``pixel_values_videos (batch * frames, side**2, 3 * patch**2)`` holds flattened patches; row ``t`` of
    ``video_token_pooling (batch * frames * (side / 2)**2, 4)`` lists the patches token ``t`` pools (indices
    into every frame's patches, in order); ``video_grids (batch, 3)`` is ``[frames, side / 2, side / 2]``.
    ``mm_token_type_ids`` is 1 on the frame tokens (start, patches, end): they attend to each other in
    prefill, as the Molmo2 processor marks them. Row ``b`` has exactly ``pad[b]`` left-padding tokens.
    """
    config = model.config
    vision = config.vision_config
    side = vision.image_size[0] // vision.patch_size
    pooled = side // 2
    middle = ([VISION_START] + [_span_token(model)] * pooled**2 + [VISION_END]) * frames
    input_ids, mask, g = _ragged_rows(batch, pad, seed, middle, prefix, suffix)
    types = torch.zeros_like(input_ids)
    for b in range(batch):
        first = int((input_ids[b] == VISION_START).nonzero()[0])
        types[b, first : first + len(middle)] = 1
    # token (r, c) of a frame pools patches (2r + i, 2c + j), i, j in {0, 1}, of that frame's side x side grid
    r, c = torch.meshgrid(torch.arange(pooled), torch.arange(pooled), indexing="ij")
    corners = (2 * r * side + 2 * c).reshape(-1, 1)
    per_frame = corners + torch.tensor([0, 1, side, side + 1])
    pooling = torch.cat([per_frame + n * side * side for n in range(batch * frames)])
    patch_dim = vision.num_channels * vision.patch_size**2
    pixels = torch.randn(batch * frames, side * side, patch_dim, generator=g).to(model.dtype)
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "mm_token_type_ids": types,
        "pixel_values_videos": pixels,
        "video_token_pooling": pooling,
        "video_grids": torch.tensor([[frames, pooled, pooled]] * batch),
    }


def _text_family_inputs(model, batch: int = 1, pad: list[int] | None = None, seed: int = 0) -> dict:
    return text_inputs(batch=batch, pad=pad, seed=seed)


FAMILIES = {
    "qwen2_5_vl": (tiny_qwen2_5_vl, qwen_video_inputs),
    "qwen2_vl": (tiny_qwen2_vl, qwen_video_inputs),
    "llava_onevision": (tiny_llava_onevision, llava_video_inputs),
    "llama": (tiny_llama, _text_family_inputs),
    "qwen2": (tiny_qwen2, _text_family_inputs),
    "qwen3_vl": (tiny_qwen3_vl, grid_video_inputs),
    "qwen3_vl_moe": (tiny_qwen3_vl_moe, grid_video_inputs),
    "glm4v": (tiny_glm4v, grid_video_inputs),
    "llava_next_video": (tiny_llava_next_video, frame_video_inputs),
    "video_llama_3": (tiny_video_llama_3, patch_video_inputs),
    "internvl": (tiny_internvl, frame_video_inputs),
    "smolvlm": (tiny_smolvlm, frame_video_inputs),
    "perception_lm": (tiny_perception_lm, frame_video_inputs),
    "molmo2": (tiny_molmo2, pooled_video_inputs),
}
"""Adapter name -> (build(attn=..., seed=...), make_inputs(model, batch=, pad=, seed=)). One line per shipped
adapter: the test matrix (tests/test_matrix.py) runs every check over this table."""
