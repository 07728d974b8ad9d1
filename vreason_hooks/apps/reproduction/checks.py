"""Bad input found before any expensive work, each as one line (a :class:`~vreason_hooks.apps.cli.CliError`).

Cheap checks first (names, prompt, output folder), then the checkpoint's config (no weights), then, only
for the jobs that will run, the task names (lmms-eval indexes its task YAMLs: seconds).
"""

from __future__ import annotations

import contextlib
import fcntl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..cli import CliError
from .plan import PROFILES, VARIANTS

FORBIDDEN_IN_MODEL_ARGS = ",\"'{}[]"
"""lmms-eval splits ``--model_args`` on commas and keeps quoted or bracketed runs together."""
PAPER_SHAPES = ("vreason_qwen2_5_vl", 3584, 28)
"""The lmms-eval model of its family (families are named in adapter specs only), hidden size and layers of
Qwen2.5-VL-7B, the paper's checkpoint."""
TINY_HIDDEN = 512


def names(text: str, what: str) -> list[str]:
    """A comma-separated list, without blanks or repeats; an empty one is an error."""
    items = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    if not items:
        raise CliError(f"--{what}: give at least one name")
    return items


def variants(text: str) -> list[str]:
    chosen = names(text, "variants")
    unknown = [v for v in chosen if v not in VARIANTS]
    if unknown:
        raise CliError(f"--variants: unknown variant {unknown[0]!r}; choose from {', '.join(VARIANTS)}")
    return [v for v in VARIANTS if v in chosen]  # table order


def prompt(text: str, lmms_model: str) -> str:
    """The reasoning prompt as a ``--model_args`` value (newlines written ``\\n``, as the wrappers expect)."""
    text = text.replace("\n", "\\n")
    bad = sorted({c for c in text if c in FORBIDDEN_IN_MODEL_ARGS})
    if bad:
        raise CliError(f"--reasoning-prompt: {' '.join(bad)} cannot pass through lmms-eval's --model_args")
    if text and not PROFILES[lmms_model].reasoning_prompt:
        raise CliError(
            f"--reasoning-prompt: {lmms_model} takes none; pass --reasoning-prompt '' (task prompts)"
        )
    return text


def out_folder(path: str) -> Path:
    """``path`` created if needed and proven writable."""
    from ..outputs import output_folder

    return output_folder(path, "--out")


@contextlib.contextmanager
def locked(out: Path):
    """Hold ``out/.lock`` for the whole call: two calls on one folder would run the same jobs twice."""
    with open(out / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CliError(f"--out {out}: another `vreason reproduce` is working in this folder") from None
        yield


def include_path(path: str | None) -> str | None:
    if path is None:
        return None
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise CliError(f"--include-path {path}: no such folder (a folder of task YAMLs)")
    return str(folder.resolve())


def num_processes(n: int, cuda_devices: int) -> None:
    if cuda_devices and n > cuda_devices:
        raise CliError(f"--num-processes {n}: only {cuda_devices} GPU(s) visible (one process per GPU)")


@dataclass(frozen=True)
class Checkpoint:
    """The checkpoint, known from its config alone."""

    pretrained: str
    """An absolute folder, or the hub id as given."""
    model_type: str
    hidden_size: int
    layers: int
    lmms_model: str | None
    """The plugin's lmms-eval model for this family (the adapter spec's ``lmms_eval_model``)."""

    @property
    def paper(self) -> bool:
        return (self.lmms_model, self.hidden_size, self.layers) == PAPER_SHAPES

    @property
    def tiny(self) -> bool:
        return self.hidden_size < TINY_HIDDEN

    def describe(self) -> dict[str, Any]:
        name = self.pretrained.rstrip("/").rsplit("/", 1)[-1]
        fields = ("pretrained", "model_type", "hidden_size", "layers", "lmms_model")
        return {"name": name, "paper": self.paper, "tiny": self.tiny, **{f: getattr(self, f) for f in fields}}


def checkpoint(model: str) -> Checkpoint:
    """Read ``--model``'s config (no weights) and find its adapter; one line for any problem."""
    from ...adapters import adapter_for_config
    from ...errors import NoAdapterError
    from ..checkpoints import checkpoint_location, read_checkpoint_config

    label = f"--model {model}"
    pretrained = checkpoint_location(model, label)
    config = read_checkpoint_config(pretrained, label)
    try:
        spec = adapter_for_config(config)
    except NoAdapterError as err:
        raise CliError(f"--model {model}: {str(err).splitlines()[0]}") from None
    text = config.get_text_config()
    return Checkpoint(
        pretrained, config.model_type, text.hidden_size, text.num_hidden_layers, spec.lmms_eval_model
    )


def lmms_model(name: str | None, ckpt: Checkpoint) -> str:
    chosen = name or ckpt.lmms_model
    if chosen is None:
        raise CliError(
            f"--model: no lmms-eval model of the plugin runs {ckpt.model_type!r}; pass --lmms-model"
        )
    if chosen not in PROFILES:
        raise CliError(
            f"--lmms-model {chosen}: not a V-Reason lmms-eval model; choose from {', '.join(PROFILES)}"
        )
    return chosen


def tasks_exist(tasks: list[str], include: str | None) -> None:
    """Every task name is one lmms-eval knows (with ``--include-path``'s tasks)."""
    try:
        from vreason_lmms_eval.lmms_eval_seam import known_task_names
    except ImportError as err:
        raise CliError(f"lmms-eval is not installed ({err}): pip install 'vreason-hooks[eval]'") from None
    known = known_task_names(include)
    unknown = [t for t in tasks if t not in known]
    if unknown:
        where = (
            f" (nor under --include-path {include})" if include else " (add task folders with --include-path)"
        )
        raise CliError(f"--tasks: lmms-eval has no task {', '.join(unknown)}{where}")
