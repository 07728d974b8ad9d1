"""V-Reason Lite: drop the lowest-norm span tokens from every layer's KV cache, after or during prefill.

One pipeline, :class:`LitePruner`, serves both prune points: ``prune_at='after_prefill'`` (default) runs it
on every layer once the prefill forward is done; ``prune_at='prefill'`` runs it on each layer right after that
layer ran inside the prefill forward, so the full cache of all layers never exists at once. What happens, per
``generate`` call (see ``docs/lite.md``):

1. **Score** every span token of sequence ``b`` by the L2 norm of its cached value (or key) vector, taken over
   all KV heads and ``head_dim`` together, in the last decoder layer (``prune_scope='last_layer'``, one choice
   for every layer) or in each layer separately (``'per_layer'``).
2. **Choose** the ``p_b = floor(prune_ratio * n_b)`` lowest-scoring of the ``n_b`` span tokens (exact decimal
   arithmetic on the ratio as written; ties drop the earlier position).
3. **Shrink** the keys and values of every cache layer to ``L' = L - min_b p_b`` slots: row ``b`` keeps its
   ``L - p_b`` surviving columns in their original order, right-aligned, after ``p_b - min_b p_b`` filler
   slots (zeros, always masked). The old tensors are released, so the memory really goes.
4. **Decode** inside an unmodified ``generate``: the 2-D attention mask ``generate`` grows in original
   coordinates (``L + t`` columns) is mapped to the pruned layout by one fixed column gather for the first
   ``L`` columns plus the new columns as they are. Positions need nothing: cached keys carry their rotary
   phase already, and ``generate`` passes ``position_ids`` computed from the original prompt (M-RoPE
   positions included). A caller that passes none gets the positions an unpruned cache would give, as the
   adapter spec's ``[positions]`` describes them.

With ``prune_at='prefill'`` step 1 reads the layer's own norms (the only ones that exist when it is
pruned) and step 3 happens inside the prefill forward, layer by layer; steps 2 and 4 are the same.

Nothing in this module knows about the controller or the session: :mod:`vreason_hooks.generation` creates
a :class:`LitePruner` at each prefill, the layer hooks of :func:`prefill_pruning_hooks` drive it during the
prefill (``'prefill'`` mode), :meth:`LitePruner.layout` prunes what is left and returns the
:class:`PrunedLayout`, and the hooks call :meth:`PrunedLayout.rewrite_inputs` before every decode step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import torch
from torch import nn

from . import transformers_seam
from .config import VReasonConfig
from .errors import UnsupportedSettingError, UpstreamError
from .transformers_seam import Cache

if TYPE_CHECKING:
    from .adapters import AdapterSpec

_Plan = tuple[list[torch.Tensor], torch.Tensor]
"""A layer's pruning plan: per sequence the dropped positions, and the ``(batch, L')`` source layout."""


def pruned_count(ratio: float, n: int) -> int:
    """``floor(ratio * n)``, exact for the ratio as written (``0.29 * 100`` drops 29, not 28)."""
    return int(Fraction(repr(float(ratio))) * n)


def token_scores(tensor: torch.Tensor) -> torch.Tensor:
    """L2 norm of each cached token vector over all KV heads and ``head_dim`` together.

    Args:
        tensor: ``(batch, num_kv_heads, seq_len, head_dim)`` cached keys or values.

    Returns:
        ``(batch, seq_len)`` fp32 norms. Rotary embeddings rotate pairs of key coordinates, so a key's norm
        does not depend on its position.
    """
    return tensor.float().pow(2).sum(dim=(1, 3)).sqrt()


def choose_dropped(scores: torch.Tensor, spans: list[torch.Tensor], ratio: float) -> list[torch.Tensor]:
    """The span positions to drop in each sequence: the ``floor(ratio * n_b)`` lowest scores.

    Args:
        scores: ``(batch, seq_len)`` per-token scores (:func:`token_scores`).
        spans: per sequence, ``(n_b,)`` sorted span positions.

    Returns:
        per sequence, sorted ``LongTensor`` of dropped positions (possibly empty).
    """
    dropped = []
    for b, positions in enumerate(spans):
        positions = positions.to(scores.device)
        count = pruned_count(ratio, positions.numel())
        # Stable ascending sort: among equal scores the earlier position goes first.
        order = torch.sort(scores[b, positions], stable=True).indices[:count]
        dropped.append(positions[order].sort().values)
    return dropped


@dataclass
class PrunedLayout:
    """Where every original cache column of a prefill batch went after pruning.

    ``source[l][b, j]`` is the original column held by slot ``j`` of row ``b`` in cache layer ``l``
    (``-1``: filler). All pruned layers of a batch share the same count per row, hence the same length
    ``L'``, the same filler slots and the same attention mask. Layers Lite leaves alone (``source[l] is
    None``: sliding windows, recurrent states, layers with no cache) keep original coordinates; when some of
    them attend (sliding windows), each layer type gets its own mask.
    """

    original_length: int
    """``L``: the cache length right after prefill, before pruning (original coordinates)."""
    source: list[torch.Tensor | None]
    """Per cache layer, ``(batch, L')`` LongTensor: original column of each slot, ``-1`` for filler
    (``None``: a layer Lite left alone)."""
    dropped: list[list[torch.Tensor]]
    """Per cache layer, per sequence: the dropped original positions (sorted)."""
    kept_span: list[torch.Tensor]
    """Per sequence, the slots of the surviving span tokens in the controlled layer (for the controller)."""
    control_layer: int
    needs_mask: bool
    """Whether some row has filler slots (rows dropped different counts): a mask is then always needed."""
    mixed: bool = False
    """Whether attention layers Lite left alone (sliding windows) sit beside pruned ones: the layer types
    then get separate masks (pruned layout / original coordinates)."""

    @property
    def length(self) -> int:
        """``L'``: the controlled (pruned) layer's length right after pruning."""
        return int(self._control_source().shape[1])

    def _control_source(self) -> torch.Tensor:
        source = self.source[self.control_layer]
        if source is None:  # the controlled layer is full attention: Lite always lays it out
            raise UpstreamError("V-Reason Lite: the controlled layer has no pruned layout")
        return source

    @property
    def pruned_layers(self) -> list[int]:
        """The cache layers Lite laid out (the full-attention ones)."""
        return [i for i, s in enumerate(self.source) if s is not None]

    @property
    def pruned(self) -> list[list[int]]:
        """Per sequence, the original positions dropped from the controlled layer."""
        return [d.tolist() for d in self.dropped[self.control_layer]]

    def map_attention_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Map a 2-D mask in original coordinates ``(batch, L + t)`` to the pruned layout ``(batch, L' +
        t)``."""
        source = self._control_source().to(mask.device)
        head = torch.gather(mask[:, : self.original_length], 1, source.clamp_min(0))
        head = head.masked_fill(source < 0, 0)
        return torch.cat([head, mask[:, self.original_length :]], dim=1)

    def rewrite_inputs(self, kwargs: dict, cache: Cache, model: nn.Module, spec: AdapterSpec) -> dict:
        """The keyword arguments of one decode step, rewritten for the pruned cache.

        ``attention_mask`` (original coordinates, as ``generate`` grows it) is mapped to the pruned layout,
        or created when rows have filler and ``generate`` dropped an all-ones mask; ``position_ids`` is
        filled in (original coordinates, as the adapter ``spec``'s ``[positions]`` says the model computes
        them) only when the caller passed none.
        """
        if transformers_seam.passes_cache_position(kwargs):
            raise UnsupportedSettingError(
                "V-Reason Lite cannot run a model that takes `cache_position` (remote-code models): its "
                "positions would follow the pruned cache length; use lite=False"
            )
        generated = transformers_seam.layer_length(cache, self.control_layer) - self.length
        if generated < 0:
            raise UnsupportedSettingError(
                "V-Reason Lite: the cache is shorter than the pruned prefill; do not crop or reuse a pruned "
                "cache"
            )
        tokens = kwargs.get("input_ids")
        tokens = tokens if tokens is not None else kwargs["inputs_embeds"]
        batch, new = tokens.shape[0], tokens.shape[1]
        total = self.original_length + generated + new
        kwargs = dict(kwargs)
        mask = kwargs.get("attention_mask")
        if mask is None and self.needs_mask:
            mask = torch.ones((batch, total), dtype=torch.long, device=tokens.device)
        if kwargs.get("position_ids") is None:
            past = self.original_length + generated
            kwargs["position_ids"] = spec.decode_positions(model, past, new, batch, tokens.device)
        if mask is not None:
            _check_original_mask(mask, total)
            kwargs["attention_mask"] = self._decode_mask(mask, kwargs["position_ids"], cache, model, new)
        return kwargs

    def _decode_mask(
        self, mask: torch.Tensor, positions: torch.Tensor, cache: Cache, model: nn.Module, new: int
    ) -> torch.Tensor | dict:
        """The mapped 2-D mask, or with :attr:`mixed` layer types one prepared mask per type: the pruned
        types' from the mapped mask, the others' from the original one."""
        mapped = self.map_attention_mask(mask)
        if not self.mixed:
            return mapped
        # A type holds either full-attention layers (all pruned) or windows / states / sharers of the type's
        # producer (KV-sharing layers read a producer of their own type), so one mask per type fits all.
        types = transformers_seam.layer_types(model.config) or []
        pruned = {types[i] for i in self.pruned_layers if i < len(types)}
        return transformers_seam.masks_by_layer_type(model, mapped, mask, cache, positions, pruned, new)


def _check_original_mask(mask: object, total: int) -> None:
    if not torch.is_tensor(mask) or mask.dim() != 2 or mask.shape[1] != total:
        shape = tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__
        raise UnsupportedSettingError(
            f"V-Reason Lite needs the 2-D attention mask in original coordinates (batch, {total}); got "
            f"{shape}. Let generate() build the masks (no 4-D masks, no compiled/static caches)"
        )


def prunable_layers(cache: Cache) -> list[int]:
    """The cache layers Lite prunes: the full-attention ones (per-token keys and values). Sliding windows
    (bounded already, and the video leaves them anyway), recurrent states (fixed size; the pruned tokens still
    shaped them) and layers with no cache of their own are left alone; a cache holding layers Lite cannot
    shrink or leave (static, quantized, offloaded, indexed, linear + full hybrids) is refused."""
    kinds = transformers_seam.cache_layer_kinds(cache)
    bad = sorted({k.name for k in kinds if k.tokens and not (k.plain or (k.window and not k.recurrent))})
    if not transformers_seam.is_dynamic_cache(cache) or bad or not kinds:
        raise UnsupportedSettingError(
            "V-Reason Lite needs a DynamicCache whose layers are full attention, sliding windows, recurrent "
            f"states or shared; got {type(cache).__name__}"
            + (f" with {', '.join(bad)}" if bad else "")
            + ". Static, quantized, offloaded and indexed caches are not supported: use lite=False"
        )
    return [i for i, kind in enumerate(kinds) if kind.plain]


def _check_fresh(length: int, prompt_length: int) -> None:
    """Lite needs the cache prefill just wrote (one column per prompt token): positions of a reused cache
    are not known here."""
    if length != prompt_length:
        raise UnsupportedSettingError(
            f"V-Reason Lite needs a fresh cache at prefill (it holds {length} tokens for a "
            f"{prompt_length}-token prompt); do not pass a filled cache to generate with lite=True"
        )


def _layout(dropped: list[torch.Tensor], length: int, width: int, device: torch.device) -> torch.Tensor:
    """``(batch, width)`` source columns: per row, ``-1`` filler then the surviving columns in order."""
    rows = []
    for positions in dropped:
        keep = torch.ones(length, dtype=torch.bool, device=device)
        keep[positions.to(device)] = False
        kept = keep.nonzero().flatten()
        rows.append(torch.cat([kept.new_full((width - kept.numel(),), -1), kept]))
    return torch.stack(rows)


def _gather_slots(tensor: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """A new ``(batch, heads, L', head_dim)`` tensor with the slots of ``source`` (filler = 0)."""
    batch, heads, _, dim = tensor.shape
    source = source.to(tensor.device)  # layers may sit on different devices (device_map)
    index = source.clamp_min(0).view(batch, 1, -1, 1).expand(batch, heads, -1, dim)
    out = torch.gather(tensor, 2, index)
    return out.masked_fill_((source < 0).view(batch, 1, -1, 1), 0)


def _mapped_mask(source: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(batch, L')`` prefill mask ``(batch, L)`` moved to the slots of ``source`` (filler = 0), on CPU."""
    source = source.cpu()
    return torch.gather(mask.cpu(), 1, source.clamp_min(0)).masked_fill(source < 0, 0)


def _kept_span(control: torch.Tensor, spans: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per sequence, the slots of the controlled layer's layout ``control`` ``(batch, L')`` that hold span
    tokens."""
    return [torch.isin(control[b], s.to(control.device)).nonzero().flatten() for b, s in enumerate(spans)]


_PER_LAYER_MASK_ERROR = (
    "V-Reason Lite with per-layer scores (prune_scope='per_layer' or prune_at='prefill') needs padding "
    "outside the span (left padding) so that one attention mask fits every layer; use "
    "prune_at='after_prefill', prune_scope='last_layer'"
)


class LitePruner:
    """The Lite pipeline of one prefill: per cache layer, **plan** (score, choose, lay out, check the mask)
    and
    **apply** (gather the kept slots), then the :class:`PrunedLayout`.

    Both prune points drive the same steps. ``prune_at='prefill'``: the layer hooks call :meth:`prune_layer`
    right after each decoder layer ran (its own scores: its attention has consumed the full keys and values,
    so the prefill output is plain's), and :meth:`layout` checks that every layer was pruned.
    ``prune_at='after_prefill'``: :meth:`layout` plans every layer first (the last layer's scores, or each
    layer's), and applies only once every plan passed its checks, so a refusal leaves the cache untouched.
    Every layer drops the same count per row, so all share one length ``L'`` and one attention mask; with
    per-layer choices the masked slots (left padding, filler) must land on the same slots in every layer.
    """

    def __init__(
        self,
        config: VReasonConfig,
        spans: list[torch.Tensor],
        prompt_length: int,
        attention_mask: torch.Tensor | None,
        past: int,
        control_layer: int,
    ):
        """The pruner of a prefill of ``prompt_length`` tokens after ``past`` cached ones (refused if any)."""
        _check_fresh(past + prompt_length, prompt_length)
        self.config, self.spans, self.length, self.control_layer = config, spans, prompt_length, control_layer
        self.counts = [pruned_count(config.prune_ratio, s.numel()) for s in spans]
        self.width = prompt_length - min(self.counts, default=0)
        ones = torch.ones(len(spans), prompt_length, dtype=torch.long)
        self.mask = attention_mask if attention_mask is not None else ones
        self.sources: dict[int, torch.Tensor] = {}
        self.dropped: dict[int, list[torch.Tensor]] = {}
        self._slot_mask: torch.Tensor | None = None

    @property
    def drops(self) -> bool:
        """Whether some row drops a token (else the cache is never touched: output bit for bit)."""
        return any(self.counts)

    @property
    def during_prefill(self) -> bool:
        """Whether the layer hooks prune during the prefill forward (``prune_at='prefill'``)."""
        return self.config.prune_at == "prefill"

    @torch.no_grad()
    def prune_layer(self, cache: Cache, index: int) -> None:
        """Plan and apply cache layer ``index`` (just written by its full prefill), from its own scores."""
        if index in self.sources:
            raise UnsupportedSettingError(
                f"V-Reason Lite prune_at='prefill': decoder layer {index} ran twice in one prefill (chunked "
                "prefill?); use prune_at='after_prefill'"
            )
        if cache is None:
            raise UnsupportedSettingError("V-Reason Lite prunes the KV cache: generate with use_cache=True")
        if index not in prunable_layers(cache):  # refused before any layer is touched; windows etc. stay
            return
        self._apply(cache, index, self._plan(cache, index))

    @torch.no_grad()
    def layout(self, cache: Cache) -> PrunedLayout:
        """Prune the layers not pruned yet (all of them after the prefill), then the layout of the cache."""
        prunable = prunable_layers(cache)
        count = len(transformers_seam.cache_layers(cache))
        if self.drops:
            if self.during_prefill and set(self.sources) != set(prunable):
                missing = sorted(set(prunable) - set(self.sources))
                raise UpstreamError(
                    f"V-Reason Lite prune_at='prefill': cache layers {missing} were written by no hooked "
                    f"decoder layer; use prune_at='after_prefill'; {transformers_seam.version_note()}"
                )
            shared = self._shared_choice(cache)
            plans = {i: self._plan(cache, i, shared) for i in prunable if i not in self.sources}
            for index, plan in plans.items():  # every plan passed its checks: now the cache changes
                self._apply(cache, index, plan)
        return self._result(cache, count)

    def _shared_choice(self, cache: Cache) -> list[torch.Tensor] | None:
        """With ``prune_scope='last_layer'``, the control layer's choice for every layer."""
        if self.config.prune_scope != "last_layer":
            return None
        return self._choose(transformers_seam.layer_tensors(cache, self.control_layer))

    def _choose(self, tensors: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
        """Per sequence, the dropped span positions, scored on the layer's values (or keys)."""
        keys, values = tensors
        scored = values if self.config.prune_score == "value" else keys
        return choose_dropped(token_scores(scored), self.spans, self.config.prune_ratio)

    def _plan(self, cache: Cache, index: int, dropped: list[torch.Tensor] | None = None) -> _Plan:
        """``(dropped, source)`` of cache layer ``index``, its length and mask checked."""
        tensors = transformers_seam.layer_tensors(cache, index)
        _check_fresh(tensors[0].shape[2], self.length)
        dropped = dropped if dropped is not None else self._choose(tensors)
        source = _layout(dropped, self.length, self.width, tensors[0].device)
        slot_mask = _mapped_mask(source, self.mask)
        if self._slot_mask is None:
            self._slot_mask = slot_mask
        elif not torch.equal(slot_mask, self._slot_mask):
            raise UnsupportedSettingError(_PER_LAYER_MASK_ERROR)
        return dropped, source

    def _apply(self, cache: Cache, index: int, plan: _Plan) -> None:
        """Replace cache layer ``index`` by its pruned copy; the full tensors go with the cache's
        reference."""
        dropped, source = plan
        keys, values = transformers_seam.layer_tensors(cache, index)
        pruned = _gather_slots(keys, source), _gather_slots(values, source)
        del keys, values
        transformers_seam.set_layer_tensors(cache, index, *pruned)
        self.sources[index], self.dropped[index] = source, dropped

    def _result(self, cache: Cache, count: int) -> PrunedLayout:
        device = transformers_seam.layer_tensors(cache, self.control_layer)[0].device
        nothing = [s[:0] for s in self.spans]
        identity = torch.arange(self.length, device=device).expand(len(self.spans), self.length)
        if not self.drops:  # nothing to drop: the cache was never touched, output bit for bit
            sources: list[torch.Tensor | None] = [identity] * count
            dropped = [nothing] * count
        else:
            sources = [self.sources.get(i) for i in range(count)]
            dropped = [self.dropped.get(i, nothing) for i in range(count)]
        mixed = self.drops and any(kind.window for kind in transformers_seam.cache_layer_kinds(cache))
        kept_span = _kept_span(self.sources.get(self.control_layer, identity), self.spans)
        needs_mask = len(set(self.counts)) > 1
        return PrunedLayout(
            self.length, sources, dropped, kept_span, self.control_layer, needs_mask=needs_mask, mixed=mixed
        )


def prefill_pruning_hooks(
    decoder_layers: nn.Module, keyword: str, current_pruner: Callable[[], LitePruner | None]
) -> list:
    """Forward hooks that prune each layer's cache entry right after the layer ran (``prune_at='prefill'``).

    Args:
        decoder_layers: the model's decoder layers (``nn.ModuleList``).
        keyword: the keyword under which a decoder layer's ``forward`` takes the cache.
        current_pruner: ``() -> LitePruner | None``; ``None`` outside a prefill (decode steps, paused).

    Returns:
        the hook handles (the session removes them on detach).
    """

    def hook(module, args, kwargs, output, index):
        pruner = current_pruner()
        if pruner is not None and pruner.during_prefill and pruner.drops:
            pruner.prune_layer(transformers_seam.find_cache(kwargs, keyword)[1], index)

    return [
        layer.register_forward_hook(
            functools.partial(hook, index=transformers_seam.layer_index(layer, i)), with_kwargs=True
        )
        for i, layer in enumerate(decoder_layers.children())
    ]
