"""The docs say what the code does: every refusal message quoted in docs/refusals.md is in the code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _strings(folder: Path) -> list[str]:
    """Every string literal of the package, implicit concatenations joined, f-string fields as ``{}``."""
    found = []
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.append(node.value)
            elif isinstance(node, ast.JoinedStr):
                found.append("".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values))
    return found


def test_every_refusal_quoted_in_the_docs_is_what_the_code_says():
    table = (ROOT / "docs" / "refusals.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| refused")]
    quotes = [q for row in rows for q in re.findall(r"`([^`]+)`", row.rsplit("|", 2)[-2])]
    assert len(quotes) > 30
    code = "\n".join(_strings(ROOT / "vreason_hooks"))
    missing = [q for q in quotes if q.rstrip() not in code]
    assert not missing, f"docs/refusals.md quotes messages the code no longer has: {missing}"
