"""The one chat prompt and the one answer extraction every variant shares.

SmolLM2-135M rarely follows an "Answer:" instruction, so extraction falls back in a fixed, documented
order (our choice; the issue suggests the last number):

1. the number after the last ``Answer:`` (case-insensitive), if the reply has one;
2. otherwise the number right after the last ``=`` sign (the model usually writes ``a - b = c``; it often
   rambles on after the result, so the last number of the reply is more often noise than this);
3. otherwise the last number of the reply;
4. otherwise no answer (scored wrong).

Numbers are normalised so that reasoning-gym's exact-match scorers accept them: thousands separators dropped,
``12.0`` -> ``12``, a unicode minus -> ``-``.
"""

from __future__ import annotations

import re

# No instruction is appended to the dataset's question. A pilot with "Think step by step, then give the final
# answer on the last line as 'Answer: <number>'." made SmolLM2 ramble to the token budget on all 16 held-apart
# problems and solve none (benchmarks/results/reasoning_smollm2_prompt_pilot.jsonl); with the bare question it
# answers in a sentence or two and solves some.
INSTRUCTION = ""

_NUMBER = r"[-−]?\d[\d,]*(?:\.\d+)?"
_TAGGED = re.compile(r"answer\s*(?:is)?\s*[:=]?\s*\**\s*(" + _NUMBER + ")", re.IGNORECASE)
_AFTER_EQUALS = re.compile(r"=\s*\**\s*(" + _NUMBER + ")")
_ANY = re.compile(_NUMBER)


def build_messages(question: str) -> list[dict[str, str]]:
    """Chat messages for one problem: the dataset's question (plus :data:`INSTRUCTION` if one is set)."""
    content = f"{question}\n{INSTRUCTION}" if INSTRUCTION else question
    return [{"role": "user", "content": content}]


def normalise_number(text: str) -> str:
    """``'1,234.0'`` -> ``'1234'``, ``'− 5'`` -> ``'-5'``; other decimals are kept as written."""
    text = text.replace("−", "-").replace(" ", "").replace(",", "")
    if re.fullmatch(r"-?\d+\.0+", text):
        text = text.split(".")[0]
    return "0" if text == "-0" else text


def extract_answer(reply: str) -> tuple[str | None, str]:
    """``(answer, method)`` with method one of ``'tag'``, ``'equals'``, ``'last_number'``, ``'none'``."""
    for method, pattern in (("tag", _TAGGED), ("equals", _AFTER_EQUALS), ("last_number", _ANY)):
        matches = pattern.findall(reply)
        if matches:
            return normalise_number(matches[-1]), method
    return None, "none"
