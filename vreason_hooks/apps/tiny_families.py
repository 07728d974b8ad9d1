"""One record per adapter family: how to build its tiny random-weight model and its inputs (data, no code).

A record (:class:`~vreason_hooks.apps.tiny_models.TinyFamily`) names the transformers class, the fields of the
tiny language model beyond the shared ones, its rotary layout, the vision tower's geometry, the config's
token-id fields, and how one video becomes placeholder tokens and pixel inputs
(:class:`~vreason_hooks.apps.tiny_models.VideoLayout`). :mod:`vreason_hooks.apps.testing` builds every family
from these records alone; adding a family is one record here and one spec file (``docs/adding-a-model.md``).

Values written ``HIDDEN`` are the tiny model's hidden size, filled in at build time.
"""

from __future__ import annotations

from .tiny_models import (
    EOS,
    HIDDEN,
    IMAGE_TOKEN,
    PAD,
    VIDEO_TOKEN,
    VISION_END,
    VISION_START,
    TinyFamily,
    VideoLayout,
)

QWEN_IDS = dict(
    image_token_id=IMAGE_TOKEN,
    video_token_id=VIDEO_TOKEN,
    vision_start_token_id=VISION_START,
    vision_end_token_id=VISION_END,
)
SMALL_TOWER = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
QWEN3_TOWER = dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=HIDDEN,
                   patch_size=16, spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=16,
                   deepstack_visual_indexes=[0])  # fmt: skip
"""The Qwen3-VL vision tower (16 px patches, deepstack from block 0), shared by its dense and MoE models."""
QWEN_PATCHES = VideoLayout(
    "patches", temporal_patch=2, grid=4, bracket="video", type_id=2, grid_key="video_grid_thw"
)
"""A Qwen-style video: flattened 14 px patches, two frames per temporal patch, a 4x4 grid merged 2x2 into
4 tokens between ``VISION_START`` / ``VISION_END``, marked 2 in ``mm_token_type_ids``."""

FAMILIES: dict[str, TinyFamily] = {
    "qwen2_5_vl": TinyFamily(
        "Qwen2_5_VLForConditionalGeneration",
        rope="mrope",
        vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=HIDDEN,
                    patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=56,
                    fullatt_block_indexes=[1]),
        fields=dict(**QWEN_IDS, eos_token_id=EOS, pad_token_id=PAD),
        video=VideoLayout("patches", temporal_patch=2, grid=4, bracket="video", type_id=2,
                          grid_key="video_grid_thw", per_video={"second_per_grid_ts": 1.0}),
    ),
    "qwen2_vl": TinyFamily(
        "Qwen2VLForConditionalGeneration",
        rope="mrope",
        vision=dict(depth=2, embed_dim=32, hidden_size=HIDDEN, mlp_ratio=2, num_heads=2, patch_size=14,
                    spatial_merge_size=2, temporal_patch_size=2),
        fields=QWEN_IDS,
        video=QWEN_PATCHES,
    ),
    "qwen3_vl": TinyFamily(
        "Qwen3VLForConditionalGeneration",
        rope="mrope_interleaved",
        vision=QWEN3_TOWER,
        fields=QWEN_IDS,
        video=QWEN_PATCHES,
    ),
    "qwen3_vl_moe": TinyFamily(
        "Qwen3VLMoeForConditionalGeneration",
        text=dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=HIDDEN, decoder_sparse_step=1),
        rope="mrope_interleaved",
        vision=QWEN3_TOWER,
        fields=QWEN_IDS,
        video=QWEN_PATCHES,
    ),
    "glm4v": TinyFamily(
        "Glm4vForConditionalGeneration",
        text=dict(partial_rotary_factor=0.5),  # GLM rotates half of head_dim
        rope="mrope",
        vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=HIDDEN,
                    patch_size=14, image_size=56, spatial_merge_size=2, temporal_patch_size=2),
        fields=dict(image_token_id=IMAGE_TOKEN, video_token_id=VIDEO_TOKEN, image_start_token_id=VISION_START,
                    image_end_token_id=VISION_END, video_start_token_id=VISION_START,
                    video_end_token_id=VISION_END),
        video=VideoLayout("patches", temporal_patch=2, grid=4, bracket="video", type_id=2,
                          grid_key="video_grid_thw"),
    ),
    "llava_onevision": TinyFamily(
        "LlavaOnevisionForConditionalGeneration",
        text=dict(model_type="qwen2"),
        vision=dict(model_type="siglip_vision_model", **SMALL_TOWER, image_size=28, patch_size=14),
        fields=dict(image_token_index=IMAGE_TOKEN, video_token_index=VIDEO_TOKEN, vision_feature_layer=-1,
                    vision_aspect_ratio="anyres_max_9", image_grid_pinpoints=[[28, 28]]),
        video=VideoLayout("frames", extra_tokens=1),  # + the newline token after the frames
    ),
    "llava_next_video": TinyFamily(
        "LlavaNextVideoForConditionalGeneration",
        text=dict(model_type="llama"),
        vision=dict(model_type="clip_vision_model", **SMALL_TOWER, image_size=56, patch_size=14,
                    projection_dim=32),
        fields=dict(image_token_index=IMAGE_TOKEN, video_token_index=VIDEO_TOKEN, vision_feature_layer=-1,
                    image_grid_pinpoints=[[56, 56]]),
        video=VideoLayout("frames"),
    ),
    "video_llama_3": TinyFamily(
        "VideoLlama3ForConditionalGeneration",
        text=dict(model_type="qwen2"),
        vision=dict(**SMALL_TOWER, patch_size=14),
        fields=dict(image_token_id=IMAGE_TOKEN, video_token_id=VIDEO_TOKEN),
        video=VideoLayout("patches", grid=4, grid_key="video_grid_thw", per_video={"video_merge_sizes": 2}),
    ),
    "internvl": TinyFamily(
        "InternVLForConditionalGeneration",
        text=dict(model_type="qwen2"),
        vision=dict(**SMALL_TOWER, image_size=[56, 56], patch_size=[14, 14]),
        fields=dict(image_token_id=IMAGE_TOKEN, image_seq_length=4),
        video=VideoLayout("images", pixel_key="pixel_values", bracket="frame"),
    ),
    "smolvlm": TinyFamily(
        "SmolVLMForConditionalGeneration",
        text=dict(model_type="llama"),
        vision=dict(**SMALL_TOWER, image_size=56, patch_size=14),
        fields=dict(image_token_id=IMAGE_TOKEN, scale_factor=2, pad_token_id=PAD),
        video=VideoLayout("images", pixel_key="pixel_values", bracket="frame", images_per_row=True),
    ),
    "perception_lm": TinyFamily(
        "PerceptionLMForConditionalGeneration",
        text=dict(model_type="llama"),
        vision=dict(model_type="timm_wrapper", architecture="vit_base_patch16_224", num_classes=0,
                    model_args=dict(embed_dim=32, depth=2, num_heads=2, img_size=56, patch_size=14,
                                    class_token=True)),
        fields=dict(vision_use_cls_token=True, projector_pooling_ratio=2, image_token_id=IMAGE_TOKEN,
                    video_token_id=VIDEO_TOKEN),
        video=VideoLayout("frames"),
    ),
    "molmo2": TinyFamily(
        "Molmo2ForConditionalGeneration",
        text=dict(additional_vocab_size=0),  # no extra vocabulary: the special ids sit in VOCAB
        vision=dict(**SMALL_TOWER, num_key_value_heads=2, head_dim=16, image_size=[56, 56], patch_size=14),
        fields=dict(adapter_config=dict(vision_feature_layer=[-1], hidden_size=32, num_attention_heads=2,
                                        num_key_value_heads=2, head_dim=16, intermediate_size=64,
                                        text_hidden_size=HIDDEN),
                    image_patch_id=VIDEO_TOKEN, image_start_token_id=VISION_START,
                    image_end_token_id=VISION_END, low_res_image_start_token_id=VISION_START,
                    frame_start_token_id=VISION_START, frame_end_token_id=VISION_END),
        video=VideoLayout("pooled", bracket="frame", type_id=1, type_brackets=True, grid_key="video_grids"),
    ),
    "llama": TinyFamily("LlamaForCausalLM", text_key=None),
    "qwen2": TinyFamily("Qwen2ForCausalLM", text_key=None),
}  # fmt: skip
"""Adapter name -> its tiny family. Every shipped adapter has one (``tests/engine/test_matrix.py`` checks
it)."""
