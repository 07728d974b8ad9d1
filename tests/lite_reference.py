"""The reference V-Reason Lite is checked against: the full cache, with each layer's dropped positions
masked."""

from __future__ import annotations

import torch

from vreason_hooks.adapters import resolve


def mixed_video_lengths(model) -> dict:
    """Two Qwen2.5-VL sequences with different video lengths (16 and 4 tokens), left padded: the rows drop
    different counts, so the pruned layout has filler slots and the M-RoPE deltas differ per row."""
    from vreason_hooks.apps import testing as T

    return T.stack_rows(
        [T.qwen_video_inputs(model, grid=8, seed=1), T.qwen_video_inputs(model, grid=4, seed=2)]
    )


def decoder_layers(model):
    """The model's decoder layers, found through its adapter spec."""
    return model.get_submodule(resolve(model).spec.modules.decoder_layers)


def generate_masked(model, inputs: dict, dropped_per_layer, layers=None, **gen):
    """Plain ``generate`` on the full cache with ``dropped_per_layer[layer][b]`` masked from the first decode
    step.

    Args:
        dropped_per_layer: per decoder layer, per sequence, the positions to hide (a pruned layout's
        ``dropped``). layers: the decoder layers (default: found through the model's adapter spec)."""
    handles = []
    for index, layer in enumerate(decoder_layers(model) if layers is None else layers):

        def pre(module, args, kwargs, index=index):
            mask = kwargs["attention_mask"]
            if not any(len(p) for p in dropped_per_layer[index]):  # a layer Lite left alone
                return None
            if mask.shape[-2] != 1:  # the prefill itself is not pruned
                return None
            mask = mask.clone()
            for b, positions in enumerate(dropped_per_layer[index]):
                mask[b, :, :, positions] = torch.finfo(mask.dtype).min
            return args, dict(kwargs, attention_mask=mask)

        handles.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
    try:
        return model.generate(**inputs, **gen)
    finally:
        for h in handles:
            h.remove()


def max_logit_diff(a, b) -> float:
    """Largest absolute difference between the per-step logits of two ``generate`` outputs."""
    return max((x - y).abs().max().item() for x, y in zip(a.logits, b.logits))
