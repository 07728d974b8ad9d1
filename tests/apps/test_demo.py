"""``vreason demo``: the bundled questions, the scoring rule, and one real end-to-end run on SmolLM2-135M."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vreason_hooks.apps import demo
from vreason_hooks.trace import load_traces

VREASON = shutil.which("vreason", path=str(Path(sys.executable).parent)) or "vreason"


def test_bundled_questions_have_integer_answers_and_sources():
    questions = demo.load_questions()
    assert 5 <= len(questions) <= 12
    assert len({q.id for q in questions}) == len(questions)
    for q in questions:
        assert q.question and q.source.startswith("reasoning-gym")
        assert demo.final_number(q.answer) == q.answer, q  # every known answer is a plain integer


# The reasoning-gym settings the bundled questions were drawn with (seed 2026; `source` names dataset and
# item).
GENERATORS = {
    "chain_sum": dict(min_terms=2, max_terms=2, min_digits=1, max_digits=1, size=6),
    "basic_arithmetic": dict(
        min_terms=2, max_terms=2, min_digits=1, max_digits=1, operators=("+", "-", "*"), size=6
    ),
    "leg_counting": dict(min_animals=1, max_animals=1, size=6),
    "products": dict(min_terms=2, max_terms=2, min_digits=1, max_digits=1, size=4),
}


def test_bundled_questions_are_reasoning_gyms():
    """Each bundled question and answer is exactly what reasoning-gym generates for its recorded source."""
    import reasoning_gym

    for q in demo.load_questions():
        _, version, name, seed, _, index = q.source.split()
        assert (version, seed) == ("0.1.25", "seed=2026")
        item = reasoning_gym.create_dataset(name, seed=2026, **GENERATORS[name])[int(index)]
        assert (item["question"].strip(), str(item["answer"])) == (q.question, q.answer)


@pytest.mark.parametrize(
    "text, number",
    [
        ("74 + 75 = 129", "129"),
        ("74 + 75 = 129\n\nThis is a classic example with 3 parts", "129"),
        ("So we get 7.\nAnswer: 1,234.0", "1234"),
        ("The answer is -17.", "-17"),
        ("x = −8", "-8"),
        ("I have 3 then 4 so 7", "7"),
        ("no digits here", None),
    ],
)
def test_final_number(text, number):
    assert demo.final_number(text) == number


def test_is_correct_compares_the_extracted_number():
    assert demo.is_correct("20 - 11 = 9", "9")
    assert not demo.is_correct("20 - 11 = 11", "9")
    assert not demo.is_correct("I do not know", "9")


def test_verdicts():
    q = demo.Question("q", "?", "1")
    right = demo.Run("= 1", "1", True, 3, 0.1, 0, 1)
    wrong = demo.Run("= 2", "2", False, 3, 0.1, 1, 1)
    assert demo.Result(q, wrong, right).verdict == "helped"
    assert demo.Result(q, right, wrong).verdict == "hurt"
    assert demo.Result(q, wrong, wrong).verdict == "both wrong, same text"
    assert demo.Result(q, right, demo.Run("so = 1", "1", True, 4, 0.1, 1, 2)).verdict == "both right"


@pytest.mark.slow
def test_demo_end_to_end_on_smollm2(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    result = subprocess.run(
        [VREASON, "demo", "--limit", "1", "--max-new-tokens", "12", "--threads", "1", "--out", tmp_path],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr
    assert "de-quantizing" not in result.stderr  # library load bars stay hidden without --debug
    # The settings in force are printed, and named as the demo's rather than the paper's.
    cfg = demo.DEMO_CONFIG
    assert f"lr={cfg.lr:g}, step_interval={cfg.step_interval}" in result.stdout
    assert "differs from the paper" in result.stdout
    assert "baseline:" in result.stdout and "V-Reason:" in result.stdout

    report = json.loads((tmp_path / "report.json").read_text())
    (item,) = report["questions"]
    first = demo.load_questions()[0]
    assert item["id"] == first.id and item["known_answer"] == first.answer
    assert report["vreason_config"] == cfg.model_dump()
    for side in ("baseline", "vreason"):
        run = item[side]
        assert 1 <= run["num_tokens"] <= 12 and run["seconds"] > 0
        assert run["correct"] == (demo.final_number(run["text"]) == first.answer)
    assert item["baseline"]["updates"] == 0

    baseline, controlled = load_traces(tmp_path / item["files"]["traces"])
    assert baseline.config["objective"] == "none" and controlled.config["objective"] == "switch"
    assert baseline.adapter == controlled.adapter == "llama"
    assert len(controlled.update_steps) == item["vreason"]["updates"] > 0
    k = cfg.step_interval
    assert all(step % k == k - 1 for step in controlled.update_steps)  # after tokens k-1, 2k-1, ...
    png = tmp_path / item["files"]["plot"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
