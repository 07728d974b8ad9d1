"""``vreason doctor``: is this installation one V-Reason runs correctly on? Offline, in about ten seconds.

Three parts, each a list of :class:`Check`:

* versions: python, torch, transformers, lmms-eval and filelock against the ranges this package declares;
* what is registered: the adapters and the lmms-eval models (read from entry points, no lmms-eval import);
* a self-test on a built-in tiny model: ``objective='none'`` is bit-identical to plain ``generate``, and the
  switch objective at a large lr makes updates that move ΔV — the two failures a moved transformers internal
  causes (a controller that changes output when off, or one that silently never runs).
"""

from __future__ import annotations

import importlib
import platform
import time
from dataclasses import dataclass
from importlib.metadata import entry_points

from .. import transformers_seam

PACKAGES = ("torch", "transformers", "lmms-eval", "filelock")
"""Checked against the declared ranges (``pyproject.toml``; lmms-eval and filelock: the ``eval`` extra)."""


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str


def version_checks() -> list[Check]:
    """Python and the packages of :data:`PACKAGES`: installed version, declared range, inside or outside."""
    checks = [Check("python", True, platform.python_version())]
    for name in PACKAGES:
        version, spec = (
            transformers_seam.installed_version(name),
            transformers_seam.supported_ranges().get(name),
        )
        if version is None:
            checks.append(Check(name, True, f"not installed (supported: {spec or 'any'})"))
            continue
        inside = transformers_seam.in_supported_range(name)
        where = "no declared range" if inside is None else ("inside" if inside else "OUTSIDE")
        checks.append(Check(name, inside is not False, f"{version}  {where} {spec or ''}".rstrip()))
    return checks


def registry_checks() -> list[Check]:
    """The adapters this installation knows and the lmms-eval models our entry point registers."""
    from ..adapters import available, plugin_problems

    specs = available()
    checks = [Check("adapters", bool(specs), ", ".join(s.name for s in specs) or "none")]
    checks += [Check("adapter plugin", False, str(problem)) for problem in plugin_problems()]
    names = []
    installed = transformers_seam.installed_version("lmms-eval") is not None
    try:
        if installed:  # lmms-eval loads our entry point while it builds its registry: let it go first
            importlib.import_module("lmms_eval.models")
        for ep in entry_points(group="lmms_eval.models"):
            if not ep.value.startswith("vreason_lmms_eval"):
                continue
            for manifest in ep.load()():
                names.append(manifest.model_id + "".join(f" (alias {a})" for a in manifest.aliases))
    except Exception as err:  # noqa: BLE001 - an lmms-eval that moved is a finding to report, not a crash
        checks.append(Check("lmms-eval models", False, f"{type(err).__name__}: {err}"))
        return checks
    detail = ", ".join(names) if names else ("none registered" if installed else "lmms-eval not installed")
    checks.append(Check("lmms-eval models", bool(names) or not installed, detail))
    return checks


def self_test() -> list[Check]:
    """objective='none' bit-identical to plain ``generate``; switch at lr 0.05 updates and moves ΔV."""
    import torch

    from ..config import VReasonConfig
    from ..session import attach
    from . import testing

    model = testing.tiny_llama()
    inputs = testing.text_inputs(batch=2, pad=[0, 3])
    settings = dict(max_new_tokens=12, min_new_tokens=12, do_sample=False)
    checks = []
    try:
        plain = model.generate(**inputs, **settings)
        with attach(model, VReasonConfig(objective="none")):
            off = model.generate(**inputs, **settings)
        same = torch.equal(plain, off)
        checks.append(
            Check("objective=none == plain generate", same, "bit-identical" if same else "OUTPUT DIFFERS")
        )
        with attach(model, VReasonConfig(lr=0.05, step_interval=2)) as session:
            model.generate(**inputs, **settings)
        updates = [len(t.update_steps) for t in session.traces]
        moved = [t.delta_norm[-1] if t.delta_norm else 0.0 for t in session.traces]
        ok = all(updates) and all(m > 0 for m in moved)
        checks.append(
            Check(
                "switch, lr 0.05, k 2: updates move ΔV",
                ok,
                f"updates per sequence {updates}, final ‖ΔV‖ {[round(m, 4) for m in moved]}",
            )
        )
    except Exception as err:  # noqa: BLE001 - the point of the self-test is to report what broke
        checks.append(Check("self-test", False, f"{type(err).__name__}: {err}"))
    return checks


def run(print_line=print) -> int:
    """Print the report; 0 when every check passed, 1 otherwise."""
    start = time.perf_counter()
    failed = 0
    for title, part in (
        ("versions", version_checks),
        ("registered", registry_checks),
        ("self-test", self_test),
    ):
        print_line(f"{title}:")
        for check in part():
            failed += not check.ok
            print_line(f"  {'ok  ' if check.ok else 'FAIL'}  {check.name:<38} {check.detail}")
    verdict = "all checks passed" if not failed else f"{failed} check(s) FAILED"
    print_line(f"{verdict} ({time.perf_counter() - start:.1f} s)")
    return 0 if not failed else 1
