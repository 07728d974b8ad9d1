"""The schema of a tiny family record (:class:`TinyFamily`, :class:`VideoLayout`) and the shared token layout.

The token ids sit at the top of a small vocabulary so every family uses the same layout: ``VIDEO_TOKEN``
(or ``IMAGE_TOKEN``, for families whose frames are images) marks video positions, ``VISION_START`` /
``VISION_END`` bracket a video or each frame. The records themselves are in
:mod:`vreason_hooks.apps.tiny_families`; :mod:`vreason_hooks.apps.testing` builds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

VOCAB = 256
IMAGE_TOKEN, VIDEO_TOKEN, VISION_START, VISION_END, EOS = 250, 251, 252, 253, 254
PAD = 0
HIDDEN = "<hidden>"
"""Placeholder for the tiny language model's hidden size in a record's config values."""


@dataclass(frozen=True)
class VideoLayout:
    """How one video of a family becomes placeholder tokens and pixel inputs.

    Tokens: ``frames / temporal_patch`` groups of ``ceil(side / merge)**2`` tokens (``side``: the patch grid
    of a frame, ``grid`` or the tower's ``image_size / patch_size``), plus ``extra_tokens``; bracketed by
    ``VISION_START`` / ``VISION_END`` around the ``"video"`` or each ``"frame"``.
    """

    pixels: Literal["patches", "frames", "images", "pooled"]
    """``patches``: flattened patch rows ``(batch * t * side**2, channels * temporal_patch * patch**2)`` with
    a ``(t, side, side)`` grid per video (Qwen-VL, GLM-4V, VideoLLaMA3); ``frames``: ``(batch, frames, 3, H,
    W)`` (LLaVA-OneVision, LLaVA-NeXT-Video, PerceptionLM); ``images``: frames as images ``(batch * frames, 3,
    H, W)`` (InternVL; ``images_per_row``: ``(batch, frames, 3, H, W)``, SmolVLM); ``pooled``: Molmo2's patch
    rows per frame plus the indices each token pools."""
    pixel_key: str = "pixel_values_videos"
    frames: int = 2
    temporal_patch: int = 1
    """Frames folded into one temporal patch (Qwen-VL: 2)."""
    grid: int | None = None
    """Patch grid side of a frame for ``patches`` (``None``: the tower's ``image_size / patch_size``)."""
    merge: int = 2
    """Spatial merge / pooling factor: a ``side x side`` grid becomes ``ceil(side / merge)**2`` tokens."""
    extra_tokens: int = 0
    """Span tokens after the frames (LLaVA-OneVision's newline)."""
    bracket: Literal["video", "frame"] | None = None
    type_id: int | None = None
    """Value of ``mm_token_type_ids`` on the span tokens (2: video, 1: image); ``None``: no such input."""
    type_brackets: bool = False
    """``mm_token_type_ids`` also marks the brackets (Molmo2's frame tokens attend to each other)."""
    grid_key: str | None = None
    """Input holding the ``(t, side, side)`` grid of each video (``video_grid_thw``, ``video_grids``)."""
    per_video: dict[str, Any] = field(default_factory=dict)
    """Constant inputs, one value per video: temporal spacing (``second_per_grid_ts``), merge sizes."""
    images_per_row: bool = False


@dataclass(frozen=True)
class TinyFamily:
    """A tiny random-weight model of one family: its transformers class and config, as data."""

    model: str
    """The transformers class, e.g. ``"Qwen2_5_VLForConditionalGeneration"`` (its ``config_class`` builds the
    config)."""
    text: dict[str, Any] = field(default_factory=dict)
    """Fields of the language model beyond the shared tiny ones (``model_type`` of a nested LM, MoE sizes,
    ``layer_types``...)."""
    text_key: str | None = "text_config"
    """Where the language model's config goes; ``None``: the model is text-only (its config is the LM's)."""
    rope: Literal["mrope", "mrope_interleaved"] | None = None
    """Multimodal rotary positions: 3 rows of sections over the rotated half of ``head_dim``."""
    vision: dict[str, Any] = field(default_factory=dict)
    """The tiny vision tower (``vision_config``)."""
    fields: dict[str, Any] = field(default_factory=dict)
    """Other top-level config fields: token ids, projector settings, nested configs."""
    video: VideoLayout | None = None
    """How a video becomes inputs; ``None``: a text model (the prompt is the span)."""
