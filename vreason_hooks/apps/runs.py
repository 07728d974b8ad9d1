"""The one "generate inside a V-Reason session" of the applications and benchmarks."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..config import VReasonConfig
from ..trace import Trace


@dataclass
class SessionRun:
    """What one :func:`generate_in_session` call produced.

    ``new_tokens``: ``(batch, new_len)`` token ids after the prompt (padding after EOS included);
    ``traces``: one :class:`Trace` per sequence, in batch order; ``seconds``: wall time of ``generate``.
    """

    new_tokens: object
    traces: list[Trace]
    seconds: float


def generate_in_session(
    model,
    inputs: dict,
    config: VReasonConfig,
    max_new_tokens: int,
    adapter=None,
    label: str = "",
    **generate_kwargs,
) -> SessionRun:
    """Greedy ``model.generate(**inputs)`` under ``attach(model, config)``, in ``torch.inference_mode``.

    ``inputs`` holds ``input_ids`` ``(batch, prompt_len)`` and whatever else the model takes (mask, pixels);
    ``config.objective='none'`` gives the traced baseline (output equal to plain ``generate``). Every trace
    gets ``label``. ``adapter`` is passed to :func:`vreason_hooks.attach` (``None``: from the model).
    """
    import torch

    from ..session import attach

    start = time.perf_counter()
    with attach(model, config, adapter=adapter) as session, torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, **generate_kwargs)
    seconds = time.perf_counter() - start
    traces = list(session.traces)
    for trace in traces:
        trace.label = label
    return SessionRun(out[:, inputs["input_ids"].shape[1] :], traces, seconds)
