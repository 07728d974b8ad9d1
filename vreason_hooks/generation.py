"""The state of a prefill and of the decode steps that follow it.

:class:`Generation` holds the controlled spans, per sequence the EMA switch and the trace, the ΔV controller,
the cache, V-Reason Lite's pruner and pruned layout, and the update schedule. The per-token flow
(:mod:`vreason_hooks.hooks`) drives it: :meth:`Generation.advance` before each forward,
:meth:`Generation.take_cache` after the prefill, :meth:`Generation.record` and :meth:`Generation.update` after
each forward, :meth:`Generation.finish` at the end. Nothing here knows about hooks or threads, and nothing
here enters or leaves the gradient scope.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from . import transformers_seam
from .adapters import ResolvedAdapter
from .config import VReasonConfig
from .controller import EntropySwitch, ValueController
from .errors import UnsupportedSettingError
from .grad_path import ControlledLayer, GradScope
from .lite import LitePruner, PrunedLayout
from .trace import Trace


@dataclass(frozen=True)
class UpdateSchedule:
    """When ΔV moves: after tokens ``k-1, 2k-1, ...`` (never at the prefill), for sequences still running."""

    step_interval: int

    def due(self, step: int) -> bool:
        """Whether the forward that produces token ``step`` (0: the prefill's) ends with an update."""
        return step > 0 and (step + 1) % self.step_interval == 0


@dataclass
class Generation:
    """State of one prefill and the decode steps that follow it (one per ``generate`` call).

    Public, read-only for users (``session.generation`` while a ``generate`` runs in this thread, e.g. from a
    logits processor): ``spans``, ``traces``, ``step``, ``finished``, ``controller`` (ΔV per sequence),
    ``cache`` and ``layout`` (Lite).
    """

    config: VReasonConfig
    adapter: ResolvedAdapter
    spans: list[torch.Tensor]
    """Per sequence, ``(n_span,)`` controlled cache positions (after Lite: the surviving slots)."""
    switches: list[EntropySwitch]
    traces: list[Trace]
    grad_scope: GradScope
    """The scope the per-token flow opens on update steps; handed to the :class:`ControlledLayer`."""
    schedule: UpdateSchedule
    call: int = 0
    """The session's ``generate`` call number this prefill belongs to."""
    step: int = -1
    """Index of the token the current forward produces (0: the prefill)."""
    finished: list[bool] = field(default_factory=list)
    """Per sequence, whether ``generate`` stopped it (EOS, stop strings, a stopping criterion)."""
    controller: ValueController | None = None
    cache: Any = None
    update_now: bool = False
    layout: PrunedLayout | None = None
    """V-Reason Lite's pruned cache layout (``None``: cache not pruned)."""
    pruner: LitePruner | None = None
    """V-Reason Lite's pruner of this prefill (``None`` after it, or without Lite)."""
    diverged: list[tuple[int, str]] = field(default_factory=list)
    """``(sequence, what)`` of the sequences whose updates stopped on a non-finite value, for the warning."""

    @classmethod
    def start(
        cls,
        config: VReasonConfig,
        adapter: ResolvedAdapter,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        past: int,
        call: int,
        grad_scope: GradScope,
    ) -> Generation:
        """A new generation for a prefill of ``input_ids`` ``(batch, seq_len)`` after ``past`` cached
        tokens."""
        model_config = adapter.model.config
        spans = [p + past for p in adapter.spec.span_positions(model_config, input_ids, attention_mask)]
        dump = config.model_dump()
        traces = [
            Trace(sequence=b, call=call, span=s.tolist(), config=dump, adapter=adapter.spec.name)
            for b, s in enumerate(spans)
        ]
        switches = [EntropySwitch(config.ema_beta, config.objective, config.ema_init) for _ in spans]
        pruner = None
        if config.lite:
            length, index = input_ids.shape[1], adapter.cache_layer_index
            pruner = LitePruner(config, spans, length, attention_mask, past, index)
        schedule = UpdateSchedule(config.step_interval)
        return cls(config, adapter, spans, switches, traces, grad_scope, schedule, call=call, pruner=pruner,
                   finished=[False] * len(spans))  # fmt: skip

    @property
    def has_span(self) -> bool:
        return any(p.numel() for p in self.spans)

    @property
    def values(self) -> torch.Tensor | None:
        """``(batch, num_kv_heads, seq_len, head_dim)`` cached values of the controlled layer."""
        return transformers_seam.layer_values(self.cache, self.adapter.cache_layer_index)

    def _values(self) -> torch.Tensor:
        values = self.values
        if values is None:  # the cache lost its controlled layer under us: say so, never write nowhere
            raise UnsupportedSettingError(
                "V-Reason: the cache no longer holds the controlled layer's values; do not crop or reset "
                "the cache during generate"
            )
        return values

    # ------------------------------------------------------------------ before each forward
    def advance(self, stopped: list[bool]) -> None:
        """Move to the next token: note the sequences ``generate`` stopped and whether this step updates.

        Args:
            stopped: per sequence, whether ``generate`` has finished it before this forward.
        """
        self.step += 1
        if self.step > 0:
            self.finished = [done or now for done, now in zip(self.finished, stopped)]
        self.update_now = (
            self.controller is not None
            and self.schedule.due(self.step)
            and any(not self.finished[b] for b in self.controller.sequences)
        )

    # ------------------------------------------------------------------ after the prefill
    def take_cache(self, cache: Any) -> None:
        """The prefill filled ``cache``: prune it (Lite), snapshot the span values ΔV controls, and put the
        :class:`ControlledLayer` in the controlled layer's place."""
        self.cache = cache
        if cache is None:
            if self.config.lite:
                raise UnsupportedSettingError(
                    "V-Reason Lite prunes the KV cache: generate with use_cache=True"
                )
            return
        if self.pruner is not None:
            self._prune()
        index = self.adapter.cache_layer_index
        transformers_seam.check_dynamic_cache(cache, [index], needed_by="V-Reason (controlled layer)")
        if self.config.updates and self.has_span:  # else nothing ever moves: no snapshot, no ΔV, no optimiser
            with torch.inference_mode(False):
                self.controller = ValueController.from_cache_values(self._values(), self.spans, self.config)
            ControlledLayer.install(cache, index, self.controller, self.grad_scope)

    def _prune(self) -> None:
        assert self.pruner is not None  # take_cache calls this only with a pruner
        layout, self.pruner = self.pruner.layout(self.cache), None
        for trace, dropped in zip(self.traces, layout.pruned):
            trace.pruned = dropped
        if any(layout.pruned):  # else decoding is exactly the non-Lite path
            self.layout, self.spans = layout, layout.kept_span

    # ------------------------------------------------------------------ after each forward
    def record(self, entropies: torch.Tensor) -> dict[int, torch.Tensor]:
        """Feed each running sequence's entropy ``(batch,)`` to its switch and trace.

        Returns:
            per sequence due for an update, its loss ``-α_t H_t`` (differentiable on an update step).
        """
        losses = {}
        for b, h in enumerate(entropies.detach().tolist()):
            if self.finished[b]:
                continue
            if not math.isfinite(h):  # the model's logits (or our edit) went non-finite: stop this sequence
                self._diverge(b, f"entropy {h}")
                h = None
            alpha = self.switches[b].observe(h) if h is not None else None
            trace = self.traces[b]
            trace.entropy.append(h)
            trace.ema.append(self.switches[b].ema)
            trace.peak.append(self.switches[b].peak)
            trace.alpha.append(alpha)
            if self.update_now and alpha is not None and self.controller and b in self.controller.sequences:
                losses[b] = -alpha * entropies[b]
        return losses

    def update(self, losses: dict[int, torch.Tensor]) -> None:
        """One AdamW step on ΔV; finite results go into the cache and the traces, the rest stop their
        sequence."""
        assert self.controller is not None  # update_now implies a controller
        report = self.controller.step(losses)
        for b, (grad_norm, delta_norm) in list(report.items()):
            if not (math.isfinite(grad_norm) and math.isfinite(delta_norm)):
                self._diverge(b, f"gradient norm {grad_norm}, ‖ΔV‖ {delta_norm}")
                del report[b]
        self.controller.write(self._values(), list(report))
        for b, (grad_norm, delta_norm) in report.items():
            self.traces[b].update_steps.append(self.step)
            self.traces[b].grad_norm.append(grad_norm)
            self.traces[b].delta_norm.append(delta_norm)

    def _diverge(self, b: int, what: str) -> None:
        """Stop sequence ``b``'s updates for good and put its original span values back."""
        self.traces[b].diverged = True
        self.diverged.append((b, what))
        if self.controller is not None and b in self.controller.sequences:
            self.controller.drop(b, self._values())

    # ------------------------------------------------------------------ end
    def finish(self) -> None:
        """Give the controlled layer back and put the original span values in it (the cache then holds
        plain's)."""
        if self.controller is None or self.cache is None:
            return
        ControlledLayer.release(self.cache, self.adapter.cache_layer_index)
        if self.values is not None:
            self.controller.restore(self.values)
