"""``attach``: injects V-Reason into an unmodified transformers model and its ``generate``.

Plumbing (all removed on :meth:`Session.detach`, also when the ``with`` block raises):

* a forward pre-hook and a forward hook on the top model: notice each prefill (new state), count tokens,
  read the raw logits, run the EMA switch, and every ``step_interval`` tokens take one AdamW step on ΔV;
* a forward pre-hook on the last decoder layer: on an update step only, switch on autograd for that layer
  and hand its attention a cache view whose span values carry the gradient to ΔV;
* ``generate`` is wrapped on the instance (not the class) to refuse settings V-Reason cannot run under and
  to put the original span values back into the cache when the call ends.

Between updates the cache itself holds the effective values, so a decode step that does not update costs
one entropy evaluation and nothing else.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import warnings
import weakref
from dataclasses import dataclass, field
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import upstream
from .adapters import AdapterSpec, ResolvedAdapter, resolve
from .config import VReasonConfig, coerce_config
from .controller import EntropySwitch, ValueController, entropy
from .errors import (
    AlreadyAttachedError,
    ConcurrentUseError,
    UncontrolledGenerationError,
    UnsupportedSettingError,
    UpstreamError,
)
from .lite import PrefillPruner, PrunedLayout, lite_prefill, prefill_pruning_hooks, start_prefill_pruning
from .trace import Trace

_ATTACHED: "weakref.WeakKeyDictionary[nn.Module, Session]" = weakref.WeakKeyDictionary()
_SUPPORTED_CACHE_IMPLEMENTATIONS = (None, "dynamic")


class _GradValuesCache:
    """Stands in for the model's cache during the last layer's forward on an update step.

    ``update`` stores the new key/value as usual and returns the span values rebuilt from ΔV with autograd
    on; everything else is delegated to the real cache.
    """

    def __init__(self, cache, layer_index: int, controller: ValueController):
        self._cache, self._layer_index, self._controller = cache, layer_index, controller

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        keys, values = self._cache.update(key_states, value_states, layer_idx, *args, **kwargs)
        if layer_idx == self._layer_index:
            values = self._controller.with_grad_path(values)
        return keys, values

    def __getattr__(self, name):
        return getattr(self._cache, name)

    @property
    def __class__(self):  # isinstance(view, DynamicCache) holds, as model code may check (the unittest.mock trick)
        return type(self._cache)


@dataclass
class _Generation:
    """State of one prefill and the decode steps that follow it."""

    spans: list[torch.Tensor]
    switches: list[EntropySwitch]
    traces: list[Trace]
    call: int = 0
    """The session's ``generate`` call number this prefill belongs to."""
    step: int = -1
    finished: list[bool] = field(default_factory=list)
    controller: ValueController | None = None
    cache: object = None
    update_now: bool = False
    lite: PrunedLayout | None = None
    """V-Reason Lite's pruned cache layout (``None``: cache not pruned)."""
    pruner: PrefillPruner | None = None
    """V-Reason Lite ``prune_at='prefill'``: prunes each layer during the prefill forward (``None`` after it)."""


class _ThreadState(threading.local):
    """What one thread's use of a session owns: its generation, grad scope, EOS ids and flags.

    Per thread, so that a paused baseline or a direct ``forward`` in one thread never changes what another
    thread's ``generate`` does.
    """

    state: "_Generation | None" = None
    grad_scope: contextlib.ExitStack | None = None
    eos_ids: frozenset = frozenset()
    in_generate: bool = False
    paused: bool = False


def _per_thread(name: str) -> property:
    return property(lambda self: getattr(self._local, name), lambda self, value: setattr(self._local, name, value))


class Session:
    """A V-Reason controller attached to one model. Create it with :func:`attach`.

    Threads: ``generate`` calls on one attached model from several threads run one after another (a lock), each
    exactly as it would alone; a ``forward`` from another thread while one runs is refused
    (:class:`~vreason_hooks.errors.ConcurrentUseError`). Sessions on different models are independent.

    Attributes:
        config: the :class:`VReasonConfig` in force.
        adapter: the resolved adapter (spec and hooked modules).
        traces: one :class:`Trace` per generated sequence per ``generate`` call, in call order.
    """

    def __init__(self, model: nn.Module, config: VReasonConfig | None = None, *, adapter=None):
        self.config = coerce_config(config)
        self.adapter: ResolvedAdapter = resolve(model, adapter)
        self.model = self.adapter.model
        if self.model in _ATTACHED:
            raise AlreadyAttachedError(
                f"{type(self.model).__name__} already has a V-Reason session attached; detach it first "
                "(leave its `with` block or call session.detach())"
            )
        self.traces: list[Trace] = []
        self._local = _ThreadState()
        self._generate_lock = threading.RLock()
        self._generating_thread: int | None = None
        self._calls = 0
        self._warned_no_span = False
        self._warned_missing_inputs = False
        self._warned_diverged = False
        self._handles = []
        adapter = self.adapter
        # Resolved once: a signature V-Reason does not know is refused here, not discovered as a silent no-op.
        self._model_cache_keyword = upstream.cache_keyword(self.model)
        self._layer_cache_keyword = upstream.cache_keyword(adapter.last_layer)
        if self.config.lite and self.adapter.spec.span.kind == "prompt":
            warnings.warn(
                f"V-Reason Lite with the text adapter {self.adapter.spec.name!r} prunes {self.config.prune_ratio:.0%} "
                "of the prompt itself "
                "(question included): on SmolLM2 this cut accuracy from 18% to 2.5% (docs/benchmarks/"
                "reasoning-study.md). Lite is meant for video spans; use lite=False for text models",
                stacklevel=3,
            )
        self._graph_parameters = list(
            {id(p): p for m in (adapter.last_layer, adapter.final_norm, adapter.lm_head) for p in m.parameters()}.values()
        )
        self._install()

    _state = _per_thread("state")
    _grad_scope = _per_thread("grad_scope")
    _eos_ids = _per_thread("eos_ids")
    _in_generate = _per_thread("in_generate")
    _paused = _per_thread("paused")

    # ------------------------------------------------------------------ lifecycle
    def _install(self) -> None:
        _ATTACHED[self.model] = self
        try:
            self._handles = [
                self.model.register_forward_pre_hook(self._before_model, with_kwargs=True),
                self.model.register_forward_hook(self._after_model, with_kwargs=True),
                self.adapter.last_layer.register_forward_pre_hook(self._before_last_layer, with_kwargs=True),
            ]
            if self.config.lite and self.config.prune_at == "prefill":  # Lite: prune each layer as prefill writes it
                layers = self.model.get_submodule(self.adapter.spec.modules.decoder_layers)
                self._handles += prefill_pruning_hooks(layers, self._layer_cache_keyword, self._current_pruner)
            original = self.model.generate
            self.model.generate = functools.wraps(original)(functools.partial(self._generate, original))
        except BaseException:
            self.detach()
            raise

    def detach(self) -> None:
        """Remove every hook and the ``generate`` wrapper; the model is as it was before ``attach``."""
        self._leave_grad_scope()
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.model.__dict__.pop("generate", None)
        if _ATTACHED.get(self.model) is self:
            del _ATTACHED[self.model]
        self._state = None

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    @contextlib.contextmanager
    def paused(self):
        """Plain decoding inside an attached session (a baseline run, like peft's ``disable_adapter``).

        The hooks stay installed but do nothing and record no trace::

            with vreason.attach(model) as session:
                with session.paused():
                    baseline = model.generate(**inputs)
                controlled = model.generate(**inputs)
        """
        self._paused = True
        try:
            yield self
        finally:
            self._paused = False

    def pop_traces(self) -> list[Trace]:
        """The traces recorded so far, forgotten by the session (keeps a long evaluation's memory flat)."""
        traces, self.traces = self.traces, []
        return traces

    # ------------------------------------------------------------------ generate
    def _generate(self, original, *args, **kwargs):
        if self._paused:
            return original(*args, **kwargs)
        generation_config = kwargs.get("generation_config") or self.model.generation_config
        self._check_generation_settings(kwargs, generation_config)
        with self._generate_lock:  # one controlled generate at a time: the hooks and the cache edits are shared
            self._eos_ids = frozenset(upstream.eos_ids(kwargs, generation_config))
            self._calls += 1
            first_trace = len(self.traces)
            self._in_generate, self._generating_thread = True, threading.get_ident()
            try:
                output = original(*args, **kwargs)
            finally:
                self._in_generate, self._generating_thread = False, None
                self._leave_grad_scope()
                self._finish_generation()
            traces = self.traces[first_trace:]
        self._check_controlled(traces)
        return output

    def _check_controlled(self, traces: list[Trace]) -> None:
        """Raise if a live sequence with a span ran long enough for an update and got none.

        The first update falls after token ``max(step_interval, 2)``; fewer tokens, an empty span,
        ``objective='none'`` or ``lr=0`` legitimately make none.
        """
        if not self.config.updates or self.config.lr == 0:
            return
        due = max(self.config.step_interval, 2)
        silent = [t for t in traces if t.span and len(t.entropy) >= due and not t.update_steps and not t.diverged]
        if silent:
            raise UncontrolledGenerationError(
                f"V-Reason made no update in a generate call that should have made some ({len(silent)} sequence(s) "
                f"with a span ran {len(silent[0].entropy)} tokens at step_interval={self.config.step_interval}): "
                f"the controller did not see the model's cache; {upstream.version_note()}"
            )

    def _check_generation_settings(self, kwargs, config) -> None:
        setting = functools.partial(upstream.generation_setting, kwargs, config)
        beams = setting("num_beams") or 1
        if beams > 1:
            raise UnsupportedSettingError(
                f"V-Reason does not support beam search (num_beams={beams}): use greedy or sampling (num_beams=1)"
            )
        if setting("assistant_model") is not None or setting("prompt_lookup_num_tokens"):
            raise UnsupportedSettingError(
                "V-Reason does not support assisted / speculative decoding: it needs one token per forward pass"
            )
        if setting("use_cache") is False:
            raise UnsupportedSettingError(
                "V-Reason controls the KV cache and needs use_cache=True (drop use_cache=False)"
            )
        implementation = setting("cache_implementation")
        if implementation not in _SUPPORTED_CACHE_IMPLEMENTATIONS:
            raise UnsupportedSettingError(
                f"V-Reason needs a DynamicCache; cache_implementation={implementation!r} is not supported "
                "(drop it, or pass cache_implementation='dynamic')"
            )
        cache = upstream.generate_cache(kwargs)
        if cache is not None:
            self._check_cache(cache)

    def _check_cache(self, cache) -> None:
        upstream.check_dynamic_cache(cache, [self.adapter.cache_layer_index], needed_by="V-Reason (controlled layer)")

    # ------------------------------------------------------------------ hooks
    def _check_caller(self) -> None:
        """Refuse a forward that would share the session with a running ``generate`` or bypass its checks."""
        owner = self._generating_thread
        if owner is not None and owner != threading.get_ident():
            raise ConcurrentUseError(
                f"V-Reason: {type(self.model).__name__} is generating under V-Reason in another thread; a forward "
                "from this thread would share its controller state. Call model.generate (calls are serialised), "
                "or attach a separate model copy per thread"
            )
        if not self._in_generate and upstream.inside_generate(self.model):
            raise UnsupportedSettingError(
                "V-Reason: this generate call bypassed the attached model.generate (a `generate` bound before "
                "attach, e.g. gen = model.generate); its settings were not checked and its cache would keep the "
                "edited values. Call model.generate after attach"
            )

    def _before_model(self, module, args, kwargs):
        if self._paused:
            return None
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        _, cache = upstream.find_cache(kwargs, self._model_cache_keyword)
        past = upstream.cache_length(cache)
        new_tokens = input_ids.shape[1] if input_ids is not None else kwargs["inputs_embeds"].shape[1]
        self._check_decode_cache(cache, new_tokens)
        if self._state is None or past == 0 or new_tokens > 1:
            self._check_caller()
            self._start_generation(input_ids, kwargs.get("attention_mask"), past)
            self._check_required_inputs(kwargs)
            self._state.pruner = start_prefill_pruning(self.config, self._state.spans, kwargs, new_tokens, past)
        state = self._state
        state.step += 1
        if state.step > 0 and input_ids is not None and self._eos_ids:
            last = input_ids[:, -1].tolist()
            state.finished = [done or tok in self._eos_ids for done, tok in zip(state.finished, last)]
        state.update_now = (
            self.config.updates
            and state.controller is not None
            and state.step > 0
            and (state.step + 1) % self.config.step_interval == 0
            and any(not state.finished[b] for b in state.controller.sequences)
        )
        if state.lite is not None and state.step > 0:
            # Lite: generate's mask is in original coordinates; map it to the pruned cache layout.
            return args, state.lite.rewrite_inputs(kwargs, cache, module, self.adapter.spec)
        return None

    def _current_pruner(self) -> PrefillPruner | None:
        return None if self._paused or self._state is None else self._state.pruner

    def _check_decode_cache(self, cache, new_tokens: int) -> None:
        """Inside one ``generate`` call there is one prefill; every later forward must carry the cache it filled.

        A forward that arrives without it would otherwise look like a new prefill: V-Reason would restart at
        every token and never update (what transformers 5.24's keyword rename did to the first release).
        """
        state = self._state
        if not self._in_generate or state is None or state.call != self._calls:
            return
        if cache is None or upstream.cache_length(cache) == 0 or (state.cache is not None and cache is not state.cache):
            raise UpstreamError(
                f"V-Reason: a decode step of {type(self.model).__name__} arrived without the KV cache the prefill "
                f"created (looked for keyword {self._model_cache_keyword!r}); {upstream.version_note()}"
            )

    def _before_last_layer(self, module, args, kwargs):
        state = self._state
        if state is None or not state.update_now:
            return None
        key, cache = upstream.find_cache(kwargs, self._layer_cache_keyword)
        if cache is None:
            raise UpstreamError(
                f"adapter {self.adapter.spec.name!r}: the last decoder layer ({type(module).__name__}) received no "
                f"cache (looked for keyword {self._layer_cache_keyword!r}); {upstream.version_note()}"
            )
        self._enter_grad_scope()
        kwargs = {**kwargs, key: _GradValuesCache(cache, self.adapter.cache_layer_index, state.controller)}
        # The layer's input is the only way in: detaching it keeps the graph to one layer + norm + head.
        return upstream.replace_layer_input(args, kwargs, torch.Tensor.detach)

    def _after_model(self, module, args, kwargs, output):
        state = self._state
        if self._paused or state is None:
            return output
        logits = upstream.output_logits(output)
        try:
            if state.step == 0:
                state.cache = upstream.find_cache(kwargs, self._model_cache_keyword)[1]
                if state.cache is None:  # not `or`: an empty Cache is falsy
                    state.cache = upstream.output_cache(output)
                if self.config.lite:  # prune every layer, then control the surviving span slots
                    lite_prefill(state, self.config, self.adapter.cache_layer_index, args, kwargs)
                self._init_controller(state)
            entropies = entropy(logits[:, -1, :])
            values = entropies.detach().tolist()
            losses = {}
            for b, h in enumerate(values):
                if state.finished[b]:
                    continue
                if not math.isfinite(h):  # the model's own logits (or our edit) went non-finite: stop, restore
                    self._diverged(state, b, f"entropy {h}")
                    h = None
                alpha = state.switches[b].observe(h) if h is not None else None
                trace = state.traces[b]
                trace.entropy.append(h)
                trace.ema.append(state.switches[b].ema)
                trace.peak.append(state.switches[b].peak)
                trace.alpha.append(alpha)
                if state.update_now and state.controller is not None and b in state.controller.sequences:
                    losses[b] = -alpha * entropies[b]
            if state.update_now and losses:
                report = state.controller.step(losses)
                self._leave_grad_scope()
                for b, (grad_norm, delta_norm) in list(report.items()):
                    if not (math.isfinite(grad_norm) and math.isfinite(delta_norm)):
                        self._diverged(state, b, f"gradient norm {grad_norm}, ‖ΔV‖ {delta_norm}")
                        del report[b]
                state.controller.write(upstream.layer_values(state.cache, self.adapter.cache_layer_index), report)
                for b, (grad_norm, delta_norm) in report.items():
                    state.traces[b].update_steps.append(state.step)
                    state.traces[b].grad_norm.append(grad_norm)
                    state.traces[b].delta_norm.append(delta_norm)
        finally:
            self._leave_grad_scope()
        if logits.requires_grad:
            output["logits"] = logits.detach()
        return output

    def _diverged(self, state: "_Generation", b: int, what: str) -> None:
        """Stop sequence ``b``'s updates for good, put its original span values back, mark its trace."""
        state.traces[b].diverged = True
        if state.controller is not None and b in state.controller.sequences:
            state.controller.drop(b, upstream.layer_values(state.cache, self.adapter.cache_layer_index))
        if not self._warned_diverged:
            self._warned_diverged = True
            warnings.warn(
                f"V-Reason: sequence {b} diverged at token {state.step} ({what}); its updates stopped and its span "
                f"values were restored (trace.diverged). Lower lr (now {self.config.lr}) or keep max_grad_norm set",
                stacklevel=2,
            )

    # ------------------------------------------------------------------ state
    def _start_generation(self, input_ids, attention_mask, past: int) -> None:
        self._finish_generation()
        if input_ids is None:
            raise UnsupportedSettingError("V-Reason needs input_ids at prefill to find the controlled span")
        spans = [p + past for p in self.adapter.spec.span_positions(self.model.config, input_ids, attention_mask)]
        if not any(p.numel() for p in spans) and not self._warned_no_span:
            warnings.warn(
                f"V-Reason: no span tokens in this input for adapter {self.adapter.spec.name!r} "
                "(e.g. a text-only prompt to a video model); generating without control",
                stacklevel=2,
            )
            self._warned_no_span = True
        batch = input_ids.shape[0]
        dump = self.config.model_dump()
        traces = [
            Trace(sequence=b, call=self._calls, span=spans[b].tolist(), config=dump, adapter=self.adapter.spec.name)
            for b in range(batch)
        ]
        self.traces.extend(traces)
        switches = [EntropySwitch(self.config.ema_beta, self.config.objective, self.config.ema_init) for _ in range(batch)]
        self._state = _Generation(
            spans=spans, switches=switches, traces=traces, call=self._calls, finished=[False] * batch
        )

    def _check_required_inputs(self, kwargs) -> None:
        missing = [name for name in self.adapter.spec.inputs.required if kwargs.get(name) is None]
        if missing and any(p.numel() for p in self._state.spans) and not self._warned_missing_inputs:
            warnings.warn(
                f"V-Reason: adapter {self.adapter.spec.name!r} expects {', '.join(missing)} in the generate inputs "
                "(pass the processor's output unchanged); without it the model's positions are wrong, "
                "with or without V-Reason",
                stacklevel=2,
            )
            self._warned_missing_inputs = True

    def _init_controller(self, state: _Generation) -> None:
        if state.cache is None:
            return
        self._check_cache(state.cache)
        if not self.config.updates or not any(p.numel() for p in state.spans):
            return  # nothing will ever move: no snapshot, no ΔV, no optimiser state
        values = upstream.layer_values(state.cache, self.adapter.cache_layer_index)
        with torch.inference_mode(False):
            state.controller = ValueController.from_cache_values(values, state.spans, self.config)

    def _finish_generation(self) -> None:
        state, self._state = self._state, None
        if state is None or state.controller is None or state.cache is None:
            return
        values = upstream.layer_values(state.cache, self.adapter.cache_layer_index)
        if values is not None:
            state.controller.restore(values)

    def _enter_grad_scope(self) -> None:
        """Autograd on for the last layer, final norm and LM head, with ΔV as the only leaf that needs grad.

        Freezing the weights of those modules for the step keeps the graph on ΔV's path alone (no weight
        gradients recorded) and lets inputs made under ``torch.inference_mode`` flow through it.
        """
        if self._grad_scope is not None:
            return
        scope = contextlib.ExitStack()
        scope.enter_context(torch.inference_mode(False))
        scope.enter_context(torch.enable_grad())
        trainable = [p for p in self._graph_parameters if p.requires_grad]
        for p in trainable:
            p.requires_grad_(False)
        scope.callback(lambda: [p.requires_grad_(True) for p in trainable])
        self._grad_scope = scope

    def _leave_grad_scope(self) -> None:
        scope, self._grad_scope = self._grad_scope, None
        if scope is not None:
            scope.close()


def attach(
    model: nn.Module,
    config: VReasonConfig | Mapping[str, Any] | None = None,
    *,
    adapter: str | Path | AdapterSpec | None = None,
) -> Session:
    """Attach V-Reason to ``model``; use as ``with attach(model) as session: model.generate(...)``.

    Args:
        model: a transformers model (or a ``peft.PeftModel`` around one), possibly spread with ``device_map``.
        config: controller settings: a :class:`VReasonConfig`, a mapping of its fields, or ``None`` for the
            paper's defaults.
        adapter: ``None`` (find by ``model.config.model_type``), an adapter name, a path to a spec ``.toml``,
            or an :class:`AdapterSpec`.

    Returns:
        the :class:`Session`; it is attached already, and detaches when its ``with`` block ends.
    """
    return Session(model, config, adapter=adapter)
