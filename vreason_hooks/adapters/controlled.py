"""Which decoder layer V-Reason controls, and whether it can: decided at ``attach`` from the layer kinds.

The controlled layer is the last decoder layer (the paper's "last layer", on every model it used), or the one
a spec names (``modules.controlled_layer``). It must keep per-token keys and values (full attention): a linear
attention / recurrent layer has no per-token values to edit, a sliding window evicts the video, a KV-sharing
layer stores nothing of its own (ΔV would have to sit on the producing layer, which every later consumer
reads), and an indexed sparse layer chooses its keys with an indexer of its own. Such a model is refused here,
naming the layer and its kind, before any ``generate``. Layers after a spec-named controlled layer run inside
the update step's autograd path, so they may not hold recurrent state either."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import SpecError, UnsupportedModelError
from .spec import AdapterSpec

if TYPE_CHECKING:
    from torch import nn

    from ..transformers_seam import LayerKind


@dataclass(frozen=True)
class ControlledLayer:
    """The controlled decoder layer of one model instance."""

    module: nn.Module
    cache_index: int
    """Its index in the KV cache (``self_attn.layer_idx``)."""
    later: tuple[nn.Module, ...]
    """The decoder layers after it (empty for the last layer): on the update step's autograd path."""
    kinds: tuple[LayerKind, ...]
    """The kind of every cache layer (empty when the config names no layout: all full attention)."""


def controlled_layer(spec: AdapterSpec, model: nn.Module, layers: nn.ModuleList) -> ControlledLayer:
    """The :class:`ControlledLayer` of ``model`` (decoder ``layers``), refused if it cannot carry ΔV."""
    from .. import transformers_seam

    position = spec.modules.controlled_layer if spec.modules.controlled_layer is not None else -1
    if not -len(layers) <= position < len(layers):
        raise SpecError(
            f"{spec.where()}: key 'modules.controlled_layer': {position} is not a decoder layer of "
            f"{type(model).__name__} (it has {len(layers)})"
        )
    position %= len(layers)
    module = layers[position]
    index = transformers_seam.layer_index(module, position)
    kinds = tuple(transformers_seam.config_layer_kinds(model.config))
    if kinds:
        _check_kind(spec, model, index, kinds[index])
        _check_later(spec, model, index, kinds)
    return ControlledLayer(module, index, tuple(layers[position + 1 :]), kinds)


def _check_kind(spec: AdapterSpec, model: nn.Module, index: int, kind: LayerKind) -> None:
    if kind.plain:
        return
    why = (
        "KV sharing: it reads an earlier layer's keys and values and stores none (load the checkpoint with "
        "num_kv_shared_layers=0 if it has no shared layers, else it is not supported)"
        if kind.shared
        else "V-Reason edits the per-token values of a full-attention layer"
    )
    raise UnsupportedModelError(
        f"V-Reason cannot control {type(model).__name__} (adapter {spec.name!r}): its controlled decoder "
        f"layer {index} is {kind.describe()}; {why}"
    )


def _check_later(spec: AdapterSpec, model: nn.Module, index: int, kinds: tuple[LayerKind, ...]) -> None:
    recurrent = [i for i in range(index + 1, len(kinds)) if kinds[i].recurrent]
    if recurrent:
        raise UnsupportedModelError(
            f"V-Reason cannot control {type(model).__name__} (adapter {spec.name!r}) at decoder layer "
            f"{index}: layers {recurrent} after it hold recurrent state, which the update step's backward "
            "cannot go through; control the last decoder layer"
        )
