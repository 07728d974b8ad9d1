"""What the model needs from the lmms-eval run that builds it: the task manager and the run's timestamp.

lmms-eval builds its ``TaskManager`` and the run's ``datetime_str`` before the model, and the tasks after
it, and hands neither to the model. Both are locals of ``simple_evaluate``, a caller of the model's
``__init__``, so we read them from the calling frames (read-only, except for the one documented rename).

Why the rename: task YAMLs choose prompt variants and generation kwargs by the name given to ``--model``
(``lmms_eval_specific_kwargs``, ``model_specific_generation_kwargs``, ``model_specific_target_kwargs``).
Under ``vreason_qwen2_5_vl`` a task would fall back to its ``default:`` entries while the baseline
``qwen2_5_vl`` gets its ``qwen2_5_vl:`` ones, and the comparison would not be fair. Giving the pending
``TaskManager`` the upstream name makes lmms-eval's own code resolve every model-specific entry exactly as
it does for the baseline.
"""

from __future__ import annotations

import inspect

from loguru import logger as eval_logger

MAX_FRAMES_UP = 12


def caller_local(name: str, kind: type | None = None):
    """The nearest value of local ``name`` (of type ``kind``) in the frames calling this one, else ``None``."""
    frame = inspect.currentframe()
    try:
        for _ in range(MAX_FRAMES_UP):
            frame = frame.f_back if frame is not None else None
            if frame is None:
                return None
            value = frame.f_locals.get(name)
            if value is not None and (kind is None or isinstance(value, kind)):
                return value
        return None
    finally:
        del frame


def report_as(prompt_model: str, own_names: tuple[str, ...]) -> bool:
    """Rename the pending ``TaskManager`` from one of ``own_names`` to ``prompt_model``; True if it carries it.

    Only a manager that still carries one of our own names is touched, so an explicit
    ``TaskManager(model_name=...)`` passed to ``simple_evaluate`` by a user wins.
    """
    from lmms_eval.tasks import TaskManager

    manager = caller_local("task_manager", TaskManager)
    if manager is None:
        eval_logger.warning(
            f"V-Reason: no lmms-eval TaskManager found while building the model; tasks pick prompts by the name "
            f"they were given. For the baseline's prompts pass task_manager=TaskManager(model_name={prompt_model!r})."
        )
        return False
    if manager.model_name in own_names and manager.model_name != prompt_model:
        eval_logger.info(
            f"V-Reason: tasks will pick prompts and generation kwargs for {prompt_model!r} (not "
            f"{manager.model_name!r}), as the baseline does; pass prompt_model=own to keep the own name"
        )
        manager.model_name = prompt_model
    return manager.model_name == prompt_model


def run_stamp() -> str:
    """The run's ``datetime_str`` (the prefix of lmms-eval's results and samples files), else a new one."""
    from lmms_eval.utils import get_datetime_str

    stamp = caller_local("datetime_str", str)
    return stamp.replace(":", "-") if stamp else get_datetime_str()
