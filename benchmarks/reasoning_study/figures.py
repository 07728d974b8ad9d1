"""Figures of the study (matplotlib, Agg): entropy curves per variant, per-problem output lengths, the
sweep."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

MIN_COUNT = 5  # curve points averaged over fewer sequences than this are too noisy to draw


def entropy_figure(curves: dict[str, dict[str, list[float]]], path: Path) -> None:
    """Mean next-token entropy and its EMA per position, one line per variant (cf. the paper's Fig. 2b)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharex=True)
    for name, c in curves.items():
        n = sum(1 for k in c["count"] if k >= MIN_COUNT)
        style = dict(lw=2.2, color="black") if name == "baseline" else dict(lw=1.2)
        axes[0].plot(c["mean_entropy"][:n], label=name, **style)
        axes[1].plot(c["mean_ema"][:n], label=name, **style)
    axes[0].set(title="mean entropy H_t", xlabel="generated token t", ylabel="nats")
    axes[1].set(title="mean EMA of H_t (β=0.98, from 0)", xlabel="generated token t")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def tokens_figure(records: list[dict[str, Any]], variants: list[str], path: Path) -> None:
    """Per test problem: output tokens of the baseline (x) against each variant (y), marked by whether the
    answer flipped."""
    test = [r for r in records if r["phase"] == "test" and "error" not in r]
    base = {r["uid"]: r for r in test if r["variant"] == "baseline"}
    fig, axes = plt.subplots(1, len(variants), figsize=(4 * len(variants), 4), squeeze=False)
    for ax, name in zip(axes[0], variants):
        rows = [r for r in test if r["variant"] == name and r["uid"] in base]
        groups = {
            "same": [r for r in rows if r["correct"] == base[r["uid"]]["correct"]],
            "gained": [r for r in rows if r["correct"] and not base[r["uid"]]["correct"]],
            "lost": [r for r in rows if not r["correct"] and base[r["uid"]]["correct"]],
        }
        for label, marker, colour in (
            ("same", "o", "0.6"),
            ("gained", "^", "tab:green"),
            ("lost", "v", "tab:red"),
        ):
            g = groups[label]
            ax.scatter(
                [base[r["uid"]]["num_tokens"] for r in g],
                [r["num_tokens"] for r in g],
                s=14,
                marker=marker,
                c=colour,
                label=f"{label} ({len(g)})",
                alpha=0.7,
            )
        top = max([r["num_tokens"] for r in rows] + [base[u]["num_tokens"] for u in base] + [1])
        ax.plot([0, top], [0, top], lw=0.8, color="black")
        ax.set(title=name, xlabel="baseline output tokens", ylabel=f"{name} output tokens")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def sweep_figure(sweep: dict[str, dict[str, Any]], path: Path) -> None:
    """Held-apart accuracy and the share of outputs changed against lr, one line per k."""
    points: dict[int, list[tuple[float, float, float]]] = {}
    for name, by_task in sweep.items():
        if name == "baseline":
            continue
        head, lr = name.rsplit("_lr", 1)
        s = by_task["all"]
        if s["n"]:
            points.setdefault(int(head.rsplit("_k", 1)[1]), []).append(
                (float(lr), 100 * s["accuracy"]["value"], 100 * (s.get("changed_outputs") or 0.0))
            )
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    base = sweep.get("baseline", {}).get("all")
    for k, pts in sorted(points.items()):
        pts.sort()
        axes[0].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"switch k={k}")
        axes[1].plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=f"switch k={k}")
    if base and base["n"]:
        axes[0].axhline(100 * base["accuracy"]["value"], color="black", lw=1, ls="--", label="baseline")
    for ax in axes:
        ax.set_xscale("log")
        ax.axvspan(5e-5, 5e-4, color="0.9", zorder=0)  # the paper's grid-search range
        ax.set_xlabel("learning rate (grey: paper's range)")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("accuracy % (held-apart)")
    axes[1].set_ylabel("outputs changed vs baseline %")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def draw_all(
    summary: dict[str, Any], records: list[dict[str, Any]], folder: Path, relative_to: Path
) -> dict[str, str]:
    """Draw what the data allow; returns ``{figure: path relative to the docs page}``."""
    folder.mkdir(parents=True, exist_ok=True)
    made: dict[str, str] = {}
    if summary.get("curves"):
        entropy_figure(summary["curves"], folder / "reasoning_entropy.png")
        made["entropy"] = "reasoning_entropy.png"
    test_variants = [v for v in summary.get("test", {}) if v != "baseline"]
    shown = [v for v in ("switch_k4", "min_only", "max_only") if v in test_variants] or test_variants[:3]
    if "baseline" in summary.get("test", {}) and shown:
        tokens_figure(records, shown, folder / "reasoning_tokens.png")
        made["tokens"] = "reasoning_tokens.png"
    if len(summary.get("sweep", {})) > 1:
        sweep_figure(summary["sweep"], folder / "reasoning_sweep.png")
        made["sweep"] = "reasoning_sweep.png"
    return {k: os.path.relpath(folder / v, relative_to) for k, v in made.items()}
