"""What every benchmark script does with its results: stamp them, write the JSON, print the table."""

from __future__ import annotations

import copy
import json
import platform
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime

import torch


def publish(
    script: str, argv: list[str] | None, meta: dict, results: list[dict], table: str, json_path: str | None
) -> None:
    """Add date, machine, torch version and the exact command to ``meta``; write ``{"meta", "results"}`` to
    ``json_path`` if given; print the meta as an HTML comment and the markdown ``table`` (for the docs)."""
    meta = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} torch thread(s)",
        "torch": torch.__version__,
        **meta,
        "command": f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"meta": meta, "results": results}, f, indent=1)
    print(f"<!-- {json.dumps(meta)} -->")
    print(table)


# Memory on CPU: a fresh subprocess per measurement, glibc told to return freed pages at once (every tensor
# above 64 KiB its own mmap), and the kernel's RSS high-water mark reset right before the part measured.
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "65536"}


def status_mb(field: str) -> float:
    """A ``/proc/self/status`` field in MiB (``VmRSS``: resident now; ``VmHWM``: peak since the last
    reset)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak() -> float:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs`` 5); returns that RSS in MiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return status_mb("VmRSS")


class StepClock:
    """Logits processor that timestamps every decode step (``sync``, e.g. ``torch.cuda.synchronize``, runs
    first, so that a GPU's queued work is counted in the step that queued it)."""

    def __init__(self, sync: Callable[[], None] | None = None):
        self.stamps: list[float] = []
        self.sync = sync

    def __call__(self, input_ids, scores):
        if self.sync is not None:
            self.sync()
        self.stamps.append(time.perf_counter())
        return scores

    def per_token(self) -> float:
        """Seconds per decode step, prefill excluded (first stamp = after the prefill forward)."""
        return (self.stamps[-1] - self.stamps[0]) / (len(self.stamps) - 1)


def exact_tokens(model, new_tokens: int, **fields) -> dict:
    """``generate`` kwargs for exactly ``new_tokens`` greedy tokens: EOS is switched off in a copy of the
    generation config (not with min_new_tokens, whose vocabulary-sized masking would add the same cost to
    every variant). ``fields``: more generation-config fields (set on the copy: transformers deprecates
    passing them beside a ``generation_config``)."""
    config = copy.deepcopy(model.generation_config)
    config.eos_token_id, config.max_new_tokens, config.do_sample = None, new_tokens, False
    for key, value in fields.items():
        setattr(config, key, value)
    return dict(generation_config=config)
