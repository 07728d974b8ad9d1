"""Summary JSON, markdown tables and figures, all computed from the JSONL records (nothing typed in by hand).

The docs page keeps hand-written prose outside the ``GENERATED`` markers; everything between them is
re-rendered on every run, so the numbers on the page are always the ones in the results file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .study import choose_lr, common_records, read_records, summarise_phase

BEGIN, END = "<!-- BEGIN GENERATED: benchmarks/reasoning.py --report-only -->", "<!-- END GENERATED -->"


def entropy_curves(records: list[dict[str, Any]], phase: str = "test") -> dict[str, dict[str, list[float]]]:
    """Per variant, the mean entropy and mean EMA (β=0.98 from zero) at each generated-token position,
    over the sequences still running at that position (``count``)."""
    out: dict[str, dict[str, list[float]]] = {}
    for variant in dict.fromkeys(r["variant"] for r in records if r["phase"] == phase):
        rows = [
            r["entropy"]
            for r in records
            if r["phase"] == phase and r["variant"] == variant and "error" not in r
        ]
        if not rows:
            continue
        length = max(len(e) for e in rows)
        sums, ema_sums, counts = np.zeros(length), np.zeros(length), np.zeros(length)
        for e in rows:
            ema, running = np.empty(len(e)), 0.0
            for t, h in enumerate(e):
                running = 0.98 * running + 0.02 * h
                ema[t] = running
            sums[: len(e)] += e
            ema_sums[: len(e)] += ema
            counts[: len(e)] += 1
        out[variant] = {
            "mean_entropy": (sums / counts).round(4).tolist(),
            "mean_ema": (ema_sums / counts).round(5).tolist(),
            "count": counts.astype(int).tolist(),
        }
    return out


def build_summary(records: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "meta": meta,
        "sweep": summarise_phase(records, "sweep"),
        "test": summarise_phase(records, "test"),
    }
    try:
        summary["chosen_lr"] = choose_lr(summary["sweep"])
    except ValueError:
        lrs = {r["config"]["lr"] for r in records if r["phase"] == "test" and r["variant"] == "switch_k4"}
        summary["chosen_lr"] = lrs.pop() if len(lrs) == 1 else None
    summary["curves"] = entropy_curves(records)
    return summary


# ---------------------------------------------------------------------------------------------- markdown
def _f(x, fmt=".1f", missing="–") -> str:
    return missing if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, fmt)


def _acc(s: dict[str, Any]) -> str:
    a = s["accuracy"]
    if not s["n"]:
        return "–"
    return f"{100 * a['value']:.1f} [{100 * a['low']:.1f}, {100 * a['high']:.1f}] ({a['correct']}/{a['n']})"


def _paired(s: dict[str, Any]) -> tuple[str, str, str]:
    p = s.get("paired")
    if not p or not p["n"]:
        return "–", "–", "–"
    diff = f"{100 * p['diff']:+.1f} [{100 * p['diff_low']:+.1f}, {100 * p['diff_high']:+.1f}]"
    return diff, f"+{p['gained']} / −{p['lost']}", _f(p["p_value"], ".3g")


def variant_table(by_variant: dict[str, dict[str, Any]], task: str) -> str:
    """One markdown table: every variant on ``task`` (or ``'all'``), paired against the baseline."""
    head = (
        "| variant | n | accuracy % [95% CI] (right/n) | Δ vs baseline, points [95% CI] | gained / lost | "
        "McNemar p | changed outputs | mean tokens | at budget | s / problem | time × base | EMA peak step "
        "| EMA peaks at last token | EMA peak (nats) | final entropy | updates | errors |"
    )
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for name, by_task in by_variant.items():
        s = by_task.get(task)
        if s is None:
            continue
        diff, gl, p = _paired(s)
        err = f"{s['errors']}: {s['error_message'][:80]}" if s["errors"] else "0"
        changed = _f(100 * s["changed_outputs"], ".0f") + "%" if s.get("changed_outputs") is not None else "–"
        lines.append(
            f"| {name} | {s['n']} | {_acc(s)} | {diff} | {gl} | {p} | {changed} | {_f(s['mean_tokens'])} | "
            f"{_f(100 * s['hit_budget'], '.0f') + '%' if s['hit_budget'] is not None else '–'} | "
            f"{_f(s['seconds_per_problem'], '.2f')} | {_f(s.get('time_ratio'), '.2f')} | "
            f"{_f(s['ema_peak_step'])} | "
            f"{_f(100 * s['ema_peak_at_end'], '.0f') + '%' if s.get('ema_peak_at_end') is not None else '–'} "
            f"| {_f(s['ema_peak'], '.3f')} | {_f(s['final_entropy'], '.3f')} | {_f(s['updates'])} | {err} |"
        )
    return "\n".join(lines)


def sweep_table(sweep: dict[str, dict[str, Any]]) -> str:
    head = (
        "| setting | n | accuracy % [95% CI] | Δ vs baseline [95% CI] | gained / lost | McNemar p | changed "
        "outputs | mean tokens | updates | mean ‖ΔV‖ |"
    )
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for name, by_task in sweep.items():
        s = by_task["all"]
        diff, gl, p = _paired(s)
        changed = _f(100 * s["changed_outputs"], ".0f") + "%" if s.get("changed_outputs") is not None else "–"
        lines.append(
            f"| {name} | {s['n']} | {_acc(s)} | {diff} | {gl} | {p} | {changed} | {_f(s['mean_tokens'])} | "
            f"{_f(s['updates'])} | {_f(s.get('delta_norm'), '.3g')} |"
        )
    return "\n".join(lines)


def losses(records: list[dict[str, Any]], variant: str, limit: int = 4) -> str:
    """Problems the baseline got right and ``variant`` got wrong (test part), replies side by side."""
    test = [r for r in records if r["phase"] == "test" and "error" not in r]
    base = {r["uid"]: r for r in test if r["variant"] == "baseline"}
    lost = [
        r
        for r in test
        if r["variant"] == variant and r["uid"] in base and base[r["uid"]]["correct"] and not r["correct"]
    ]
    if not lost:
        return f"No problem of the test part was lost by `{variant}`."
    out = [
        f"`{variant}` lost {len(lost)} problem(s) the baseline solved; the first {min(limit, len(lost))}:",
        "",
    ]
    clip = lambda s: s.replace("\n", " ").replace("|", "/")[:220]
    out += ["| problem | gold | baseline reply | variant reply |", "|---|---|---|---|"]
    for r in lost[:limit]:
        out.append(f"| {r['uid']} | {r['gold']} | {clip(base[r['uid']]['reply'])} | {clip(r['reply'])} |")
    return "\n".join(out)


def headline(test: dict[str, dict[str, Any]]) -> str:
    """One sentence per variant, pooled over tasks, from the same numbers as the tables."""
    base = test.get("baseline", {}).get("all")
    if not base or not base["n"]:
        return ""
    lines = [
        f"- `baseline`: {100 * base['accuracy']['value']:.1f}% right "
        f"({base['accuracy']['correct']}/{base['n']}), {base['mean_tokens']:.1f} tokens and "
        f"{base['seconds_per_problem']:.2f} s per problem."
    ]
    for name, by_task in test.items():
        s = by_task["all"]
        if name == "baseline":
            continue
        if not s["n"]:
            lines.append(f"- `{name}`: no result ({s['errors']} errors: {s['error_message']}).")
            continue
        p = s["paired"]
        lines.append(
            f"- `{name}`: {100 * s['accuracy']['value']:.1f}% right, {100 * p['diff']:+.1f} points against "
            f"the baseline (95% CI {100 * p['diff_low']:+.1f} to {100 * p['diff_high']:+.1f}; McNemar p = "
            f"{p['p_value']:.2g}; {p['gained']} gained, {p['lost']} lost of {p['n']}); reply changed on "
            f"{100 * s['changed_outputs']:.0f}% of problems; tokens ×{s['token_ratio']:.2f}, time "
            f"×{s['time_ratio']:.2f}."
        )
    return "\n".join(lines)


IDENTITY_PAIRS = [
    ("switch_k4_paper_lr", "baseline"),
    ("switch_k4", "max_only"),
    ("switch_k4", "min_only"),
    ("switch_ema_first", "min_only"),
    ("lite", "lite_prune_only"),
]


def identical_replies(records: list[dict[str, Any]]) -> str:
    """How often two variants wrote exactly the same reply (test part): which settings are the same run."""
    test = {(r["variant"], r["uid"]): r["reply"] for r in records if r["phase"] == "test" and "reply" in r}
    lines = ["| variant | other | identical replies |", "|---|---|---|"]
    for a, b in IDENTITY_PAIRS:
        shared = [u for (v, u) in test if v == a and (b, u) in test]
        if shared:
            same = sum(test[(a, u)] == test[(b, u)] for u in shared)
            lines.append(f"| {a} | {b} | {same} / {len(shared)} |")
    return "\n".join(lines) if len(lines) > 2 else ""


def render(summary: dict[str, Any], records: list[dict[str, Any]], figures: dict[str, str]) -> str:
    runs = summary["meta"].get("runs", [])
    parts = ["## Run", ""]
    for run in runs:
        m = run["machine"]
        parts.append(
            f"- `{run['command']}` on {m['date']}: {m['platform']}, {m['cpus']} CPUs, torch {m['torch']} "
            f"({m['torch_threads']} thread(s)), transformers {m['transformers']}"
            + (f", commit `{m['git_commit'][:10]}`" if m.get("git_commit") else "")
        )
    if runs:
        a = runs[-1]["args"]
        all_tasks = {k: v for run in runs for k, v in run["tasks"].items()}
        parts.append(
            f"- model `{runs[-1]['model']}`, greedy, max {a['max_new_tokens']} new tokens, batch "
            f"{a['batch_size']}, reasoning-gym seed {a['seed']}; tasks: "
            + "; ".join(f"`{k}` ({v})" for k, v in all_tasks.items())
        )
    if summary["sweep"]:
        parts += [
            "",
            "## Learning-rate sweep (held-apart problems only)",
            "",
            f"Chosen learning rate: **{_f(summary['chosen_lr'], 'g')}** (rule: best pooled accuracy of the "
            "k=4 switch; ties to the setting that changed more outputs, then to the one nearest 3e-4).",
            "",
            sweep_table(summary["sweep"]),
        ]
        if "sweep" in figures:
            parts += ["", f"![sweep]({figures['sweep']})"]
    if summary["test"]:
        tasks = [t for t in next(iter(summary["test"].values())) if t != "all"]
        parts += [
            "",
            "## Test part: every variant at the chosen learning rate",
            "",
            "Pooled over tasks (generated from the records):",
            "",
            headline(summary["test"]),
            "",
        ]
        for task in ["all"] + tasks:
            parts += [
                f"### {'all tasks pooled' if task == 'all' else task}",
                "",
                variant_table(summary["test"], task),
                "",
            ]
        for name in ("entropy", "tokens"):
            if name in figures:
                parts += [f"![{name}]({figures[name]})", ""]
        parts += [
            "### Which variants are the same run",
            "",
            identical_replies(records),
            "",
            "### Where V-Reason loses problems",
            "",
            losses(records, "switch_k4"),
            "",
            losses(records, "lite"),
        ]
    return "\n".join(parts).rstrip() + "\n"


def splice(
    existing: str | None, generated: str, title: str = "# V-Reason on a text LLM: reasoning study"
) -> str:
    """Replace the generated block of a page, keeping the hand-written text around it."""
    block = f"{BEGIN}\n{generated}{END}"
    if existing and BEGIN in existing and END in existing:
        head, rest = existing.split(BEGIN, 1)
        return head + block + rest.split(END, 1)[1]
    return f"{title}\n\n{block}\n"


def write(out: Path, summary_path: Path, meta_path: Path, docs: Path) -> dict[str, Any]:
    """Summary JSON next to the records, figures under ``docs/../figures``, and the docs page."""
    records = read_records(out)
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    summary = build_summary(records, meta)
    summary_path.write_text(json.dumps(summary, indent=1))
    from . import figures as fig

    shown = common_records(records, "test") + [r for r in records if r["phase"] != "test"]
    figures = fig.draw_all(summary, shown, docs.parent / "figures", relative_to=docs.parent)
    docs.parent.mkdir(parents=True, exist_ok=True)
    docs.write_text(splice(docs.read_text() if docs.exists() else None, render(summary, shown, figures)))
    return summary
