"""The figures people compare with the paper's: entropy / EMA / α traces of a few documents (every variant
on the same document, overlaid) and the distribution of output lengths per variant.

matplotlib is imported with the headless ``Agg`` backend (through :mod:`vreason_hooks.apps.plotting`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...trace import Trace
from ..plotting import plot_traces
from .jobs import JobOutputs
from .table import VARIANT_TITLES

_COLOURS = {"baseline": "#4C72B0", "vreason": "#DD8452", "lite": "#55A868"}


def _traced(outputs: JobOutputs) -> dict[tuple[str, int], dict[str, Any]]:
    return {(r["task"], r["doc_id"]): r["trace"] for r in outputs.records if r.get("trace")}


def trace_figures(outputs: dict[str, dict[str, JobOutputs]], folder: Path, per_task: int) -> list[Path]:
    """Per benchmark, the first ``per_task`` documents traced in every variant: one PNG each.

    ``outputs``: task -> variant -> the job's outputs."""
    paths = []
    for task, by_variant in outputs.items():
        traced = {variant: _traced(o) for variant, o in by_variant.items()}
        common = sorted(set.intersection(*(set(t) for t in traced.values()))) if traced else []
        for sub, doc_id in common[:per_task]:
            traces = [Trace.from_dict(traced[v][(sub, doc_id)]) for v in traced]
            name = f"{task}_{doc_id}" if sub == task else f"{task}_{sub}_{doc_id}"
            path = folder / f"traces_{name}.png"
            plot_traces(
                traces,
                path,
                labels=[VARIANT_TITLES[v] for v in traced],
                title=f"{sub}, document {doc_id}: entropy, EMA and α per variant",
            )
            paths.append(path)
    return paths


def length_figure(lengths: dict[str, list[int]], path: Path, title: str) -> Path:
    """Output tokens per document, one box per variant (``lengths``: variant -> tokens per document), every
    document a dot and the mean a diamond: identical distributions stay visible side by side."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    shown = {v: values for v, values in lengths.items() if values}
    fig, ax = plt.subplots(figsize=(1.6 + 1.7 * max(len(shown), 1), 3.6))
    for x, (variant, values) in enumerate(shown.items(), 1):
        colour = _COLOURS.get(variant, "grey")
        ax.boxplot([values], positions=[x], widths=0.5, showfliers=False, medianprops={"color": colour})
        spread = [x + 0.18 * ((i * 0.618) % 1 - 0.5) for i in range(len(values))]  # deterministic jitter
        ax.plot(spread, values, "o", ms=3, alpha=0.45, color=colour)
        mean = sum(values) / len(values)
        ax.plot([x], [mean], "D", ms=7, color=colour, markeredgecolor="black")
        ax.annotate(
            f"mean {mean:.0f}\n{len(values)} docs",
            (x, mean),
            xytext=(14, 0),
            textcoords="offset points",
            fontsize=8,
            va="center",
        )
    ax.set_xticks(range(1, len(shown) + 1), [VARIANT_TITLES[v] for v in shown], fontsize=8)
    ax.set_ylabel("output tokens per document")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=10, loc="left")
    ax.grid(axis="y", alpha=0.25)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def all_figures(outputs: dict[str, dict[str, JobOutputs]], folder: Path, per_task: int) -> list[Path]:
    """Trace figures, and the output-length distribution over all benchmarks and per benchmark."""
    paths = trace_figures(outputs, folder, per_task)
    pooled: dict[str, list[int]] = {}
    for task, by_variant in outputs.items():
        lengths = {
            v: [r["output_tokens"] for r in o.records if not r["failed"]] for v, o in by_variant.items()
        }
        for variant, values in lengths.items():
            pooled.setdefault(variant, []).extend(values)
        paths.append(length_figure(lengths, folder / f"output_lengths_{task}.png", f"{task}: output length"))
    if outputs:
        paths.append(length_figure(pooled, folder / "output_lengths.png", "all benchmarks: output length"))
    return paths
