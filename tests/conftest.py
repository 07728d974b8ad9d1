"""Shared fixtures: tiny random-weight models of every shipped adapter family (no hub)."""

from __future__ import annotations

import os

import pytest
import torch

from vreason_hooks import testing as T

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)

# One entry per shipped adapter: (adapter name, model builder, input builder). A new spec adds a line here
# and gets every check of the matrix tests (test_matrix.py) for free.
FAMILIES = {
    "qwen2_5_vl": (T.tiny_qwen2_5_vl, lambda m, **kw: T.qwen_video_inputs(m, **kw)),
    "llava_onevision": (T.tiny_llava_onevision, lambda m, **kw: T.llava_video_inputs(m, **kw)),
    "llama": (T.tiny_llama, lambda m, **kw: T.text_inputs(batch=kw.get("batch", 1), pad=kw.get("pad"), seed=kw.get("seed", 0))),
    "qwen2": (lambda **kw: T.tiny_qwen2(**kw), lambda m, **kw: T.text_inputs(batch=kw.get("batch", 1), pad=kw.get("pad"), seed=kw.get("seed", 0))),
}


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    """(adapter name, build(attn=...), make_inputs(model, batch=, pad=))."""
    build, inputs = FAMILIES[request.param]
    return request.param, build, inputs
