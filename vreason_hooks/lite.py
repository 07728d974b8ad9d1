"""V-Reason Lite: drop the lowest-norm span tokens from every layer's KV cache, after or during prefill.

``prune_at='after_prefill'`` (default) prunes every layer once the prefill forward is done;
``prune_at='prefill'`` prunes each layer right after that layer ran inside the prefill forward
(:class:`PrefillPruner`), so the full cache of all layers never exists at once. What happens, per
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

Nothing in this module knows about the controller or the session: :mod:`vreason_hooks.generation` calls
:func:`prune_cache` after the prefill (or, in ``'prefill'`` mode, creates a :class:`PrefillPruner` that the
layer hooks of :func:`prefill_pruning_hooks` drive during it and asks it for the layout after it), and the
session calls :meth:`PrunedLayout.rewrite_inputs` before every decode step.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction

import torch

from . import transformers_seam
from .config import VReasonConfig
from .errors import UnsupportedSettingError, UpstreamError


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
    (``-1``: filler). All layers of a batch share the same count per row, hence the same length ``L'``,
    the same filler slots and the same attention mask.
    """

    original_length: int
    """``L``: the cache length right after prefill, before pruning (original coordinates)."""
    source: list[torch.Tensor]
    """Per cache layer, ``(batch, L')`` LongTensor: original column of each slot, ``-1`` for filler."""
    dropped: list[list[torch.Tensor]]
    """Per cache layer, per sequence: the dropped original positions (sorted)."""
    kept_span: list[torch.Tensor]
    """Per sequence, the slots of the surviving span tokens in the controlled layer (for the controller)."""
    control_layer: int
    needs_mask: bool
    """Whether some row has filler slots (rows dropped different counts): a mask is then always needed."""

    @property
    def length(self) -> int:
        """``L'``: the cache length right after pruning."""
        return int(self.source[0].shape[1])

    @property
    def pruned(self) -> list[list[int]]:
        """Per sequence, the original positions dropped from the controlled layer."""
        return [d.tolist() for d in self.dropped[self.control_layer]]

    def map_attention_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """Map a 2-D mask in original coordinates ``(batch, L + t)`` to the pruned layout ``(batch, L' +
        t)``."""
        source = self.source[self.control_layer].to(mask.device)
        head = torch.gather(mask[:, : self.original_length], 1, source.clamp_min(0))
        head = head.masked_fill(source < 0, 0)
        return torch.cat([head, mask[:, self.original_length :]], dim=1)

    def rewrite_inputs(self, kwargs: dict, cache, model, spec) -> dict:
        """The keyword arguments of one decode step, rewritten for the pruned cache.

        ``attention_mask`` (original coordinates, as ``generate`` grows it) is mapped to the pruned layout,
        or created when rows have filler and ``generate`` dropped an all-ones mask; ``position_ids`` is
        filled in (original coordinates, as the adapter ``spec``'s ``[positions]`` says the model computes
        them) only when the caller passed none.
        """
        if kwargs.get("cache_position") is not None:
            raise UnsupportedSettingError(
                "V-Reason Lite cannot run a model that takes `cache_position` (remote-code models): its "
                "positions "
                "would follow the pruned cache length; use lite=False"
            )
        generated = transformers_seam.cache_length(cache) - self.length
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
        if mask is not None:
            _check_original_mask(mask, total)
            kwargs["attention_mask"] = self.map_attention_mask(mask)
        if kwargs.get("position_ids") is None:
            past = self.original_length + generated
            kwargs["position_ids"] = spec.decode_positions(model, past, new, batch, tokens.device)
        return kwargs


def _check_original_mask(mask, total: int) -> None:
    if not torch.is_tensor(mask) or mask.dim() != 2 or mask.shape[1] != total:
        shape = tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__
        raise UnsupportedSettingError(
            f"V-Reason Lite needs the 2-D attention mask in original coordinates (batch, {total}); got "
            f"{shape}. Let generate() build the masks (no 4-D masks, no compiled/static caches)"
        )


def check_prunable(cache) -> None:
    """Refuse caches Lite cannot shrink safely: anything but a DynamicCache of plain full-attention layers."""
    transformers_seam.check_dynamic_cache(
        cache, needed_by="V-Reason Lite (every layer)", remedy=": use lite=False"
    )


@torch.no_grad()
def prune_cache(
    cache,
    spans: list[torch.Tensor],
    config: VReasonConfig,
    control_layer: int,
    prompt_length: int,
    attention_mask: torch.Tensor | None = None,
) -> PrunedLayout:
    """Drop the lowest-scoring span tokens from the keys and values of every layer of ``cache``, in place.

    Args:
        cache: the ``DynamicCache`` right after prefill, layers ``(batch, num_kv_heads, L, head_dim)``.
        spans: per sequence, the sorted span positions (original coordinates).
        config: ``prune_ratio``, ``prune_score`` (``'value'`` / ``'key'``), ``prune_scope``.
        control_layer: cache index of the controlled (last) layer; it scores for all layers with
            ``prune_scope='last_layer'``.
        prompt_length: number of prompt columns of the prefill; must equal the cache length (Lite needs a
            fresh cache, positions of a reused one are not known here).
        attention_mask: ``(batch, L)`` prefill mask or ``None``; only checked with ``'per_layer'``.
    Returns the :class:`PrunedLayout`; with nothing to drop the cache is left untouched.
    """
    check_prunable(cache)
    tensors = transformers_seam.all_layer_tensors(cache)
    length = tensors[0][0].shape[2]
    _check_fresh(length, prompt_length)
    dropped = _dropped_per_layer(tensors, spans, config, control_layer)
    counts = [d.numel() for d in dropped[control_layer]]
    batch, device = len(spans), tensors[0][0].device
    width = length - min(counts, default=0)
    sources = [_layout(rows, length, width, device) for rows in dropped] if any(counts) else None
    if sources is None:  # nothing dropped anywhere: identity layout, cache untouched, output bit for bit
        identity = torch.arange(length, device=device).expand(batch, length)
        sources = [identity] * len(tensors)
    else:
        if config.prune_scope == "per_layer":
            full = torch.ones((batch, length), dtype=torch.long, device=device)
            _check_same_mask(sources, control_layer, full if attention_mask is None else attention_mask)
        _gather_layers(cache, tensors, sources)
    kept_span = _kept_span(sources[control_layer], spans)
    return PrunedLayout(length, sources, dropped, kept_span, control_layer, needs_mask=len(set(counts)) > 1)


def _kept_span(control: torch.Tensor, spans: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per sequence, the slots of the controlled layer's layout ``control`` ``(batch, L')`` that hold span
    tokens."""
    return [torch.isin(control[b], s.to(control.device)).nonzero().flatten() for b, s in enumerate(spans)]


def _check_fresh(length: int, prompt_length: int, holder: str = "cache") -> None:
    """Lite needs the cache prefill just wrote (``length`` columns in ``holder``, one per prompt token):
    positions of a reused cache are not known here."""
    if length != prompt_length:
        raise UnsupportedSettingError(
            f"V-Reason Lite needs a fresh cache at prefill ({holder} holds {length} tokens for a "
            f"{prompt_length}-token "
            "prompt); do not pass a filled past_key_values with lite=True"
        )


def _dropped_per_layer(
    tensors: list, spans: list[torch.Tensor], config: VReasonConfig, control_layer: int
) -> list[list[torch.Tensor]]:
    """Per layer, per sequence, the dropped span positions: the control layer's choice for every layer
    (``prune_scope='last_layer'``) or each layer's own (``'per_layer'``); scored on values or keys."""
    scored = 1 if config.prune_score == "value" else 0  # (keys, values)[scored]
    if config.prune_scope == "last_layer":
        shared = choose_dropped(token_scores(tensors[control_layer][scored]), spans, config.prune_ratio)
        return [shared] * len(tensors)
    return [choose_dropped(token_scores(kv[scored]), spans, config.prune_ratio) for kv in tensors]


def _gather_layers(cache, tensors: list, sources: list[torch.Tensor]) -> None:
    """Replace each layer's keys and values ``(batch, heads, L, head_dim)`` by their ``sources`` columns
    ``(batch, width)``, one layer at a time so that only one old layer is alive beside the new cache."""
    for index, source in enumerate(sources):
        (keys, values), tensors[index] = (
            tensors[index],
            None,
        )  # drop our reference: the old layer is freed now
        transformers_seam.set_layer_tensors(
            cache, index, _gather_slots(keys, source), _gather_slots(values, source)
        )
        del keys, values


def _layout(dropped: list[torch.Tensor], length: int, width: int, device) -> torch.Tensor:
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


_PER_LAYER_MASK_ERROR = (
    "V-Reason Lite with per-layer scores (prune_scope='per_layer' or prune_at='prefill') needs padding "
    "outside "
    "the span (left padding) so that one attention mask fits every layer; use prune_at='after_prefill', "
    "prune_scope='last_layer'"
)


def _check_same_mask(sources: list[torch.Tensor], control_layer: int, mask: torch.Tensor) -> None:
    # Layers differ in which span tokens they keep; one attention mask fits them all only if the masked
    # columns (left padding, filler) land on the same slots in every layer.
    maps = [_mapped_mask(s, mask) for s in sources]
    if not all(torch.equal(m, maps[control_layer]) for m in maps):
        raise UnsupportedSettingError(_PER_LAYER_MASK_ERROR)


class PrefillPruner:
    """``prune_at='prefill'``: shrinks each cache layer right after its decoder layer ran in the prefill
    forward.

    The layer's attention has consumed the full keys and values by then (the prefill output is plain's); what
    stays in the cache loses the layer's own ``floor(r * n_b)`` lowest-scoring span tokens per row. So the
    cache holds at most the layers pruned so far plus one full layer (and, while one layer is gathered, that
    layer's pruned copy). Every layer drops the same count per row, so all share one length and one mask.
    """

    def __init__(
        self,
        config: VReasonConfig,
        spans: list[torch.Tensor],
        length: int,
        attention_mask: torch.Tensor | None,
    ):
        self.config, self.spans, self.length = config, spans, length
        self.counts = [pruned_count(config.prune_ratio, s.numel()) for s in spans]
        self.width = length - min(self.counts, default=0)
        batch = len(spans)
        self.mask = (
            attention_mask if attention_mask is not None else torch.ones(batch, length, dtype=torch.long)
        )
        self.sources: dict[int, torch.Tensor] = {}
        self.dropped: dict[int, list[torch.Tensor]] = {}
        self._slot_mask: torch.Tensor | None = None

    @classmethod
    def for_prefill(
        cls,
        config: VReasonConfig,
        spans: list[torch.Tensor],
        prompt_length: int,
        attention_mask: torch.Tensor | None,
        past: int,
    ) -> PrefillPruner:
        """The pruner of a prefill of ``prompt_length`` tokens; refuses a cache that already holds
        ``past``."""
        if past:
            raise UnsupportedSettingError(
                f"V-Reason Lite needs a fresh cache at prefill (cache holds {past} tokens already); do not "
                "pass a "
                "filled cache with lite=True"
            )
        return cls(config, spans, prompt_length, attention_mask)

    @property
    def drops(self) -> bool:
        return any(self.counts)

    @torch.no_grad()
    def prune_layer(self, cache, index: int) -> None:
        """Replace cache layer ``index`` (just written by its full prefill) with its pruned copy."""
        if index in self.sources:
            raise UnsupportedSettingError(
                f"V-Reason Lite prune_at='prefill': decoder layer {index} ran twice in one prefill (chunked "
                "prefill?); use prune_at='after_prefill'"
            )
        if cache is None:
            raise UnsupportedSettingError("V-Reason Lite prunes the KV cache: generate with use_cache=True")
        if (
            not self.sources
        ):  # first layer of this prefill: refuse a cache Lite cannot shrink before touching it
            check_prunable(cache)
        keys, values = transformers_seam.layer_tensors(cache, index)
        _check_fresh(keys.shape[2], self.length, holder=f"layer {index}")
        scored = values if self.config.prune_score == "value" else keys
        dropped = choose_dropped(token_scores(scored), self.spans, self.config.prune_ratio)
        source = _layout(dropped, self.length, self.width, keys.device)
        slot_mask = _mapped_mask(source, self.mask)
        if self._slot_mask is None:
            self._slot_mask = slot_mask
        elif not torch.equal(slot_mask, self._slot_mask):
            raise UnsupportedSettingError(_PER_LAYER_MASK_ERROR)
        self.sources[index], self.dropped[index] = source, dropped
        pruned = _gather_slots(keys, source), _gather_slots(values, source)
        del keys, values, scored  # the cache's reference is the last one: the full layer goes with it
        transformers_seam.set_layer_tensors(cache, index, *pruned)

    def layout(self, cache, control_layer: int) -> PrunedLayout:
        """The layout once the prefill forward is done; checks that every cache layer was pruned."""
        check_prunable(cache)
        count = len(transformers_seam.cache_layers(cache))
        device = transformers_seam.layer_tensors(cache, control_layer)[0].device
        if not self.drops:  # nothing to drop: the cache was never touched, output bit for bit
            identity = torch.arange(self.length, device=device).expand(len(self.spans), self.length)
            sources, dropped = [identity] * count, [[s[:0] for s in self.spans]] * count
        else:
            missing = sorted(set(range(count)) - set(self.sources))
            if missing:
                raise UpstreamError(
                    f"V-Reason Lite prune_at='prefill': cache layers {missing} were written by no hooked "
                    "decoder "
                    f"layer; use prune_at='after_prefill'; {transformers_seam.version_note()}"
                )
            sources = [self.sources[i] for i in range(count)]
            dropped = [self.dropped[i] for i in range(count)]
        kept_span = _kept_span(sources[control_layer], self.spans)
        return PrunedLayout(
            self.length, sources, dropped, kept_span, control_layer, needs_mask=len(set(self.counts)) > 1
        )


def prefill_pruning_hooks(decoder_layers, keyword: str, current_pruner) -> list:
    """Forward hooks that prune each layer's cache entry right after the layer ran (``prune_at='prefill'``).

    Args:
        decoder_layers: the model's decoder layers (``nn.ModuleList``).
        keyword: the keyword under which a decoder layer's ``forward`` takes the cache.
        current_pruner: ``() -> PrefillPruner | None``; ``None`` outside a prefill (decode steps, paused).

    Returns:
        the hook handles (the session removes them on detach).
    """

    def hook(module, args, kwargs, output, index):
        pruner = current_pruner()
        if pruner is not None and pruner.drops:
            pruner.prune_layer(transformers_seam.find_cache(kwargs, keyword)[1], index)

    return [
        layer.register_forward_hook(
            functools.partial(hook, index=transformers_seam.layer_index(layer, i)), with_kwargs=True
        )
        for i, layer in enumerate(decoder_layers)
    ]
