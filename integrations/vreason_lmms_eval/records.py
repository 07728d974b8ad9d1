"""Per-document records (trace, output tokens, time), gathered over ranks and written next to lmms-eval's
samples, plus the end-of-run summary.

Files, in ``trace_dir`` (default ``--output_path/<model name>/``, the folder of lmms-eval's samples), prefixed
with the run's timestamp like lmms-eval's own results and samples files:

* ``<stamp>_vreason_traces_<task>.jsonl``: one line per document, sorted by ``doc_id``:
  ``{"task", "doc_id", "rank", "failed", "error", "output_tokens", "time_s", "generate_s", "peak_step",
  "num_updates", "trace": Trace.to_dict()}`` (``trace`` is ``null`` for a failed document);
* ``<stamp>_vreason_summary.json``: see :func:`summarise`, plus ``peak_memory`` (:func:`peak_memory` of every
  rank, gathered)."""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger as eval_logger


@dataclass
class DocRecord:
    """What V-Reason did on one document."""

    task: str
    doc_id: int
    rank: int = 0
    failed: bool = False
    error: str | None = None
    output_tokens: int | None = None
    time_s: float | None = None
    """Wall time of the upstream wrapper on this document: video decoding, preprocessing and generation
    (a batch's time divided by its size)."""
    generate_s: float | None = None
    """Time inside ``model.generate`` (the batch's, for a batch)."""
    trace: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        trace = self.trace or {}
        return {
            "task": self.task,
            "doc_id": self.doc_id,
            "rank": self.rank,
            "failed": self.failed,
            "error": self.error,
            "output_tokens": self.output_tokens,
            "time_s": self.time_s,
            "generate_s": self.generate_s,
            "peak_step": trace.get("peak_step"),
            "num_updates": len(trace.get("update_steps", [])),
            "trace": self.trace,
        }


@dataclass
class Records:
    """All records of this process; :meth:`finish` gathers them on rank 0 and writes the files."""

    model: str
    config: dict[str, Any]
    items: list[DocRecord] = field(default_factory=list)

    def add(self, record: DocRecord) -> None:
        self.items.append(record)

    def gather(self) -> list[dict[str, Any]]:
        """Every rank's records on rank 0 (others get ``[]``); the same list in a single process."""
        return [r for part in _gather_objects([r.to_dict() for r in self.items]) for r in part]

    def finish(
        self, out_dir: Path | None, stamp: str, rank: int, memory: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """Gather, then on rank 0 write the JSONL files and the summary and log the summary.

        ``memory``: this rank's :func:`peak_memory`; the summary's ``peak_memory`` holds every rank's.
        """
        records = sorted(self.gather(), key=lambda r: (r["task"], r["doc_id"]))
        memories = _gather_objects(memory) if memory is not None else []
        if rank != 0:
            return None
        summary = summarise(records, self.model, self.config)
        if memories:
            summary["peak_memory"] = {
                "kind": memories[0]["kind"],
                "max_mb": max(m["mb"] for m in memories),
                "per_rank_mb": [m["mb"] for m in memories],
            }
        if out_dir is not None:
            files = {}
            for task in sorted({r["task"] for r in records}):
                path = out_dir / f"{stamp}_vreason_traces_{task}.jsonl"
                lines = "".join(_json_line(r) for r in records if r["task"] == task)
                if _write(path, lines):
                    files[task] = str(path)
            summary["files"] = files
            if _write(out_dir / f"{stamp}_vreason_summary.json", json.dumps(_finite(summary), indent=1)):
                eval_logger.info(f"V-Reason: traces and summary written to {out_dir}")
        log_summary(summary)
        return summary


def _write(path: Path, text: str) -> bool:
    """Write ``text`` to ``path``; a failure is logged, not raised (the records are V-Reason's bookkeeping,
    lmms-eval's results are written after them and must not be lost to a full disk or a removed folder)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return True
    except OSError as err:
        eval_logger.error(f"V-Reason: could not write {path} ({err}); lmms-eval's results are not affected")
        return False


def _json_line(record: dict[str, Any]) -> str:
    """One JSON line; a value JSON has no number for (NaN, infinity: a diverged document) is written as
    ``null`` with a warning, instead of failing the whole file."""
    try:
        return json.dumps(record, allow_nan=False) + "\n"
    except ValueError:
        eval_logger.warning(
            f"V-Reason: document {record.get('task')}/{record.get('doc_id')} has non-finite values; written "
            "as null"
        )
        return json.dumps(_finite(record), allow_nan=False) + "\n"


def _finite(value: Any) -> Any:
    """``value`` with every NaN / infinity replaced by ``None``, at any depth."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _gather_objects(mine) -> list:
    """``[rank 0's, rank 1's, ...]`` on rank 0 (``[]`` on the others); ``[mine]`` in a single process.

    Every rank must call it (``lm.clean`` runs on all ranks)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [mine]
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    return everyone if dist.get_rank() == 0 else []


def peak_memory(devices) -> dict[str, Any]:
    """This process's peak memory in MiB since it started, for comparing variants of one run.

    On CUDA: ``torch.cuda.max_memory_allocated`` summed over the CUDA ``devices`` the model sits on (tensors
    only, as the paper's GPU figures are); otherwise the process's resident-set high-water mark
    (``ru_maxrss``: model, inputs, Python and libraries).
    """
    import resource

    import torch

    cuda = sorted({d.index or 0 for d in map(torch.device, devices) if d.type == "cuda"})
    if cuda and torch.cuda.is_initialized():
        mb = sum(torch.cuda.max_memory_allocated(i) for i in cuda) / 2**20
        return {"kind": "cuda_max_allocated", "mb": mb}
    return {"kind": "rss_peak", "mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def summarise(records: list[dict[str, Any]], model: str, config: dict[str, Any]) -> dict[str, Any]:
    """Means over the documents that did not fail; the failed ones listed with their errors."""
    ok = [r for r in records if not r["failed"]]
    failed = [r for r in records if r["failed"]]
    return {
        "model": model,
        "config": config,
        "documents": len(records),
        "completed": len(ok),
        "mean_output_tokens": _mean([r["output_tokens"] for r in ok]),
        "mean_time_s": _mean([r["time_s"] for r in ok]),
        "mean_generate_s": _mean([r["generate_s"] for r in ok]),
        "mean_peak_step": _mean([r["peak_step"] for r in ok]),
        "mean_relative_peak": _mean(
            [
                r["peak_step"] / max(r["output_tokens"] - 1, 1)
                for r in ok
                if r["peak_step"] is not None and r["output_tokens"]
            ]
        ),
        "updates": sum(r["num_updates"] for r in ok),
        "failed": [{"task": r["task"], "doc_id": r["doc_id"], "error": r["error"]} for r in failed],
    }


def log_summary(summary: dict[str, Any]) -> None:
    def fmt(value, spec=".3g"):
        return "n/a" if value is None else format(value, spec)

    eval_logger.info(
        f"V-Reason summary ({summary['model']}): {summary['completed']}/{summary['documents']} documents, "
        f"mean output tokens {fmt(summary['mean_output_tokens'])}, mean time/doc "
        f"{fmt(summary['mean_time_s'])} s, mean entropy-peak position {fmt(summary['mean_peak_step'])}, "
        f"updates {summary['updates']}"
    )
    if summary["failed"]:
        ids = ", ".join(f"{f['task']}/{f['doc_id']}" for f in summary["failed"])
        eval_logger.warning(f"V-Reason: {len(summary['failed'])} document(s) failed: {ids}")


def cli_output_dir(argv: list[str] | None = None) -> Path | None:
    """The folder where the running lmms-eval CLI writes its samples: ``--output_path/<model name>/``.

    ``None`` when the process was not started with ``--output_path`` (e.g. ``simple_evaluate`` from Python).
    The model name is derived from ``--model_args`` with lmms-eval's own helpers, as its tracker does.
    """
    from .lmms_eval_seam import output_model_name

    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--output_path")
    parser.add_argument("--model_args", default="")
    known, _ = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if not known.output_path:
        return None
    return Path(known.output_path) / output_model_name(known.model_args)
