"""``attach``: injects V-Reason into an unmodified transformers model and its ``generate``.

A :class:`Session` owns the lifecycle and the hooks; everything they drive lives elsewhere:
:mod:`~vreason_hooks.generation` (the state of one prefill and its decode steps, the per-token record and the
update schedule), :mod:`~vreason_hooks.grad_path` (the autograd path of an update step),
:mod:`~vreason_hooks.guards` (refusals and loud failures), :mod:`~vreason_hooks.lite` (cache pruning).

Plumbing (all removed on :meth:`Session.detach`, also when the ``with`` block raises):

* a forward pre-hook and a forward hook on the top model: notice each prefill (new :class:`Generation`),
  count tokens, read the raw logits, run the EMA switch, and every ``step_interval`` tokens take one AdamW
  step
  on ΔV;
* a forward pre-hook on the last decoder layer: on an update step only, switch on autograd for that layer
  and hand its attention a cache view whose span values carry the gradient to ΔV;
* with Lite ``prune_at='prefill'``, a forward hook on every decoder layer that prunes its cache entry;
* ``generate`` is wrapped on the instance (not the class) to refuse settings V-Reason cannot run under, to
  serialise calls from several threads, and to put the original span values back when the call ends.

Between updates the cache itself holds the effective values, so a decode step that does not update costs
one entropy evaluation and nothing else.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import warnings
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import transformers_seam
from .adapters import AdapterSpec, ResolvedAdapter, resolve
from .config import VReasonConfig, coerce_config
from .controller import entropy
from .errors import AlreadyAttachedError, ConcurrentUseError, UnsupportedSettingError, UpstreamError
from .generation import Generation
from .grad_path import GradScope, GradValuesCache
from .guards import check_controlled, check_generation_settings
from .lite import prefill_pruning_hooks
from .trace import Trace

_ATTACHED: weakref.WeakKeyDictionary[nn.Module, Session] = weakref.WeakKeyDictionary()
LITE_ON_TEXT_DOC = "docs/benchmarks/reasoning-study.md"


class _ThreadState(threading.local):
    """What one thread's use of a session owns: its generation, EOS ids and flags.

    Per thread, so that a paused baseline or a direct ``forward`` in one thread never changes what another
    thread's ``generate`` does.
    """

    state: Generation | None = None
    eos_ids: frozenset = frozenset()
    in_generate: bool = False
    paused: bool = False


def _per_thread(name: str) -> property:
    return property(
        lambda self: getattr(self._local, name), lambda self, value: setattr(self._local, name, value)
    )


class Session:
    """A V-Reason controller attached to one model. Create it with :func:`attach`.

    Threads: ``generate`` calls on one attached model from several threads run one after another (a lock),
    each
    exactly as it would alone; a ``forward`` from another thread while one runs is refused
    (:class:`~vreason_hooks.errors.ConcurrentUseError`). Sessions on different models are independent.

    Attributes:
        config: the :class:`VReasonConfig` in force.
        adapter: the resolved adapter (spec and hooked modules).
        traces: one :class:`Trace` per generated sequence per ``generate`` call, in call order.
    """

    _state = _per_thread("state")
    _eos_ids = _per_thread("eos_ids")
    _in_generate = _per_thread("in_generate")
    _paused = _per_thread("paused")

    def __init__(
        self, model: nn.Module, config: VReasonConfig | Mapping[str, Any] | None = None, *, adapter=None
    ):
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
        self._warned: set[str] = set()
        self._handles = []
        # Resolved once: a signature V-Reason does not know is refused here, not discovered as a silent no-op.
        self._model_cache_keyword = transformers_seam.cache_keyword(self.model)
        self._layer_cache_keyword = transformers_seam.cache_keyword(self.adapter.last_layer)
        if self.config.lite and self.adapter.spec.span.kind == "prompt":
            warnings.warn(
                f"V-Reason Lite with the text adapter {self.adapter.spec.name!r} prunes "
                f"{self.config.prune_ratio:.0%} "
                f"of the prompt itself (question included), which costs accuracy ({LITE_ON_TEXT_DOC}). Lite "
                "is "
                "meant for video spans; use lite=False for text models",
                stacklevel=3,
            )
        modules = (self.adapter.last_layer, self.adapter.final_norm, self.adapter.lm_head)
        self._graph_parameters = list({id(p): p for m in modules for p in m.parameters()}.values())
        self._install()

    # ------------------------------------------------------------------ lifecycle
    def _install(self) -> None:
        _ATTACHED[self.model] = self
        try:
            self._handles = [
                self.model.register_forward_pre_hook(self._before_model, with_kwargs=True),
                self.model.register_forward_hook(self._after_model, with_kwargs=True),
                self.adapter.last_layer.register_forward_pre_hook(self._before_last_layer, with_kwargs=True),
            ]
            if (
                self.config.lite and self.config.prune_at == "prefill"
            ):  # Lite: prune each layer as prefill writes it
                layers = self.model.get_submodule(self.adapter.spec.modules.decoder_layers)
                self._handles += prefill_pruning_hooks(
                    layers, self._layer_cache_keyword, self._current_pruner
                )
            original = self.model.generate
            self.model.generate = functools.wraps(original)(functools.partial(self._generate, original))
        except BaseException:
            self.detach()
            raise

    def detach(self) -> None:
        """Remove every hook and the ``generate`` wrapper; the model is as it was before ``attach``."""
        self._finish_generation()
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.model.__dict__.pop("generate", None)
        if _ATTACHED.get(self.model) is self:
            del _ATTACHED[self.model]

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.detach()

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    @property
    def _grad_scope(self):
        """The open autograd scope of this thread's update step, ``None`` between updates (for tests)."""
        state = self._state
        return state.grad_scope if state is not None and state.grad_scope.active else None

    @contextlib.contextmanager
    def paused(self):
        """Plain decoding inside an attached session (a baseline run, like peft's ``disable_adapter``).

        The hooks stay installed but do nothing and record no trace, in this thread::

            with vreason.attach(model) as session:
                with session.paused():
                    baseline = model.generate(**inputs)
                controlled = model.generate(**inputs)
        """
        before, self._paused = self._paused, True  # re-entrant: the outer block restores the flag
        try:
            yield self
        finally:
            self._paused = before

    def pop_traces(self) -> list[Trace]:
        """The traces recorded so far, forgotten by the session (keeps a long evaluation's memory flat)."""
        traces, self.traces = self.traces, []
        return traces

    # ------------------------------------------------------------------ generate
    def _generate(self, original, *args, **kwargs):
        if self._paused:
            return original(*args, **kwargs)
        generation_config = kwargs.get("generation_config") or self.model.generation_config
        check_generation_settings(kwargs, generation_config, self.adapter.cache_layer_index)
        with (
            self._generate_lock
        ):  # one controlled generate at a time: the hooks and the cache edits are shared
            self._eos_ids = frozenset(transformers_seam.eos_ids(kwargs, generation_config))
            self._calls += 1
            first_trace = len(self.traces)
            self._in_generate, self._generating_thread = True, threading.get_ident()
            try:
                output = original(*args, **kwargs)
            finally:
                self._in_generate, self._generating_thread = False, None
                self._finish_generation()
            traces = self.traces[first_trace:]
        check_controlled(traces, self.config)
        return output

    def _check_caller(self) -> None:
        """Refuse a forward that would share the session with a running ``generate`` or bypass its checks."""
        owner = self._generating_thread
        if owner is not None and owner != threading.get_ident():
            raise ConcurrentUseError(
                f"V-Reason: {type(self.model).__name__} is generating under V-Reason in another thread; a "
                "forward "
                "from this thread would share its controller state. Call model.generate (calls are "
                "serialised), "
                "or attach a separate model copy per thread"
            )
        if not self._in_generate and transformers_seam.inside_generate(self.model):
            raise UnsupportedSettingError(
                "V-Reason: this generate call bypassed the attached model.generate (a `generate` bound "
                "before "
                "attach, e.g. gen = model.generate); its settings were not checked and its cache would keep "
                "the "
                "edited values. Call model.generate after attach"
            )

    def _check_decode_cache(self, cache, past: int) -> None:
        """Inside one ``generate`` call there is one prefill; every later forward must carry the cache it
        filled.

        A forward that arrives without it would otherwise look like a new prefill: V-Reason would restart at
        every token and never update (what transformers 5.24's keyword rename did to the first release).
        """
        state = self._state
        if not self._in_generate or state is None or state.call != self._calls:
            return
        if cache is None or past == 0 or (state.cache is not None and cache is not state.cache):
            raise UpstreamError(
                f"V-Reason: a decode step of {type(self.model).__name__} arrived without the KV cache the "
                f"prefill created (looked for keyword {self._model_cache_keyword!r}); "
                f"{transformers_seam.version_note()}"
            )

    # ------------------------------------------------------------------ hooks
    def _before_model(self, module, args, kwargs):
        if self._paused:
            return None
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        _, cache = transformers_seam.find_cache(kwargs, self._model_cache_keyword)
        past = transformers_seam.cache_length(cache)
        new_tokens = input_ids.shape[1] if input_ids is not None else kwargs["inputs_embeds"].shape[1]
        self._check_decode_cache(cache, past)
        if self._state is None or past == 0 or new_tokens > 1:
            self._check_caller()
            self._start_generation(input_ids, kwargs, past)
        state = self._state
        state.advance(input_ids, self._eos_ids)
        if state.lite is not None and state.step > 0:
            # Lite: generate's mask is in original coordinates; map it to the pruned cache layout.
            return args, state.lite.rewrite_inputs(kwargs, cache, module, self.adapter.spec)
        return None

    def _current_pruner(self):
        return None if self._paused or self._state is None else self._state.pruner

    def _before_last_layer(self, module, args, kwargs):
        state = self._state
        if self._paused or state is None or not state.update_now:
            return None
        key, cache = transformers_seam.find_cache(kwargs, self._layer_cache_keyword)
        if cache is None:
            raise UpstreamError(
                f"adapter {self.adapter.spec.name!r}: the last decoder layer ({type(module).__name__}) "
                f"received no cache (looked for keyword {self._layer_cache_keyword!r}); "
                f"{transformers_seam.version_note()}"
            )
        state.grad_scope.enter()
        kwargs = {**kwargs, key: GradValuesCache(cache, self.adapter.cache_layer_index, state.controller)}
        # The layer's input is the only way in: detaching it keeps the graph to one layer + norm + head.
        return transformers_seam.replace_layer_input(args, kwargs, torch.Tensor.detach)

    def _after_model(self, module, args, kwargs, output):
        state = self._state
        if self._paused or state is None:
            return output
        logits = transformers_seam.output_logits(output)
        try:
            if state.step == 0:
                cache = transformers_seam.find_cache(kwargs, self._model_cache_keyword)[1]
                if cache is None:  # not `or`: an empty Cache is falsy
                    cache = transformers_seam.output_cache(output)
                input_ids = kwargs.get("input_ids", args[0] if args else None)
                state.take_cache(cache, input_ids.shape[1], kwargs.get("attention_mask"))
            losses = state.record(entropy(logits[:, -1, :]))
            if state.update_now and losses:
                state.update(losses)
        finally:
            state.grad_scope.leave()
            self._warn_diverged(state)
        if logits.requires_grad:
            output["logits"] = logits.detach()
        return output

    # ------------------------------------------------------------------ generations
    def _start_generation(self, input_ids, kwargs: dict, past: int) -> None:
        self._finish_generation()
        if input_ids is None:
            raise UnsupportedSettingError("V-Reason needs input_ids at prefill to find the controlled span")
        state = Generation.start(
            self.config,
            self.adapter,
            self.model.config,
            input_ids,
            kwargs.get("attention_mask"),
            past,
            self._calls,
            GradScope(self._graph_parameters),
        )
        self.traces.extend(state.traces)
        self._state = state
        if not state.has_span:
            self._warn_once(
                "no_span",
                f"V-Reason: no span tokens in this input for adapter {self.adapter.spec.name!r} "
                "(e.g. a text-only prompt to a video model); generating without control",
            )
        missing = [name for name in self.adapter.spec.inputs.required if kwargs.get(name) is None]
        if missing and state.has_span:
            self._warn_once(
                "inputs",
                f"V-Reason: adapter {self.adapter.spec.name!r} expects {', '.join(missing)} in "
                "the generate inputs (pass the processor's output unchanged); without it the "
                "model's positions are wrong, with or without V-Reason",
            )

    def _finish_generation(self) -> None:
        state, self._state = self._state, None
        if state is not None:
            state.finish()

    def _warn_diverged(self, state: Generation) -> None:
        for b, what in state.diverged:
            self._warn_once(
                "diverged",
                f"V-Reason: sequence {b} diverged at token {state.step} ({what}); its updates "
                f"stopped and its span values were restored (trace.diverged). Lower lr (now "
                f"{self.config.lr}) or keep max_grad_norm set",
            )
        state.diverged.clear()

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)


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
