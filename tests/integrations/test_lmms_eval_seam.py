"""The seam to lmms-eval (vreason_lmms_eval.lmms_eval_seam): the internals the integration reads still exist
where it reads them, and the filelock stand-in makes lmms-eval's own deadlock patch work on filelock 4.3."""

from __future__ import annotations

import importlib
import inspect

import pytest

pytest.importorskip("lmms_eval")

from vreason_lmms_eval import lmms_eval_seam


def test_simple_evaluate_still_builds_the_locals_we_read():
    from lmms_eval import evaluator

    names = (
        evaluator.simple_evaluate.__wrapped__.__code__.co_varnames
        if hasattr(evaluator.simple_evaluate, "__wrapped__")
        else evaluator.simple_evaluate.__code__.co_varnames
    )
    assert lmms_eval_seam.TASK_MANAGER_LOCAL in names and lmms_eval_seam.RUN_STAMP_LOCAL in names


def test_task_manager_has_the_model_name_we_rename():
    from lmms_eval.tasks import TaskManager

    assert "model_name" in inspect.signature(TaskManager.__init__).parameters


def test_pending_task_manager_and_run_stamp_are_found_up_the_stack():
    from lmms_eval.tasks import TaskManager

    def simple_evaluate():
        task_manager = TaskManager.__new__(TaskManager)
        task_manager.model_name = "vreason_qwen2_5_vl"
        datetime_str = "20261130_000000"  # noqa: F841
        return model_init()

    def model_init():
        return lmms_eval_seam.pending_task_manager(), lmms_eval_seam.run_datetime_str()

    manager, stamp = simple_evaluate()
    assert (
        lmms_eval_seam.task_manager_model_name(manager) == "vreason_qwen2_5_vl" and stamp == "20261130_000000"
    )
    lmms_eval_seam.set_task_manager_model_name(manager, "qwen2_5_vl")
    assert manager.model_name == "qwen2_5_vl"
    assert lmms_eval_seam.pending_task_manager() is None  # outside a run


def test_filelock_api_is_importable_and_lmms_eval_patch_runs():
    import vreason_lmms_eval

    assert vreason_lmms_eval.FILELOCK_API in ("native", "shim")
    api = importlib.import_module("filelock._api")
    assert (
        callable(api.FileLockMeta.__call__)
        and api.BaseFileLock is not None
        and hasattr(api, "_UNSET_FILE_MODE")
    )
    from lmms_eval.evaluator import _enable_reentrant_filelocks

    _enable_reentrant_filelocks()  # the call every lmms-eval run makes; it imports filelock._api
    import filelock

    lock_a, lock_b = filelock.FileLock("/tmp/vreason-test.lock"), filelock.FileLock("/tmp/vreason-test.lock")
    assert lock_a is lock_b  # the patch's cross-class singleton really is in force
    with lock_a:
        pass


def test_registered_model_names_are_what_the_cli_accepts():
    """``prompt_model=`` is checked against these: lmms-eval's own names, ours and aliases."""
    names = lmms_eval_seam.registered_model_names()
    assert {"qwen2_5_vl", "qwen3_vl", "huggingface", "llava_hf"} <= names
    assert {"vreason_qwen2_5_vl", "vreason_llava_video", "vreason_llava_onevision"} <= names


def test_output_model_name_matches_lmms_eval_folders():
    assert lmms_eval_seam.output_model_name("pretrained=/tmp/ckpt/tiny-qwen,lr=0.1").endswith("tiny-qwen")


@pytest.mark.parametrize(
    "module", ["lmms_eval.models.simple.qwen2_5_vl", "lmms_eval.models.chat.huggingface"]
)
def test_wrapper_state_is_read_back_by_the_wrappers_public_properties(module):
    """Our loaders replace the upstream ``__init__``: what they store must be what the properties return."""
    import torch

    cls = next(
        c
        for c in vars(importlib.import_module(module)).values()
        if inspect.isclass(c) and c.__module__ == module
    )
    wrapper = object.__new__(cls)
    model, tokenizer, config = object(), object(), object()
    lmms_eval_seam.set_wrapper_state(
        wrapper, model=model, tokenizer=tokenizer, config=config, device=torch.device("cpu"), rank=1,
        world_size=2, max_length=2048, batch_size=3,
    )  # fmt: skip
    assert wrapper.model is model and wrapper.tokenizer is tokenizer and wrapper.config is config
    assert (wrapper.device, wrapper.rank, wrapper.world_size) == (torch.device("cpu"), 1, 2)
    assert (wrapper.max_length, wrapper.batch_size) == (2048, 3)
    with pytest.raises(KeyError, match="no wrapper field"):
        lmms_eval_seam.set_wrapper_state(wrapper, weights=None)
