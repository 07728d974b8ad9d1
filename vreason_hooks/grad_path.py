"""The autograd path of an update step: ΔV's gradient flows through the controlled decoder layer, the final
norm and the LM head, and nowhere else.

Two pieces, used only by a controlled ``generate``:

* :class:`ControlledLayer`, a subclass of transformers' own ``DynamicLayer``, takes the controlled layer's
  place in the cache's ``layers`` from the end of the prefill to the end of the call. It stores keys and
  values exactly as its parent; while an update step's :class:`GradScope` is open, ``update`` returns the
  span values rebuilt from ΔV with autograd on (numerically the values already in the cache). At the end it
  hands its state back to the original layer object, so the cache continues as a plain ``DynamicCache`` of
  plain layers.
* :class:`GradScope` switches autograd on for that step and freezes the weights on the path, so the graph
  holds ΔV as its only leaf (no weight gradient is ever recorded, and inputs made under
  ``torch.inference_mode`` may flow through it). Only :mod:`vreason_hooks.hooks` enters and leaves it.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from . import transformers_seam
from .controller import ValueController


class GradScope:
    """Autograd on, with the weights of ``parameters`` frozen, between :meth:`enter` and :meth:`leave`.

    Re-entering is a no-op and leaving twice is harmless.
    """

    def __init__(self, parameters: list[torch.nn.Parameter]):
        self._parameters = parameters
        self._stack: contextlib.ExitStack | None = None

    @property
    def active(self) -> bool:
        return self._stack is not None

    def enter(self) -> None:
        if self._stack is not None:
            return
        stack = contextlib.ExitStack()
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.enable_grad())
        trainable = [p for p in self._parameters if p.requires_grad]
        for p in trainable:
            p.requires_grad_(False)
        stack.callback(lambda: [p.requires_grad_(True) for p in trainable])
        self._stack = stack

    def leave(self) -> None:
        stack, self._stack = self._stack, None
        if stack is not None:
            stack.close()


class ControlledLayer(transformers_seam.DynamicLayer):
    """The controlled layer's cache entry during a controlled ``generate``: a ``DynamicLayer`` whose
    ``update`` also carries ΔV's gradient while ``scope`` is open.

    Holds ``keys`` / ``values`` ``(batch, num_kv_heads, seq_len, head_dim)`` like its parent: it takes over
    the original layer's state (its ``__dict__``) when installed and hands it back in :meth:`release`, so
    whatever the parent keeps, the original layer object continues with it.

    Example::

        layer = ControlledLayer.install(cache, index, controller, scope)  # after the prefill
        ...                                                                # decode steps
        ControlledLayer.release(cache, index)                              # the plain layer is back
    """

    def __init__(self, original: Any, controller: ValueController, scope: GradScope):
        super().__init__()
        self.__dict__.update(original.__dict__)
        self.vreason_original, self.vreason_controller, self.vreason_scope = original, controller, scope

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = super().update(key_states, value_states, *args, **kwargs)
        if self.vreason_scope.active:
            values = self.vreason_controller.with_grad_path(values)
        return keys, values

    @classmethod
    def install(
        cls, cache: Any, index: int, controller: ValueController, scope: GradScope
    ) -> ControlledLayer:
        """Put a controlled layer in place of cache layer ``index`` (a plain ``DynamicLayer``)."""
        layer = cls(transformers_seam.cache_layer(cache, index), controller, scope)
        transformers_seam.replace_cache_layer(cache, index, layer)
        return layer

    @staticmethod
    def release(cache: Any, index: int) -> None:
        """Give cache layer ``index`` back to its original object, with the state this layer grew to."""
        layer = transformers_seam.cache_layer(cache, index)
        if not isinstance(layer, ControlledLayer):
            return
        original = layer.vreason_original
        state = {k: v for k, v in layer.__dict__.items() if not k.startswith("vreason_")}
        original.__dict__.update(state)
        transformers_seam.replace_cache_layer(cache, index, original)
