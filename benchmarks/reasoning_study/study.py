"""The study as a sequence of phases over batches; records are appended to a JSONL file as they come.

Phase ``sweep`` runs the baseline and the switch over a learning-rate (and k) grid on the held-apart
problems; :func:`choose_lr` picks the learning rate from those records only; phase ``test`` runs every study
variant at that learning rate on the remaining problems. A re-run with the same output file resumes: a
(phase, variant, problem) already recorded is not generated again.
"""

from __future__ import annotations

import fcntl
import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .runner import run_batch
from .stats import summarise
from .tasks import Problem, ProblemSet
from .variants import PAPER_LR, Variant, diagnostic_variants


def read_records(path: Path) -> list[dict[str, Any]]:
    """All records of a JSONL results file (a truncated last line from a killed run is skipped)."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def append_records(path: Path, records: list[dict[str, Any]]) -> None:
    """Append records under an exclusive lock: one process per task may share one results file."""
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            f.write("".join(json.dumps(r) + "\n" for r in records))
            f.flush()
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def add_run(meta_path: Path, run: dict[str, Any]) -> None:
    """Append one run's description to the meta file, under a lock (processes of one study start together)."""
    meta_path.parent.mkdir(parents=True, exist_ok=True)
    with meta_path.with_suffix(".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {"runs": []}
        meta["runs"].append(run)
        tmp = meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.replace(meta_path)  # atomic: a reader never sees half a file


def batches(problem_lists: Iterable[list[Problem]], size: int) -> list[list[Problem]]:
    """Batches of each task's problems, tasks interleaved so that a partial run covers every task."""
    per_task = [[probs[i : i + size] for i in range(0, len(probs), size)] for probs in problem_lists]
    out = []
    for i in range(max((len(b) for b in per_task), default=0)):
        out.extend(b[i] for b in per_task if i < len(b))
    return out


def run_phase(
    model,
    tokenizer,
    sets: dict[str, ProblemSet],
    problems: dict[str, list[Problem]],
    variants: list[Variant],
    phase: str,
    out: Path,
    batch_size: int,
    max_new_tokens: int,
    progress: Callable[[str], None] = print,
) -> None:
    """Every variant on every batch; variants interleaved per batch (order rotated) so that machine noise
    hits all of them alike and a partial run stays paired."""
    done = {(r["phase"], r["variant"], r["uid"]) for r in read_records(out)}
    out.parent.mkdir(parents=True, exist_ok=True)
    for b, batch in enumerate(batches(problems.values(), batch_size)):
        rotation = b % len(variants)
        for variant in variants[rotation:] + variants[:rotation]:
            todo = [p for p in batch if (phase, variant.name, p.uid) not in done]
            if not todo:
                continue
            records = run_batch(model, tokenizer, sets[todo[0].task], todo, variant, max_new_tokens, phase)
            append_records(out, records)
            right = sum(r.get("correct", False) for r in records)
            err = " ERROR " + records[0]["error"] if "error" in records[0] else ""
            progress(
                f"[{phase}] batch {b} {todo[0].task} {variant.name}: {right}/{len(records)} "
                f"{records[0].get('batch_seconds', 0):.1f}s{err}"
            )


def summarise_phase(records: list[dict[str, Any]], phase: str) -> dict[str, dict[str, Any]]:
    """``{variant: {task or 'all': summary}}``, each paired with the baseline of the same phase."""
    mine = common_records(records, phase)
    variants = list(dict.fromkeys(r["variant"] for r in mine))
    tasks = list(dict.fromkeys(r["task"] for r in mine))
    result: dict[str, dict[str, Any]] = {}
    for v in variants:
        result[v] = {}
        for task in tasks + ["all"]:
            select = (lambda r: True) if task == "all" else (lambda r, t=task: r["task"] == t)
            rows = [r for r in mine if r["variant"] == v and select(r)]
            base = [r for r in mine if r["variant"] == "baseline" and select(r)]
            result[v][task] = summarise(rows, None if v == "baseline" else base)
    return result


def common_records(records: list[dict[str, Any]], phase: str) -> list[dict[str, Any]]:
    """The records of ``phase`` on the problems every (non-diagnostic) variant has."""
    mine = [r for r in records if r["phase"] == phase]
    variants = list(dict.fromkeys(r["variant"] for r in mine))
    # A run stopped mid-batch leaves some variants with more problems than others: keep only the problems
    # every variant of the study has, so that all rows are over the same problems. Diagnostic variants, run
    # on a subset on request, are compared on the problems they have.
    diagnostic = {v.name for v in diagnostic_variants(0.0)}
    main = [v for v in variants if v not in diagnostic]
    common = (
        set.intersection(*({r["uid"] for r in mine if r["variant"] == v} for v in main)) if main else set()
    )
    return [r for r in mine if r["uid"] in common or r["variant"] in diagnostic]


def choose_lr(sweep: dict[str, dict[str, Any]], k: int = 4) -> float:
    """The learning rate of the k=4 switch with the best pooled accuracy on the held-apart problems.

    Ties (frequent: a weak intervention changes nothing) go to the setting that changed more outputs,
    i.e. the strongest intervention that costs no accuracy, then to the one closest to the paper's 3e-4.
    """
    candidates = []
    for name, by_task in sweep.items():
        cfg = by_task["all"]
        if name == "baseline" or cfg["n"] == 0:
            continue
        lr, step = grid_point(name)
        if step != k:
            continue
        candidates.append(
            (cfg["accuracy"]["value"], cfg.get("changed_outputs") or 0.0, -abs(math.log(lr / PAPER_LR)), lr)
        )
    if not candidates:
        raise ValueError(f"no k={k} switch variant in the sweep")
    return max(candidates)[-1]


def grid_point(name: str) -> tuple[float, int]:
    """``'switch_k4_lr0.003'`` -> ``(0.003, 4)``."""
    head, lr = name.rsplit("_lr", 1)
    return float(lr), int(head.rsplit("_k", 1)[1])
