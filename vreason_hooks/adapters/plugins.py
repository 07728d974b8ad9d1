"""Adapter specs of installed third-party packages (entry-point group ``vreason_hooks.adapters``), loaded so
that one broken plugin never breaks ``attach``, ``vreason adapters`` or ``vreason doctor``.

A plugin that raises or cannot import is skipped with a warning naming the entry point and its distribution;
a plugin spec that reuses a shipped spec's name or ``model_type`` is shadowed by the shipped one, with a
warning. Both are kept as :class:`PluginProblem` for ``vreason doctor``, which reports them as failures.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from .spec import AdapterSpec, load_spec

ENTRY_POINT_GROUP = "vreason_hooks.adapters"
"""Third-party packages add specs here: the entry point loads to a spec path, a list of paths, an
:class:`AdapterSpec`, or a callable returning any of these."""


@dataclass(frozen=True)
class PluginProblem:
    """A plugin entry point that was skipped or shadowed, and why."""

    entry_point: str
    """``name = module:attr`` of the entry point."""
    distribution: str
    problem: str

    def __str__(self) -> str:
        return f"adapter plugin {self.entry_point} (from {self.distribution}): {self.problem}"


def load_plugins(shipped: list[AdapterSpec]) -> tuple[list[AdapterSpec], list[PluginProblem]]:
    """``(specs, problems)`` of every installed plugin; a shadowing spec is a problem, not a spec."""
    taken_names = {s.name for s in shipped}
    taken_types = {t for s in shipped for t in s.model_types}
    specs, problems = [], []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = _specs_of(ep)
        except Exception as err:  # noqa: BLE001 - any failure of third-party code skips that plugin alone
            problems.append(_problem(ep, f"skipped: it failed to load ({type(err).__name__}: {err})"))
            continue
        for spec in loaded:
            clash = sorted(({spec.name} & taken_names) | (set(spec.model_types) & taken_types))
            if clash:
                problems.append(
                    _problem(ep, f"spec {spec.name!r} shadowed: {', '.join(clash)} is a shipped adapter's")
                )
                continue
            specs.append(spec)
    for problem in problems:
        warnings.warn(f"V-Reason: {problem}", stacklevel=2)
    return specs, problems


def _specs_of(ep: EntryPoint) -> list[AdapterSpec]:
    loaded = ep.load()
    if callable(loaded) and not isinstance(loaded, AdapterSpec):
        loaded = loaded()
    specs = []
    for item in loaded if isinstance(loaded, (list, tuple)) else [loaded]:
        spec = item if isinstance(item, AdapterSpec) else load_spec(item)
        specs.append(spec.model_copy(update={"source": spec.source or f"entry point {ep.name} ({ep.value})"}))
    return specs


def _problem(ep: EntryPoint, problem: str) -> PluginProblem:
    distribution = ep.dist.name if ep.dist is not None else "unknown distribution"
    return PluginProblem(f"{ep.name} = {ep.value}", distribution, problem)
