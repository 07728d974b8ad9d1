"""The autograd path of one update step inside vLLM, in plain torch: ΔV's gradient flows through the last
decoder layer's attention (for the request's newest token), ``o_proj``, the post-attention norm, the gated
MLP, the final norm and the LM head, and nowhere else (the layer's input is a detached capture, as in the HF
path).

vLLM's own kernels cannot carry a gradient (fused CPU kernels have no backward, and on CPU the linear weights
are repacked for oneDNN), so this module recomputes that tail differentiably from tensors captured during
vLLM's forward: the token's query, the request's own copy of the layer's keys and values, and the residual
stream at the layer's input. Its numbers differ from vLLM's kernels by rounding only; it is used for the
gradient, never for the emitted token. The maths of V-Reason itself (entropy, effective values, the switch,
AdamW) is :mod:`vreason_hooks.controller`, shared with the HF path.

Families: decoders of the Llama / Qwen2 shape (pre-norm RMSNorm, attention, residual, RMSNorm, SiLU-gated MLP,
residual, final RMSNorm, LM head): Qwen2, Qwen2.5, Llama and the language model of Qwen2.5-VL.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Linear:
    """A linear layer's weight ``(out, in)`` and optional bias ``(out,)``."""

    weight: torch.Tensor
    bias: torch.Tensor | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(self.weight.dtype)
        return F.linear(x.to(self.weight.dtype), self.weight, bias)


@dataclass(frozen=True)
class RMSNorm:
    """``x / rms(x) * weight`` in fp32, cast back to the weight's dtype (what vLLM's native RMSNorm does)."""

    weight: torch.Tensor
    eps: float

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return (h * self.weight.float()).to(self.weight.dtype)


@dataclass(frozen=True)
class DecoderTail:
    """The weights of the controlled layer after attention, the final norm and the LM head."""

    o_proj: Linear
    post_norm: RMSNorm
    gate_up: Linear
    """Gate and up projections stacked along the output: ``(2 * intermediate, hidden)``."""
    down: Linear
    final_norm: RMSNorm
    lm_head: Linear
    vocab_size: int
    """Logits beyond this index are vocabulary padding and are dropped (vLLM's ``org_vocab_size``)."""
    logit_scale: float = 1.0
    soft_cap: float | None = None

    def logits(self, attn_out: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        """Logits ``(vocab_size,)`` of one token from its attention output ``(num_heads * head_dim,)`` and the
        residual stream at the layer's input ``(hidden,)``."""
        h = self.o_proj(attn_out) + residual.to(self.o_proj.weight.dtype)
        gate, up = self.gate_up(self.post_norm(h)).chunk(2, dim=-1)
        h = h + self.down(F.silu(gate) * up)
        logits = self.lm_head(self.final_norm(h))[..., : self.vocab_size].float()
        if self.soft_cap is not None:
            logits = torch.tanh(logits / self.soft_cap) * self.soft_cap
        return logits * self.logit_scale


def attention(query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float) -> torch.Tensor:
    """Causal attention of the newest token over the whole context, with grouped KV heads, in fp32.

    Args:
        query: ``(num_heads, head_dim)`` query of the newest token (rotary already applied).
        keys: ``(num_kv_heads, n_ctx, head_dim)`` every cached key of the request, the newest included.
        values: ``(num_kv_heads, n_ctx, head_dim)`` the values, the span carrying ΔV's gradient.

    Returns:
        ``(num_heads * head_dim,)`` attention output, in ``values``' dtype.
    """
    kv_heads, _, head_dim = keys.shape
    q = query.float().view(kv_heads, -1, head_dim)  # (kv_heads, group, head_dim): query heads share a KV head
    probs = torch.softmax(torch.einsum("kgd,knd->kgn", q, keys.float()) * scale, dim=-1)
    return torch.einsum("kgn,knd->kgd", probs, values.float()).reshape(-1).to(values.dtype)
