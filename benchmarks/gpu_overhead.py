"""V-Reason's cost on a GPU at the paper's scale: decode ms/token and peak memory, over plain decoding.

    python benchmarks/gpu_overhead.py --json gpu.json --markdown gpu.md    # CUDA, Qwen2.5-VL-7B's shapes
    python benchmarks/gpu_overhead.py --config my_lm.json ...              # another causal LM's shapes
    python benchmarks/gpu_overhead.py --smoke                              # CPU, tiny shapes, same code

The model is a random-weight causal LM with the exact shapes of Qwen2.5-VL-7B's language model
(``configs/qwen2_5_vl_7b_text.json``, bf16): shapes, not weights, set speed and memory. The video span is a
run of 4k or 16k copies of a marker token (Qwen's ``<|video_pad|>`` id), found by an adapter spec whose span
is that token id, passed as ``attach(model, config, adapter=spec)``. This measures what V-Reason costs on the
real model because everything V-Reason touches is there with its real shape: the span's positions in the
last layer's value cache (ΔV, its AdamW moments, the snapshot of the original values), one backward through
the last decoder layer, the final norm and the 152k-row LM head every k tokens, and Lite's pruning of the
KV cache of all 28 layers. What is left out is the same for every variant: the vision tower (it runs once,
in prefill, before any V-Reason work) and M-RoPE's 3-D positions (position ids only; plain positions cost the
same in attention).

Variants: ``plain`` (no session), ``none`` (attached, ``objective=none``: the baseline of ``vreason
reproduce``), ``vreason`` (k = 4), ``lite_after_prefill`` and ``lite_prefill`` (V-Reason Lite, both
``prune_at`` modes). All run in one process, interleaved in a rotating order, ``--repeats`` rounds; decode
time per token is read from per-step timestamps (prefill excluded) and every ratio is the median over rounds
of variant / plain in the same round. Memory: ``torch.cuda.max_memory_allocated`` over the whole
``generate`` (prefill included) and from the first decode step on, weights included. Also checked:
``objective=none`` gives bit-identical tokens and logits to plain ``generate`` with sdpa (and
flash-attention 2 when installed).

Time on one H100/H200 (estimated, no GPU was available when this was written): about 25 ms per token, so
one generation of 256 tokens is 7-8 s; 5 variants x 2 spans x 3 rounds plus warm-up and the identity checks
is about 5 minutes, within 8 with start-up. ``--budget-s`` (default 420) caps the rounds from the measured
warm-up, so a slower machine runs fewer rounds instead of running over.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from common import StepClock, exact_tokens, publish  # benchmarks/common.py
from transformers import LogitsProcessorList

import vreason_hooks as vreason
from vreason_hooks.adapters import AdapterSpec

HERE = Path(__file__).resolve().parent
DEFAULT_CONFIG = HERE / "configs" / "qwen2_5_vl_7b_text.json"
MARKER_FIELD = "video_token_id"
VARIANTS = {
    "plain": None,
    "none": vreason.VReasonConfig(objective="none"),
    "vreason": vreason.VReasonConfig(),
    "lite_after_prefill": vreason.VReasonConfig(lite=True),
    "lite_prefill": vreason.VReasonConfig(lite=True, prune_at="prefill", prune_scope="per_layer"),
}
GPU = {"spans": (4096, 16384), "new_tokens": 256, "repeats": 3}
SMOKE = {"spans": (64, 128), "new_tokens": 16, "repeats": 2}
SMOKE_CONFIG = {
    "model_type": "qwen2",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 2048,
    "max_position_embeddings": 4096,
    "tie_word_embeddings": False,
    MARKER_FIELD: 2000,
}
TEXT_AROUND = 32
"""Text tokens before and after the span (a system prompt and a question)."""


def marker_spec(config) -> AdapterSpec:
    """An adapter spec for a plain decoder-only LM whose controlled span is the marker token's positions."""
    return AdapterSpec.model_validate(
        {
            "name": "marker_span",
            "description": "benchmark: span = the positions of the marker token (config.video_token_id)",
            "model_types": [config.model_type],
            "modules": {"decoder_layers": "model.layers", "final_norm": "model.norm", "lm_head": "lm_head"},
            "span": {"kind": "token", "token_id_field": MARKER_FIELD},
        }
    )


def build_model(fields: dict, device: str, attn: str):
    """Random weights (seeded) with the shapes of ``fields`` (a transformers config as a dict), in bf16."""
    from transformers import AutoConfig, AutoModelForCausalLM

    fields = {k: v for k, v in fields.items() if not k.startswith("_")}
    config = AutoConfig.for_model(**fields)
    if getattr(config, MARKER_FIELD, None) is None:
        setattr(config, MARKER_FIELD, min(151656, config.vocab_size - 1))
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, attn_implementation=attn)
    return model.eval()


def span_inputs(model, span: int) -> dict:
    """``input_ids``: text, ``span`` marker tokens, text (random text ids, seeded, never the marker)."""
    marker, vocab = getattr(model.config, MARKER_FIELD), model.config.vocab_size
    generator = torch.Generator().manual_seed(span)
    text = torch.randint(0, min(vocab, 150_000), (2 * TEXT_AROUND,), generator=generator)
    text[text == marker] = 0
    ids = torch.cat([text[:TEXT_AROUND], torch.full((span,), marker), text[TEXT_AROUND:]])[None]
    ids = ids.to(model.device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


class DecodeClock(StepClock):
    """Step timestamps, and on CUDA the peak memory from the first decode step on (reset when the first
    logits arrive, i.e. once prefill is done)."""

    def __init__(self, cuda: bool):
        super().__init__(sync=torch.cuda.synchronize if cuda else None)
        self.cuda, self.prefill_peak = cuda, 0

    def __call__(self, input_ids, scores):
        if self.cuda and not self.stamps:
            torch.cuda.synchronize()
            self.prefill_peak = torch.cuda.max_memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        return super().__call__(input_ids, scores)

    def peaks_mb(self) -> tuple[float | None, float | None]:
        """``(whole generate, decode phase)`` peaks in MiB; ``(None, None)`` off CUDA."""
        if not self.cuda:
            return None, None
        torch.cuda.synchronize()
        decode = torch.cuda.max_memory_allocated()
        return max(self.prefill_peak, decode) / 2**20, decode / 2**20


def one_run(model, inputs: dict, config, new_tokens: int, spec: AdapterSpec) -> dict:
    """One greedy generation of exactly ``new_tokens``: ms/token, peaks (MiB, CUDA) and what V-Reason did."""
    cuda = inputs["input_ids"].is_cuda
    clock = DecodeClock(cuda)
    kwargs = dict(**exact_tokens(model, new_tokens), logits_processor=LogitsProcessorList([clock]))
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    trace = None
    if config is None:
        model.generate(**inputs, **kwargs)
    else:
        with vreason.attach(model, config, adapter=spec) as session:
            model.generate(**inputs, **kwargs)
        trace = session.traces[-1]
    generate_peak, decode_peak = clock.peaks_mb()
    return {
        "ms_per_token": 1000 * clock.per_token(),
        "generate_peak_mb": generate_peak,
        "decode_peak_mb": decode_peak,
        "tokens": len(clock.stamps),
        "updates": len(trace.update_steps) if trace else 0,
        "controlled": len(trace.span) if trace else 0,
        "pruned": len(trace.pruned) if trace else 0,
    }


def rounds(model, spec, spans, new_tokens: int, repeats: int, deadline: float) -> tuple[dict, int]:
    """``{span: {variant: [run, ...]}}`` over up to ``repeats`` interleaved rounds, in rotating order; stops
    early (after at least one round) when the next round would end after ``deadline`` (perf_counter)."""
    names = list(VARIANTS)
    runs = {span: {name: [] for name in names} for span in spans}
    done, round_s = 0, 0.0
    for repeat in range(repeats):
        if done and time.perf_counter() + round_s > deadline:
            break
        start = time.perf_counter()
        for j, span in enumerate(spans):
            inputs = span_inputs(model, span)
            k = (repeat + j) % len(names)
            for name in names[k:] + names[:k]:
                runs[span][name].append(one_run(model, inputs, VARIANTS[name], new_tokens, spec))
        done, round_s = done + 1, time.perf_counter() - start
    return runs, done


def summarise(runs: dict) -> list[dict]:
    """One row per span and variant: medians, and median ratios to plain over rounds."""
    rows = []
    for span, by_variant in runs.items():
        plain = by_variant["plain"]
        for name, series in by_variant.items():
            row = {"span": span, "variant": name, "rounds": len(series)}
            for key in ("ms_per_token", "generate_peak_mb", "decode_peak_mb"):
                values = [r[key] for r in series]
                row[key] = statistics.median(values) if None not in values else None
                ratios = [r[key] / p[key] for r, p in zip(series, plain) if r[key] is not None and p[key]]
                row[f"{key}_ratio"] = statistics.median(ratios) if ratios else None
            row.update({key: series[0][key] for key in ("tokens", "updates", "controlled", "pruned")})
            rows.append(row)
    return rows


def identity(model, spec, span: int, new_tokens: int, attn: str, config=VARIANTS["none"]) -> dict:
    """Tokens and raw logits of plain ``generate`` against ``config`` (default ``objective=none``) under sdpa
    and, when installed (and on CUDA), flash-attention 2: ``{kernel: {"tokens_equal", "logits_equal"}}``."""
    inputs = span_inputs(model, span)
    kernels = ["sdpa"]
    flash = importlib.util.find_spec("flash_attn") is not None and inputs["input_ids"].is_cuda
    kernels += ["flash_attention_2"] if flash else []
    found: dict = (
        {}
        if flash
        else {"flash_attention_2": "not installed" if inputs["input_ids"].is_cuda else "CUDA only"}
    )
    kwargs = exact_tokens(model, new_tokens, return_dict_in_generate=True, output_logits=True)
    for kernel in kernels:
        model.set_attn_implementation(kernel)
        plain = model.generate(**inputs, **kwargs)
        with vreason.attach(model, config, adapter=spec):
            ours = model.generate(**inputs, **kwargs)
        found[kernel] = {
            "tokens_equal": torch.equal(plain.sequences, ours.sequences),
            "logits_equal": all(torch.equal(a, b) for a, b in zip(plain.logits, ours.logits)),
        }
        del plain, ours
    model.set_attn_implementation(attn)
    return found


def markdown(rows: list[dict], checks: dict) -> str:
    """The table for docs/benchmarks/gpu.md: per span, every variant against plain."""

    def fmt(value, spec):
        return "—" if value is None else format(value, spec)

    lines = [
        "| span tokens | variant | ms/token | ratio | generate peak (MiB) | ratio | decode peak (MiB) | "
        "ratio | ΔV updates | pruned |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['span']:,} | {r['variant']} | {fmt(r['ms_per_token'], '.2f')} | "
            f"{fmt(r['ms_per_token_ratio'], '.3f')} | {fmt(r['generate_peak_mb'], ',.0f')} | "
            f"{fmt(r['generate_peak_mb_ratio'], '.3f')} | {fmt(r['decode_peak_mb'], ',.0f')} | "
            f"{fmt(r['decode_peak_mb_ratio'], '.3f')} | {r['updates']} | {r['pruned']:,} |"
        )
    lines += ["", "objective=none against plain generate (bit-identity):"]
    lines += [f"- {kernel}: {json.dumps(result)}" for kernel, result in checks.items()]
    return "\n".join(lines)


def parse_args(argv: list[str] | None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny shapes: the same code, in seconds")
    parser.add_argument(
        "--config", type=Path, help=f"a causal LM's config JSON (default {DEFAULT_CONFIG.name})"
    )
    parser.add_argument("--spans", help="video span lengths, comma-separated (default 4096,16384)")
    parser.add_argument("--new-tokens", type=int, help="generated tokens per run (default 256)")
    parser.add_argument("--repeats", type=int, help="interleaved rounds at most (default 3)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="no round starts that would end later")
    parser.add_argument("--attn", default="sdpa", choices=["sdpa", "flash_attention_2", "eager"])
    parser.add_argument("--json", help="write meta and results here")
    parser.add_argument("--markdown", help="write the markdown table here")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else GPU
    args.spans = [int(s) for s in args.spans.split(",")] if args.spans else list(sizes["spans"])
    args.new_tokens = args.new_tokens or sizes["new_tokens"]
    args.repeats = args.repeats or sizes["repeats"]
    return args


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; return ``{"meta", "results", "identity"}`` (also written with ``--json``)."""
    start = time.perf_counter()
    args = parse_args(argv)
    if not args.smoke and not torch.cuda.is_available():
        sys.exit("gpu_overhead.py: no CUDA device; run with --smoke for the CPU check of this script")
    device = "cpu" if args.smoke else "cuda"
    fields = (
        SMOKE_CONFIG
        if args.smoke and args.config is None
        else json.loads((args.config or DEFAULT_CONFIG).read_text())
    )
    model = build_model(fields, device, args.attn)
    spec = marker_spec(model.config)
    for span in args.spans:  # warm-up: kernels, allocator, lazy imports; one V-Reason update path too
        one_run(model, span_inputs(model, span), VARIANTS["vreason"], args.new_tokens, spec)
    checks = identity(model, spec, args.spans[0], args.new_tokens, args.attn)
    runs, done = rounds(model, spec, args.spans, args.new_tokens, args.repeats, start + args.budget_s)
    rows = summarise(runs)
    meta = {
        "smoke": args.smoke,
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "cuda": torch.version.cuda,
        "model": {k: v for k, v in model.config.to_dict().items() if k in fields},
        "dtype": "bfloat16",
        "attn": args.attn,
        "new_tokens": args.new_tokens,
        "rounds": done,
        "wall_s": round(time.perf_counter() - start, 1),
    }
    table = markdown(rows, checks)
    publish("gpu_overhead.py", argv, meta, rows, table, args.json)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    if args.json:  # the identity checks beside the rows
        data = json.loads(Path(args.json).read_text())
        Path(args.json).write_text(json.dumps({**data, "identity": checks}, indent=1))
    return {"meta": meta, "results": rows, "identity": checks}


if __name__ == "__main__":
    main()
