"""Shared fixtures: tiny random-weight models of every shipped adapter family (no hub)."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from deprecations import inside_upstream_call

from vreason_hooks.apps.testing import FAMILIES

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(1)


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    """(adapter name, build(attn=...), make_inputs(model, batch=, pad=)) for each shipped adapter."""
    build, inputs = FAMILIES[request.param]
    return request.param, build, inputs


class _DeprecationRecords(logging.Handler):
    """Collects the deprecations transformers *logs* (``logger.warning_once``) instead of warning about."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        message = record.getMessage()
        if "deprecated" in message.lower() and not inside_upstream_call():
            self.messages.append(message)


@pytest.fixture(autouse=True)
def transformers_deprecations_fail_the_test():
    """A transformers deprecation message logged during a test fails it, like the warnings in pyproject.toml
    (``filterwarnings``): our code must use the current names, through vreason_hooks.transformers_seam."""
    handler = _DeprecationRecords()
    hf_logger = logging.getLogger("transformers")
    hf_logger.addHandler(handler)
    try:
        yield
    finally:
        hf_logger.removeHandler(handler)
    if handler.messages:
        pytest.fail(f"transformers logged a deprecation: {handler.messages[0]}")
