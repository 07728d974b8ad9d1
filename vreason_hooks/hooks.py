"""The per-token flow of a session: the forward hooks transformers calls on every step, driving this
thread's :class:`~vreason_hooks.generation.Generation`.

Per forward of the top model:

1. **before the model** (:meth:`TokenFlow.before_model`): a prefill starts a new generation (spans, switches,
   traces, Lite's pruner); every step notes which rows ``generate`` has finished and whether this step
   updates ΔV; under Lite, the decode step's mask and positions are mapped to the pruned cache;
2. **before the controlled layer** (:meth:`TokenFlow.before_controlled_layer`), on an update step only: open
   the gradient scope and detach the layer's input, so the graph is that one layer, the final norm and the
   LM head (the :class:`~vreason_hooks.grad_path.ControlledLayer` in the cache hands attention the span
   values with the path to ΔV);
3. **after the model** (:meth:`TokenFlow.after_model`): after the prefill, take the cache (prune, snapshot,
   install the controlled layer); every step, the entropy of the raw logits feeds the EMA switch and the
   traces, and on an update step one AdamW step moves ΔV; then the scope closes and the output is detached.

This module alone opens and closes the gradient scope. State is per thread (:class:`ThreadState`), so a
paused baseline or a direct ``forward`` in one thread never changes what another thread's ``generate`` does.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from . import guards, transformers_seam
from .adapters import ResolvedAdapter
from .config import VReasonConfig
from .controller import entropy
from .errors import UnsupportedSettingError, UpstreamError
from .generation import Generation
from .grad_path import GradScope
from .trace import Trace


class ThreadState(threading.local):
    """What one thread's use of a session owns."""

    generation: Generation | None = None
    """The generation of the running (or last) prefill in this thread."""
    call: int = 0
    """The session's ``generate`` call number this thread's call runs as (0: none)."""
    call_traces: list[Trace] | None = None
    """The traces of this thread's running ``generate`` call (``None`` outside one)."""
    stopped: torch.Tensor | None = None
    """``(batch,)`` rows ``generate`` has finished so far (its unfinished-sequences state), this call."""
    eos_ids: frozenset[int] = frozenset()
    paused: bool = False
    scope: GradScope | None = None


class TokenFlow:
    """The hooks of one session and the per-thread state they drive (see the module docstring)."""

    __deepcopy__ = guards.refuse_copy  # reached through the model's hooks
    __reduce_ex__ = guards.refuse_copy

    def __init__(self, config: VReasonConfig, adapter: ResolvedAdapter, warn: guards.SessionWarnings):
        self.config, self.adapter, self.warn = config, adapter, warn
        self.model: nn.Module = adapter.model
        self.thread = ThreadState()
        self.traces: list[Trace] = []
        self.calls = 0
        self.generating_thread: int | None = None
        # Resolved once: a signature V-Reason does not know is refused here, not discovered as a silent no-op.
        self.model_keyword = transformers_seam.cache_keyword(self.model)
        self.layer_keyword = transformers_seam.cache_keyword(adapter.controlled_layer)
        modules = adapter.graph_modules
        self._graph_parameters = list({id(p): p for m in modules for p in m.parameters()}.values())

    # ------------------------------------------------------------------ a generate call
    @contextlib.contextmanager
    def generate_call(self, settings: transformers_seam.GenerationSettings) -> Iterator[list[Trace]]:
        """The span of one ``generate`` call in this thread; yields the list its traces are recorded into."""
        state = self.thread
        self.calls += 1
        state.call, state.call_traces, state.eos_ids, state.stopped = self.calls, [], settings.eos_ids, None
        self.generating_thread = threading.get_ident()
        try:
            with transformers_seam.stopping_watch(self.model, self._note_stopped):
                yield state.call_traces
        finally:
            self.generating_thread, state.call, state.call_traces = None, 0, None
            self.finish()

    def _note_stopped(self, done: torch.Tensor) -> None:
        stopped = self.thread.stopped  # kept on the device: read once per step, in _stopped
        self.thread.stopped = done if stopped is None else stopped | done

    def finish(self) -> None:
        """End this thread's generation: close the scope, give the cache back as plain decoding leaves it."""
        generation, self.thread.generation = self.thread.generation, None
        self._close_step()
        if generation is not None:
            generation.finish()

    # ------------------------------------------------------------------ hooks
    def active(self) -> Generation | None:
        """This thread's generation, unless the session is paused here or none runs."""
        return None if self.thread.paused else self.thread.generation

    def before_model(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
        if self.thread.paused:
            return None
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        _, cache = transformers_seam.find_cache(kwargs, self.model_keyword)
        past = transformers_seam.cache_length(cache)
        new_tokens = input_ids.shape[1] if input_ids is not None else kwargs["inputs_embeds"].shape[1]
        generation = self.thread.generation
        if self.thread.call and generation is not None and generation.call == self.thread.call:
            guards.check_decode_cache(self.model, cache, past, generation.cache, self.model_keyword)
        if generation is None or past == 0 or new_tokens > 1:
            guards.check_caller(self.model, self.generating_thread, bool(self.thread.call))
            generation = self._start(input_ids, kwargs, past)
        generation.advance(self._stopped(generation, input_ids))
        if generation.layout is not None and generation.step > 0:
            # Lite: generate's mask is in original coordinates; map it to the pruned cache layout.
            return args, generation.layout.rewrite_inputs(kwargs, cache, module, self.adapter.spec)
        return None

    def before_controlled_layer(
        self, module: nn.Module, args: tuple, kwargs: dict
    ) -> tuple[tuple, dict] | None:
        generation = self.active()
        if generation is None or not generation.update_now:
            return None
        if transformers_seam.find_cache(kwargs, self.layer_keyword)[1] is None:
            raise UpstreamError(
                f"adapter {self.adapter.spec.name!r}: the controlled decoder layer ({type(module).__name__}) "
                f"received no cache (looked for keyword {self.layer_keyword!r}); "
                f"{transformers_seam.version_note()}"
            )
        self._scope().enter()
        # The layer's input is the only way in: detaching it keeps the graph to one layer + norm + head.
        return transformers_seam.replace_layer_input(args, kwargs, torch.Tensor.detach)

    def after_model(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        generation = self.active()
        if generation is None:
            return output
        logits = transformers_seam.output_logits(output)
        try:
            if generation.step == 0:
                cache = transformers_seam.find_cache(kwargs, self.model_keyword)[1]
                if cache is None:  # not `or`: an empty Cache is falsy
                    cache = transformers_seam.output_cache(output)
                generation.take_cache(cache)
            losses = generation.record(entropy(logits[:, -1, :]))
            if generation.update_now and losses:
                generation.update(losses)
        finally:
            self._close_step()
            self._warn_diverged(generation)
        return transformers_seam.detach_output(output)

    def current_pruner(self):
        """Lite's pruner while this thread's prefill runs (``prune_at='prefill'`` layer hooks)."""
        generation = self.active()
        return None if generation is None else generation.pruner

    # ------------------------------------------------------------------ internals
    def _start(self, input_ids: torch.Tensor | None, kwargs: dict, past: int) -> Generation:
        self.finish()
        if input_ids is None:
            raise UnsupportedSettingError("V-Reason needs input_ids at prefill to find the controlled span")
        mask = kwargs.get("attention_mask")
        generation = Generation.start(
            self.config, self.adapter, input_ids, mask, past, self.thread.call, self._scope()
        )
        self.thread.generation = generation
        self.traces.extend(generation.traces)
        if self.thread.call_traces is not None:
            self.thread.call_traces.extend(generation.traces)
        if not generation.has_span:
            self.warn.no_span(past)
        missing = [name for name in self.adapter.spec.inputs.required if kwargs.get(name) is None]
        if missing and generation.has_span:
            self.warn.missing_inputs(missing)
        return generation

    def _stopped(self, generation: Generation, input_ids: torch.Tensor | None) -> list[bool]:
        """Per row, whether ``generate`` finished it: its stopping criteria (EOS included), or an EOS as the
        last input token (a caller's own decoding loop)."""
        batch = len(generation.spans)
        if generation.step < 0 or input_ids is None:  # the prefill: nothing has finished yet
            return [False] * batch
        stopped = self.thread.stopped
        rows = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
        if stopped is not None and stopped.numel() == batch:
            rows = rows | stopped.to(input_ids.device)
        if self.thread.eos_ids:
            eos = torch.tensor(sorted(self.thread.eos_ids), device=input_ids.device)
            rows = rows | torch.isin(input_ids[:, -1], eos)
        return rows.tolist()  # one device sync per step, as reading the entropy needs anyway

    def _scope(self) -> GradScope:
        if self.thread.scope is None:
            self.thread.scope = GradScope(self._graph_parameters)
        return self.thread.scope

    def _close_step(self) -> None:
        """Leave the gradient scope of an update step (a no-op when none is open)."""
        if self.thread.scope is not None:
            self.thread.scope.leave()

    def _warn_diverged(self, generation: Generation) -> None:
        for b, what in generation.diverged:
            self.warn.diverged(b, generation.step, what, self.config.lr, prefill=generation.step == 0)
        generation.diverged.clear()
