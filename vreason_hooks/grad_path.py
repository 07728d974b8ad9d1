"""The autograd path of an update step: ΔV's gradient flows through the last decoder layer, the final norm and
the LM head, and nowhere else.

Two pieces, both used only on the decode steps that update ΔV:

* :class:`GradValuesCache` stands in for the model's cache in the last layer's forward and hands attention
  span values rebuilt from ΔV with autograd on (numerically the values already in the cache);
* :class:`GradScope` switches autograd on for that step and freezes the weights on the path, so the graph
  holds ΔV as its only leaf (no weight gradient is ever recorded, and inputs made under
  ``torch.inference_mode`` may flow through it).
"""

from __future__ import annotations

import contextlib

import torch

from .controller import ValueController


class GradValuesCache:
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
    def __class__(
        self,
    ):  # isinstance(view, DynamicCache) holds, as model code may check (the unittest.mock trick)
        return type(self._cache)


class GradScope:
    """Autograd on, with the weights of ``parameters`` frozen, between :meth:`enter` and :meth:`leave`.

    Re-entering is a no-op and leaving twice is harmless, so the hooks can call both without bookkeeping.
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
