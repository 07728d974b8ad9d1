"""``table.json`` and ``table.md``: one row per variant, the paper's published numbers beside ours.

Per benchmark the row holds the task's own score (:mod:`.scores`), the documents, the failed documents,
the mean output tokens, the mean seconds per document (lmms-eval's wall time on the document: video
decoding, preprocessing and generation) and the peak memory of the run (``torch.cuda.max_memory_allocated``
on GPU, the process's RSS high-water mark on CPU; the largest over ranks). The row's ``mean`` columns are
means over the benchmarks (each counts once, as in the paper's mean accuracy); its peak is the largest.
"""

from __future__ import annotations

import statistics
from typing import Any

from .jobs import JobOutputs
from .scores import task_score

# The paper's numbers for Qwen2.5-VL-7B-Instruct (arXiv 2510.17045, read from the authors' figures; see
# docs/reproducing.md). Benchmark -> (baseline, V-Reason, V-Reason Lite).
PAPER_SCORES = {
    "VideoMMMU": (45.8, 46.3, 47.4),
    "MMVU": (61.3, 62.7, 65.0),
    "MVBench": (60.7, 60.9, 60.6),
    "TempCompass": (72.4, 73.3, 72.3),
    "VideoMME": (53.7, 54.9, 53.5),
    "VSI-Bench": (33.8, 37.1, 37.3),
}
PAPER_TOKENS = (226, 176, 178)
PAPER_PEAK_GB = (16.7, 24.1, None)
"""Peak GPU memory as reviewers quote it for the authors' implementation (Lite: not published)."""
PAPER_MEAN = (54.6, 55.9, 56.0)
PAPER_NAMES = {
    "mmvu_val": "MMVU",
    "vsibench": "VSI-Bench",
    "video_mmmu": "VideoMMMU",
    "mvbench": "MVBench",
    "tempcompass_multi_choice": "TempCompass",
    "tempcompass": "TempCompass",
    "videomme": "VideoMME",
}
VARIANT_INDEX = {"baseline": 0, "vreason": 1, "lite": 2}
VARIANT_TITLES = {"baseline": "baseline (objective=none)", "vreason": "V-Reason", "lite": "V-Reason Lite"}


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


def cell(outputs: JobOutputs) -> dict[str, Any]:
    """One variant x benchmark: score, documents, tokens, time, memory."""
    score = task_score(outputs.results, outputs.job.task)
    ok = [r for r in outputs.records if not r["failed"]]
    memory = outputs.summary.get("peak_memory") or {}
    return {
        "score": score.value,
        "metric": score.metric,
        "scale_guessed": score.scale_guessed,
        "parts": score.parts,
        "documents": len(outputs.records),
        "failed": len(outputs.records) - len(ok),
        "mean_output_tokens": _mean([r["output_tokens"] for r in ok]),
        "mean_time_s": _mean([r["time_s"] for r in ok]),
        "peak_memory_mb": memory.get("max_mb"),
        "memory_kind": memory.get("kind"),
        "stamp": outputs.stamp,
        "folder": str(outputs.job.folder),
    }


def row(variant: str, tasks: list[str], cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A variant's row from its finished benchmarks (``cells``: task -> :func:`cell`)."""
    done = [cells[t] for t in tasks if t in cells]
    peaks = [c["peak_memory_mb"] for c in done if c["peak_memory_mb"] is not None]
    return {
        "variant": variant,
        "tasks": {t: cells.get(t) for t in tasks},
        "complete": len(done) == len(tasks),
        "mean_score": _mean([c["score"] for c in done]) if len(done) == len(tasks) else None,
        "mean_output_tokens": _mean([c["mean_output_tokens"] for c in done]),
        "mean_time_s": _mean([c["mean_time_s"] for c in done]),
        "peak_memory_mb": max(peaks) if peaks else None,
        "memory_kind": next((c["memory_kind"] for c in done if c["memory_kind"]), None),
    }


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """``vs_baseline``: each row's tokens, time and peak memory over the baseline row's."""
    base = next((r for r in rows if r["variant"] == "baseline"), None)
    for r in rows:
        r["vs_baseline"] = {
            key: (r[key] / base[key] if base and r[key] is not None and base[key] else None)
            for key in ("mean_output_tokens", "mean_time_s", "peak_memory_mb")
        }


def paper_rows(tasks: list[str], variants: list[str]) -> list[dict[str, Any]]:
    """The published numbers in the layout of our rows (benchmarks the paper did not report: ``None``)."""
    rows = []
    for variant in variants:
        i = VARIANT_INDEX[variant]
        scores = {t: PAPER_SCORES[PAPER_NAMES[t]][i] if t in PAPER_NAMES else None for t in tasks}
        all_six = sorted(PAPER_NAMES[t] for t in tasks if t in PAPER_NAMES) == sorted(PAPER_SCORES)
        rows.append(
            {
                "variant": variant,
                "scores": scores,
                "mean_score": PAPER_MEAN[i] if all_six and len(tasks) == 6 else None,
                "mean_output_tokens": PAPER_TOKENS[i],
                "peak_memory_gb_quoted": PAPER_PEAK_GB[i],
            }
        )
    return rows


def build(
    checkpoint: dict[str, Any],
    tasks: list[str],
    variants: list[str],
    cells: dict[str, dict[str, dict[str, Any]]],
    incomplete: list[str],
    notes: list[str],
) -> dict[str, Any]:
    """The document written to ``table.json`` (``cells``: variant -> task -> :func:`cell`)."""
    rows = [row(v, tasks, cells.get(v, {})) for v in variants]
    add_ratios(rows)
    return {
        "checkpoint": checkpoint,
        "tasks": tasks,
        "rows": rows,
        "paper": paper_rows(tasks, variants) if checkpoint.get("paper") else None,
        "incomplete": incomplete,
        "notes": notes,
    }


def _fmt(value, spec: str = ".1f", none: str = "—") -> str:
    return none if value is None else format(value, spec)


def _ratio(value) -> str:
    return "" if value is None else f" ({value:.2f}×)"


def _our_line(r: dict[str, Any], tasks: list[str]) -> str:
    scores = [_fmt((r["tasks"][t] or {}).get("score")) for t in tasks]
    ratios = r.get("vs_baseline", {})
    gib = r["peak_memory_mb"] / 1024 if r["peak_memory_mb"] is not None else None
    failed = sum((c or {}).get("failed", 0) for c in r["tasks"].values())
    return (
        f"| {VARIANT_TITLES[r['variant']]} | {' | '.join(scores)} | {_fmt(r['mean_score'])} | "
        f"{_fmt(r['mean_output_tokens'], '.0f')}{_ratio(ratios.get('mean_output_tokens'))} | "
        f"{_fmt(r['mean_time_s'], '.2f')}{_ratio(ratios.get('mean_time_s'))} | "
        f"{_fmt(gib, '.2f')}{_ratio(ratios.get('peak_memory_mb'))} | {failed} |"
    )


def _paper_line(r: dict[str, Any], tasks: list[str]) -> str:
    scores = [_fmt(r["scores"][t]) for t in tasks]
    return (
        f"| paper: {VARIANT_TITLES[r['variant']].split(' (')[0]} | {' | '.join(scores)} | "
        f"{_fmt(r['mean_score'])} | {r['mean_output_tokens']} | — | "
        f"{_fmt(r['peak_memory_gb_quoted'], '.1f')} (quoted, GB) | — |"
    )


def markdown(table: dict[str, Any]) -> str:
    """``table.md``: notes first (what the numbers are worth), then the table, then what is missing."""
    tasks, rows = table["tasks"], table["rows"]
    memory = next((r["memory_kind"] for r in rows if r["memory_kind"]), None)
    memory_title = {"cuda_max_allocated": "peak GPU memory (GiB)", "rss_peak": "peak RSS (GiB)"}.get(
        memory, "peak memory (GiB)"
    )
    lines = [f"# V-Reason reproduction: {table['checkpoint']['name']}", ""]
    lines += [f"> {note}" for note in table["notes"]] + ([""] if table["notes"] else [])
    lines += [
        f"| variant | {' | '.join(tasks)} | mean | output tokens | s / document | {memory_title} | failed "
        "docs |",
        "|---" * (len(tasks) + 6) + "|",
    ]
    lines += [_our_line(r, tasks) for r in rows]
    lines += [_paper_line(r, tasks) for r in table["paper"] or []]
    lines += ["", "Scores in percent, each benchmark's own metric; (×): ratio to the baseline row."]
    if table["incomplete"]:
        lines += ["", "Not finished (run the same command again to resume):"]
        lines += [f"- {name}" for name in table["incomplete"]]
    return "\n".join(lines) + "\n"
