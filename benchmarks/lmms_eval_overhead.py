"""Wall time per document of ``vreason_qwen2_5_vl`` over lmms-eval's own ``qwen2_5_vl``, on the synthetic
task.

All three models (upstream; V-Reason with ``objective=none``; V-Reason with ``objective=switch``) are built
in one process from the same tiny checkpoint (real Qwen tokenizer, random weights) and answer the same
lmms-eval requests (built by lmms-eval's own task code, with the upstream prompts) one document at a time,
interleaved in a rotating order, several repeats. Each call is ``generate_until([request])``: video decoding,
preprocessing and generation, exactly what a document costs in a run. Reported: the median over
(document, repeat) of time(variant) / time(upstream) for the same document and repeat.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/lmms_eval_overhead.py --docs 8 --repeats 5 --new-tokens 64
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--hidden", type=int, default=64, help="hidden size of the tiny text model")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers of the tiny text model")
    args = parser.parse_args()

    import torch
    from lmms_eval.models.chat.qwen2_5_vl import Qwen2_5_VL
    from vreason_lmms_eval.models import VReasonQwen2_5_VL
    from vreason_lmms_eval.synthetic_task import build_requests, make_task

    from vreason_hooks.apps.tiny_checkpoints import write_tiny_qwen2_5_vl

    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="vreason-bench-"))
    ckpt = write_tiny_qwen2_5_vl(root / "tiny-qwen", hidden=args.hidden, layers=args.layers)
    task_dir = make_task(root / "task", n=args.docs)
    video = {"max_pixels": 12544, "min_pixels": 3136, "max_num_frames": 8}
    models = {
        "upstream": Qwen2_5_VL(pretrained=str(ckpt), device="cpu", device_map="cpu", **video),
        "none": VReasonQwen2_5_VL(
            pretrained=str(ckpt),
            objective="none",
            prompt_model="own",
            trace_dir=str(root / "t-none"),
            **video,
        ),
        "switch": VReasonQwen2_5_VL(
            pretrained=str(ckpt),
            objective="switch",
            prompt_model="own",
            trace_dir=str(root / "t-switch"),
            **video,
        ),
    }
    task, requests = build_requests(task_dir, args.docs)
    for request in requests:
        request.arguments[2].update(max_new_tokens=args.new_tokens)
    for lm in models.values():
        lm.task_dict["vreason_synth"] = task.dataset
        lm.generate_until([requests[0]])  # warm-up: first-call allocations and lazy imports

    names = list(models)
    times = {name: [] for name in names}
    for repeat in range(args.repeats):
        for i, request in enumerate(requests):
            order = names[(i + repeat) % 3 :] + names[: (i + repeat) % 3]  # rotate who goes first
            for name in order:
                start = time.perf_counter()
                models[name].generate_until([request])
                times[name].append(time.perf_counter() - start)
    base = times["upstream"]
    print(
        f"# lmms-eval overhead, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads "
        f"{args.threads}, torch {torch.__version__}"
    )
    print(
        f"# {args.docs} docs x {args.repeats} repeats, {args.new_tokens} new tokens/doc, bf16 tiny "
        f"Qwen2.5-VL (hidden {args.hidden}, {args.layers} layers, vocab "
        f"{models['upstream'].model.config.get_text_config().vocab_size}), 16 video tokens/doc"
    )
    print("| model | median s/doc | median ratio vs qwen2_5_vl | p25-p75 ratio |")
    print("|---|---|---|---|")
    for name in names:
        ratios = sorted(t / b for t, b in zip(times[name], base))
        q = statistics.quantiles(ratios, n=4)
        label = "qwen2_5_vl (lmms-eval)" if name == "upstream" else f"vreason_qwen2_5_vl objective={name}"
        print(
            f"| {label} | {statistics.median(times[name]):.3f} | {statistics.median(ratios):.3f} | "
            f"{q[0]:.3f}-{q[2]:.3f} |"
        )
    for name in ("none", "switch"):
        models[name].clean()


if __name__ == "__main__":
    main()
