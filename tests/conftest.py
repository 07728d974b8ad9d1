"""Shared fixtures: tiny random-weight models of every shipped adapter family (no hub)."""

from __future__ import annotations

import os

import pytest
import torch

from vreason_hooks.testing import FAMILIES

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    """(adapter name, build(attn=...), make_inputs(model, batch=, pad=)) for each shipped adapter."""
    build, inputs = FAMILIES[request.param]
    return request.param, build, inputs
