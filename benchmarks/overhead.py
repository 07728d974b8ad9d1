"""Cost of V-Reason over plain decoding: decode time per token and peak memory.

    python benchmarks/overhead.py                    # every workload, markdown table on stdout
    python benchmarks/overhead.py --workload vl1000 --repeats 7 --json out.json

Time: plain and V-Reason alternate in one process (same model, same inputs), several repeats; decode time
per token is read from per-step timestamps (a logits processor), so prefill is excluded; the figure is the
median over repeats of the per-pair ratio. Memory: each variant runs in a fresh subprocess and reports
its peak RSS above the RSS it had once the model and inputs were built (CPU has no allocator counters).
The exact extra state of V-Reason (original span values, ΔV, two AdamW moments) is reported as well.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

import torch
from common import (  # benchmarks/common.py (scripts run from benchmarks/ or the repo root)
    CHILD_ENV,
    StepClock,
    exact_tokens,
    publish,
    reset_peak,
    status_mb,
)
from transformers import LogitsProcessorList

import vreason_hooks as vreason
from vreason_hooks.apps import testing as T

NEW_TOKENS = 64
QWEN_VOCAB = 151_936

# name -> description; builders below.
WORKLOADS = {
    "smollm2": "SmolLM2-135M-Instruct (real weights), ~{n} prompt tokens as the span",
    "vl1000": "tiny Qwen2.5-VL (4 layers, hidden 128, Qwen vocab), 1,000 video tokens",
    "vl4000": "tiny Qwen2.5-VL (4 layers, hidden 128, Qwen vocab), 4,000 video tokens",
}
VARIANTS = {
    "plain": None,
    "vreason": vreason.VReasonConfig(),
    # V-Reason Lite (docs/lite.md): plain decoding on a pruned cache, and V-Reason on it.
    # Per-layer KV bytes and the decode-phase peak: benchmarks/lite_memory.py, docs/benchmarks/lite.md.
    "lite": vreason.VReasonConfig(lite=True, objective="none"),
    "vreason_lite": vreason.VReasonConfig(lite=True),
}


def build(workload: str):
    """(model, generate inputs, number of span tokens) for a workload."""
    if workload == "smollm2":
        from vreason_hooks.apps.assets import load_smollm2

        model, tokenizer = load_smollm2()
        question = (
            "Read the following notes carefully and then answer the question at the end. "
            + " ".join(
                f"Note {i}: the box {i} holds {i * 7 % 13} red and {i * 5 % 11} blue marbles."
                for i in range(12)
            )
            + " Question: how many red marbles are in box 5? Think step by step."
        )
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        inputs = dict(tokenizer(text, return_tensors="pt"))
        return model, inputs, int(inputs["input_ids"].shape[1])
    frames = {"vl1000": 20, "vl4000": 80}[workload]
    model = T.tiny_qwen2_5_vl(hidden=128, layers=4, vocab=QWEN_VOCAB, video_token_id=T.VIDEO_TOKEN)
    inputs = T.qwen_video_inputs(model, frames=frames, grid=20)
    return model, inputs, int((inputs["input_ids"] == T.VIDEO_TOKEN).sum())


def generate_kwargs(model) -> dict:
    """Exactly NEW_TOKENS greedy tokens (see :func:`common.exact_tokens`)."""
    return exact_tokens(model, NEW_TOKENS)


def decode_time(model, inputs, config) -> float:
    clock = StepClock()
    kwargs = dict(**generate_kwargs(model), logits_processor=LogitsProcessorList([clock]))
    if config is None:
        model.generate(**inputs, **kwargs)
    else:
        with vreason.attach(model, config):
            model.generate(**inputs, **kwargs)
    return clock.per_token()


def time_workload(workload: str, repeats: int) -> dict:
    model, inputs, n_span = build(workload)
    decode_time(model, inputs, None)  # warm-up: lazy inits, allocator
    times = {name: [] for name in VARIANTS}
    for _ in range(repeats):
        for name, config in VARIANTS.items():
            times[name].append(decode_time(model, inputs, config))
    ratios = {
        name: statistics.median(t / p for t, p in zip(times[name], times["plain"])) for name in VARIANTS
    }
    return {
        "workload": workload,
        "span_tokens": n_span,
        "ms_per_token": {name: 1000 * statistics.median(v) for name, v in times.items()},
        "time_ratio": ratios,
    }


def memory_child(workload: str, variant: str) -> None:
    """Run one variant once and print its memory figures as JSON (called in a fresh subprocess).

    The high-water mark is reset once the model and inputs are built, so the peak is that of ``generate``
    alone (prefill included), not of building a random model.
    """
    torch.set_num_threads(1)
    model, inputs, _ = build(workload)
    config = VARIANTS[variant]
    extra = 0
    kwargs = generate_kwargs(model)
    before = reset_peak()
    if config is None:
        model.generate(**inputs, **kwargs)
    else:
        with vreason.attach(model, config) as session:
            probe = _ExtraBytes(session)
            model.generate(**inputs, **kwargs, logits_processor=LogitsProcessorList([probe]))
            extra = probe.bytes
    peak = status_mb("VmHWM")
    print(
        json.dumps(
            {"peak_over_start_mb": peak - before, "total_peak_mb": peak, "controller_mb": extra / 2**20}
        )
    )


class _ExtraBytes:
    """Reads the controller's exact extra state once it exists (after the first update)."""

    def __init__(self, session):
        self.session, self.bytes = session, 0

    def __call__(self, input_ids, scores):
        state = self.session._state
        if state is not None and state.controller is not None:
            self.bytes = max(self.bytes, state.controller.extra_bytes())
        return scores


def memory_workload(workload: str, repeats: int = 1) -> dict:
    out = {}
    for variant in VARIANTS:
        runs = []
        for _ in range(repeats):
            proc = subprocess.run(
                [sys.executable, __file__, "--memory-child", workload, variant],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, **CHILD_ENV},
            )
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        out[variant] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    plain, plain_total = out["plain"]["peak_over_start_mb"], out["plain"]["total_peak_mb"]
    for variant in out:
        out[variant]["peak_ratio"] = out[variant]["peak_over_start_mb"] / plain if plain > 0 else float("nan")
        out[variant]["total_peak_ratio"] = out[variant]["total_peak_mb"] / plain_total
    return out


def markdown(results: list[dict]) -> str:
    """One row per workload and variant: decode ms/token, its median ratio to plain, peak memory, extra
    state."""
    lines = [
        "| workload | span tokens | variant | ms/token | time ratio to plain (median) | generate peak (MB) "
        "| its ratio | process peak (MB) | its ratio | controller state (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for variant in r["ms_per_token"]:
            mem = r["memory"][variant]
            lines.append(
                f"| {r['workload']} | {r['span_tokens']:,} | {variant} | {r['ms_per_token'][variant]:.2f} | "
                f"{r['time_ratio'][variant]:.3f} | {mem['peak_over_start_mb']:.1f} | {mem['peak_ratio']:.3f} "
                f"| {mem['total_peak_mb']:.0f} | {mem['total_peak_ratio']:.3f} | {mem['controller_mb']:.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workload", action="append", choices=sorted(WORKLOADS), help="default: all")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--memory-repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", help="write raw results here")
    parser.add_argument("--memory-child", nargs=2, metavar=("WORKLOAD", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    torch.set_num_threads(args.threads)
    results = []
    for workload in args.workload or list(WORKLOADS):
        result = time_workload(workload, args.repeats)
        result["memory"] = memory_workload(workload, args.memory_repeats)
        results.append(result)
        print(json.dumps(result), file=sys.stderr)
    publish(
        "overhead.py",
        argv,
        {"new_tokens": NEW_TOKENS, "repeats": args.repeats},
        results,
        markdown(results),
        args.json,
    )


if __name__ == "__main__":
    main()
