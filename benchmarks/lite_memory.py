"""V-Reason Lite: KV-cache bytes, peak memory and decode time per token, against plain decoding and V-Reason.

    python benchmarks/lite_memory.py                          # every workload, markdown on stdout
    python benchmarks/lite_memory.py --workload vl1000 --repeats 5 --json out.json

Variants: ``plain`` (no session), ``vreason`` (the paper's defaults), ``lite`` (``lite=True,
objective='none'``: plain decoding on a pruned cache) and ``vreason_lite`` (``lite=True``).

* KV bytes: read from the cache tensors right after prefill (after pruning) and at the end of decoding,
  per layer; the span's share is checked to shrink by exactly ``floor(r*n)/n`` in every layer.
* Time: every variant in one process, interleaved (order reversed every other repeat),
  ``torch.set_num_threads(1)``; decode time per token from per-step stamps of this process's CPU time
  (prefill excluded; wall time is reported too); median over repeats of the ratio to ``plain``.
* Memory: each variant runs in a fresh subprocess with ``MALLOC_MMAP_THRESHOLD_`` fixed at 64 KiB, so
  every tensor above that size is its own mmap and freeing it returns the pages (RSS follows live
  tensors). Reported above the RSS once model and inputs exist: the whole-run peak (``VmHWM``), and the
  decode-phase peak (``VmHWM`` reset through ``/proc/self/clear_refs`` once prefill and pruning are done).

Prefill-time pruning (``prune_at='prefill'``), three variants ``plain`` / ``lite`` (post-prefill) /
``lite_prefill``, all with ``objective='none'`` (the cache is what is measured):

    python benchmarks/lite_memory.py --high-water vl1000 --high-water vl16000 --json out.json
    python benchmarks/lite_memory.py --process-peak cachebig --memory-repeats 3
    python benchmarks/lite_memory.py --answers 16

* ``--high-water``: the KV-cache high-water mark over the whole ``generate``, measured on the cache's
  tensors: the cache's ``update`` is wrapped (on the instance ``generate`` created) and, after every write of
  every layer at prefill and at each decode step, the bytes of every layer's stored keys + values are
  summed. The stored cache only grows at a write, so the maximum over those moments is its high-water
  mark. Also CPU ms per decode token (interleaved repeats, as above).
* ``--process-peak``: the whole-run ``VmHWM`` above the start RSS (fresh subprocess per run, as above).
* ``--answers``: the synthetic lmms-eval task driven in-process (``build_requests``), answers of
  post-prefill vs prefill Lite (and plain) on the same requests.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time

import torch
from common import CHILD_ENV, publish, reset_peak, status_mb  # benchmarks/common.py
from transformers import LogitsProcessorList

import vreason_hooks as vreason
from vreason_hooks import transformers_seam
from vreason_hooks.apps import testing as T
from vreason_hooks.lite import pruned_count

NEW_TOKENS = 64
QWEN_VOCAB = 151_936
RATIO = 0.5
VARIANTS = {
    "plain": None,
    "vreason": vreason.VReasonConfig(),
    "lite": vreason.VReasonConfig(lite=True, prune_ratio=RATIO, objective="none"),
    "vreason_lite": vreason.VReasonConfig(lite=True, prune_ratio=RATIO),
}
# Hooks and traces on, nothing pruned, nothing updated: isolates what pruning itself saves from what the
# session costs (an entropy over the vocabulary per token). Not in the default table: --extra hooks_only.
EXTRA = {"hooks_only": vreason.VReasonConfig(objective="none")}
WORKLOADS = ("vl1000", "vl4000", "smollm2")
# Prefill-time pruning: the cache is what is compared, so no controller in any variant.
HW_VARIANTS = {
    "plain": None,
    "lite": vreason.VReasonConfig(lite=True, prune_ratio=RATIO, objective="none"),
    "lite_prefill": vreason.VReasonConfig(
        lite=True, prune_ratio=RATIO, objective="none", prune_at="prefill", prune_scope="per_layer"
    ),
}
HW_WORKLOADS = ("vl1000", "vl4000", "vl16000", "smollm2_4k", "cachebig")
VL_FRAMES = {"vl1000": 20, "vl4000": 80, "vl16000": 320}  # 20x20 patches per frame, 2 frames -> 100 tokens


def build(workload: str):
    """(model, generate inputs, description) of a workload; batch 1."""
    if workload.startswith("smollm2"):
        from vreason_hooks.apps.assets import load_smollm2

        model, tokenizer = load_smollm2()
        count = 170 if workload == "smollm2_4k" else 60  # 170 notes: a ~4,000-token prompt
        notes = " ".join(
            f"Note {i}: box {i} holds {i * 7 % 13} red, {i * 5 % 11} blue and {i * 3 % 7} green marbles."
            for i in range(count)
        )
        question = (
            f"Read the notes, then answer. {notes} Question: how many red marbles are in box 5? Think step "
            "by step."
        )
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
        )
        return (
            model,
            dict(tokenizer(text, return_tensors="pt")),
            "SmolLM2-135M-Instruct (30 layers), prompt = span",
        )
    if workload == "cachebig":  # the cache dominates: 16 layers x 8 KV heads, 256-word vocabulary, sdpa
        model = T.tiny_qwen2_5_vl(hidden=256, layers=16, heads=8, kv_heads=8, vocab=T.VOCAB)
        return (
            model,
            T.qwen_video_inputs(model, frames=80, grid=20),
            "tiny Qwen2.5-VL (16 layers, hidden 256, 8 KV heads x 32, vocab 256), 4,000 video tokens",
        )
    frames = VL_FRAMES[workload]
    model = T.tiny_qwen2_5_vl(hidden=128, layers=4, vocab=QWEN_VOCAB, video_token_id=T.VIDEO_TOKEN)
    return (
        model,
        T.qwen_video_inputs(model, frames=frames, grid=20),
        "tiny Qwen2.5-VL (4 layers, hidden 128, Qwen vocab)",
    )


class _Clock:
    """Logits processor: CPU-time and wall-clock stamps per generated token; optional callback after prefill.

    CPU time of this process is the primary figure: with one torch thread every op runs on the calling
    thread, and on a shared machine wall time mostly measures the wait for a core.
    """

    def __init__(self, after_prefill=None):
        self.cpu, self.wall, self.after_prefill = [], [], after_prefill

    def __call__(self, input_ids, scores):
        self.cpu.append(time.process_time())
        self.wall.append(time.perf_counter())
        if len(self.cpu) == 1 and self.after_prefill is not None:
            self.after_prefill()
        return scores

    def per_token(self, wall: bool = False) -> float:
        stamps = self.wall if wall else self.cpu
        return (stamps[-1] - stamps[0]) / (len(stamps) - 1)


def _run(model, inputs, config, clock, on_cache=None):
    """One greedy generation of NEW_TOKENS under ``config`` (None: no session); returns the session."""
    kwargs = dict(
        max_new_tokens=NEW_TOKENS,
        min_new_tokens=NEW_TOKENS,
        do_sample=False,
        logits_processor=LogitsProcessorList([clock]),
    )
    with contextlib.ExitStack() as stack:
        session = stack.enter_context(vreason.attach(model, config)) if config is not None else None
        if on_cache is not None:  # registered after attach: runs after the session has pruned the cache
            handle = model.register_forward_hook(
                lambda m, a, k, o: on_cache(transformers_seam.forward_cache(k)), with_kwargs=True
            )
            stack.callback(handle.remove)
        model.generate(**kwargs, **inputs)
    return session


def _stored_bytes(cache) -> int:
    """Bytes of every layer's stored keys + values right now (layers not written yet count 0)."""
    total = 0
    for index in range(len(transformers_seam.cache_layers(cache))):
        keys, values = transformers_seam.layer_tensors(cache, index)
        total += sum(t.nbytes for t in (keys, values) if t is not None)
    return total


class _CacheMeter:
    """Top-model forward pre-hook: wraps the ``update`` of the cache ``generate`` made, and keeps the maximum
    of :func:`_stored_bytes` after every write (every layer, prefill and decode)."""

    def __init__(self):
        self.high, self.cache = 0, None

    def __call__(self, module, args, kwargs):
        cache = transformers_seam.forward_cache(kwargs)
        if cache is None or cache is self.cache:
            return
        self.cache, original = cache, cache.update

        def update(*a, **k):
            out = original(*a, **k)
            self.high = max(self.high, _stored_bytes(cache))
            return out

        cache.update = update  # this instance only; it dies with the generate call


def high_water_run(model, inputs, config) -> dict:
    """One generate: the cache's high-water mark, its bytes after prefill (pruned) and at the end, CPU
    ms/token."""
    meter, seen = _CacheMeter(), {}
    clock = _Clock(after_prefill=lambda: seen.setdefault("after_prefill", _stored_bytes(meter.cache)))
    handle = model.register_forward_pre_hook(meter, with_kwargs=True)
    try:
        session = _run(model, inputs, config, clock)
    finally:
        handle.remove()
    out = {
        "high_water": meter.high,
        "after_prefill": seen["after_prefill"],
        "final": _stored_bytes(meter.cache),
        "layers": len(transformers_seam.cache_layers(meter.cache)),
        "cpu_ms": 1000 * clock.per_token(),
        "wall_ms": 1000 * clock.per_token(wall=True),
    }
    if session is not None:
        out["span"], out["pruned"] = len(session.traces[0].span), len(session.traces[0].pruned)
    return out


def high_water(workload: str, repeats: int) -> dict:
    """All HW_VARIANTS on one workload, interleaved ``repeats`` times (bytes are deterministic; times:
    median)."""
    torch.set_num_threads(1)
    model, inputs, description = build(workload)
    runs = {name: [] for name in HW_VARIANTS}
    for repeat in range(repeats):
        order = list(HW_VARIANTS.items())
        for name, config in order if repeat % 2 == 0 else order[::-1]:
            runs[name].append(high_water_run(model, inputs, config))
    for name, rows in runs.items():  # the cache bytes are the same in every repeat
        assert len({(r["high_water"], r["after_prefill"], r["final"]) for r in rows}) == 1, (name, rows)
    first = {name: rows[0] for name, rows in runs.items()}
    plain, layers = first["plain"]["high_water"], first["plain"]["layers"]
    bound = (1 - RATIO) * plain + plain / layers  # (1 - r) x the full cache + one full layer
    return {
        "workload": workload,
        "description": description,
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "span_tokens": first["lite"]["span"],
        "pruned_tokens": first["lite"]["pruned"],
        "layers": layers,
        "high_water_mb": {k: v["high_water"] / 2**20 for k, v in first.items()},
        "after_prefill_mb": {k: v["after_prefill"] / 2**20 for k, v in first.items()},
        "final_mb": {k: v["final"] / 2**20 for k, v in first.items()},
        "bound_mb": bound / 2**20,
        "meets_bound": first["lite_prefill"]["high_water"] <= bound,
        "cpu_ms_per_token": {k: statistics.median(r["cpu_ms"] for r in v) for k, v in runs.items()},
        "cpu_ratio_vs_plain": {
            k: statistics.median(r["cpu_ms"] / p["cpu_ms"] for r, p in zip(v, runs["plain"]))
            for k, v in runs.items()
        },
        "wall_ms_per_token": {k: statistics.median(r["wall_ms"] for r in v) for k, v in runs.items()},
    }


def high_water_markdown(results: list[dict]) -> str:
    head = (
        "| workload | span (pruned) | layers | variant | KV high-water MB | KV after prefill MB | KV at end "
        "MB | bound MB | CPU ms/token | vs plain |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        for v in HW_VARIANTS:
            bound = (
                f"{r['bound_mb']:.2f} ({'met' if r['meets_bound'] else 'MISSED'})"
                if v == "lite_prefill"
                else ""
            )
            lines.append(
                f"| {r['workload']} | {r['span_tokens']:,} ({r['pruned_tokens']:,}) | {r['layers']} | {v} | "
                f"{r['high_water_mb'][v]:.2f} | {r['after_prefill_mb'][v]:.2f} | {r['final_mb'][v]:.2f} | "
                f"{bound} | {r['cpu_ms_per_token'][v]:.2f} | {r['cpu_ratio_vs_plain'][v]:.3f} |"
            )
    return "\n".join(lines)


def process_peak(workload: str, repeats: int) -> dict:
    """Whole-run process peak of each HW variant (fresh subprocess each), plus the cache's own high-water."""
    torch.set_num_threads(1)
    model, inputs, description = build(workload)
    cache = {
        name: high_water_run(model, inputs, config)["high_water"] / 2**20
        for name, config in HW_VARIANTS.items()
    }
    del model
    memory = memory_workload(workload, repeats, HW_VARIANTS)
    return {
        "workload": workload,
        "description": description,
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "kv_high_water_mb": cache,
        "memory": memory,
    }


def process_peak_markdown(results: list[dict]) -> str:
    head = "| workload | variant | KV high-water MB | whole-run peak MB | vs plain | decode-phase peak MB |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        base = r["memory"]["plain"]["peak_mb"]
        for v in HW_VARIANTS:
            m = r["memory"][v]
            lines.append(
                f"| {r['workload']} | {v} | {r['kv_high_water_mb'][v]:.1f} | {m['peak_mb']:.1f} | "
                f"{m['peak_mb'] / base:.3f} | {m['decode_peak_mb']:.1f} |"
            )
    return "\n".join(lines)


def answers(docs: int, new_tokens: int) -> dict:
    """Answers of plain / post-prefill Lite / prefill Lite on the synthetic lmms-eval task, in-process."""
    import tempfile
    from pathlib import Path

    from vreason_lmms_eval.models import VReasonQwen2_5_VL
    from vreason_lmms_eval.synthetic_task import build_requests, make_task, process_results

    from vreason_hooks.apps.tiny_checkpoints import write_tiny_qwen2_5_vl

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="vreason-lite-answers-"))
    ckpt = write_tiny_qwen2_5_vl(root / "tiny-qwen", hidden=128, layers=4)
    task_dir = make_task(root / "task", n=docs, frames=16, size=112)
    video = {
        "max_pixels": 12544,
        "min_pixels": 3136,
        "max_num_frames": 16,
    }  # 16 frames of 112x112: 128 tokens
    settings = {
        "plain": {"objective": "none"},
        "lite": {"objective": "none", "lite": True},
        "lite_prefill": {
            "objective": "none",
            "lite": True,
            "prune_at": "prefill",
            "prune_scope": "per_layer",
        },
    }
    task, requests = build_requests(task_dir, docs)
    for request in requests:
        request.arguments[2].update(max_new_tokens=new_tokens)
    outputs, scores, pruned = {}, {}, {}
    for name, extra in settings.items():
        lm = VReasonQwen2_5_VL(
            pretrained=str(ckpt), prompt_model="own", trace_dir=str(root / f"t-{name}"), **video, **extra
        )
        lm.task_dict["vreason_synth"] = task.dataset
        outputs[name] = [
            getattr(o, "text", o) for o in (lm.generate_until([r])[0] for r in requests)
        ]  # str or GenerationResult
        scores[name] = statistics.mean(
            process_results(task.eval_docs[r.doc_id], [o])["accuracy"]
            for r, o in zip(requests, outputs[name])
        )
        records = lm._vreason_records.gather()
        assert all(not r["failed"] for r in records), records
        pruned[name] = [(len(r["trace"]["span"]), len(r["trace"]["pruned"])) for r in records]
        del lm
    pairs = {
        "lite_prefill vs lite": ("lite_prefill", "lite"),
        "lite vs plain": ("lite", "plain"),
        "lite_prefill vs plain": ("lite_prefill", "plain"),
    }

    def prefix_words(x: str, y: str) -> int:  # words the two answers share before they first differ
        n = 0
        for a, b in zip(x.split(), y.split()):
            if a != b:
                break
            n += 1
        return n

    return {
        "docs": docs,
        "new_tokens": new_tokens,
        "outputs": outputs,
        "accuracy": scores,
        "span_pruned": pruned,
        "identical": {k: sum(x == y for x, y in zip(outputs[a], outputs[b])) for k, (a, b) in pairs.items()},
        "median_common_prefix_words": {
            k: statistics.median(prefix_words(x, y) for x, y in zip(outputs[a], outputs[b]))
            for k, (a, b) in pairs.items()
        },
        "median_answer_words": statistics.median(len(o.split()) for o in outputs["plain"]),
    }


def kv_bytes(model, inputs, config) -> dict:
    """Per-layer KV bytes after prefill (pruned) and in total at the end, plus the span accounting."""
    seen = []
    session = _run(
        model,
        inputs,
        config,
        _Clock(),
        on_cache=lambda cache: seen.append(
            [
                (keys.shape[2], keys.nbytes + values.nbytes)
                for keys, values in (
                    transformers_seam.layer_tensors(cache, i)
                    for i in range(len(transformers_seam.cache_layers(cache)))
                )
            ]
        ),
    )
    prefill, final = seen[0], seen[-1]
    out = {
        "prefill_layer_bytes": [b for _, b in prefill],
        "prefill_slots": [s for s, _ in prefill],
        "final_kv_bytes": sum(b for _, b in final),
    }
    if session is not None:
        out["span"] = len(session.traces[0].span)
        out["pruned"] = len(session.traces[0].pruned)
    return out


def time_workload(model, inputs, repeats: int) -> dict:
    _run(model, inputs, None, _Clock())  # warm-up
    times = {name: [] for name in VARIANTS}
    walls = {name: [] for name in VARIANTS}
    for repeat in range(repeats):
        order = list(VARIANTS.items())
        for name, config in order if repeat % 2 == 0 else order[::-1]:  # alternate to cancel order effects
            clock = _Clock()
            _run(model, inputs, config, clock)
            times[name].append(clock.per_token())
            walls[name].append(clock.per_token(wall=True))
    return {
        "ms_per_token": {k: 1000 * statistics.median(v) for k, v in times.items()},
        "wall_ms_per_token": {k: 1000 * statistics.median(v) for k, v in walls.items()},
        "wall_ratio": {
            k: statistics.median(t / p for t, p in zip(v, walls["plain"])) for k, v in walls.items()
        },
        "time_ratio": {
            k: statistics.median(t / p for t, p in zip(v, times["plain"])) for k, v in times.items()
        },
        "time_ratio_vs_vreason": {
            k: statistics.median(t / p for t, p in zip(v, times["vreason"])) for k, v in times.items()
        },
    }


def memory_child(workload: str, variant: str) -> None:
    """One variant, once, in this (fresh) process; prints JSON."""
    torch.set_num_threads(1)
    model, inputs, _ = build(workload)
    start = status_mb("VmRSS")
    marks = {}

    def after_prefill():  # prefill and pruning are done: note the peak so far, then reset it
        marks["prefill_peak"] = status_mb("VmHWM")
        reset_peak()

    _run(model, inputs, {**VARIANTS, **EXTRA, **HW_VARIANTS}[variant], _Clock(after_prefill))
    print(
        json.dumps(
            {
                "peak_mb": max(marks["prefill_peak"], status_mb("VmHWM")) - start,
                "decode_peak_mb": status_mb("VmHWM") - start,
            }
        )
    )


def memory_workload(workload: str, repeats: int, variants=VARIANTS) -> dict:
    env = {**os.environ, **CHILD_ENV}
    out = {}
    for _ in range(repeats):
        for variant in variants:  # interleaved across repeats
            proc = subprocess.run(
                [sys.executable, __file__, "--memory-child", workload, variant],
                capture_output=True,
                text=True,
                check=True,
                env=env,
            )
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            for key, value in run.items():
                out.setdefault(variant, {}).setdefault(key, []).append(value)
    return {v: {k: statistics.median(x) for k, x in d.items()} for v, d in out.items()}


def measure(workload: str, repeats: int, memory_repeats: int) -> dict:
    torch.set_num_threads(1)
    model, inputs, description = build(workload)
    kv = {name: kv_bytes(model, inputs, config) for name, config in VARIANTS.items()}
    plain, lite = kv["plain"], kv["lite"]
    n, p = lite["span"], lite["pruned"]
    assert p == pruned_count(RATIO, n)
    # span bytes per layer: full = n tokens' K+V; Lite = (n - p) tokens' K+V
    per_token = [b // s for b, s in zip(plain["prefill_layer_bytes"], plain["prefill_slots"])]
    freed = [
        b_full - b_lite for b_full, b_lite in zip(plain["prefill_layer_bytes"], lite["prefill_layer_bytes"])
    ]
    assert freed == [p * t for t in per_token], freed  # exactly floor(r*n) of the n span tokens, every layer
    span_cut = [f / (n * t) for f, t in zip(freed, per_token)]
    result = {
        "workload": workload,
        "description": description,
        "prompt_tokens": int(inputs["input_ids"].shape[1]),
        "span_tokens": n,
        "pruned_tokens": p,
        "layers": len(per_token),
        "span_kv_cut_per_layer": span_cut,
        "kv_mb_after_prefill": {k: sum(v["prefill_layer_bytes"]) / 2**20 for k, v in kv.items()},
        "kv_mb_at_end": {k: v["final_kv_bytes"] / 2**20 for k, v in kv.items()},
    }
    result.update(time_workload(model, inputs, repeats))
    result["memory"] = memory_workload(workload, memory_repeats)
    return result


def markdown(results: list[dict]) -> str:
    head = (
        "| workload | span tokens (pruned) | variant | KV MB after prefill | KV MB at end | span KV cut, "
        "every layer | whole-run peak MB | decode-phase peak MB | CPU ms/token | time vs plain | time vs "
        "V-Reason | wall ms/token |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        cut = r["span_kv_cut_per_layer"]
        cut_text = (
            f"{r['pruned_tokens']}/{r['span_tokens']} in all {r['layers']}"
            if len(set(cut)) == 1
            else str(cut)
        )
        for v in VARIANTS:
            mem = r["memory"][v]
            lines.append(
                f"| {r['workload']} | {r['span_tokens']:,} ({r['pruned_tokens']:,}) | {v} | "
                f"{r['kv_mb_after_prefill'][v]:.2f} | {r['kv_mb_at_end'][v]:.2f} | "
                f"{cut_text if 'lite' in v else '0'} | {mem['peak_mb']:.1f} | {mem['decode_peak_mb']:.1f} | "
                f"{r['ms_per_token'][v]:.2f} | {r['time_ratio'][v]:.3f} | "
                f"{r['time_ratio_vs_vreason'][v]:.3f} | {r['wall_ms_per_token'][v]:.1f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workload", action="append", choices=WORKLOADS, help="default: all")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory-repeats", type=int, default=3)
    parser.add_argument("--json", help="write raw results here")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument(
        "--high-water",
        action="append",
        choices=HW_WORKLOADS,
        help="KV-cache high-water mark of plain / lite / lite_prefill on this workload",
    )
    parser.add_argument(
        "--process-peak",
        action="append",
        choices=HW_WORKLOADS,
        help="whole-run process peak of plain / lite / lite_prefill on this workload",
    )
    parser.add_argument(
        "--answers", type=int, metavar="DOCS", help="synthetic lmms-eval task answers, DOCS documents"
    )
    args = parser.parse_args(argv)
    if args.memory_child:
        memory_child(*args.memory_child)
        return
    meta = {
        "new_tokens": NEW_TOKENS,
        "repeats": args.repeats,
        "memory_repeats": args.memory_repeats,
        "ratio": RATIO,
    }
    if args.high_water or args.process_peak or args.answers:
        results, tables = [], []
        if args.high_water:
            rows = [high_water(w, args.repeats) for w in args.high_water]
            results += rows
            tables.append(high_water_markdown(rows))
        if args.process_peak:
            rows = [process_peak(w, args.memory_repeats) for w in args.process_peak]
            results += rows
            tables.append(process_peak_markdown(rows))
        if args.answers:
            row = answers(args.answers, NEW_TOKENS)
            results.append(row)
            tables.append(
                json.dumps(
                    {
                        k: row[k]
                        for k in (
                            "accuracy",
                            "identical",
                            "median_common_prefix_words",
                            "median_answer_words",
                        )
                    }
                )
            )
        publish("lite_memory.py", argv, meta, results, "\n\n".join(tables), args.json)
        return
    results = []
    for workload in args.workload or WORKLOADS:
        results.append(measure(workload, args.repeats, args.memory_repeats))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    publish(
        "lite_memory.py",
        argv,
        {
            "new_tokens": NEW_TOKENS,
            "repeats": args.repeats,
            "memory_repeats": args.memory_repeats,
            "ratio": RATIO,
        },
        results,
        markdown(results),
        args.json,
    )


if __name__ == "__main__":
    main()
