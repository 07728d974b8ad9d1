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

from loguru import logger as eval_logger

from . import lmms_eval_seam


def rename_pending_task_manager(prompt_model: str, own_names: tuple[str, ...], baseline: bool = True) -> bool:
    """Rename the pending ``TaskManager`` from one of ``own_names`` to ``prompt_model``; True if it carries
    it. ``baseline``: ``prompt_model`` is the upstream wrapper's name (the log says the prompts are the
    baseline's only then).

    Only a manager that still carries one of our own names is touched, so an explicit
    ``TaskManager(model_name=...)`` passed to ``simple_evaluate`` by a user wins.
    """
    manager = lmms_eval_seam.pending_task_manager()
    if manager is None:
        eval_logger.warning(
            "V-Reason: no lmms-eval TaskManager found while building the model; tasks pick prompts by the "
            "name they were given. For the baseline's prompts pass "
            f"task_manager=TaskManager(model_name={prompt_model!r})."
        )
        return False
    current = lmms_eval_seam.task_manager_model_name(manager)
    if current in own_names and current != prompt_model:
        why = "as the baseline does" if baseline else "as prompt_model= asks"
        eval_logger.info(
            f"V-Reason: tasks will pick prompts and generation kwargs for {prompt_model!r} (not "
            f"{current!r}), {why}; pass prompt_model=own to keep the own name"
        )
        lmms_eval_seam.set_task_manager_model_name(manager, prompt_model)
    return lmms_eval_seam.task_manager_model_name(manager) == prompt_model


def run_stamp() -> str:
    """The run's ``datetime_str`` (the prefix of lmms-eval's results and samples files), else a new one."""
    stamp = lmms_eval_seam.run_datetime_str()
    return stamp.replace(":", "-") if stamp else lmms_eval_seam.new_datetime_str()
