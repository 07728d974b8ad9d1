"""V-Reason for one request inside vLLM: what the HF path's ``Generation`` is for one sequence of a batch.

A :class:`RequestControl` holds the request's controlled span, its own copy of the controlled layer's keys and
values (``(capacity, num_kv_heads, head_size)`` each: one layer of one request, a few MB for a 7B model at 4k
tokens), ΔV with its AdamW optimiser (:class:`~vreason_hooks.controller.ValueController`, batch index 0), the
EMA switch and the :class:`~vreason_hooks.trace.Trace`. It knows nothing of vLLM: the worker feeds it the
tensors of each forward (:mod:`vreason_vllm.worker`).

Invariant: the copy mirrors what vLLM's cache holds for this request in the controlled layer, the span
included (original values until the first update, then the current effective values). So a position that
vLLM recomputes (preemption with recompute) is written back from the copy, and the cache after the recompute
equals the cache of an uninterrupted run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from vreason_hooks.controller import EntropySwitch, ValueController, entropy, update_due
from vreason_hooks.errors import UpstreamError
from vreason_hooks.trace import Trace

from .grad_path import DecoderTail, attention
from .request_config import RequestSettings

CONTROLLER_INDEX = 0
"""Each request has a controller of its own; it holds one sequence, at batch index 0."""


@dataclass
class CacheWrite:
    """Keys and values ``(n, num_kv_heads, head_size)`` to write at cache ``slots`` ``(n,)``."""

    keys: torch.Tensor
    values: torch.Tensor
    slots: torch.Tensor


@dataclass
class RequestControl:
    """One controlled request; see the module docstring. Build it with :meth:`create`."""

    key: str
    """The id the user sees (``RequestOutput.request_id``, ``<index>_<id>`` for a sample of ``n > 1``)."""
    settings: RequestSettings
    span: torch.Tensor
    """``(n_span,)`` sorted positions of the prompt whose values ΔV edits."""
    prompt_len: int
    keys: torch.Tensor
    values: torch.Tensor
    slots: torch.Tensor
    """``(capacity,)`` latest cache slot of each position (``-1``: not seen yet)."""
    switch: EntropySwitch
    trace: Trace
    captured: int = 0
    """Positions ``0 .. captured - 1`` have their first-sight keys and values in the copy."""
    controller: ValueController | None = None
    grad_inputs: tuple[torch.Tensor, torch.Tensor] | None = None
    """``(query (num_heads, head_size), residual (hidden,))`` of the newest token, on an update step."""
    finished: bool = False
    notes: list[str] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        key: str,
        settings: RequestSettings,
        adapter: str,
        span: list[int],
        prompt_len: int,
        capacity: int,
        kv_shape: tuple[int, int],
        dtype: torch.dtype,
    ) -> RequestControl:
        """A fresh control for a request of ``prompt_len`` tokens that may grow to ``capacity``;
        ``kv_shape`` is ``(num_kv_heads, head_size)`` of the controlled layer."""
        config = settings.config
        with torch.inference_mode(False):  # autograd reads these: they must not be inference tensors
            keys = torch.zeros((capacity, *kv_shape), dtype=dtype)
            values = torch.zeros_like(keys)
            slots = torch.full((capacity,), -1, dtype=torch.long)
            span_tensor = torch.tensor(span, dtype=torch.long)
        trace = Trace(span=list(span), config=config.model_dump(), adapter=adapter, label=key)
        switch = EntropySwitch(config.ema_beta, config.objective, config.ema_init)
        return cls(key, settings, span_tensor, prompt_len, keys, values, slots, switch, trace)

    # ------------------------------------------------------------------ during a forward
    @property
    def next_token(self) -> int:
        """Index of the next generated token this control will record (0: the prefill's)."""
        return self.trace.num_tokens

    def produces_token(self, seq_len: int, num_output_tokens: int) -> bool:
        """Whether a forward that ends at ``seq_len`` emits this request's next token (not a partial prefill,
        not a token already recorded)."""
        return seq_len == self.prompt_len + num_output_tokens and num_output_tokens == self.next_token

    def update_now(self, seq_len: int, num_output_tokens: int) -> bool:
        """Whether the forward ending at ``seq_len`` emits a token after which ΔV takes a step."""
        return (
            self.controller is not None
            and CONTROLLER_INDEX in self.controller.sequences
            and self.produces_token(seq_len, num_output_tokens)
            and update_due(self.next_token, self.settings.config.step_interval)
        )

    def capture(
        self, first: int, keys: torch.Tensor, values: torch.Tensor, slots: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Note the controlled layer's keys and values ``(n, num_kv_heads, head_size)`` of positions
        ``first .. first + n - 1`` and their cache ``slots`` ``(n,)``, before vLLM writes them.

        Returns:
            ``(keys, values)`` to write instead when some positions were seen before (vLLM recomputes them
            after a preemption): the copy's, so the cache holds exactly what it held. ``None`` otherwise.
        """
        n = keys.shape[0]
        if first > self.captured:  # positions never sent through the layer: they came from a cache hit
            raise UpstreamError(
                f"V-Reason: request {self.key} arrived on a prefix-cache hit at position {first} although it "
                "has a cache salt of its own: its original values were never seen. The engine-core hook did "
                "not run (see docs/vllm.md)"
            )
        if first + n > self.keys.shape[0]:
            raise UpstreamError(f"V-Reason: request {self.key} grew past its {self.keys.shape[0]} positions")
        self.slots[first : first + n] = slots.to(torch.long)
        new = max(0, first + n - self.captured)
        if new:
            self.keys[self.captured : first + n] = keys[n - new :]
            self.values[self.captured : first + n] = values[n - new :]
            self.captured = first + n
        if new == n:
            return None
        return self.keys[first : first + n], self.values[first : first + n]

    def set_grad_inputs(self, query: torch.Tensor, residual: torch.Tensor) -> None:
        with torch.inference_mode(False):
            self.grad_inputs = (query.clone(), residual.clone())

    # ------------------------------------------------------------------ after a forward
    def observe(self, logits: torch.Tensor, tail: DecoderTail, scale: float) -> CacheWrite | None:
        """Record the newest token from its raw logits ``(vocab,)``; on an update step take one AdamW step.

        Returns:
            the span's keys and values to write into vLLM's cache when ΔV moved (or its edit was dropped).
        """
        t = self.next_token
        if t == 0:
            self._start_controller()
        h = float(entropy(logits.unsqueeze(0))[0])
        write = None
        if not math.isfinite(h):  # the model's logits (or our edit) went non-finite: stop updating
            write = self._diverge(f"entropy {h}")
            alpha = None
        else:
            alpha = self.switch.observe(h)
        trace = self.trace
        trace.entropy.append(h if alpha is not None else None)
        trace.ema.append(self.switch.ema)
        trace.peak.append(self.switch.peak)
        trace.alpha.append(alpha)
        inputs, self.grad_inputs = self.grad_inputs, None
        if alpha is not None and inputs is not None and update_due(t, self.settings.config.step_interval):
            write = self._update(t, alpha, *inputs, tail, scale)
        return write

    def _start_controller(self) -> None:
        """After the prefill: snapshot the span's original values (nothing to control: no controller)."""
        config = self.settings.config
        if not config.updates or self.span.numel() == 0:
            return
        if self.captured < self.prompt_len:
            raise UpstreamError(f"V-Reason: request {self.key} emitted a token before its prompt was seen")
        with torch.inference_mode(False):
            self.controller = ValueController.from_cache_values(self._values_view(), [self.span], config)

    def _values_view(self, length: int | None = None) -> torch.Tensor:
        """The copy's values as ``(1, num_kv_heads, length, head_size)`` (a view: writes go to the copy)."""
        return self.values[: length or self.captured].transpose(0, 1).unsqueeze(0)

    def _update(
        self, t: int, alpha: int, query: torch.Tensor, residual: torch.Tensor, tail: DecoderTail, scale: float
    ) -> CacheWrite | None:
        """One AdamW step on ΔV from the loss ``-α H`` of token ``t``, recomputed with autograd."""
        n = self.captured
        with torch.inference_mode(False), torch.enable_grad():
            values = self.controller.with_grad_path(self._values_view(n))[0]
            out = attention(query, self.keys[:n].transpose(0, 1), values, scale)
            loss = -alpha * entropy(tail.logits(out, residual).unsqueeze(0))[0]
            report = self.controller.step({CONTROLLER_INDEX: loss})
        grad_norm, delta_norm = report[CONTROLLER_INDEX]
        if not (math.isfinite(grad_norm) and math.isfinite(delta_norm)):
            return self._diverge(f"gradient norm {grad_norm}, ‖ΔV‖ {delta_norm}")
        with torch.inference_mode(False):
            self.controller.write(self._values_view(n), [CONTROLLER_INDEX])
        self.trace.update_steps.append(t)
        self.trace.grad_norm.append(grad_norm)
        self.trace.delta_norm.append(delta_norm)
        return self.span_write()

    def _diverge(self, what: str) -> CacheWrite | None:
        """Stop this request's updates for good and put its original span values back."""
        self.trace.diverged = True
        self.notes.append(f"diverged at token {self.next_token} ({what}); span values restored")
        if self.controller is None or CONTROLLER_INDEX not in self.controller.sequences:
            return None
        with torch.inference_mode(False):
            self.controller.drop(CONTROLLER_INDEX, self._values_view())
        return self.span_write()

    def span_write(self) -> CacheWrite:
        """The span's keys and values as the copy holds them, with their latest cache slots."""
        return CacheWrite(self.keys[self.span], self.values[self.span], self.slots[self.span])
