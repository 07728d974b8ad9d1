"""What a reproduction must state to be cited: the versions, the machine and the exact commands.

``provenance.json`` holds this call's command line, the versions and the machine, and each job's own record
(its exact command, environment, versions at the time it ran, exit code, wall time); ``commands.sh`` lists
every job's command as one shell line, runnable as is.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from .plan import Job, shell_line

PACKAGES = (
    "vreason-hooks",
    "lmms-eval",
    "transformers",
    "torch",
    "torchvision",
    "accelerate",
    "qwen-vl-utils",
    "decord",
    "flash-attn",
)


def versions() -> dict[str, str]:
    """Installed versions of what decides the numbers (``"not installed"`` where absent)."""
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine() -> dict[str, Any]:
    """CPU, cores and the GPUs torch sees."""
    import torch

    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return {"platform": platform.platform(), "cpu": platform.machine(), "cores": os.cpu_count(), "gpus": gpus}


def write(out: Path, argv: list[str], jobs: list[Job], started: dict[str, dict[str, Any] | None]) -> None:
    """``provenance.json`` and ``commands.sh`` (``started``: job name -> its ``job.json``, if it ran)."""
    lines = ["#!/bin/sh", "# The lmms-eval command of every job, as `vreason reproduce` ran it.", "set -e"]
    for job in jobs:
        record = started.get(job.name)
        if record:
            lines += [
                f"# {job.name} (started {record['started']})",
                shell_line(record["command"], record["env"]),
            ]
        else:
            lines += [f"# {job.name}: not run yet", shell_line(job.command())]
    (out / "commands.sh").write_text("\n".join(lines) + "\n")
    document = {
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shell_line(["vreason", "reproduce", *argv]),
        "executable": sys.executable,
        "versions": versions(),
        "machine": machine(),
        "jobs": {job.name: started.get(job.name) for job in jobs},
    }
    (out / "provenance.json").write_text(json.dumps(document, indent=1))
