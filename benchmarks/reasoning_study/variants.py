"""The configurations the study compares: the baseline and the paper's ablations.

The baseline runs with a session attached and ``objective='none'``: the hooks record entropy exactly as for
the other variants, ΔV is never updated, and the output is the plain ``generate`` output (asserted in
tests/apps/test_reasoning_study.py). Every V-Reason variant uses the same learning rate (the one chosen on the
held-apart problems), so the ablations differ from ``switch_k4`` in one setting only.
"""

from __future__ import annotations

from dataclasses import dataclass

from vreason_hooks import VReasonConfig

PAPER_LR = 3e-4


@dataclass(frozen=True)
class Variant:
    """A named configuration; ``changes`` says in one phrase how it differs from ``switch_k4``."""

    name: str
    config: VReasonConfig
    changes: str

    @property
    def is_baseline(self) -> bool:
        return not self.config.updates


def baseline() -> Variant:
    return Variant("baseline", VReasonConfig(objective="none"), "no V-Reason (hooks record entropy only)")


def study_variants(lr: float, include_paper_lr: bool = True) -> list[Variant]:
    """Baseline, switch (k=4), min-only, max-only, k=2, k=8, EMA seeded by the first token, Lite.

    With ``include_paper_lr`` and ``lr`` different from the paper's 3e-4, the switch at 3e-4 is added too, so
    the test part shows both the paper's default and the tuned setting.
    """

    def cfg(**overrides) -> VReasonConfig:
        return VReasonConfig(**{"lr": lr, **overrides})

    variants = [
        baseline(),
        Variant("switch_k4", cfg(), "V-Reason, entropy switch, k=4"),
        Variant("min_only", cfg(objective="min"), "entropy minimisation only (α ≡ -1)"),
        Variant("max_only", cfg(objective="max"), "entropy maximisation only (α ≡ +1)"),
        Variant("switch_k2", cfg(step_interval=2), "k=2"),
        Variant("switch_k8", cfg(step_interval=8), "k=8"),
        Variant("switch_ema_first", cfg(ema_init="first"), "EMA seeded with H_0 instead of 0"),
        Variant("lite", cfg(lite=True), "Lite: half of the span (the prompt) pruned after prefill"),
    ]
    if include_paper_lr and lr != PAPER_LR:
        variants.insert(
            2, Variant("switch_k4_paper_lr", VReasonConfig(lr=PAPER_LR), "k=4 at the paper's lr 3e-4")
        )
    return variants


def diagnostic_variants(lr: float) -> list[Variant]:
    """Extra variants run on request (``--only``) to explain a result, e.g. Lite's pruning without ΔV."""
    return [
        Variant(
            "lite_prune_only",
            VReasonConfig(lr=lr, lite=True, objective="none"),
            "Lite's pruning alone: ΔV never updated",
        )
    ]


def sweep_variants(grid: list[tuple[float, int]]) -> list[Variant]:
    """Baseline plus the switch at every ``(lr, k)`` point of the grid, named ``switch_k{k}_lr{lr:g}``."""
    return [baseline()] + [
        Variant(f"switch_k{k}_lr{lr:g}", VReasonConfig(lr=lr, step_interval=k), f"switch, k={k}, lr={lr:g}")
        for lr, k in grid
    ]
