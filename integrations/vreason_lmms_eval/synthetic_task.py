"""The offline synthetic video task ``vreason_synth``: writer and lmms-eval hooks.

:func:`make_task` writes a folder that ``lmms-eval --include_path DIR --tasks vreason_synth`` runs: the clips
of :mod:`vreason_hooks.apps.video_clips`, ``data.jsonl`` (one question per clip), the task YAML and its
``utils.py``. Scoring: the answer :func:`vreason_hooks.apps.answers.extract_answer` reads (the last complete
``<answer>...</answer>``, else an unclosed last one, else the whole output; docs/method.md) must name the
right option, by its letter or by its text."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

from vreason_hooks.apps.answers import extract_answer, has_answer_tag
from vreason_hooks.apps.video_clips import write_clips

TASK = "vreason_synth"
_LETTER = re.compile(r"^\(?([A-D])\)?(?:[.:)\s]|$)")


def make_task(out_dir: str | Path, n: int = 16, seed: int = 0, frames: int = 8, size: int = 64) -> Path:
    """Write the task folder (clips in ``videos/``, ``data.jsonl``, YAML, ``utils.py``); return it."""
    out_dir = Path(out_dir).resolve()
    items = write_clips(out_dir / "videos", n=n, seed=seed, frames=frames, size=size)
    data = out_dir / "data.jsonl"
    with data.open("w") as f:
        for item in items:
            f.write(
                json.dumps(
                    {
                        "id": item.id,
                        "kind": item.kind,
                        "video": str(out_dir / "videos" / item.video),
                        "question": item.question,
                        "options": item.options,
                        "answer": item.answer,
                    }
                )
                + "\n"
            )
    template = Path(__file__).parent / "tasks" / TASK
    # json.dumps gives a quoted YAML string that survives any path.
    yaml_text = (template / f"{TASK}.yaml").read_text().replace('"__DATA_FILE__"', json.dumps(str(data)))
    (out_dir / f"{TASK}.yaml").write_text(yaml_text)
    shutil.copyfile(template / "utils.py", out_dir / "utils.py")
    return out_dir


def doc_to_visual(doc: dict) -> list[str]:
    """The clip's path (lmms-eval's video wrappers take paths)."""
    return [doc["video"]]


def doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    """Question, lettered options one per line, between the model-specific pre- and post-prompt."""
    kwargs = lmms_eval_specific_kwargs or {}
    body = "\n".join([doc["question"], *doc["options"]])
    return f"{kwargs.get('pre_prompt', '')}{body}{kwargs.get('post_prompt', '')}"


def option_letter(answer: str, options: list[str]) -> str | None:
    """The option ``answer`` names: a leading letter (``B``, ``(B)``, ``B. left``) or an option's text."""
    match = _LETTER.match(answer.strip())
    if match:
        return match.group(1)
    text = answer.strip().rstrip(".").lower()
    for option in options:
        if option[3:].lower() == text:
            return option[0]
    return None


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """``accuracy``: the answer names the right option; ``answer_tag_rate``: the output has an answer tag."""
    output = results[0] if results else ""
    letter = option_letter(extract_answer(output), doc["options"])
    return {"accuracy": float(letter == doc["answer"]), "answer_tag_rate": float(has_answer_tag(output))}


def build_requests(
    task_dir: str | Path, limit: int | None = None, model_name: str = "qwen2_5_vl", task_type: str = "chat"
):
    """``(task, instances)``: the ``vreason_synth`` requests as lmms-eval's own task code builds them for
    ``model_name`` (its prompts), for driving models in-process (tests, benchmarks). Set
    ``lm.task_dict["vreason_synth"] = task.dataset`` on a model before calling its ``generate_until``."""
    from lmms_eval.evaluator import get_task_dict
    from lmms_eval.tasks import TaskManager

    manager = TaskManager("WARNING", include_path=str(task_dir), model_name=model_name)
    task = get_task_dict([TASK], manager, task_type)[TASK]
    task.build_all_requests(limit=limit, rank=0, world_size=1)
    return task, list(task.instances)
