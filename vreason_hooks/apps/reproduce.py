"""``vreason reproduce``: the paper's table in one command.

Runs the baseline, V-Reason and V-Reason Lite through the real lmms-eval CLI on the paper's six video
benchmarks (or ``--tasks``) for one checkpoint, with the paper's settings by default, and writes into
``--out DIR``: ``table.json`` / ``table.md`` (one row per variant, the published numbers beside ours for the
paper's checkpoint), ``figures/`` (traces of a few documents, output-length distributions),
``commands.sh`` and ``provenance.json`` (exact commands and versions) and ``runs/`` (each job's lmms-eval
output and log). A job already finished with the same settings is not run again (see
:mod:`.reproduction.jobs` for what "finished" means), so the same command resumes an interrupted run.

    vreason reproduce --model Qwen/Qwen2.5-VL-7B-Instruct --out repro/ --num-processes 8
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .reproduction import plan as planning

DEFAULT_OUT = "vreason-reproduce"
RECORDED_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "HF_DATASETS_CACHE", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS")
"""Environment variables that change what a job reads or where it runs: recorded with its command."""


def _settings(args):
    """``(settings, variants, tasks, out, checkpoint)`` from the command line, every check done but the task
    names (those need lmms-eval's task index and are only checked for jobs that will run)."""
    from .cli import CliError, load_config
    from .reproduction import checks

    variants = checks.variants(args.variants)
    tasks = checks.names(args.tasks, "tasks")
    include = checks.include_path(args.include_path)
    scope = "per_layer" if args.prune_at == "prefill" and args.prune_scope is None else args.prune_scope
    config = load_config(
        args.config,
        lr=args.lr,
        step_interval=args.step_interval,
        ema_beta=args.ema_beta,
        prune_ratio=args.prune_ratio,
        prune_at=args.prune_at,
        prune_scope=scope,
    )
    if args.trace_figures < 0:
        raise CliError(f"--trace-figures {args.trace_figures}: give 0 or more documents per benchmark")
    if config.objective == "none":
        raise CliError("--config: objective=none leaves nothing for the vreason and lite variants to do")
    ckpt = checks.checkpoint(args.model)
    lmms_model = checks.lmms_model(args.lmms_model, ckpt)
    settings = planning.Settings(
        pretrained=ckpt.pretrained,
        lmms_model=lmms_model,
        config=config,
        frames=args.frames,
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        max_new_tokens=args.max_new_tokens,
        reasoning_prompt=checks.prompt(args.reasoning_prompt, lmms_model),
        attn_implementation=args.attn_implementation,
        extra_model_args=args.extra_model_args,
        include_path=include,
        limit=args.limit,
    )
    return settings, variants, tasks, checks.out_folder(args.out), ckpt  # created once all else is right


def _environment(num_processes: int) -> dict[str, str]:
    """What each job's environment adds or keeps: accelerate told to stay on the CPU without CUDA."""
    import torch

    env = {key: os.environ[key] for key in RECORDED_ENV if key in os.environ}
    if num_processes > 1 and not torch.cuda.is_available():
        env["ACCELERATE_USE_CPU"] = "1"  # gloo data parallelism (tested in tests/test_lmms_eval.py)
    return env


def _refuse_conflicts(jobs, out: Path) -> None:
    """Results obtained with other settings are never mixed into one table, nor silently replaced."""
    from .cli import CliError
    from .reproduction.jobs import settings_conflict

    for job in jobs:
        conflict = settings_conflict(job)
        if conflict:
            raise CliError(
                f"--out {out}: {job.folder.relative_to(out)} was run with other settings ({conflict}); use "
                "another --out, or delete that folder to run it again"
            )


def _run_pending(jobs, args, settings) -> dict[str, str]:
    """Run every job that is not finished; return ``{job name: why it did not finish}``."""
    from .reproduction import checks, provenance
    from .reproduction.jobs import incomplete_reason, run

    pending = {job.name: incomplete_reason(job) for job in jobs}
    todo = [job for job in jobs if pending[job.name]]
    if todo:
        checks.tasks_exist(sorted({job.task for job in todo}), settings.include_path)
    env, versions, failed = _environment(args.num_processes), provenance.versions(), {}
    for i, job in enumerate(jobs, 1):
        head = f"[{i}/{len(jobs)}] {job.name}:"
        if not pending[job.name]:
            print(f"{head} finished earlier, not run again", flush=True)
            continue
        print(f"{head} running (log: {job.folder / 'log.txt'})", flush=True)
        start = time.perf_counter()
        run(job, args.num_processes, env, versions)
        reason = incomplete_reason(job)
        if reason:
            failed[job.name] = reason
            print(f"{head} did NOT finish: {reason}; see {job.folder / 'log.txt'}", flush=True)
        else:
            print(f"{head} finished in {time.perf_counter() - start:.0f} s", flush=True)
    return failed


def _report(jobs, out: Path, ckpt, settings, tasks, variants, args) -> dict:
    """Read every finished job back; write table.json / table.md, the figures and the provenance."""
    import json

    from .reproduction import figures, provenance, table
    from .reproduction.jobs import Incomplete, read_outputs, read_started
    from .reproduction.notes import notes

    outputs: dict[str, dict] = {}
    incomplete = []
    for job in jobs:
        try:
            outputs.setdefault(job.task, {})[job.variant] = read_outputs(job, keep_traces=args.trace_figures)
        except Incomplete as err:
            incomplete.append(f"{job.name}: {err}")
    cells = {v: {t: table.cell(o[v]) for t, o in outputs.items() if v in o} for v in variants}
    document = table.build(ckpt.describe(), tasks, variants, cells, incomplete, [])
    document["notes"] = notes(document, settings)
    document["settings"] = _settings_record(settings)
    (out / "table.json").write_text(json.dumps(document, indent=1))
    (out / "table.md").write_text(table.markdown(document))
    complete = {t: o for t, o in outputs.items() if set(o) == set(variants)}
    figures.all_figures(complete, out / "figures", args.trace_figures)
    provenance.write(out, canonical_argv(args), jobs, {job.name: read_started(job) for job in jobs})
    return document


def _settings_record(settings) -> dict:
    fields = {k: v for k, v in vars(settings).items() if k != "config"}
    return {**fields, "vreason_config": settings.config.model_dump()}


def cmd_reproduce(args) -> int:
    """Run what is not finished, then write the table, the figures and the provenance."""
    from .cli import EXIT_ERROR, _quiet_libraries
    from .reproduction import checks
    from .reproduction import jobs as job_files

    _quiet_libraries(args.debug)
    settings, variants, tasks, out, ckpt = _settings(args)
    import torch

    checks.num_processes(args.num_processes, torch.cuda.device_count())
    jobs = planning.plan(settings, variants, tasks, out)
    if args.dry_run:
        for job in jobs:
            state = "finished" if job_files.incomplete_reason(job) is None else "to run"
            print(f"# {job.name} ({state})\n{planning.shell_line(job.command(args.num_processes))}")
        return 0
    with checks.locked(out):
        _refuse_conflicts(jobs, out)
        failed = _run_pending(jobs, args, settings)
        _report(jobs, out, ckpt, settings, tasks, variants, args)
    print((out / "table.md").read_text())
    print(f"wrote {out / 'table.md'}, {out / 'table.json'}, {out / 'figures'}/, {out / 'commands.sh'}")
    if failed:
        print(f"{len(failed)} job(s) did not finish; the same command runs them again.", file=sys.stderr)
        return EXIT_ERROR
    return 0


# ---------------------------------------------------------------------------------------------- parser
OPTIONS: list[tuple[str, str]] = []
"""``(flag, dest)`` of every option, for the canonical command line in provenance.json."""


def canonical_argv(args) -> list[str]:
    """Every option with the value this call used (defaults included), so the record stands alone."""
    argv = []
    for flag, dest in OPTIONS:
        value = getattr(args, dest, None)
        if value is None or value is False:
            continue
        argv += [flag] if value is True else [flag, str(value)]
    return argv


def _option(group, flag: str, **kwargs) -> None:
    action = group.add_argument(flag, **kwargs)
    OPTIONS.append((flag, action.dest))


def _add_run_options(p) -> None:
    from .cli import _positive_int

    _option(p, "--model", required=True, metavar="PATH_OR_HUB_ID", help="checkpoint folder or hub id")
    _option(p, "--out", default=DEFAULT_OUT, metavar="DIR", help=f"output folder (default ./{DEFAULT_OUT})")
    _option(
        p,
        "--tasks",
        default=",".join(planning.PAPER_TASKS),
        metavar="T1,T2",
        help="lmms-eval tasks or groups, comma-separated (default: the paper's six: %(default)s)",
    )
    _option(
        p, "--include-path", metavar="DIR", help="a folder of extra task YAMLs (lmms-eval --include_path)"
    )
    _option(
        p, "--limit", type=_positive_int, metavar="N", help="only the first N documents per task (testing)"
    )
    _option(
        p,
        "--variants",
        default=",".join(planning.VARIANTS),
        metavar="V1,V2",
        help="which of baseline, vreason, lite (default: all three)",
    )
    _option(p, "--lmms-model", metavar="NAME", help="the plugin's lmms-eval model (default: the family's)")
    _option(
        p,
        "--num-processes",
        type=_positive_int,
        default=1,
        metavar="N",
        help="data parallel: one process per GPU under accelerate launch (default 1)",
    )
    _option(p, "--dry-run", action="store_true", help="print the jobs' commands and run nothing")
    _option(
        p, "--trace-figures", type=int, default=2, metavar="N", help="documents per task drawn (default 2)"
    )


def _add_protocol_options(p) -> None:
    from .cli import _positive_int

    g = p.add_argument_group("evaluation protocol (defaults: the paper's, Video-R1's)")
    _option(g, "--frames", type=_positive_int, default=planning.FRAMES, metavar="N", help="frames per video")
    _option(g, "--max-pixels", type=_positive_int, default=planning.MAX_PIXELS, metavar="N", help="per frame")
    _option(g, "--min-pixels", type=_positive_int, default=planning.MIN_PIXELS, metavar="N", help="per frame")
    _option(
        g, "--max-new-tokens", type=_positive_int, default=planning.MAX_NEW_TOKENS, metavar="N", help="greedy"
    )
    _option(
        g,
        "--reasoning-prompt",
        default=planning.THINK_PROMPT,
        metavar="TEXT",
        help="appended to every question, the same for every variant (default: think/answer); '' for the "
        "tasks' own prompts",
    )
    _option(
        g,
        "--attn-implementation",
        choices=["sdpa", "flash_attention_2", "eager"],
        help="default: the model's",
    )
    _option(
        g, "--extra-model-args", default="", metavar="K=V,...", help="more --model_args for every variant"
    )


def _add_vreason_options(p) -> None:
    g = p.add_argument_group("V-Reason settings of the vreason and lite variants (defaults: the paper's)")
    _option(g, "--config", metavar="FILE", help="VReasonConfig fields as a .toml, .json or .yaml file")
    _option(g, "--lr", type=float, help="AdamW learning rate of ΔV (default 3e-4)")
    _option(g, "--step-interval", type=int, metavar="K", help="one ΔV update every K tokens (default 4)")
    _option(g, "--ema-beta", type=float, metavar="B", help="β of the entropy moving average (default 0.98)")
    _option(g, "--prune-ratio", type=float, metavar="R", help="Lite: fraction of video tokens dropped (0.5)")
    _option(g, "--prune-at", choices=["after_prefill", "prefill"], help="Lite: when (default after_prefill)")
    _option(g, "--prune-scope", choices=["last_layer", "per_layer"], help="Lite: whose norms choose")


def add_parser(sub, common: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Register ``vreason reproduce`` on the ``vreason`` sub-parsers."""
    p = sub.add_parser(
        "reproduce",
        parents=[common],
        help="the paper's table: baseline, V-Reason and Lite through lmms-eval (GPU)",
        description="Run baseline, V-Reason and V-Reason Lite through lmms-eval on the paper's benchmarks "
        "and write table.json, table.md, figures and the exact commands into --out. Resumable: a finished "
        "variant x task is not run again.",
    )
    OPTIONS.clear()
    _add_run_options(p)
    _add_protocol_options(p)
    _add_vreason_options(p)
    p.set_defaults(func=cmd_reproduce)
    return p
