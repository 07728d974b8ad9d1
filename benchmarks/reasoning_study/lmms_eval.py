"""The same study on a vision-language model, through the project's lmms-eval integration (GPU machine).

Same variants, same sweep-then-test protocol, same paired statistics and report; only the generation
backend differs: each variant is one ``lmms-eval`` run of the ``vreason_*`` model with the variant's config
in ``--model_args`` (``objective=none`` is the baseline), and the per-document results are read back from
lmms-eval's ``--log_samples`` file and the integration's ``*_vreason_traces_<task>.jsonl``.

lmms-eval cannot pick a range of documents, only the first ``--limit`` ones, so the split is by document id:
the sweep runs on documents ``0 .. dev_n-1`` (``--limit dev_n``) and the lr is chosen from them alone; the
test runs score only documents ``>= dev_n``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vreason_hooks import VReasonConfig

from .runner import entropy_stats
from .variants import Variant


def model_args(config: VReasonConfig, pretrained: str, trace_dir: Path, extra: str = "") -> str:
    """``--model_args`` string: the upstream wrapper's ``pretrained``, every V-Reason field, the trace
    folder."""
    fields = {"pretrained": pretrained, **config.model_dump(), "trace_dir": str(trace_dir)}
    text = ",".join(
        f"{k}={'none' if v is None else str(v).lower() if isinstance(v, bool) else v}"
        for k, v in fields.items()
    )
    return f"{text},{extra}" if extra else text


def command(
    variant: Variant,
    task: str,
    model: str,
    pretrained: str,
    out_dir: Path,
    limit: int | None,
    extra_model_args: str = "",
    extra_cli: list[str] | None = None,
) -> list[str]:
    """The lmms-eval command line of one variant (samples and traces land under ``out_dir/<variant>``)."""
    run_dir = out_dir / variant.name
    cmd = [
        sys.executable,
        "-m",
        "lmms_eval",
        "--model",
        model,
        "--model_args",
        model_args(variant.config, pretrained, run_dir, extra_model_args),
        "--tasks",
        task,
        "--batch_size",
        "1",
        "--log_samples",
        "--output_path",
        str(run_dir),
    ]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    return cmd + list(extra_cli or [])


def _latest(folder: Path, pattern: str) -> Path:
    files = sorted(folder.rglob(pattern))
    if not files:
        raise FileNotFoundError(
            f"no {pattern} under {folder}: did the lmms-eval run fail? (its exit code is not reliable, see "
            "docs/benchmarks/reasoning-study.md)"
        )
    return files[-1]


def _correct(value: Any) -> bool:
    """A per-sample metric as right/wrong: numbers and booleans (>= 1 is right), or a dict's ``score``."""
    if isinstance(value, dict):
        value = value.get("score", value.get("correct", 0))
    return float(value) >= 1.0


def load_records(
    run_dir: Path, task: str, metric: str, variant: Variant, phase: str, keep: Callable[[int], bool]
) -> list[dict[str, Any]]:
    """Study records (see ``runner.run_batch``) of the documents ``keep(doc_id)`` selects."""
    samples = [
        json.loads(line) for line in _latest(run_dir, f"*_samples_{task}.jsonl").read_text().splitlines()
    ]
    traces = {}
    for line in _latest(run_dir, f"*_vreason_traces_{task}.jsonl").read_text().splitlines():
        row = json.loads(line)
        traces[row["doc_id"]] = row
    records = []
    for s in samples:
        doc = int(s["doc_id"])
        if not keep(doc):
            continue
        base = {
            "uid": f"{task}/{doc}",
            "task": task,
            "index": doc,
            "gold": s.get("target"),
            "variant": variant.name,
            "phase": phase,
            "config": variant.config.model_dump(),
        }
        t = traces.get(doc)
        if t is None or t.get("failed") or not t.get("trace"):
            records.append(base | {"error": (t or {}).get("error") or "no trace record"})
            continue
        trace = t["trace"]
        entropy, ema = trace["entropy"], trace["ema"]
        reply = s.get("filtered_resps")
        records.append(
            base
            | {
                "reply": reply if isinstance(reply, str) else json.dumps(reply),
                "extracted": None,
                "extraction": "task",
                "correct": _correct(s[metric]),
                "num_tokens": t["output_tokens"],
                "hit_budget": False,
                "seconds": t["time_s"],
                "batch_seconds": t["time_s"],
                "batch_size": 1,
                **entropy_stats(entropy, ema),
                "updates": len(trace["update_steps"]),
                "delta_norm": (trace["delta_norm"] or [0.0])[-1],
                "pruned": len(trace.get("pruned", [])),
            }
        )
    return records


def run_phase(
    variants: list[Variant],
    phase: str,
    args,
    out: Path,
    dry_run: bool,
    append: Callable[[Path, list[dict[str, Any]]], None],
) -> None:
    """One lmms-eval run per variant (skipped when its samples already exist), then its records appended."""
    limit = args.dev_n if phase == "sweep" else args.limit
    keep = (lambda d: d < args.dev_n) if phase == "sweep" else (lambda d: d >= args.dev_n)
    root = Path(args.lmms_output) / phase
    for variant in variants:
        cmd = command(
            variant,
            args.lmms_task,
            args.lmms_model,
            args.pretrained,
            root,
            limit,
            args.lmms_model_args,
            args.lmms_cli,
        )
        print(" ".join(cmd), flush=True)
        if dry_run:
            continue
        run_dir = root / variant.name
        if not list(run_dir.rglob(f"*_samples_{args.lmms_task}.jsonl")):
            subprocess.run(cmd, check=False)
        append(out, load_records(run_dir, args.lmms_task, args.lmms_metric, variant, phase, keep))
