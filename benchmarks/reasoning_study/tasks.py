"""Reasoning problems from reasoning-gym (procedural, offline, each dataset has its own scorer).

Difficulty settings follow what SmolLM2-135M-Instruct can do at all (see docs/benchmarks/reasoning-study.md):
on reasoning-gym's default configurations it is right on almost nothing, on these it lands in a useful range.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TaskSpec:
    """A reasoning-gym dataset and the keyword arguments that set its difficulty."""

    name: str
    dataset: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    description: str = ""


TASKS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in (
        TaskSpec(
            "add_sub_2x2",
            "basic_arithmetic",
            dict(min_terms=2, max_terms=2, min_digits=1, max_digits=2, operators=("+", "-")),
            "basic_arithmetic: 2 terms of 1-2 digits, + and - only",
        ),
        TaskSpec(
            "products_2x2",
            "products",
            dict(min_terms=2, max_terms=2, min_digits=1, max_digits=2),
            "products: 2 factors of 1-2 digits",
        ),
    )
}


@dataclass
class Problem:
    """One problem: ``uid`` is stable across runs (task, seed, index)."""

    uid: str
    task: str
    index: int
    question: str
    answer: str
    entry: dict[str, Any]


class ProblemSet:
    """``n`` problems of one task drawn with a fixed seed, scored by the dataset's own scorer."""

    def __init__(self, spec: TaskSpec, n: int, seed: int):
        import reasoning_gym

        self.spec, self.seed = spec, seed
        self.dataset = reasoning_gym.create_dataset(spec.dataset, size=n, seed=seed, **spec.kwargs)
        self.problems = [
            Problem(f"{spec.name}/{seed}/{i}", spec.name, i, e["question"], str(e["answer"]), e)
            for i, e in enumerate(self.dataset)
        ]

    def score(self, problem: Problem, answer: str | None) -> bool:
        """Whether ``answer`` is right according to reasoning-gym (full credit only)."""
        if answer is None:
            return False
        return float(self.dataset.score_answer(answer, problem.entry)) >= 1.0


def split(problems: list[Problem], dev_n: int) -> tuple[list[Problem], list[Problem]]:
    """The first ``dev_n`` problems tune the learning rate; the rest are the test part, never used to
    choose."""
    return problems[:dev_n], problems[dev_n:]
