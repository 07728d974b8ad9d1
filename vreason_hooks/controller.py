"""The maths of V-Reason: entropy, the EMA switch, norm-preserving value edits, and the ΔV optimiser.

Nothing here knows about hooks or caches; :mod:`vreason_hooks.session` wires it into ``generate``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from .config import VReasonConfig


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Shannon entropy (nats) of ``softmax(logits)``, computed in fp32.

    Args:
        logits: ``(batch, vocab)`` raw logits (before temperature, top-p or any logits processor).

    Returns:
        ``(batch,)`` entropies; differentiable when ``logits`` is.
    """
    log_p = torch.log_softmax(logits.float(), dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1)


def effective_values(original: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """``V_new = (V + ΔV) · ‖V‖ / ‖V + ΔV‖``, norms over ``head_dim``: only the direction of each vector
    moves.

    Always recomputed from the original ``V`` (never accumulated). Written as a scale factor so that
    ``ΔV = 0`` gives back ``V`` bit for bit (``x / x == 1`` exactly in IEEE arithmetic).

    Args:
        original: ``(num_kv_heads, n_span, head_dim)`` cached values at the span, any float dtype.
        delta: ``(num_kv_heads, n_span, head_dim)`` fp32 controller.

    Returns:
        ``(num_kv_heads, n_span, head_dim)`` fp32 effective values.
    """
    values = original.float()
    moved = values + delta
    scale = values.norm(dim=-1, keepdim=True) / moved.norm(dim=-1, keepdim=True).clamp_min(
        torch.finfo(torch.float32).tiny
    )
    return moved * scale


@dataclass
class EntropySwitch:
    """EMA of the entropy, its running peak and the switch α, for one sequence.

    ``E_t = β E_{t-1} + (1-β) H_t`` from ``E_{-1} = 0`` (or ``E_0 = H_0`` with ``ema_init='first'``),
    ``P_t = max(E_0..E_t)``, ``α_t = +1`` if ``E_t >= P_t`` (explore) else ``-1`` (exploit). The ablation
    objectives fix α to +1 (``'max'``) or -1 (``'min'``).
    """

    beta: float
    objective: str = "switch"
    ema_init: str = "zero"
    ema: float = 0.0
    peak: float = float("-inf")
    steps: int = 0

    def observe(self, h: float) -> int:
        """Feed ``H_t``; returns ``α_t``."""
        if self.steps == 0 and self.ema_init == "first":
            self.ema = h
        else:
            self.ema = self.beta * self.ema + (1.0 - self.beta) * h
        self.steps += 1
        self.peak = max(self.peak, self.ema)
        if self.objective == "max":
            return 1
        if self.objective == "min":
            return -1
        return 1 if self.ema >= self.peak else -1


def update_due(step: int, step_interval: int) -> bool:
    """Whether the forward that produces generated token ``step`` (0: the prefill's) ends with one AdamW step
    on ΔV: after tokens ``k-1, 2k-1, ...`` for ``k = step_interval``, never at the prefill.

    The rule of :class:`vreason_hooks.generation.UpdateSchedule`, as a function that engines other than
    ``generate`` (vLLM) share without importing the HF plumbing.
    """
    return step > 0 and (step + 1) % step_interval == 0


def _adamw(params: list[torch.Tensor], config: VReasonConfig) -> torch.optim.AdamW:
    """AdamW on ΔV; the fused kernel where the device has one (one kernel per step instead of a dozen)."""
    try:
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


@dataclass
class SequenceDelta:
    """ΔV of one sequence and what it is applied to."""

    positions: torch.Tensor
    """``(n_span,)`` cache positions of the span (LongTensor on the cache device)."""
    original: torch.Tensor
    """``(num_kv_heads, n_span, head_dim)`` original cached values, cache dtype."""
    delta: torch.Tensor
    """``(num_kv_heads, n_span, head_dim)`` fp32 leaf tensor, requires grad."""


@dataclass
class ValueController:
    """ΔV for every sequence of a batch, with its AdamW optimiser.

    One leaf tensor per sequence (sequences may have different span lengths); ``torch.optim.AdamW`` skips
    parameters whose ``.grad`` is ``None``, so a finished sequence simply stops updating, moments included.
    Extra memory: the original span values of one layer, ΔV and two Adam moments (fp32).
    """

    config: VReasonConfig
    sequences: dict[int, SequenceDelta] = field(default_factory=dict)
    optimizer: torch.optim.Optimizer | None = None

    @classmethod
    def from_cache_values(
        cls, values: torch.Tensor, spans: list[torch.Tensor], config: VReasonConfig
    ) -> ValueController:
        """Snapshot the span values of the controlled layer right after prefill.

        Args:
            values: ``(batch, num_kv_heads, seq_len, head_dim)`` cached values of the last layer.
            spans: per sequence, the cache positions to control (empty: that sequence is left alone).
        """
        sequences = {}
        for b, positions in enumerate(spans):
            if positions.numel() == 0:
                continue
            positions = positions.to(values.device).clone()  # a normal tensor even under inference_mode
            original = values[b].index_select(1, positions).clone()
            delta = torch.zeros(original.shape, dtype=torch.float32, device=values.device, requires_grad=True)
            sequences[b] = SequenceDelta(positions, original, delta)
        optimizer = _adamw([s.delta for s in sequences.values()], config) if sequences else None
        return cls(config, sequences, optimizer)

    def with_grad_path(self, values: torch.Tensor) -> torch.Tensor:
        """``values`` with the span replaced by effective values that carry the gradient to ΔV.

        Numerically identical to the cache (which already holds the effective values), so the decode step
        that computes the loss is the same decode step that emits the token: no extra forward pass.

        Args:
            values: ``(batch, num_kv_heads, seq_len, head_dim)`` values returned by the cache update.
        """
        out = values.clone()
        for b, seq in self.sequences.items():
            out[b].index_copy_(1, seq.positions, effective_values(seq.original, seq.delta).to(values.dtype))
        return out

    def step(self, losses: dict[int, torch.Tensor]) -> dict[int, tuple[float, float]]:
        """One AdamW step on the ΔV of the sequences in ``losses``.

        Args:
            losses: per sequence index, a scalar loss (``-α_t H_t``) differentiable w.r.t. its ΔV.

        Returns:
            per updated sequence, ``(grad_norm before clipping, ‖ΔV‖ after the step)``.
        """
        chosen = [b for b in losses if b in self.sequences]
        if not chosen:
            return {}
        deltas = [self.sequences[b].delta for b in chosen]
        # autograd.grad, not backward(): gradients go to ΔV only, never to a model parameter's .grad.
        grads = torch.autograd.grad(torch.stack([losses[b] for b in chosen]).sum(), deltas)
        grad_norms = []
        for delta, grad in zip(deltas, grads):
            delta.grad = (
                grad.contiguous()
            )  # autograd may hand back an expanded view; clipping writes in place
            clip = self.config.max_grad_norm
            grad_norms.append(
                float(torch.nn.utils.clip_grad_norm_([delta], clip) if clip else delta.grad.norm())
            )
        assert self.optimizer is not None  # built with the sequences: there is one whenever there are deltas
        self.optimizer.step()
        for delta in deltas:
            delta.grad = None
        return {b: (g, float(d.detach().norm())) for b, g, d in zip(chosen, grad_norms, deltas)}

    @torch.no_grad()
    def write(self, values: torch.Tensor, batch_indices: Iterable[int]) -> None:
        """Write the current effective values of ``batch_indices`` into the cache tensor, in place."""
        for b in batch_indices:
            seq = self.sequences[b]
            values[b].index_copy_(
                1, seq.positions, effective_values(seq.original, seq.delta).to(values.dtype)
            )

    @torch.no_grad()
    def drop(self, b: int, values: torch.Tensor) -> None:
        """Stop controlling sequence ``b``: its original span values go back into ``values``, its ΔV is
        forgotten (AdamW skips a parameter without ``.grad``, so the shared optimiser needs no change)."""
        seq = self.sequences.pop(b)
        values[b].index_copy_(1, seq.positions, seq.original)

    @torch.no_grad()
    def restore(self, values: torch.Tensor) -> None:
        """Put the original span values back (the cache then holds what plain decoding would have stored)."""
        for b, seq in self.sequences.items():
            values[b].index_copy_(1, seq.positions, seq.original)

    def extra_bytes(self) -> int:
        """Bytes held by the controller: original span values, ΔV and AdamW moments."""
        total = sum(
            s.original.numel() * s.original.element_size() + s.delta.numel() * 4
            for s in self.sequences.values()
        )
        if self.optimizer is not None:
            for state in self.optimizer.state.values():
                total += sum(
                    v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v) and v.dim()
                )
        return total
