"""Running one lmms-eval job, and what "finished" means.

A job's folder (``out/runs/<variant>/<task>/``) holds ``job.json`` (the settings it was started with and the
exact command, written before the start), ``log.txt`` (lmms-eval's output) and ``lmms-eval/`` (its
``--output_path``). The lmms-eval CLI can exit 0 after an error, and a killed run leaves some files and not
others, so neither the exit code nor a marker decides; the files do. A job is **finished** when

1. ``job.json`` holds the same settings (the lmms-eval arguments) as this call would run, and
2. its output folder holds exactly one complete run: one ``<stamp>_results.json``, the V-Reason summary of
   the same ``<stamp>`` (written by the model's clean-up, after the last document), a samples and a traces
   file per task of the results, and as many documents in the summary, the samples and the traces as
   lmms-eval evaluated (``n-samples``).

Anything else (no results, a summary of fewer documents because a rank died, a second results file) is a
half-run: its folder is cleared (the log kept as ``log.previous.txt``) and the job runs again.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .plan import Job
from .scores import task_score

TRACE_KEEP = "trace"
"""The per-document field kept only for the documents a figure draws (traces can be large)."""


class Incomplete(Exception):
    """A job folder that does not hold one complete run; the message says what is missing."""


@dataclass
class JobOutputs:
    """What a finished job produced, read back from its files."""

    job: Job
    stamp: str
    results: dict[str, Any]
    summary: dict[str, Any]
    records: list[dict[str, Any]] = field(default_factory=list)
    """One per document (``vreason_traces`` lines), ``trace`` kept for the first ``keep_traces`` per task."""
    started: dict[str, Any] = field(default_factory=dict)
    """``job.json``."""


def _run_folder(job: Job) -> Path:
    """The one folder lmms-eval wrote into (``--output_path/<model name>/``)."""
    results = sorted(job.output_path.glob("*/*_results.json"))
    if not results:
        raise Incomplete("no lmms-eval results file")
    if len(results) > 1:
        raise Incomplete(f"{len(results)} lmms-eval results files (more than one run in one folder)")
    return results[0]


def _lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def _records(folder: Path, stamp: str, tasks: list[str], keep_traces: int) -> list[dict[str, Any]]:
    records = []
    for task in tasks:
        path = folder / f"{stamp}_vreason_traces_{task}.jsonl"
        if not path.is_file():
            raise Incomplete(f"no V-Reason traces file for task {task}")
        with path.open() as f:
            for i, line in enumerate(f):
                record = json.loads(line)
                if i >= keep_traces:
                    record[TRACE_KEEP] = None
                records.append(record)
    return records


def read_outputs(job: Job, keep_traces: int = 0) -> JobOutputs:
    """The outputs of a finished job; :class:`Incomplete` (saying what is wrong) for anything less."""
    started = read_started(job)
    if started is None or started.get("arguments") != list(job.arguments):
        raise Incomplete("not started with these settings")
    results_path = _run_folder(job)
    stamp = results_path.name.removesuffix("_results.json")
    folder = results_path.parent
    summary_path = folder / f"{stamp}_vreason_summary.json"
    if not summary_path.is_file():
        raise Incomplete("no V-Reason summary (the run ended before the model's clean-up)")
    results, summary = json.loads(results_path.read_text()), json.loads(summary_path.read_text())
    evaluated = {task: int(n["effective"]) for task, n in results.get("n-samples", {}).items()}
    if not evaluated or summary.get("documents") != sum(evaluated.values()):
        raise Incomplete(
            f"the V-Reason summary covers {summary.get('documents')} of {sum(evaluated.values())} documents"
        )
    for task, n in evaluated.items():
        samples = folder / f"{stamp}_samples_{task}.jsonl"
        if not samples.is_file() or _lines(samples) != n:
            raise Incomplete(f"the samples file of {task} is missing or has not {n} documents")
    records = _records(folder, stamp, sorted(evaluated), keep_traces)
    if len(records) != sum(evaluated.values()):
        raise Incomplete(f"{len(records)} trace records for {sum(evaluated.values())} documents")
    task_score(results, job.task)  # a run whose benchmark has no score is no result
    return JobOutputs(job, stamp, results, summary, records, started)


def read_started(job: Job) -> dict[str, Any] | None:
    """``job.json`` of a job's folder, ``None`` if absent or unreadable."""
    try:
        return json.loads((job.folder / "job.json").read_text())
    except (OSError, ValueError):
        return None


def incomplete_reason(job: Job) -> str | None:
    """``None`` if ``job`` is finished, else what is missing (for the progress line)."""
    try:
        read_outputs(job)
    except (Incomplete, OSError, ValueError, KeyError) as err:
        return str(err) or type(err).__name__
    return None


def _pairs(arguments: list[str]) -> dict[str, str]:
    """lmms-eval arguments as ``{option or model_args key: value}``, to name what differs."""
    pairs, i = {}, 0
    while i < len(arguments):
        key = arguments[i]
        value = arguments[i + 1] if i + 1 < len(arguments) and not arguments[i + 1].startswith("--") else ""
        if key == "--model_args":
            pairs.update(dict(part.partition("=")[::2] for part in value.split(",")))
        else:
            pairs[key] = value
        i += 2 if value else 1
    return pairs


def settings_conflict(job: Job) -> str | None:
    """What differs between the settings ``job`` was started with earlier and now (``None``: nothing, or
    never started)."""
    started = read_started(job)
    if started is None or started.get("arguments") == list(job.arguments):
        return None
    then, now = _pairs(started.get("arguments", [])), _pairs(list(job.arguments))
    diffs = [
        f"{k}: {then.get(k, '(unset)')} then, {now.get(k, '(unset)')} now"
        for k in {**then, **now}
        if then.get(k) != now.get(k)
    ]
    return "; ".join(diffs[:3]) + (f" (+{len(diffs) - 3} more)" if len(diffs) > 3 else "")


def _clear(job: Job) -> None:
    """Empty a half-run's folder, keeping its log for the post-mortem."""
    if not job.folder.exists():
        return
    log = job.folder / "log.txt"
    previous = log.read_bytes() if log.is_file() else None
    shutil.rmtree(job.folder)
    job.folder.mkdir(parents=True)
    if previous is not None:
        (job.folder / "log.previous.txt").write_bytes(previous)


def free_port() -> int:
    """A free TCP port for accelerate's rendezvous (one per job: a previous one may linger)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(job: Job, num_processes: int, env: dict[str, str], versions: dict[str, str]) -> dict[str, Any]:
    """Run ``job`` (its folder cleared first) and return its ``job.json``; the files say if it finished."""
    _clear(job)
    job.folder.mkdir(parents=True, exist_ok=True)
    command = job.command(num_processes, free_port() if num_processes > 1 else None)
    record = {
        "variant": job.variant,
        "task": job.task,
        "arguments": list(job.arguments),
        "command": command,
        "env": env,
        "num_processes": num_processes,
        "versions": versions,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write_json(job.folder / "job.json", record)
    start = time.perf_counter()
    with (job.folder / "log.txt").open("w") as log:
        code = subprocess.run(
            command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **env}
        ).returncode
    record.update(returncode=code, wall_s=round(time.perf_counter() - start, 1))
    record["ended"] = datetime.now(UTC).isoformat(timespec="seconds")
    _write_json(job.folder / "job.json", record)
    return record


def _write_json(path: Path, data: dict[str, Any]) -> None:
    """Write through a temporary file, so a reader never sees half a file."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
