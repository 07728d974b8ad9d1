"""The one answer extraction of every application and benchmark: ``<answer>`` tags and final numbers.

Two jobs, each written once here and imported by ``vreason run`` (:mod:`.videoqa`), the synthetic lmms-eval
task (``vreason_lmms_eval.synthetic_task``), ``vreason demo`` and the reasoning study (``benchmarks/``). The
rules and why they were chosen are in docs/method.md ("Reading the answer").
"""

from __future__ import annotations

import re

_COMPLETE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL | re.IGNORECASE)
_OPEN = re.compile(r"<answer>", re.IGNORECASE)

_NUMBER = r"[-−]?\d[\d,]*(?:\.\d+)?"
NUMBER_RULES = (
    ("tag", re.compile(r"answer\s*(?:is)?\s*[:=]?\s*\**\s*(" + _NUMBER + ")", re.IGNORECASE)),
    ("equals", re.compile(r"=\s*\**\s*(" + _NUMBER + ")")),
    ("last_number", re.compile(_NUMBER)),
)
"""``(name, pattern)`` in the order :func:`final_number_rule` tries them; the last match of a pattern wins."""


def extract_answer(text: str | None) -> str:
    """The answer in a model output that was asked for ``<think>...</think><answer>...</answer>``, stripped.

    1. the LAST complete ``<answer>...</answer>`` (tags case-insensitive): a model that restates the format
       while thinking ("I will put it in <answer></answer>") writes its real answer after that;
    2. else the text after the last ``<answer>``, to the end (an output cut by the token budget);
    3. else the whole output (a model that ignored the format).
    """
    text = text or ""
    complete = _COMPLETE.findall(text)
    if complete:
        return complete[-1].strip()
    opened = list(_OPEN.finditer(text))
    return (text[opened[-1].end() :] if opened else text).strip()


def has_answer_tag(text: str | None) -> bool:
    """Whether ``text`` holds a complete ``<answer>...</answer>`` (case-insensitive): did the model follow
    the format?"""
    return bool(_COMPLETE.search(text or ""))


def normalise_number(text: str) -> str:
    """``'1,234.0'`` -> ``'1234'``, ``'− 5'`` -> ``'-5'``, ``'-0'`` -> ``'0'``; other decimals kept as written
    (so exact-match scorers such as reasoning-gym's accept the number)."""
    text = text.replace("−", "-").replace(" ", "").replace(",", "")
    if re.fullmatch(r"-?\d+\.0+", text):
        text = text.split(".")[0]
    return "0" if text == "-0" else text


def final_number_rule(text: str) -> tuple[str | None, str]:
    """``(number, rule)``: the model's numeric answer and the rule of :data:`NUMBER_RULES` that found it.

    In order: the number after the last ``Answer:`` / ``answer is`` (``'tag'``); else the number right after
    the last ``=`` (``'equals'``: small models write ``a + b = c`` and ramble on, so the last number is more
    often noise); else the last number (``'last_number'``); else ``(None, 'none')``.
    """
    for rule, pattern in NUMBER_RULES:
        found = pattern.findall(text)
        if found:
            return normalise_number(found[-1]), rule
    return None, "none"


def final_number(text: str) -> str | None:
    """The number :func:`final_number_rule` finds in ``text``, or ``None``."""
    return final_number_rule(text)[0]
