"""Batched greedy generation of one variant on a batch of problems, one record per problem.

Problems are batched (left padding) because on a 2-core CPU a batch of 16 decodes several times more tokens
per second than one sequence; V-Reason keeps one ΔV, one EMA and one switch per sequence, so sequences of a
batch do not influence each other. Every variant sees the same batches, so the comparison stays paired.
"""

from __future__ import annotations

from typing import Any

import torch

from vreason_hooks import Trace
from vreason_hooks.apps.runs import generate_in_session

from .prompting import build_messages, extract_answer
from .tasks import Problem, ProblemSet
from .variants import Variant

FINAL_WINDOW = 8  # "final entropy" = mean entropy of the last 8 generated tokens (one token is too noisy)


def encode(tokenizer, problems: list[Problem]) -> dict[str, torch.Tensor]:
    """Chat-template prompts of a batch, left-padded (what batched decoding of a causal LM needs)."""
    texts = [
        tokenizer.apply_chat_template(build_messages(p.question), add_generation_prompt=True, tokenize=False)
        for p in problems
    ]
    tokenizer.padding_side = "left"
    return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)


def generate_batch(model, tokenizer, problems: list[Problem], variant: Variant, max_new_tokens: int):
    """Generate greedily under ``variant``; returns (new token ids per problem, traces, wall seconds)."""
    inputs = encode(tokenizer, problems)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    run = generate_in_session(
        model, inputs, variant.config, max_new_tokens, eos_token_id=eos, pad_token_id=pad
    )
    ids = []
    for row in run.new_tokens.tolist():
        # Keep tokens up to and including the first EOS; what follows is padding.
        cut = row.index(eos) + 1 if eos in row else len(row)
        ids.append(row[:cut])
    return ids, run.traces, run.seconds


def entropy_stats(entropy: list[float], ema: list[float]) -> dict[str, Any]:
    """The per-record entropy fields: rounded entropies, where the EMA peaked (:attr:`Trace.peak_step`) and
    its value, and the final entropy (mean of the last :data:`FINAL_WINDOW` tokens)."""
    peak_step = Trace(ema=ema).peak_step
    return {
        "entropy": [round(h, 4) for h in entropy],
        "ema_peak_step": peak_step,
        "ema_peak": ema[peak_step] if ema else None,
        "final_entropy": sum(entropy[-FINAL_WINDOW:]) / len(entropy[-FINAL_WINDOW:]) if entropy else None,
    }


def run_batch(
    model,
    tokenizer,
    problem_set: ProblemSet,
    problems: list[Problem],
    variant: Variant,
    max_new_tokens: int,
    phase: str,
) -> list[dict[str, Any]]:
    """Records of one variant on one batch. An exception (e.g. Lite not implemented yet) becomes an
    ``error`` record per problem instead of stopping the study."""
    try:
        ids, traces, seconds = generate_batch(model, tokenizer, problems, variant, max_new_tokens)
    except Exception as exc:  # noqa: BLE001 - recorded, reported and counted, never hidden
        return [_base(p, variant, phase) | {"error": f"{type(exc).__name__}: {exc}"} for p in problems]
    records = []
    for problem, tokens, trace in zip(problems, ids, traces):
        reply = tokenizer.decode(tokens, skip_special_tokens=True)
        answer, method = extract_answer(reply)
        records.append(
            _base(problem, variant, phase)
            | {
                "reply": reply,
                "extracted": answer,
                "extraction": method,
                "correct": problem_set.score(problem, answer),
                "num_tokens": len(tokens),
                "hit_budget": len(tokens) >= max_new_tokens and tokenizer.eos_token_id not in tokens,
                "seconds": seconds / len(problems),
                "batch_seconds": seconds,
                "batch_size": len(problems),
                # A sequence's trace ends at its EOS, like `tokens`; the slices only guard that.
                **entropy_stats(trace.entropy[: len(tokens)], trace.ema[: len(tokens)]),
                "updates": sum(1 for s in trace.update_steps if s < len(tokens)),
                "delta_norm": trace.delta_norm[-1] if trace.delta_norm else 0.0,
                "pruned": len(trace.pruned),
            }
        )
    return records


def _base(problem: Problem, variant: Variant, phase: str) -> dict[str, Any]:
    return {
        "uid": problem.uid,
        "task": problem.task,
        "index": problem.index,
        "gold": problem.answer,
        "variant": variant.name,
        "phase": phase,
        "config": variant.config.model_dump(),
    }
