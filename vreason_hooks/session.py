"""``attach``: injects V-Reason into an unmodified transformers model and its ``generate``.

A :class:`Session` owns the lifecycle: it installs the hooks of its :class:`~vreason_hooks.hooks.TokenFlow`
(the per-token flow) and wraps ``generate``, and removes both on :meth:`Session.detach`, also when the
``with`` block raises. Everything else lives elsewhere: :mod:`~vreason_hooks.hooks` (the hooks and the
gradient scope), :mod:`~vreason_hooks.generation` (one prefill's state), :mod:`~vreason_hooks.grad_path` (the
autograd path), :mod:`~vreason_hooks.guards` (refusals and warnings), :mod:`~vreason_hooks.lite` (pruning).

Plumbing:

* a forward pre-hook and a forward hook on the top model, and a forward pre-hook on the controlled decoder
  layer (with Lite ``prune_at='prefill'``, a forward hook on every decoder layer);
* ``generate`` is wrapped on the instance (not the class) to refuse settings V-Reason cannot run under, to
  serialise calls from several threads, and to put the original span values back when the call ends.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

from torch import nn

from . import guards, transformers_seam
from .adapters import AdapterSpec, ResolvedAdapter, resolve
from .config import VReasonConfig, coerce_config
from .errors import AlreadyAttachedError
from .generation import Generation
from .hooks import TokenFlow
from .lite import prefill_pruning_hooks
from .trace import Trace

_ATTACHED: weakref.WeakKeyDictionary[nn.Module, weakref.ref[Session]] = weakref.WeakKeyDictionary()
"""The session attached to each model, held weakly both ways: a session never keeps its model alive."""


class Session:
    """A V-Reason controller attached to one model. Create it with :func:`attach`.

    Threads: ``generate`` calls on one attached model from several threads run one after another (a lock),
    each exactly as it would alone; a ``forward`` from another thread while one runs is refused
    (:class:`~vreason_hooks.errors.ConcurrentUseError`). Sessions on different models are independent.

    Attributes:
        config: the :class:`VReasonConfig` in force.
        adapter: the resolved adapter (spec and hooked modules).
    """

    def __init__(
        self,
        model: nn.Module,
        config: VReasonConfig | Mapping[str, Any] | None = None,
        *,
        adapter: str | Path | AdapterSpec | None = None,
    ):
        self.config = coerce_config(config)
        guards.check_not_compiled(model)
        self.adapter: ResolvedAdapter = resolve(model, adapter)
        self.model = self.adapter.model
        self._warn = guards.SessionWarnings(self.adapter.spec.name)
        self._flow = TokenFlow(self.config, self.adapter, self._warn)
        self._generate_lock = threading.RLock()
        self._handles: list = []
        if self.config.lite and self.adapter.spec.span.kind == "prompt":
            self._warn.lite_on_text(self.config.prune_ratio)
        self._install()

    # ------------------------------------------------------------------ lifecycle
    def _install(self) -> None:
        reference = _ATTACHED.get(self.model)
        current = reference() if reference is not None else None
        if current is not None and current.attached:
            raise AlreadyAttachedError(
                f"{type(self.model).__name__} already has a V-Reason session attached; detach it first "
                "(leave its `with` block or call session.detach())"
            )
        _ATTACHED[self.model] = weakref.ref(self)
        flow, adapter = self._flow, self.adapter
        try:
            self._handles = [
                self.model.register_forward_pre_hook(flow.before_model, with_kwargs=True),
                self.model.register_forward_hook(flow.after_model, with_kwargs=True),
                adapter.controlled_layer.register_forward_pre_hook(
                    flow.before_controlled_layer, with_kwargs=True
                ),
            ]
            if (
                self.config.lite and self.config.prune_at == "prefill"
            ):  # prune each layer as prefill writes it
                layers = self.model.get_submodule(adapter.spec.modules.decoder_layers)
                self._handles += prefill_pruning_hooks(layers, flow.layer_keyword, flow.current_pruner)
            original = cast(Callable, self.model.generate)
            wrapper = functools.wraps(original)(functools.partial(self._generate, original))
            self.model.__dict__["generate"] = wrapper  # on the instance: the class stays untouched
        except BaseException:
            self.detach()
            raise

    def detach(self) -> None:
        """Remove every hook and the ``generate`` wrapper; the model is as it was before ``attach``."""
        self._flow.finish()
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.model.__dict__.pop("generate", None)
        current = _ATTACHED.get(self.model)
        if current is not None and current() in (self, None):
            del _ATTACHED[self.model]

    def __enter__(self) -> Session:
        if not self.attached:  # `with session:` after detach() attaches again, never runs plain decoding
            self._install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    __deepcopy__ = guards.refuse_copy  # reached through the model's generate wrapper and hooks
    __reduce_ex__ = guards.refuse_copy

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    # ------------------------------------------------------------------ what users read
    @property
    def traces(self) -> list[Trace]:
        """One :class:`Trace` per generated sequence per ``generate`` call, in call order."""
        return self._flow.traces

    def pop_traces(self) -> list[Trace]:
        """The traces recorded so far, forgotten by the session (keeps a long evaluation's memory flat)."""
        traces, self._flow.traces = self._flow.traces, []
        return traces

    @property
    def generation(self) -> Generation | None:
        """The live state of the ``generate`` running in this thread (spans, ΔV controller, cache, Lite's
        layout), for logits processors and debugging; ``None`` outside one or while paused."""
        return self._flow.active()

    @contextlib.contextmanager
    def paused(self) -> Iterator[Session]:
        """Plain decoding inside an attached session (a baseline run, like peft's ``disable_adapter``).

        The hooks stay installed but do nothing and record no trace, in this thread::

            with vreason.attach(model) as session:
                with session.paused():
                    baseline = model.generate(**inputs)
                controlled = model.generate(**inputs)
        """
        thread = self._flow.thread
        before, thread.paused = thread.paused, True  # re-entrant: the outer block restores the flag
        try:
            yield self
        finally:
            thread.paused = before

    # ------------------------------------------------------------------ generate
    def _generate(self, original, *args, **kwargs):
        if self._flow.thread.paused:
            return original(*args, **kwargs)
        guards.check_not_compiled(self.model)  # compiled after attach: its traced forward skips the hooks
        settings = transformers_seam.generation_settings(self.model, original, args, kwargs)
        guards.check_generation_settings(
            settings, self.adapter.controlled_layer, self.adapter.cache_layer_index
        )
        with self._generate_lock, self._flow.generate_call(settings) as traces:
            # one controlled generate at a time: the hooks and the cache edits are shared
            output = original(*args, **kwargs)
        guards.check_controlled(traces, self.config)
        return output


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
            paper's defaults. adapter: ``None`` (find by ``model.config.model_type``), an adapter name, a path
            to a spec ``.toml``, or an :class:`AdapterSpec`.

    Returns:
        the :class:`Session`; it is attached already, and detaches when its ``with`` block ends.
    """
    return Session(model, config, adapter=adapter)
