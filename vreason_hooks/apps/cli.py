"""The ``vreason`` command line: ``demo``, ``run``, ``plot``, ``adapters``, ``doctor`` and ``reproduce``.

Imports stay light at module level (no torch, no transformers) so ``vreason --help`` and ``vreason plot``
start fast; each command imports what it needs. Every error ends as one line on stderr and exit code 1
(2 for a malformed command line, argparse's convention); ``--debug`` shows the traceback instead. Every
output path a command is given is checked before it loads anything (:mod:`.outputs`), and a stdout whose
reader went away (``| head -1``, ``>&-``) stops the printing only, never the files asked for.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .outputs import output_file, output_folder, reader_safe_stdout

EXIT_ERROR = 1
EXIT_USAGE = 2
MAX_OVERLAY = 12
"""Most traces ``vreason plot`` overlays in one figure."""
CLI_EXTRA = ("rich", "matplotlib")
"""What the applications need beyond the library: ``pip install 'vreason-hooks[cli]'``."""


class CliError(Exception):
    """A problem with the user's input, reported as one line."""


# ---------------------------------------------------------------------------------------------- helpers
def _one_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    first = text.splitlines()[0]
    return first if len(text.splitlines()) == 1 else first + " …"


def _missing_extra(err: BaseException) -> str | None:
    """The package of the ``cli`` extra whose absence raised ``err``, else ``None``."""
    name = getattr(err, "name", None) if isinstance(err, ModuleNotFoundError) else None
    top = (name or "").split(".")[0]
    return top if top in CLI_EXTRA else None


def _console(**kwargs):
    """A rich ``Console`` on ``sys.stdout``, which :func:`main` makes safe against a reader that went away
    (so rich never sees a ``BrokenPipeError``, whose handling of its own would exit with code 1)."""
    from rich.console import Console

    return Console(**kwargs)


def _quiet_libraries(debug: bool = False) -> None:
    """Keep library chatter (transformers warnings, load bars) off the user's screen; --debug keeps it."""
    import warnings

    if debug:
        return
    warnings.filterwarnings("ignore")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        from huggingface_hub.utils import logging as hub_logging

        hub_logging.set_verbosity_error()  # its retry warnings would bury the one-line error when offline
    except ImportError:
        pass


def load_config(path: str | None, base=None, **overrides):
    """A :class:`VReasonConfig`: ``base`` (default: the paper's), then the fields set in ``path``
    (TOML/JSON/YAML), then the command-line ``overrides`` that are not ``None``; any problem is one line."""
    from ..config import CONFIG_SUFFIXES, VReasonConfig
    from ..errors import ConfigError, validation_message

    data = base.model_dump() if base is not None else {}
    if path:
        file = _existing_file(
            path, "config file", f"a {', '.join(CONFIG_SUFFIXES)} file of VReasonConfig fields"
        )
        data.update(VReasonConfig.from_file(file).model_dump(exclude_unset=True))  # ConfigError: one line
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return VReasonConfig.model_validate(data)
    except ConfigError as err:
        detail = validation_message(err.validation, known=VReasonConfig.model_fields)
        raise CliError(f"bad V-Reason setting: {detail}") from None


def _existing_file(name: str, what: str, expected: str) -> Path:
    """``Path(name)`` if it is a readable file, else a one-line :class:`CliError` saying what to pass."""
    path = Path(name)
    if path.is_dir():
        raise CliError(f"{what} {name} is a directory: pass {expected}")
    if not path.is_file():
        raise CliError(f"{what} {name} does not exist: pass {expected}")
    return path


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_config_options(parser: argparse.ArgumentParser, lr_default: str = "") -> None:
    group = parser.add_argument_group("V-Reason settings (override --config)")
    group.add_argument(
        "--config", metavar="FILE", help="VReasonConfig fields as a .toml, .json or .yaml file"
    )
    group.add_argument("--lr", type=float, help=f"AdamW learning rate of ΔV{lr_default}")
    group.add_argument(
        "--step-interval", type=int, metavar="K", help="one ΔV update every K generated tokens"
    )
    group.add_argument("--ema-beta", type=float, metavar="B", help="β of the entropy moving average")
    group.add_argument(
        "--objective",
        choices=["switch", "max", "min", "none"],
        help="switch (the paper's), or the ablations max / min / none",
    )
    group.add_argument(
        "--lite",
        nargs="?",
        const="after_prefill",
        choices=["after_prefill", "prefill"],
        metavar="WHEN",
        help="V-Reason Lite: prune the lowest-norm video tokens from the KV cache; WHEN is after_prefill "
        "(the default) or prefill (each layer as prefill writes it: lower whole-run peak, per-layer "
        "scores; implies --prune-scope per_layer). See docs/lite.md",
    )
    group.add_argument(
        "--prune-ratio", type=float, metavar="R", help="Lite: fraction of video tokens dropped (default 0.5)"
    )
    group.add_argument(
        "--prune-scope",
        choices=["last_layer", "per_layer"],
        help="Lite: whose norms choose the dropped tokens "
        "(default last_layer; per_layer with --lite prefill)",
    )


def _settings(args, base=None):
    """:func:`load_config` from the command's ``--config`` and flags; a Lite-only flag without Lite is an
    error (it would be ignored silently)."""
    config = load_config(args.config, base=base, **_overrides(args))
    lite_only = {"--prune-ratio": args.prune_ratio, "--prune-scope": args.prune_scope}
    given = [flag for flag, value in lite_only.items() if value is not None]
    if given and not config.lite:
        raise CliError(
            f"{given[0]} applies to V-Reason Lite only: add --lite (or lite = true in --config), or drop "
            f"{given[0]}"
        )
    return config


def _overrides(args) -> dict:
    lite = getattr(args, "lite", None)
    scope = getattr(args, "prune_scope", None)
    if lite == "prefill" and scope is None:
        scope = "per_layer"  # the only scope prefill pruning has: the last layer's norms do not exist yet
    return {
        "lr": args.lr,
        "step_interval": args.step_interval,
        "ema_beta": args.ema_beta,
        "objective": args.objective,
        "lite": True if lite else None,
        "prune_at": lite,
        "prune_ratio": getattr(args, "prune_ratio", None),
        "prune_scope": scope,
    }


# ---------------------------------------------------------------------------------------------- commands
def cmd_demo(args) -> int:
    from ..config import VReasonConfig
    from . import demo

    # The demo's own settings unless --paper; a config file and flags override fields of that base.
    config = _settings(args, base=VReasonConfig() if args.paper else demo.DEMO_CONFIG)
    output_folder(args.out, "--out")  # created now: a file or a read-only folder fails before the model loads
    _quiet_libraries(args.debug)
    report = demo.run_demo(
        out_dir=Path(args.out),
        limit=args.limit,
        config=config,
        max_new_tokens=args.max_new_tokens,
        threads=args.threads,
        plots=not args.no_plots,
        library_output=args.debug,
    )
    return 0 if report["questions"] else EXIT_ERROR


def _run_outputs(args) -> tuple[Path | None, Path | None]:
    """``--trace-out`` and ``--plot`` checked before anything loads (a 7B model must not run for nothing)."""
    from .plotting import PLOT_SUFFIXES

    traces = output_file(args.trace_out, "--trace-out", example="traces.json") if args.trace_out else None
    plot = output_file(args.plot, "--plot", PLOT_SUFFIXES) if args.plot else None
    if traces and plot and traces.resolve() == plot.resolve():
        raise CliError(f"--trace-out and --plot name the same file {args.plot}: pass two file names")
    return traces, plot


def cmd_run(args) -> int:
    trace_out, plot_out = _run_outputs(args)
    config = _settings(args)
    _quiet_libraries(args.debug)
    from rich.markup import escape

    from ..trace import save_traces
    from . import videoqa
    from .video import read_frames

    console = _console(stderr=False)
    frames = read_frames(
        args.video, num_frames=args.frames, max_pixels=args.max_pixels, backend=args.video_backend
    )
    with console.status(f"loading {args.model} …"):
        vm = videoqa.load_video_model(args.model, device=args.device, dtype=args.dtype)
    console.print(
        f"model [bold]{escape(args.model)}[/] (adapter [bold]{vm.spec.name}[/]); video {escape(args.video)}: "
        f"{len(frames.indices)} of {frames.total_frames} frames at "
        f"{frames.pixels.shape[2]}x{frames.pixels.shape[1]} ({frames.backend})"
    )
    inputs = videoqa.build_inputs(vm, frames, args.question, args.prompt_style)
    runs = []
    if args.compare:
        with console.status("baseline …"):
            runs.append(
                videoqa.generate(
                    vm,
                    inputs,
                    config.model_copy(update={"objective": "none"}),
                    args.max_new_tokens,
                    "baseline",
                )
            )
    with console.status("V-Reason …"):
        runs.append(videoqa.generate(vm, inputs, config, args.max_new_tokens, "V-Reason"))
    print_answers(console, runs, config)
    traces = [r.trace for r in runs]
    if trace_out:
        console.print(f"traces: {save_traces(traces, trace_out)}")
    if plot_out:
        from .plotting import plot_traces

        console.print(f"plot: {plot_traces(traces, plot_out, title=args.question[:90])}")
    return 0


def print_answers(console, runs, config) -> None:
    from rich.markup import escape
    from rich.table import Table

    # Model output is text, never markup: "[/think]" must not be read as a rich closing tag.
    table = Table(show_lines=True)
    for column in ("", "answer", "output tokens", "time (s)", "ΔV updates", "EMA peak at"):
        table.add_column(column, overflow="fold")
    for r in runs:
        table.add_row(
            r.label,
            escape(r.answer),
            str(r.num_tokens),
            f"{r.seconds:.1f}",
            str(len(r.trace.update_steps)),
            str(r.trace.peak_step),
        )
    console.print(table)
    for r in runs:
        console.print(f"[bold]{r.label} output:[/] {escape(r.text)}", highlight=False, soft_wrap=True)
    console.print(f"V-Reason config: {config.model_dump_json()}", highlight=False, soft_wrap=True)


def cmd_plot(args) -> int:
    from ..trace import load_traces
    from .plotting import PLOT_SUFFIXES, plot_traces, trace_label

    default = Path(args.traces[0]).with_suffix(".png")
    out = output_file(args.output or default, "-o" if args.output else "-o (default)", PLOT_SUFFIXES)
    traces, labels = [], []
    for name in args.traces:
        path = _existing_file(name, "trace file", "a JSON file written by --trace-out or save_traces")
        try:
            loaded = load_traces(path)
        except (ValueError, TypeError, KeyError) as err:
            raise CliError(
                f"{name} is not a trace file ({_one_line(err)}): pass JSON written by save_traces"
            ) from None
        picked = list(enumerate(loaded))
        if args.index:
            missing = [i for i in args.index if not -len(loaded) <= i < len(loaded)]
            if missing:
                valid = f"0..{len(loaded) - 1} (or -{len(loaded)}..-1 from the end)" if loaded else "none"
                raise CliError(
                    f"{name} holds {len(loaded)} traces: --index {missing[0]} is out of range; valid: {valid}"
                )
            picked = [(i % len(loaded), loaded[i]) for i in args.index]  # labels show the position from 0
        picked = [(i, t) for i, t in picked if t.num_tokens]  # a failed lmms-eval document has an empty trace
        if not picked:
            raise CliError(f"{name} holds no generated tokens: nothing to plot")
        for i, t in picked:
            label = trace_label(t, i)
            labels.append(f"{path.stem}: {label}" if len(args.traces) > 1 else label)
            traces.append(t)
    if len(traces) > MAX_OVERLAY:
        raise CliError(
            f"{len(traces)} traces would overlay unreadably: choose up to {MAX_OVERLAY} with --index "
            "(positions in each file, from 0)"
        )
    written = plot_traces(traces, out, labels=labels, title=args.title)
    print(written)
    return 0


def cmd_adapters(args) -> int:
    from rich.markup import escape
    from rich.table import Table

    from .. import adapters
    from ..adapters import available, builtin_spec_paths
    from ..adapters.table import positions_cell, span_cell

    specs = available()
    if args.markdown:
        from ..adapters.table import markdown_table

        print(markdown_table(specs, adapters.refused()))
        return 0
    if args.json:
        import json

        print(json.dumps([s.model_dump() for s in specs], indent=1))
        return 0
    builtin = {str(p) for p in builtin_spec_paths()}
    rows = [
        {
            "name": s.name,
            "matches (model_type, architectures)": ", ".join(s.model_types + s.architectures),
            "controlled span": span_cell(s).replace("`", ""),
            "Lite positions": positions_cell(s).replace("`", ""),
            "lmms-eval model": s.lmms_eval_model or "-",
            "from": f"built-in specs/{Path(s.source).name}" if s.source in builtin else s.source,
        }
        for s in specs
    ]
    table = Table()
    for column in rows[0] if rows else ("name",):
        # Names are kept whole (a wrapped `llava_next` / `_video` reads as two adapters); the rest may fold.
        whole = column in ("name", "lmms-eval model")
        table.add_column(column, no_wrap=whole, overflow="ellipsis" if whole else "fold")
    for row in rows:
        table.add_row(*row.values())
    console = _console()
    width = _natural_width(console, table)
    if not console.is_terminal:  # a pipe or a file: one line per adapter, whatever the width (for grep)
        console = _console(width=width)
    console.print(f"{len(specs)} adapters", highlight=False)
    if width <= console.width:
        console.print(table)
        return 0
    for row in rows:  # a terminal too narrow for the table: one block per adapter, its name on a line
        name, *fields = row.values()
        console.print(f"[bold]{escape(name)}[/]", highlight=False)
        for label, value in zip(("matches", "span", "Lite positions", "lmms-eval model", "from"), fields):
            console.print(f"  {label}: {escape(value)}", highlight=False)
    return 0


def _natural_width(console, renderable) -> int:
    """The width ``renderable`` takes when nothing constrains it."""
    from rich.measure import Measurement

    return Measurement.get(console, console.options.update_width(1_000_000), renderable).maximum


def cmd_doctor(args) -> int:
    from .doctor import run

    return run()


# ---------------------------------------------------------------------------------------------- parser
def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vreason-hooks")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``vreason`` (one sub-parser per command)."""
    common = argparse.ArgumentParser(add_help=False)
    # SUPPRESS: a sub-parser default must not overwrite a --debug given before the command name.
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the full traceback on errors, and library warnings",
    )
    parser = argparse.ArgumentParser(
        prog="vreason",
        description="V-Reason (arXiv 2510.17045): entropy-guided value-cache control at inference.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"vreason-hooks {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "demo",
        parents=[common],
        help="baseline vs V-Reason on a real small model (no GPU, no network)",
        description="SmolLM2-135M-Instruct on bundled reasoning questions with known answers: "
        "baseline and V-Reason side by side, entropy plots and a JSON report.",
    )
    p.add_argument(
        "--out", default="vreason-demo", metavar="DIR", help="output folder (default: ./vreason-demo)"
    )
    p.add_argument("--limit", type=_positive_int, metavar="N", help="only the first N questions")
    p.add_argument(
        "--max-new-tokens",
        type=_positive_int,
        default=None,
        metavar="N",
        help="token budget per answer (default: the demo's, 160)",
    )
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        metavar="N",
        help="torch CPU threads (default: all cores)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument(
        "--paper",
        action="store_true",
        help="start from the paper's settings (lr 3e-4, k 4, β 0.98) instead of the demo's (lr 0.3, k 2, β "
        "0.9)",
    )
    _add_config_options(p, lr_default=" (demo default 0.3)")
    p.set_defaults(func=cmd_demo)

    from .video import DEFAULT_MAX_PIXELS, DEFAULT_NUM_FRAMES
    from .videoqa import DEFAULT_MAX_NEW_TOKENS

    from_video = "frames sampled per video"
    p = sub.add_parser(
        "run",
        parents=[common],
        help="one video question with any supported model",
        description="Answer one question about a video with V-Reason (and the baseline with --compare).",
    )
    p.add_argument(
        "--model", required=True, metavar="PATH_OR_HUB_ID", help="checkpoint folder or cached hub id"
    )
    p.add_argument("--video", required=True, metavar="FILE")
    p.add_argument("--question", required=True, metavar="TEXT")
    p.add_argument(
        "--compare", action="store_true", help="also run the baseline (no ΔV updates) and show both"
    )
    p.add_argument(
        "--trace-out", metavar="FILE", help="write the entropy traces as JSON (for `vreason plot`)"
    )
    p.add_argument("--plot", metavar="FILE", help="write the entropy plot (PNG/SVG/PDF)")
    p.add_argument(
        "--frames",
        type=_positive_int,
        default=DEFAULT_NUM_FRAMES,
        metavar="N",
        help=f"{from_video} (default {DEFAULT_NUM_FRAMES}; paper: 16-32)",
    )
    p.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"pixel budget per frame (default {DEFAULT_MAX_PIXELS} = {DEFAULT_MAX_PIXELS // 784}x28x28, the "
        "paper's)",
    )
    p.add_argument(
        "--max-new-tokens",
        type=_positive_int,
        default=DEFAULT_MAX_NEW_TOKENS,
        metavar="N",
        help=f"default {DEFAULT_MAX_NEW_TOKENS} (the paper's)",
    )
    p.add_argument(
        "--prompt-style",
        choices=["think", "plain"],
        default="think",
        help="think: ask for <think>/<answer> tags, the paper's format (default); plain: the question alone",
    )
    p.add_argument(
        "--video-backend",
        choices=["auto", "decord", "pyav"],
        default="auto",
        help="frame reader (auto: decord, then PyAV)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    p.add_argument(
        "--dtype",
        choices=["auto", "float32", "bfloat16", "float16"],
        default="auto",
        help="auto: bfloat16 on GPU, float32 on CPU",
    )
    _add_config_options(p, lr_default=" (default 3e-4, the paper's)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "plot",
        parents=[common],
        help="entropy plot of one or more trace files",
        description="Raw entropy and its EMA over generated tokens, the running peak, explore phases "
        "(α = +1) shaded and ΔV updates marked; several files overlay.",
    )
    p.add_argument("traces", nargs="+", metavar="TRACE.json")
    p.add_argument(
        "-o", "--output", metavar="OUT.png", help="output image (default: the first trace's name, .png)"
    )
    p.add_argument(
        "--index",
        type=int,
        nargs="+",
        metavar="I",
        help="only the traces at these positions (from 0) of each file, e.g. documents of an lmms-eval run",
    )
    p.add_argument("--title")
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser(
        "adapters",
        parents=[common],
        help="list the model adapters this installation knows",
        description="Adapters: where each spec comes from and which models it matches.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--markdown", action="store_true", help="the support table in Markdown (as in docs/adapters.md)"
    )
    p.set_defaults(func=cmd_adapters)

    p = sub.add_parser(
        "doctor",
        parents=[common],
        help="check this installation: versions, registrations, self-test",
        description="Versions against the supported ranges, registered adapters and lmms-eval models, "
        "and a self-test on a tiny model (offline, about ten seconds). Exit 1 on a failure.",
    )
    p.set_defaults(func=cmd_doctor)

    from .reproduce import add_parser as add_reproduce  # its own module: registers `vreason reproduce`

    add_reproduce(sub, common)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``vreason`` console script; returns the exit code.

    stdout is a :class:`~.outputs.ReaderSafeStdout` meanwhile: a reader that leaves early (``| head -1``)
    or a closed stdout (``>&-``) silences the printing, and the command still writes its files."""
    with reader_safe_stdout():
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # No parser default (parents share action objects, so one default would override the other position).
    args.debug = getattr(args, "debug", False)
    try:
        code = args.func(args)
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        print("vreason: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if args.debug:
            raise
        missing = _missing_extra(err)
        if missing:
            print(
                f"vreason {args.command}: error: {missing} is not installed: pip install "
                "'vreason-hooks[cli]'",
                file=sys.stderr,
            )
            return EXIT_ERROR
        from ..errors import VReasonError

        known = isinstance(err, (CliError, VReasonError, OSError))
        hint = "" if known else f" ({type(err).__name__}; run again with --debug for the traceback)"
        print(f"vreason {args.command}: error: {_one_line(err)}{hint}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
