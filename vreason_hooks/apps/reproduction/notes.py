"""The notes at the top of ``table.md``: what the numbers below are worth, before anyone quotes them."""

from __future__ import annotations

from typing import Any

from .plan import THINK_PROMPT, Settings

SYNTHETIC_TASKS = ("vreason_synth",)


def _checkpoint_notes(checkpoint: dict[str, Any]) -> list[str]:
    if checkpoint["tiny"]:
        return [
            f"**These numbers are meaningless**: {checkpoint['name']} is a tiny checkpoint (hidden size "
            f"{checkpoint['hidden_size']}, {checkpoint['layers']} layers), random weights unless you trained "
            "it. This run tests the plumbing (commands, files, table, figures), not V-Reason."
        ]
    if checkpoint["paper"]:
        note = (
            "Checkpoint with the shapes of Qwen2.5-VL-7B: the paper's published numbers are listed below ours"
        )
        if "qwen2.5-vl-7b-instruct" not in checkpoint["pretrained"].lower():
            note += f" (they are for Qwen/Qwen2.5-VL-7B-Instruct; this is {checkpoint['name']})"
        return [note + "."]
    return ["No published numbers for this checkpoint: the paper reports Qwen2.5-VL-7B-Instruct."]


def _settings_note(settings: Settings) -> str:
    config = settings.config
    prompt = (
        "the think/answer prompt"
        if settings.reasoning_prompt == THINK_PROMPT
        else ("a custom reasoning prompt" if settings.reasoning_prompt else "the tasks' own prompts")
    )
    return (
        f"Settings: up to {settings.frames} frames of at most {settings.max_pixels} pixels, greedy decoding "
        f"up to {settings.max_new_tokens} new tokens, {prompt} for every variant; V-Reason lr {config.lr:g}, "
        f"k {config.step_interval}, β {config.ema_beta:g}; Lite drops {config.prune_ratio:g} of the video "
        f"tokens ({config.prune_at}, {config.prune_score} norms, {config.prune_scope})."
    )


def notes(table: dict[str, Any], settings: Settings) -> list[str]:
    """Warnings first (meaningless model, synthetic task, ``--limit``, failures), then the settings."""
    found = _checkpoint_notes(table["checkpoint"])
    synthetic = [t for t in table["tasks"] if t in SYNTHETIC_TASKS]
    if synthetic:
        found.append(
            f"{', '.join(synthetic)}: the plugin's synthetic plumbing task; its accuracy says nothing."
        )
    if settings.limit is not None:
        found.append(
            f"--limit {settings.limit}: only the first {settings.limit} documents of each task; not "
            "comparable with the paper's numbers."
        )
    if any(r["memory_kind"] == "rss_peak" for r in table["rows"]):
        found.append(
            "Memory: a CPU run, so the process's RSS peak (model, libraries, Python), not GPU memory."
        )
    failed = sum((c or {}).get("failed", 0) for r in table["rows"] for c in r["tasks"].values())
    if failed:
        found.append(
            f"{failed} document(s) failed (unreadable video...) and score as wrong; see runs/*/*/log.txt."
        )
    if any((c or {}).get("scale_guessed") for r in table["rows"] for c in r["tasks"].values()):
        found.append(
            "Some tasks are not in the known list: their metric and scale were guessed (table.json)."
        )
    return found + [_settings_note(settings)]
