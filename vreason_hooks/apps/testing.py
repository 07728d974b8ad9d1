"""Tiny random-weight models and inputs of every adapter family, built from config classes (no hub), for
tests and benchmarks.

Every family is a record of data (:mod:`vreason_hooks.apps.tiny_families`); this module is the one mechanism
that reads them: :func:`build` (a seeded tiny model of a family), :func:`make_inputs` (a left-padded, really
ragged batch with one video per row, or a text prompt), :func:`stack_rows` (one batch from rows that differ
in length and video), and the M-RoPE helper. Video inputs are random pixels of the right shapes.

    model = build("qwen2_5_vl", attn="eager")
    inputs = make_inputs(model, batch=2, pad=[0, 3])   # row 1 has 3 padding tokens
    model.generate(**inputs, max_new_tokens=8)
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from .tiny_families import FAMILIES as RECORDS
from .tiny_models import (
    EOS,
    HIDDEN,
    IMAGE_TOKEN,
    PAD,
    VIDEO_TOKEN,
    VISION_END,
    VISION_START,
    VOCAB,
    TinyFamily,
    VideoLayout,
)

__all__ = [
    "EOS", "FAMILIES", "IMAGE_TOKEN", "PAD", "RECORDS", "VIDEO_TOKEN", "VISION_END", "VISION_START", "VOCAB",
    "build", "llava_video_inputs", "make_inputs", "qwen_video_inputs", "stack_rows", "text_inputs",
    "tiny_llama", "tiny_llava_onevision", "tiny_qwen2", "tiny_qwen2_5_vl", "tiny_qwen3_vl",
]  # fmt: skip

SEQUENCE_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids", "token_type_ids")
"""Inputs laid out along the sequence (left-padded when rows are stacked); every other input is per row."""


# ---------------------------------------------------------------------------------------------- models
def build(
    name: str,
    attn: str = "sdpa",
    seed: int = 0,
    hidden: int = 64,
    layers: int = 2,
    vocab: int = VOCAB,
    dtype: torch.dtype = torch.float32,
    heads: int = 4,
    kv_heads: int = 2,
    **ids: int,
) -> torch.nn.Module:
    """A seeded tiny model of family ``name`` with attention ``attn``, in eval mode.

    ``ids`` overrides token-id fields of the record (``video_token_id=...``, ``eos_token_id=...``) for a
    real-tokenizer layout."""
    import transformers

    family: TinyFamily = RECORDS[name]
    model_cls = getattr(transformers, family.model)
    text = {**_common_text(hidden, layers, heads, kv_heads, vocab), **_filled(family.text, hidden)}
    if family.rope is not None:
        text["rope_parameters"] = mrope_parameters(text, interleaved=family.rope == "mrope_interleaved")
    eos, pad = ids.pop("eos_token_id", EOS), ids.pop("pad_token_id", PAD)
    fields = {**_filled(family.fields, hidden), **ids, "tie_word_embeddings": False}
    for key, value in (
        ("eos_token_id", eos),
        ("pad_token_id", pad),
    ):  # top-level ids of the records with them
        if key in fields:
            fields[key] = value
    if family.text_key is None:
        config = model_cls.config_class(**text, **fields)
    else:
        vision = {"vision_config": _filled(family.vision, hidden)} if family.vision else {}
        config = model_cls.config_class(**{family.text_key: text}, **vision, **fields)
    torch.manual_seed(seed)
    model = model_cls(config).to(dtype).eval()
    model.set_attn_implementation(attn)
    _set_generation_defaults(model, eos, pad)
    return model


def _common_text(hidden: int, layers: int, heads: int, kv_heads: int, vocab: int) -> dict:
    return dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=hidden // heads,
        max_position_embeddings=32768,
        eos_token_id=EOS,
        pad_token_id=PAD,
        bos_token_id=None,
    )


def mrope_parameters(text: dict, interleaved: bool = False) -> dict:
    """3-row M-RoPE over the rotated half of ``head_dim`` (``partial_rotary_factor`` of it): sections
    ``[h - 2 * (h // 3), h // 3, h // 3]`` of its ``h`` frequency pairs."""
    pairs = int(text["head_dim"] * text.get("partial_rotary_factor", 1.0)) // 2
    section = [pairs - 2 * (pairs // 3), pairs // 3, pairs // 3]
    extra = {"mrope_interleaved": True} if interleaved else {}
    return {"rope_type": "default", "rope_theta": 1e6, "mrope_section": section, **extra}


def _filled(value: Any, hidden: int) -> Any:
    """``value`` with every :data:`HIDDEN` placeholder replaced by ``hidden`` (nested dicts and lists too)."""
    if value == HIDDEN:
        return hidden
    if isinstance(value, dict):
        return {k: _filled(v, hidden) for k, v in value.items()}
    if isinstance(value, list):
        return [_filled(v, hidden) for v in value]
    return value


def _set_generation_defaults(model, eos: int, pad: int) -> None:
    model.generation_config.eos_token_id = eos
    model.generation_config.pad_token_id = pad
    model.generation_config.do_sample = False
    model.generation_config.bos_token_id = None


# ---------------------------------------------------------------------------------------------- inputs
def make_inputs(
    model,
    batch: int = 1,
    pad: list[int] | None = None,
    seed: int = 0,
    frames: int | None = None,
    grid: int | None = None,
    prefix: int = 5,
    suffix: int = 6,
) -> dict:
    """Inputs of ``batch`` rows for a tiny model of any family: one video per row (the family's
    :class:`VideoLayout`; ``frames`` / ``grid`` override its defaults), or a text prompt for a text family.

    Row ``b`` starts with exactly ``pad[b]`` left-padding tokens and its text suffix is ``max(pad) - pad[b]``
    tokens longer, so the rows are ragged and their videos sit at different cache positions.
    """
    from ..adapters import find_adapter

    spec = find_adapter(model)
    layout = RECORDS[spec.name].video
    if layout is None:
        return text_inputs(batch=batch, pad=pad, seed=seed)
    side = grid or layout.grid or _tower_side(model.config.vision_config)
    frames = frames or layout.frames
    groups = frames // layout.temporal_patch
    per_group = (-(-side // layout.merge)) ** 2
    middle = _video_tokens(model.config, spec.span_token_id(model.config), layout, groups, per_group)
    input_ids, mask, g = _ragged_rows(batch, pad, seed, middle, prefix, suffix)
    inputs = {"input_ids": input_ids, "attention_mask": mask}
    if layout.type_id is not None:
        inputs["mm_token_type_ids"] = _type_ids(input_ids, len(middle), layout, spec, model.config)
    inputs.update(PIXELS[layout.pixels](model, layout, batch, frames, side, g))
    inputs.update({key: torch.tensor([value] * batch) for key, value in layout.per_video.items()})
    return inputs


def _video_tokens(config, token: int, layout: VideoLayout, groups: int, per_group: int) -> list[int]:
    start = getattr(config, "vision_start_token_id", VISION_START)
    end = getattr(config, "vision_end_token_id", VISION_END)
    if layout.bracket == "frame":
        return ([start] + [token] * per_group + [end]) * groups + [token] * layout.extra_tokens
    tokens = [token] * (groups * per_group + layout.extra_tokens)
    return [start, *tokens, end] if layout.bracket == "video" else tokens


def _type_ids(input_ids: torch.Tensor, length: int, layout: VideoLayout, spec, config) -> torch.Tensor:
    """``mm_token_type_ids``: ``layout.type_id`` on the span tokens (and the brackets with
    ``type_brackets``)."""
    types = torch.zeros_like(input_ids)
    if not layout.type_brackets:
        return types.masked_fill(input_ids == spec.span_token_id(config), layout.type_id)
    start = getattr(config, "vision_start_token_id", VISION_START)
    for b in range(input_ids.shape[0]):
        first = int((input_ids[b] == start).nonzero()[0])
        types[b, first : first + length] = layout.type_id
    return types


def _first(value):
    """``value[0]`` of a per-axis ``[h, w]`` size, else ``value``."""
    return value[0] if isinstance(value, (list, tuple)) else value


def _tower_side(vision) -> int:
    """Patches per side of a frame for the vision tower (a timm tower keeps its geometry in
    ``model_args``)."""
    timm_args = getattr(vision, "model_args", None)
    if timm_args:
        return timm_args["img_size"] // timm_args["patch_size"]
    return _first(vision.image_size) // _first(vision.patch_size)


def _image_size(vision) -> int:
    timm_args = getattr(vision, "model_args", None)
    return timm_args["img_size"] if timm_args else _first(vision.image_size)


def _patches(model, layout: VideoLayout, batch: int, frames: int, side: int, g) -> dict:
    vision = model.config.vision_config
    channels = getattr(vision, "in_channels", None) or getattr(vision, "num_channels", 3)
    groups = frames // layout.temporal_patch
    dim = channels * layout.temporal_patch * vision.patch_size**2
    pixels = torch.randn(batch * groups * side * side, dim, generator=g).to(model.dtype)
    return {layout.pixel_key: pixels, layout.grid_key: torch.tensor([[groups, side, side]] * batch)}


def _frames(model, layout: VideoLayout, batch: int, frames: int, side: int, g) -> dict:
    size = _image_size(model.config.vision_config)
    pixels = torch.randn(batch, frames, 3, size, size, generator=g).to(model.dtype)
    return {
        layout.pixel_key: pixels
        if layout.pixels == "frames" or layout.images_per_row
        else pixels.flatten(0, 1)
    }


def _pooled(model, layout: VideoLayout, batch: int, frames: int, side: int, g) -> dict:
    """Molmo2: ``(batch * frames, side**2, 3 * patch**2)`` flattened patches; row ``t`` of the pooling
    indices lists the patches token ``t`` pools (2x2, into every frame's patches, in order)."""
    vision = model.config.vision_config
    pooled = side // layout.merge
    r, c = torch.meshgrid(torch.arange(pooled), torch.arange(pooled), indexing="ij")
    per_frame = (2 * r * side + 2 * c).reshape(-1, 1) + torch.tensor([0, 1, side, side + 1])
    pooling = torch.cat([per_frame + n * side * side for n in range(batch * frames)])
    dim = vision.num_channels * vision.patch_size**2
    pixels = torch.randn(batch * frames, side * side, dim, generator=g).to(model.dtype)
    grids = torch.tensor([[frames, pooled, pooled]] * batch)
    return {layout.pixel_key: pixels, "video_token_pooling": pooling, layout.grid_key: grids}


PIXELS = {"patches": _patches, "frames": _frames, "images": _frames, "pooled": _pooled}
"""Pixel inputs of each :attr:`VideoLayout.pixels` kind."""


def _ragged_rows(batch: int, pad: list[int] | None, seed: int, middle: list[int], prefix: int, suffix: int):
    """``(input_ids, attention_mask, generator)`` of ``batch`` rows ``text + middle + text``, row ``b``
    left-padded by exactly ``pad[b]`` tokens (its text suffix is longer by ``max(pad) - pad[b]``): a really
    ragged batch whose rows hold ``middle`` at different cache positions."""
    pad = _row_pads(batch, pad)
    g = torch.Generator().manual_seed(seed)
    width = prefix + max(pad) + len(middle) + suffix
    input_ids = torch.full((batch, width), PAD)
    mask = torch.zeros((batch, width), dtype=torch.long)
    for b in range(batch):
        head = torch.randint(1, IMAGE_TOKEN, (prefix,), generator=g).tolist()
        tail = torch.randint(1, IMAGE_TOKEN, (suffix + max(pad) - pad[b],), generator=g).tolist()
        input_ids[b, pad[b] :] = torch.tensor(head + middle + tail)
        mask[b, pad[b] :] = 1
    return input_ids, mask, g


def _row_pads(batch: int, pad: list[int] | None) -> list[int]:
    """``pad`` as one left-padding count per row (missing rows: 0)."""
    pad = list(pad or [])
    if len(pad) > batch or any(n < 0 for n in pad):
        raise ValueError(f"pad={pad}: give at most batch={batch} non-negative padding counts, one per row")
    return pad + [0] * (batch - len(pad))


def text_inputs(batch: int = 1, length: int = 12, seed: int = 0, pad: list[int] | None = None) -> dict:
    """Random prompt ids ``(batch, length)`` with left padding of ``pad[b]`` tokens per sequence."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, IMAGE_TOKEN, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    for b, n in enumerate(_row_pads(batch, pad)):
        ids[b, :n], mask[b, :n] = PAD, 0
    return {"input_ids": ids, "attention_mask": mask}


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


# ---------------------------------------------------------------------------------------------- by name
tiny_qwen2_5_vl = functools.partial(build, "qwen2_5_vl")
tiny_qwen3_vl = functools.partial(build, "qwen3_vl")
tiny_llava_onevision = functools.partial(build, "llava_onevision")
tiny_llama = functools.partial(build, "llama")
tiny_qwen2 = functools.partial(build, "qwen2")
qwen_video_inputs = llava_video_inputs = make_inputs

FAMILIES = {name: (functools.partial(build, name), make_inputs) for name in RECORDS}
"""Adapter name -> (build(attn=..., seed=...), make_inputs(model, batch=, pad=, seed=)): the test matrix
(tests/engine/test_matrix.py) runs every check over this table."""
