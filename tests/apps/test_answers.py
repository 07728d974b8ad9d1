"""The shared application helpers (vreason_hooks.apps.answers, .runs): one behaviour, used everywhere."""

from __future__ import annotations

import pytest
import torch

from vreason_hooks import VReasonConfig
from vreason_hooks.apps import answers, demo, videoqa
from vreason_hooks.apps import testing as T
from vreason_hooks.apps.answers import extract_answer, final_number_rule, has_answer_tag
from vreason_hooks.apps.runs import generate_in_session


@pytest.mark.parametrize(
    "output, answer",
    [
        ("<think>it moves left</think><answer>B</answer>", "B"),
        ("<answer> (C) \n</answer>", "(C)"),
        # The last complete tag wins: a model restating the format while thinking does not fool the scorer.
        ("<think>I must reply as <answer>A</answer>. It goes down.</think><answer>D</answer>", "D"),
        ("<ANSWER>B</Answer>", "B"),  # tags are case-insensitive
        (
            "<think>x</think><answer>B. right",
            "B. right",
        ),  # cut by the token budget: the unclosed tag runs to the end
        ("<answer>A</answer> more thinking <answer>D, no", "A"),  # a complete tag beats a later unclosed one
        ("<answer>first <answer>second", "second"),  # of unclosed tags, the last
        ("  B  ", "B"),  # no tag: the whole output
        ("", ""),
        (None, ""),
    ],
)
def test_extract_answer(output, answer):
    assert extract_answer(output) == answer


def test_answer_tag_means_a_complete_tag():
    assert (
        has_answer_tag("<Answer>x</ANSWER>") and not has_answer_tag("<answer>x") and not has_answer_tag(None)
    )


@pytest.mark.parametrize(
    "text, number, rule",
    [
        ("So 7.\nAnswer: 1,234.0", "1234", "tag"),
        ("The answer is −17.", "-17", "tag"),
        ("4 * 5 = 20, then 20 + 3 = 23. A 9-step plan", "23", "equals"),
        ("I have 3 then 4 so 7", "7", "last_number"),
        ("x = -0.00", "0", "equals"),
        ("1.50 is the answer", "1.50", "last_number"),
        ("no digits", None, "none"),
    ],
)
def test_final_number_rule(text, number, rule):
    assert final_number_rule(text) == (number, rule)
    assert answers.final_number(text) == number


def test_every_application_uses_the_one_implementation():
    from vreason_lmms_eval import synthetic_task

    assert videoqa.extract_answer is synthetic_task.extract_answer is extract_answer
    assert demo.final_number is answers.final_number


def test_generate_in_session_is_plain_generate_when_off_and_labels_its_traces():
    model = T.tiny_llama()
    inputs = T.text_inputs(batch=2, pad=[0, 3])
    with torch.inference_mode():
        plain = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    run = generate_in_session(model, inputs, VReasonConfig(objective="none"), 6, label="baseline")
    assert torch.equal(run.new_tokens, plain[:, inputs["input_ids"].shape[1] :])
    assert [t.label for t in run.traces] == ["baseline", "baseline"] and run.seconds > 0
    on = generate_in_session(model, inputs, VReasonConfig(lr=0.5, step_interval=1), 6, label="on")
    assert all(t.update_steps for t in on.traces) and not any(p.grad is not None for p in model.parameters())
