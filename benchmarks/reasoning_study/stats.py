"""Accuracy with a confidence interval and paired tests against the baseline (scipy, not hand-rolled)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats


@dataclass
class Accuracy:
    correct: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.correct / self.n if self.n else math.nan


def accuracy_ci(correct: int, n: int, confidence: float = 0.95) -> Accuracy:
    """Wilson score interval (well-behaved near 0 and 1, where a normal interval is not)."""
    if n == 0:
        return Accuracy(0, 0, math.nan, math.nan)
    ci = stats.binomtest(correct, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Accuracy(correct, n, float(ci.low), float(ci.high))


@dataclass
class Paired:
    """McNemar's exact test on the problems both runs answered: ``gained`` = wrong→right, ``lost`` =
    right→wrong."""

    n: int
    gained: int
    lost: int
    p_value: float
    diff: float
    diff_low: float
    diff_high: float


def mcnemar_exact(
    base: list[bool], other: list[bool], confidence: float = 0.95, resamples: int = 10000, seed: int = 0
) -> Paired:
    """Exact McNemar test (two-sided binomial test on the discordant pairs) plus a paired bootstrap CI of
    the accuracy difference ``other - base``."""
    if len(base) != len(other):
        raise ValueError("paired samples must have the same length")
    a, b = np.asarray(base, bool), np.asarray(other, bool)
    gained, lost = int(np.sum(~a & b)), int(np.sum(a & ~b))
    discordant = gained + lost
    p = 1.0 if discordant == 0 else float(stats.binomtest(gained, discordant, 0.5).pvalue)
    diff = float(b.mean() - a.mean()) if len(a) else math.nan
    low = high = diff
    if len(a) and discordant:
        res = stats.bootstrap(
            (b.astype(float) - a.astype(float),),
            np.mean,
            confidence_level=confidence,
            n_resamples=resamples,
            method="percentile",
            random_state=np.random.default_rng(seed),
        )
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return Paired(len(a), gained, lost, p, diff, low, high)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def summarise(records: list[dict[str, Any]], baseline: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Summary of one variant on one set of problems; paired against ``baseline`` on the shared uids.

    Records with an ``error`` are counted in ``errors`` and left out of every other figure.
    """
    ok = [r for r in records if "error" not in r]
    errors = [r for r in records if "error" in r]
    acc = accuracy_ci(sum(r["correct"] for r in ok), len(ok))
    summary: dict[str, Any] = {
        "n": len(ok),
        "errors": len(errors),
        "error_message": errors[0]["error"] if errors else None,
        "accuracy": asdict(acc) | {"value": acc.value},
        "mean_tokens": _mean(r["num_tokens"] for r in ok),
        "hit_budget": _mean(float(r["hit_budget"]) for r in ok),
        "seconds_per_problem": _mean(r["seconds"] for r in ok),
        "ema_peak_step": _mean(r["ema_peak_step"] for r in ok),
        "ema_peak": _mean(r["ema_peak"] for r in ok),
        # With β = 0.98 from zero the EMA needs ~50 tokens to settle: on short replies it is often still
        # rising at the last token, i.e. the switch never passed its peak and never exploited.
        "ema_peak_at_end": _mean(float(r["ema_peak_step"] == r["num_tokens"] - 1) for r in ok),
        "final_entropy": _mean(r["final_entropy"] for r in ok),
        "mean_entropy": _mean(_mean(r["entropy"]) for r in ok),
        "updates": _mean(r["updates"] for r in ok),
        "delta_norm": _mean(r["delta_norm"] for r in ok),
        "extraction": {
            m: sum(r["extraction"] == m for r in ok) for m in ("tag", "equals", "last_number", "none")
        },
    }
    if baseline is not None:
        base = {r["uid"]: r for r in baseline if "error" not in r}
        shared = [r for r in ok if r["uid"] in base]
        paired = mcnemar_exact([base[r["uid"]]["correct"] for r in shared], [r["correct"] for r in shared])
        summary["paired"] = asdict(paired)
        summary["changed_outputs"] = _mean(float(r["reply"] != base[r["uid"]]["reply"]) for r in shared)
        summary["token_ratio"] = sum(r["num_tokens"] for r in shared) / max(
            1, sum(base[r["uid"]]["num_tokens"] for r in shared)
        )
        summary["time_ratio"] = sum(r["seconds"] for r in shared) / max(
            1e-9, sum(base[r["uid"]]["seconds"] for r in shared)
        )
    return summary
