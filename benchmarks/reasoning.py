"""V-Reason on a real text LLM: accuracy, output tokens, time and entropy shape, with the paper's ablations.

    .venv/bin/python benchmarks/reasoning.py                       # full study, SmolLM2-135M-Instruct
    .venv/bin/python benchmarks/reasoning.py --n 120 --dev-n 40    # what fits in ~1.5 h on 2 CPU cores
    .venv/bin/python benchmarks/reasoning.py --report-only         # re-render docs from the results
    python benchmarks/reasoning.py --backend lmms-eval --lmms-task mmvu_val --pretrained
    Qwen/Qwen2.5-VL-7B-Instruct \
        --lmms-metric mmvu_accuracy --dev-n 100 --out runs/mmvu.jsonl --docs runs/mmvu.md   # a VLM, on a GPU

Phases (see reasoning_study/study.py): a learning-rate sweep of the switch on the first ``--dev-n`` problems
of each task, the choice of lr from those alone, then every variant at that lr on the other problems.
Records go to ``--out`` (JSONL, appended batch by batch, so a killed run keeps its results and a re-run
resumes); the summary JSON and docs/benchmarks/reasoning-study.md are rendered from them.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from reasoning_study import report, study, tasks, variants  # noqa: E402
from reasoning_study.models import load_model  # noqa: E402

DEFAULT_LRS = [5e-5, 1e-4, 3e-4, 5e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
DEFAULT_K1_LRS = [3e-4, 3e-3, 3e-2]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=list(tasks.TASKS), choices=list(tasks.TASKS))
    p.add_argument("--n", type=int, default=240, help="problems per task, held-apart part included")
    p.add_argument("--dev-n", type=int, default=40, help="held-apart problems per task for the lr sweep")
    p.add_argument(
        "--seed", type=int, default=1234, help="reasoning-gym seed (same problems for every variant)"
    )
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    p.add_argument("--lrs", type=float, nargs="+", default=DEFAULT_LRS, help="sweep grid at k=4")
    p.add_argument(
        "--k1-lrs", type=float, nargs="*", default=DEFAULT_K1_LRS, help="extra sweep points at k=1"
    )
    p.add_argument("--lr", type=float, default=None, help="skip the sweep and use this lr on the test part")
    p.add_argument(
        "--phase",
        choices=["all", "sweep", "test"],
        default="all",
        help="'sweep' or 'test' alone: one process per task can share --out (appends are locked); "
        "'test' without --lr chooses the lr from the sweep records already in --out (all tasks)",
    )
    p.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="run only these test variants (study or diagnostic ones, e.g. baseline lite_prune_only)",
    )
    p.add_argument("--skip", nargs="*", default=[], help="test variants to leave out (e.g. lite)")
    p.add_argument(
        "--model", default="smollm2", choices=["smollm2", "tiny"], help="'tiny': random, for tests"
    )
    p.add_argument("--out", type=Path, default=HERE / "results" / "reasoning_smollm2.jsonl")
    p.add_argument("--docs", type=Path, default=HERE.parent / "docs" / "benchmarks" / "reasoning-study.md")
    vlm = p.add_argument_group(
        "--backend lmms-eval: the same study on a VLM through the lmms-eval integration"
    )
    vlm.add_argument("--backend", choices=["transformers", "lmms-eval"], default="transformers")
    vlm.add_argument("--lmms-task", help="lmms-eval task, e.g. mmvu_val")
    vlm.add_argument(
        "--lmms-metric", help="per-sample metric key in lmms-eval's samples file (>= 1 is right)"
    )
    vlm.add_argument(
        "--lmms-model", default="vreason_qwen2_5_vl", help="model name registered by the integration"
    )
    vlm.add_argument("--pretrained", default="Qwen/Qwen2.5-VL-7B-Instruct")
    vlm.add_argument("--lmms-model-args", default="", help="extra --model_args, e.g. max_num_frames=16")
    vlm.add_argument("--lmms-cli", nargs="*", default=[], help="extra lmms-eval CLI arguments")
    vlm.add_argument("--lmms-output", default="runs/lmms_eval_study", help="lmms-eval --output_path root")
    vlm.add_argument("--limit", type=int, default=None, help="documents in the test runs (default: all)")
    vlm.add_argument("--dry-run", action="store_true", help="print the lmms-eval commands, run nothing")
    p.add_argument("--report-only", action="store_true", help="only re-render summary and docs from --out")
    return p.parse_args(argv)


def machine() -> dict:
    import torch
    import transformers

    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "torch_threads": torch.get_num_threads(),
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    """HEAD of the checkout (the core changes under a long run in a shared tree: record what it started
    on)."""
    import subprocess

    try:
        return (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=HERE, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        return None


def run_lmms_eval(args, meta_path: Path) -> None:
    """Sweep and test phases with one lmms-eval run per variant (see reasoning_study/lmms_eval.py)."""
    from reasoning_study import lmms_eval

    if not (args.lmms_task and args.lmms_metric):
        raise SystemExit("--backend lmms-eval needs --lmms-task and --lmms-metric")
    study.add_run(
        meta_path,
        {
            "command": "python benchmarks/reasoning.py " + shlex.join(sys.argv[1:]),
            "model": args.pretrained,
            "tasks": {args.lmms_task: "lmms-eval task"},
            "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "machine": machine(),
        },
    )
    lr = args.lr
    if lr is None:
        grid = [(x, 4) for x in args.lrs] + [(x, 1) for x in args.k1_lrs]
        lmms_eval.run_phase(
            variants.sweep_variants(grid), "sweep", args, args.out, args.dry_run, study.append_records
        )
        if args.dry_run:
            lr = variants.PAPER_LR
        else:
            lr = study.choose_lr(study.summarise_phase(study.read_records(args.out), "sweep"))
    chosen = [v for v in variants.study_variants(lr) if v.name not in args.skip]
    lmms_eval.run_phase(chosen, "test", args, args.out, args.dry_run, study.append_records)


def main(argv=None) -> dict:
    args = parse_args(argv)
    summary_path = args.out.with_suffix(".json")
    meta_path = args.out.with_suffix(".meta.json")
    if args.backend == "lmms-eval" and not args.report_only:
        run_lmms_eval(args, meta_path)
    elif not args.report_only:
        import torch

        torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        model, tokenizer = load_model(args.model)
        sets = {t: tasks.ProblemSet(tasks.TASKS[t], args.n, args.seed) for t in args.tasks}
        dev = {t: tasks.split(s.problems, args.dev_n)[0] for t, s in sets.items()}
        test = {t: tasks.split(s.problems, args.dev_n)[1] for t, s in sets.items()}
        study.add_run(
            meta_path,
            {
                "command": "python benchmarks/reasoning.py "
                + shlex.join(argv if argv is not None else sys.argv[1:]),
                "model": args.model,
                "tasks": {t: tasks.TASKS[t].description for t in args.tasks},
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                "machine": machine(),
            },
        )
        lr = args.lr
        if lr is None and args.phase in ("all", "sweep"):
            grid = [(x, 4) for x in args.lrs] + [(x, 1) for x in args.k1_lrs]
            study.run_phase(
                model,
                tokenizer,
                sets,
                dev,
                variants.sweep_variants(grid),
                "sweep",
                args.out,
                args.batch_size,
                args.max_new_tokens,
            )
        if args.phase in ("all", "test"):
            if lr is None:
                lr = study.choose_lr(study.summarise_phase(study.read_records(args.out), "sweep"))
                print(f"chosen lr (held-apart problems only): {lr:g}", flush=True)
            chosen = [v for v in variants.study_variants(lr) if v.name not in args.skip]
            if args.only is not None:
                pool = variants.study_variants(lr) + variants.diagnostic_variants(lr)
                chosen = [v for v in pool if v.name in args.only]
            study.run_phase(
                model, tokenizer, sets, test, chosen, "test", args.out, args.batch_size, args.max_new_tokens
            )
    if args.dry_run or (args.phase != "all" and not args.report_only):
        return {}  # several per-task processes share --out: the report is rendered once, by --report-only
    return report.write(args.out, summary_path, meta_path, args.docs)


if __name__ == "__main__":
    main()
