"""The one chat prompt and the one answer extraction every variant shares.

SmolLM2-135M rarely follows an "Answer:" instruction, so extraction falls back in a fixed, documented
order (our choice; the issue suggests the last number). ``extract_answer`` is
:func:`vreason_hooks.apps.answers.final_number_rule` (``vreason demo`` scores with the same rule):

1. the number after the last ``Answer:`` (case-insensitive), if the reply has one;
2. otherwise the number right after the last ``=`` sign (the model usually writes ``a - b = c``; it often
   rambles on after the result, so the last number of the reply is more often noise than this);
3. otherwise the last number of the reply;
4. otherwise no answer (scored wrong).

Numbers are normalised so that reasoning-gym's exact-match scorers accept them: thousands separators dropped,
``12.0`` -> ``12``, a unicode minus -> ``-``.
"""

from __future__ import annotations

# The demo's rule too: one implementation, in the package.
from vreason_hooks.apps.answers import final_number_rule as extract_answer  # noqa: F401 - runner.py's import

# No instruction is appended to the dataset's question. A pilot with "Think step by step, then give the final
# answer on the last line as 'Answer: <number>'." made SmolLM2 ramble to the token budget on all 16 held-apart
# problems and solve none (benchmarks/results/reasoning_smollm2_prompt_pilot.jsonl); with the bare question it
# answers in a sentence or two and solves some.
INSTRUCTION = ""


def build_messages(question: str) -> list[dict[str, str]]:
    """Chat messages for one problem: the dataset's question (plus :data:`INSTRUCTION` if one is set)."""
    content = f"{question}\n{INSTRUCTION}" if INSTRUCTION else question
    return [{"role": "user", "content": content}]
