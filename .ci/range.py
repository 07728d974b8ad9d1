"""Run the adapter matrix and the core tests on both ends of the declared transformers range.

oldest = the lower bound of ``transformers`` in pyproject.toml; newest = the version requirements.lock pins
(checked to lie inside the range). Each runs in its own environment: the lock's venv with that transformers
release installed in an overlay folder (``.venv-range/transformers-X``) that comes first on ``PYTHONPATH``
(transformers' own dependencies are the same across the range; the check below proves the version in use).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
CORE_TESTS = [
    "tests/engine/test_matrix.py",
    "tests/engine/test_transformers_seam.py",
    "tests/unit/test_controller.py",
    "tests/engine/test_generate_features.py",
    "tests/engine/test_lite.py",
    "tests/engine/test_lite_prefill.py",
    "tests/engine/test_hybrid_layers.py",
]


def declared_range() -> Requirement:
    """transformers as the ``hf`` extra declares it (the HF path; the core does not depend on it)."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return next(Requirement(d) for d in extras["hf"] if Requirement(d).name == "transformers")


def ends(requirement: Requirement) -> dict[str, str]:
    lower = [s.version for s in requirement.specifier if s.operator in (">=", "==")]
    if len(lower) != 1:
        sys.exit(f"range.py: pyproject.toml must give transformers one lower bound (>=X); got {requirement}")
    pinned = re.search(r"^transformers==(\S+)$", (ROOT / "requirements.lock").read_text(), re.M)
    if pinned is None:
        sys.exit("range.py: requirements.lock pins no transformers version")
    found = {"oldest": lower[0], "newest": pinned.group(1)}
    for label, version in found.items():
        if not requirement.specifier.contains(Version(version)):
            sys.exit(
                f"range.py: the {label} tested transformers {version} is outside the declared {requirement}"
            )
    return found


def run(python: Path, version: str, label: str, pytest_args: list[str]) -> int:
    overlay = ROOT / ".venv-range" / f"transformers-{version}"
    if not (overlay / "transformers").is_dir():
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--target",
                str(overlay),
                f"transformers=={version}",
            ],
            check=True,
        )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(overlay), os.environ.get("PYTHONPATH")])),
    }
    check = (
        "import transformers, sys; v = transformers.__version__; print('transformers', v); sys.exit(v != "
        f"{version!r})"
    )
    print(f"== {label} of the declared range: transformers {version}", flush=True)
    if subprocess.run([str(python), "-c", check], env=env, cwd=ROOT).returncode:
        sys.exit(f"range.py: the overlay did not put transformers {version} first on the path")
    return subprocess.run(
        [str(python), "-m", "pytest", "-q", "-n", "2", "--dist", "loadfile", *CORE_TESTS, *pytest_args],
        env=env,
        cwd=ROOT,
    ).returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=".venv")
    parser.add_argument("pytest_args", nargs="*")
    args = parser.parse_args()
    python = ROOT / args.venv / "bin" / "python"
    failures = [
        label
        for label, version in ends(declared_range()).items()
        if run(python, version, label, args.pytest_args)
    ]
    if failures:
        print(f"range.py: core tests FAILED on the {' and '.join(failures)} transformers of the range")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
