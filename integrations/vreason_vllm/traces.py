"""Traces of controlled requests: the same :class:`~vreason_hooks.trace.Trace` JSON as the HF path
(``vreason plot`` reads it), retrievable by request id in two ways:

* offline, with the ``LLM`` that served them: ``vreason_vllm.traces(llm, outputs)`` asks the workers over
  vLLM's ``collective_rpc`` and returns, per ``RequestOutput``, one trace per sample (``None`` for a plain
  request), cut to the tokens vLLM returned;
* any engine (the OpenAI server included): ``trace_dir`` in the request's settings (``vreason_trace_dir`` in
  ``vllm_xargs``); the worker writes ``<trace_dir>/<key>.json`` when the request finishes. The key is the id
  the user sees (``RequestOutput.request_id``; the response ``id`` of a chat completion; ``<id>-<i>`` for the
  ``i``-th prompt of a completions call) and ``<index>_<key>`` for sample ``index`` of ``n > 1``.

The file is written as soon as the worker sees the request's last token (its length limit, or a stop token
id such as EOS); a request stopped by a stop *string* (decided in vLLM's front end) is written when the worker
learns that it finished, at its next step.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

from vreason_hooks.trace import Trace

RPC_METHOD = "vreason_traces"
STORE_SIZE = 4096
"""Finished traces kept per worker for :func:`traces` (oldest dropped first); files are not limited."""


class TraceStore:
    """Published traces of one worker, by key (bounded, oldest first out)."""

    def __init__(self, size: int = STORE_SIZE):
        self._items: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._size = size

    def put(self, key: str, trace: dict[str, Any]) -> None:
        self._items.pop(key, None)
        self._items[key] = trace
        while len(self._items) > self._size:
            self._items.popitem(last=False)

    def pop(self, key: str) -> dict[str, Any] | None:
        return self._items.pop(key, None)


def write_trace_file(trace_dir: str, key: str, trace: dict[str, Any]) -> Path:
    """``<trace_dir>/<key>.json``: a JSON list holding the one trace (``load_traces`` format), replaced
    atomically so that a reader never sees half a file."""
    folder = Path(trace_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{_safe(key)}.json"
    temporary = path.with_suffix(f".json.{os.getpid()}.tmp")
    temporary.write_text(json.dumps([trace], indent=1, allow_nan=False))
    os.replace(temporary, path)
    return path


def _safe(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key)


def trace_path(trace_dir: str | Path, key: str) -> Path:
    """Where the worker writes the trace of the request called ``key``."""
    return Path(trace_dir) / f"{_safe(key)}.json"


def trim(trace: Trace, num_tokens: int) -> Trace:
    """``trace`` cut to its first ``num_tokens`` tokens (the engine may run a step past a stop string)."""
    if trace.num_tokens <= num_tokens:
        return trace
    kept = [i for i, step in enumerate(trace.update_steps) if step < num_tokens]
    for name in ("entropy", "ema", "peak", "alpha"):
        setattr(trace, name, getattr(trace, name)[:num_tokens])
    trace.update_steps = [trace.update_steps[i] for i in kept]
    trace.grad_norm = [trace.grad_norm[i] for i in kept if i < len(trace.grad_norm)]
    trace.delta_norm = [trace.delta_norm[i] for i in kept if i < len(trace.delta_norm)]
    return trace


def sample_keys(output) -> list[str]:
    """The trace keys of a ``RequestOutput``, one per sample in the order of ``output.outputs``."""
    samples = output.outputs
    if len(samples) == 1 and samples[0].index == 0:
        return [output.request_id]
    return [f"{sample.index}_{output.request_id}" for sample in samples]


def traces(llm, outputs) -> list[list[Trace | None]]:
    """The traces of ``outputs`` (``RequestOutput`` of ``llm.generate`` / ``llm.chat``), fetched from the
    workers: per output, one :class:`Trace` per sample (``None`` for a plain request), cut to the returned
    tokens. Fetched traces are forgotten by the workers (their files, if any, stay)."""
    keys = [sample_keys(output) for output in outputs]
    flat = [key for group in keys for key in group]
    found: dict[str, dict[str, Any]] = {}
    for reply in llm.collective_rpc(RPC_METHOD, args=(flat,)):
        found.update(reply or {})
    result = []
    for output, group in zip(outputs, keys):
        row = []
        for sample, key in zip(output.outputs, group):
            data = found.get(key)
            row.append(None if data is None else trim(Trace.from_dict(data), len(sample.token_ids)))
        result.append(row)
    return result
