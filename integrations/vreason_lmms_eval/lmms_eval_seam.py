"""The one module that names lmms-eval internals (and the filelock break under it), made version-proof.

What the integration reads from lmms-eval beyond its model API: locals of ``simple_evaluate`` found through
the calling frames (the pending ``TaskManager`` and the run's ``datetime_str``), the ``TaskManager``'s
``model_name`` and its index of task names, the helpers that derive the output folder's model name,
``qwen3_vl``'s class resolver, the private attributes a wrapper's ``__init__`` stores for its properties, and
the module ``filelock._api`` that ``simple_evaluate`` imports. ``tests/integrations/test_lmms_eval_seam.py``
fails when one moves.

Known moves:

* filelock 4.3 (2026-11) removed ``filelock._api``; lmms-eval 0.7.3's ``simple_evaluate`` imports it to
  patch a deadlock (``_enable_reentrant_filelocks``), so every run failed before writing results.
  :func:`ensure_filelock_api` puts back a module with the three names that patch uses.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types

from loguru import logger as eval_logger

MAX_FRAMES_UP = 12
"""How far up the stack ``simple_evaluate`` may be from the model's ``__init__`` (cli -> simple_evaluate ->
create_from_arg_string -> __init__ -> mixins: about 6 today)."""

TASK_MANAGER_LOCAL = "task_manager"
RUN_STAMP_LOCAL = "datetime_str"


# ---------------------------------------------------------------------------------------------- calling
# frames
def caller_local(name: str, kind: type | None = None):
    """The nearest value of local ``name`` (of type ``kind``) in the frames calling this one, else
    ``None``."""
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


def pending_task_manager():
    """The ``TaskManager`` that ``simple_evaluate`` built before the model, or ``None`` outside a run."""
    from lmms_eval.tasks import TaskManager

    return caller_local(TASK_MANAGER_LOCAL, TaskManager)


def task_manager_model_name(manager) -> str | None:
    """The model name a ``TaskManager`` resolves ``lmms_eval_specific_kwargs`` with."""
    return getattr(manager, "model_name", None)


def set_task_manager_model_name(manager, name: str) -> None:
    """Make ``manager`` resolve model-specific task entries for ``name``."""
    if not hasattr(manager, "model_name"):
        from .model_args import ModelArgsError

        raise ModelArgsError(
            f"lmms-eval's TaskManager has no `model_name` any more (lmms-eval {_version('lmms-eval')}); pass "
            "prompt_model=own, or check `vreason doctor` for the supported lmms-eval range"
        )
    manager.model_name = name


def run_datetime_str() -> str | None:
    """The run's ``datetime_str`` (the prefix of lmms-eval's results files), or ``None`` outside a run."""
    return caller_local(RUN_STAMP_LOCAL, str)


def new_datetime_str() -> str:
    """A timestamp in lmms-eval's own format."""
    from lmms_eval.utils import get_datetime_str

    return get_datetime_str()


def output_model_name(model_args: str) -> str:
    """The folder name lmms-eval gives a run's samples under ``--output_path`` for these ``--model_args``."""
    from lmms_eval.loggers.evaluation_tracker import GeneralConfigTracker
    from lmms_eval.utils import sanitize_model_name

    return sanitize_model_name(GeneralConfigTracker._get_model_name(model_args))


def qwen3_model_class(pretrained: str, is_moe: bool):
    """The transformers class lmms-eval's ``qwen3_vl`` loads ``pretrained`` with (Qwen3-VL or Qwen3.5, dense
    or MoE), from its private ``_resolve_model_class``."""
    from lmms_eval.models.simple.qwen3_vl import _resolve_model_class

    return _resolve_model_class(pretrained, is_moe=is_moe)[0]


# ---------------------------------------------------------------------------------------------- wrapper state
WRAPPER_FIELDS = {
    "model": "_model",
    "tokenizer": "_tokenizer",
    "config": "_config",
    "device": "_device",
    "rank": "_rank",
    "world_size": "_world_size",
    "max_length": "_max_length",
    "batch_size": "batch_size_per_gpu",
}
"""What an lmms-eval model wrapper's ``__init__`` stores, under the private names its public properties
(``model``, ``tokenizer``, ``config``, ``device``, ``rank``, ``world_size``, ``max_length``, ``batch_size``)
read."""


def set_wrapper_state(wrapper, **state) -> None:
    """Store ``state`` (keys of :data:`WRAPPER_FIELDS`) where the lmms-eval wrapper's properties read it, as
    its own ``__init__`` does (our loaders replace that ``__init__``)."""
    unknown = set(state) - set(WRAPPER_FIELDS)
    if unknown:
        raise KeyError(f"lmms_eval_seam.set_wrapper_state: no wrapper field {sorted(unknown)}")
    for key, value in state.items():
        setattr(wrapper, WRAPPER_FIELDS[key], value)


def registered_model_names() -> set[str]:
    """Every name ``lmms-eval --model`` accepts: lmms-eval's own models, out-of-tree ones registered by entry
    point (ours included), and their aliases."""
    from lmms_eval.models import list_available_models

    return set(list_available_models(include_aliases=True))


def known_task_names(include_path: str | None = None) -> set[str]:
    """Every task, group and tag name ``lmms-eval --tasks`` accepts, with the tasks under ``include_path``.

    lmms-eval's ``TaskManager`` indexes about two thousand YAMLs (seconds) and logs each one it cannot read
    at DEBUG level; that chatter is muted while it runs.
    """
    from lmms_eval.tasks import TaskManager

    eval_logger.disable("lmms_eval")
    try:
        manager = TaskManager("ERROR", include_path=include_path)
    finally:
        eval_logger.enable("lmms_eval")
    return set(manager.all_tasks)


def wrapper_batch_size(wrapper) -> int:
    """The documents per call of a wrapper that keeps them in ``batch_size_per_gpu`` (lmms-eval's ``vllm``
    model has no ``batch_size`` property)."""
    return int(getattr(wrapper, WRAPPER_FIELDS["batch_size"]))


# ---------------------------------------------------------------------------------------------- filelock
def _version(distribution: str) -> str | None:
    from vreason_hooks.transformers_seam import installed_version

    return installed_version(distribution)


def ensure_filelock_api() -> str:
    """Make ``import filelock._api`` work (lmms-eval 0.7.3's ``simple_evaluate`` needs it).

    Returns ``"native"`` (filelock has it), ``"shim"`` (we registered one) or ``"unavailable"`` (filelock
    moved again: a warning says so, and lmms-eval runs will fail with "No module named 'filelock._api'")."""
    try:
        importlib.import_module("filelock._api")
        return "native"
    except ModuleNotFoundError:
        pass
    try:
        import filelock
        from filelock._core._settings import UNSET_FILE_MODE
        from filelock._core._singleton import FileLockMeta
    except ImportError as err:
        eval_logger.warning(
            f"V-Reason: filelock {_version('filelock')} has neither `filelock._api` nor the 4.3 layout "
            f"({err}); lmms-eval runs will fail to import `filelock._api`. Install filelock<4.3 (`vreason "
            "doctor` shows the supported range)"
        )
        return "unavailable"
    shim = types.ModuleType("filelock._api", "vreason_lmms_eval's stand-in for filelock<4.3's _api module")
    shim.FileLockMeta = FileLockMeta
    shim.BaseFileLock = filelock.BaseFileLock
    shim._UNSET_FILE_MODE = UNSET_FILE_MODE
    sys.modules["filelock._api"] = shim
    filelock._api = shim
    return "shim"
