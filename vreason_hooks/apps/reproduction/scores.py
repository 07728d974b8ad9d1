"""A benchmark's headline score, in percent, from lmms-eval's ``<stamp>_results.json``.

Each task names its metrics its own way and reports them on its own scale (MVBench 0-100, VSI-Bench 0-1), so
the tasks of the paper are listed with their metric and scale (read from lmms-eval 0.7.3's task code). Any
other task gets its first metric whose name says accuracy or score, scaled to percent if it is at most 1
(the row says so: ``scale_guessed``). A group (``video_mmmu``, ``mvbench``) scores the mean of its tasks
weighted by their documents, which is the overall accuracy over all its questions when its tasks score plain
accuracies, as MVBench and VideoMMMU do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# task name, or a prefix ending in "_" for the tasks of a group -> (metric, factor to percent)
HEADLINE: dict[str, tuple[str, float]] = {
    "mmvu_val": ("accuracy", 1.0),
    "vsibench": ("vsibench_overall", 100.0),  # mean of the question types' accuracy / MRA, each 0-1
    "video_mmmu_": ("mmmu_acc", 100.0),
    "mvbench_": ("mvbench_accuracy", 1.0),
    "tempcompass_": ("avg_accuracy", 1.0),
    "videomme": ("videomme_perception_score", 1.0),
    "vreason_synth": ("accuracy", 100.0),
}
_HINTS = ("acc", "score", "overall")


class NoScore(ValueError):
    """lmms-eval's results hold no score for a benchmark."""


@dataclass
class Score:
    """A benchmark's score in percent over ``documents`` documents; ``parts`` for a group's tasks."""

    value: float
    documents: int
    metric: str
    scale_guessed: bool = False
    parts: dict[str, float] = field(default_factory=dict)


def _known(task: str) -> tuple[str, float] | None:
    if task in HEADLINE:
        return HEADLINE[task]
    return next((v for k, v in HEADLINE.items() if k.endswith("_") and task.startswith(k)), None)


def _metric(entry: dict[str, Any], name: str) -> float | None:
    """The value of metric ``name`` under any filter (``"accuracy,none"``), else ``None``."""
    for key, value in entry.items():
        if key.split(",")[0] == name and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    return None


def _guess(entry: dict[str, Any]) -> tuple[str, float] | None:
    names = [k.split(",")[0] for k, v in entry.items() if isinstance(v, (int, float)) and "stderr" not in k]
    name = next((n for n in names if any(h in n for h in _HINTS)), None)
    return (name, 100.0 if (_metric(entry, name) or 0.0) <= 1.0 else 1.0) if name else None


def _leaf_score(results: dict[str, Any], task: str) -> Score:
    entry = results.get("results", {}).get(task)
    if entry is None:
        raise NoScore(f"lmms-eval's results have no task {task!r}")
    known = _known(task)
    metric, factor = known or _guess(entry) or (None, 1.0)
    value = _metric(entry, metric) if metric else None
    if value is None:
        raise NoScore(f"lmms-eval's results of {task!r} have no metric {metric or 'that reads as a score'}")
    documents = int(results.get("n-samples", {}).get(task, {}).get("effective", 0))
    return Score(value * factor, documents, metric, scale_guessed=known is None)


def task_score(results: dict[str, Any], task: str) -> Score:
    """The score of ``task`` (a task or a group) in percent; :class:`NoScore` if the results have none."""
    subtasks = results.get("group_subtasks", {}).get(task) or []
    if not subtasks:
        return _leaf_score(results, task)
    parts = {sub: task_score(results, sub) for sub in subtasks}
    documents = sum(p.documents for p in parts.values())
    if documents == 0:
        raise NoScore(f"the tasks of group {task!r} evaluated no document")
    value = sum(p.value * p.documents for p in parts.values()) / documents
    metrics = sorted({p.metric for p in parts.values()})
    guessed = any(p.scale_guessed for p in parts.values())
    return Score(value, documents, "/".join(metrics), guessed, {k: p.value for k, p in parts.items()})
