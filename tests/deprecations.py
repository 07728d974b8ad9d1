"""Which transformers deprecations fail a test: ours always; a third-party call's only outside
:func:`upstream_call_deprecations` (a helper module, not conftest: several conftest modules exist)."""

from __future__ import annotations

import contextlib
import threading

_UPSTREAM_CALLS = threading.local()


@contextlib.contextmanager
def upstream_call_deprecations():
    """Inside: a deprecation transformers logs is a third-party call's (e.g. lmms-eval passing
    ``torch_dtype=``), not ours, and does not fail the test. Name the caller where you use it."""
    _UPSTREAM_CALLS.active = True
    try:
        yield
    finally:
        _UPSTREAM_CALLS.active = False


def inside_upstream_call() -> bool:
    return getattr(_UPSTREAM_CALLS, "active", False)
