"""What ``vreason reproduce`` runs: the paper's settings, three variants, one lmms-eval job per variant and
benchmark.

Every variant is the same V-Reason lmms-eval model (``vreason_qwen2_5_vl`` for Qwen2.5-VL...) with the same
frames, pixels, prompt and decoding; only the V-Reason config differs:

* ``baseline``: ``objective=none``: no ΔV update, output bit-identical to plain ``generate`` (tested against
  lmms-eval's own models in tests/test_lmms_eval.py), so prompts, frames and the per-document records
  (output tokens, time) come from one code path for all three;
* ``vreason``: the entropy-switching controller (lr 3e-4, k = 4, β = 0.98 by default);
* ``lite``: V-Reason Lite, the same controller after dropping the lowest-norm half of the video tokens.
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from ...config import VReasonConfig

VARIANTS = ("baseline", "vreason", "lite")
PAPER_TASKS = ("mmvu_val", "vsibench", "video_mmmu", "mvbench", "tempcompass_multi_choice", "videomme")
"""The six benchmarks of the paper as lmms-eval 0.7.3 tasks. ``video_mmmu`` is the group of the three
``video_mmmu_*`` tasks; TempCompass is its multiple-choice part, as in Video-R1's protocol (the paper's)."""

# Video-R1's think/answer instruction, appended to every question by the upstream wrappers' simple classes.
# Written with a literal backslash-n (the wrappers turn it into a newline) and without commas (lmms-eval
# splits --model_args on them).
THINK_PROMPT = (
    "\\nThink about the question step by step inside <think> </think> tags and then give only the final "
    "answer (the option letter or the number) inside <answer> </answer> tags."
)
FRAMES = 32
MIN_PIXELS = 4 * 28 * 28
MAX_PIXELS = 256 * 28 * 28
"""The paper's budget: 16-32 frames of about 256 x 28 x 28 pixels each."""
MAX_NEW_TOKENS = 1024


@dataclass(frozen=True)
class ModelProfile:
    """How one lmms-eval model of the plugin takes the video settings and the prompt."""

    frames_key: str
    pixels: bool
    """Whether it takes ``min_pixels`` / ``max_pixels`` (qwen-vl-utils resizing)."""
    reasoning_prompt: bool
    """Whether it takes ``reasoning_prompt=`` (appended to every question)."""
    force_simple: bool
    """Run the simple class: the one whose ``reasoning_prompt`` reaches every question (Qwen), or the only
    one registered (LLaVA)."""


PROFILES = {
    "vreason_qwen2_5_vl": ModelProfile("max_num_frames", True, True, True),
    "vreason_qwen3_vl": ModelProfile("max_num_frames", True, True, True),
    "vreason_hf": ModelProfile("max_num_frames", False, True, False),
    "vreason_llava_video": ModelProfile("max_frames_num", False, False, True),
}


@dataclass(frozen=True)
class Settings:
    """Everything that decides the numbers of a run (checked by :mod:`.checks`)."""

    pretrained: str
    lmms_model: str
    config: VReasonConfig
    """The V-Reason settings of ``vreason`` and ``lite`` (``lite`` adds ``lite=true``)."""
    frames: int = FRAMES
    min_pixels: int = MIN_PIXELS
    max_pixels: int = MAX_PIXELS
    max_new_tokens: int = MAX_NEW_TOKENS
    reasoning_prompt: str = THINK_PROMPT
    attn_implementation: str | None = None
    extra_model_args: str = ""
    include_path: str | None = None
    limit: int | None = None


BASELINE_KEEPS = ("ema_beta", "ema_init")
"""The settings the baseline takes from the user's: they shape the entropy EMA its traces record (drawn
beside V-Reason's). The others (lr, k, Lite's) do nothing without updates: a new lr re-runs no baseline."""


def variant_config(variant: str, config: VReasonConfig) -> VReasonConfig:
    """The V-Reason config of ``variant``, from the shared settings."""
    fields = config.model_dump()
    if variant == "baseline":
        kept = {key: fields[key] for key in BASELINE_KEEPS}
        fields = {**VReasonConfig().model_dump(), **kept, "objective": "none", "lite": False}
    elif variant == "vreason":
        fields.update(lite=False)
    elif variant == "lite":
        fields.update(lite=True)
    else:
        raise ValueError(f"unknown variant {variant!r}")
    return VReasonConfig.model_validate(fields)


def _arg(value) -> str:
    """A ``--model_args`` value as lmms-eval parses it back (``none``, ``true`` / ``false``, numbers)."""
    if value is None:
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


def model_args(settings: Settings, variant: str) -> str:
    """The ``--model_args`` of ``variant``: checkpoint, video settings, prompt, every V-Reason field."""
    profile = PROFILES[settings.lmms_model]
    args = {"pretrained": settings.pretrained, profile.frames_key: settings.frames}
    if profile.pixels:
        args.update(min_pixels=settings.min_pixels, max_pixels=settings.max_pixels)
    if settings.attn_implementation:
        args["attn_implementation"] = settings.attn_implementation
    if settings.reasoning_prompt:
        args["reasoning_prompt"] = settings.reasoning_prompt
    args.update(variant_config(variant, settings.config).model_dump())
    text = ",".join(f"{key}={_arg(value)}" for key, value in args.items())
    return f"{text},{settings.extra_model_args}" if settings.extra_model_args else text


def gen_kwargs(settings: Settings) -> str:
    """Greedy decoding up to ``max_new_tokens`` for every task (several task YAMLs default to 16 tokens)."""
    return f"max_new_tokens={settings.max_new_tokens},temperature=0,top_p=1.0,num_beams=1,do_sample=false"


@dataclass(frozen=True)
class Job:
    """One lmms-eval run: a variant on one benchmark (a task or a group of tasks)."""

    variant: str
    task: str
    folder: Path
    arguments: tuple[str, ...]
    """The lmms-eval arguments that decide its numbers (no output folder, no launcher)."""

    @property
    def name(self) -> str:
        return f"{self.variant} × {self.task}"

    @property
    def output_path(self) -> Path:
        return self.folder / "lmms-eval"

    def command(self, num_processes: int = 1, port: int | None = None) -> list[str]:
        """The full command line: launcher, lmms-eval and its output folder."""
        return [*launcher(num_processes, port), *self.arguments, "--output_path", str(self.output_path)]


def launcher(num_processes: int, port: int | None = None) -> list[str]:
    """``python -m lmms_eval``, or accelerate's launcher with one process per GPU (rank) above one."""
    if num_processes == 1:
        return [sys.executable, "-m", "lmms_eval"]
    port_args = ["--main_process_port", str(port)] if port is not None else []
    return [
        *[sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu"],
        *["--num_processes", str(num_processes), *port_args, "-m", "lmms_eval"],
    ]


def plan(settings: Settings, variants: list[str], tasks: list[str], out: Path) -> list[Job]:
    """The jobs, benchmark by benchmark (all variants of a benchmark together, so a partial run already
    compares them), into ``out/runs/<variant>/<task>/``."""
    jobs = []
    for task in tasks:
        for variant in variants:
            arguments = ["--model", settings.lmms_model, "--model_args", model_args(settings, variant)]
            arguments += ["--tasks", task, "--batch_size", "1", "--gen_kwargs", gen_kwargs(settings)]
            arguments += ["--log_samples"]
            if PROFILES[settings.lmms_model].force_simple:
                arguments.append("--force_simple")
            if settings.include_path:
                arguments += ["--include_path", settings.include_path]
            if settings.limit is not None:
                arguments += ["--limit", str(settings.limit)]
            jobs.append(Job(variant, task, out / "runs" / variant / task, tuple(arguments)))
    return jobs


def shell_line(command: list[str], env: dict[str, str] | None = None) -> str:
    """``command`` as one shell line (environment assignments first)."""
    assignments = [f"{key}={shlex.quote(value)}" for key, value in (env or {}).items()]
    return " ".join(assignments + [shlex.quote(part) for part in command])
