"""The reasoning study's machinery on a tiny random Llama with the real SmolLM2 tokenizer (no full study)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from scipy import stats as scipy_stats

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import reasoning
from reasoning_study import prompting, report, runner, stats, study, tasks, variants
from reasoning_study.models import load_model


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny")


@pytest.fixture(scope="module")
def add_sub():
    return tasks.ProblemSet(tasks.TASKS["add_sub_2x2"], 6, seed=7)


# ------------------------------------------------------------------ answer extraction
@pytest.mark.parametrize(
    "reply, answer, method",
    [
        ("5 - 3 = 2. So we are done.\nAnswer: 2", "2", "tag"),
        ("The answer is -17.", "-17", "tag"),
        ("First 4 * 5 = 20, then 20 + 3 = 23. This is a common 9-step operation", "23", "equals"),
        ("We subtract 3 from 5 and get 2", "2", "last_number"),
        ("I cannot compute this.", None, "none"),
        ("Answer: 1,234.0", "1234", "tag"),
        ("so the result = −8", "-8", "equals"),
        ("Answer: <number>\n so 7 + 1 = 8", "8", "equals"),
    ],
)
def test_extract_answer(reply, answer, method):
    assert prompting.extract_answer(reply) == (answer, method)


def test_prompt_is_the_question_plus_the_shared_instruction(monkeypatch):
    (message,) = prompting.build_messages("Calculate 5 - 3.")
    assert message == {"role": "user", "content": "Calculate 5 - 3."}  # the study's setting: no instruction
    monkeypatch.setattr(prompting, "INSTRUCTION", "Answer briefly.")
    assert prompting.build_messages("Calculate 5 - 3.")[0]["content"] == "Calculate 5 - 3.\nAnswer briefly."


# ------------------------------------------------------------------ problems and scoring
def test_problems_are_reproducible_and_scored_by_reasoning_gym(add_sub):
    again = tasks.ProblemSet(tasks.TASKS["add_sub_2x2"], 6, seed=7)
    other = tasks.ProblemSet(tasks.TASKS["add_sub_2x2"], 6, seed=8)
    assert [p.question for p in again.problems] == [p.question for p in add_sub.problems]
    assert [p.question for p in other.problems] != [p.question for p in add_sub.problems]
    p = add_sub.problems[0]
    assert add_sub.score(p, p.answer)
    assert not add_sub.score(p, str(int(p.answer) + 1))
    assert not add_sub.score(p, None)
    dev, test = tasks.split(add_sub.problems, 2)
    assert len(dev) == 2 and len(test) == 4 and not {q.uid for q in dev} & {q.uid for q in test}


def test_products_task_has_the_documented_difficulty():
    ps = tasks.ProblemSet(tasks.TASKS["products_2x2"], 30, seed=0)
    for p in ps.problems:
        a, b = (int(x) for x in p.question.split(":")[1].split(".")[0].split("*"))
        assert abs(a) < 100 and abs(b) < 100 and ps.score(p, str(a * b))


# ------------------------------------------------------------------ variants
def test_each_ablation_differs_from_switch_k4_in_its_one_setting():
    vs = {v.name: v.config.model_dump() for v in variants.study_variants(lr=1e-2)}
    ref = vs["switch_k4"]
    expected = {
        "baseline": {"objective": "none"},
        "switch_k4_paper_lr": {"lr": 3e-4},
        "min_only": {"objective": "min"},
        "max_only": {"objective": "max"},
        "switch_k2": {"step_interval": 2},
        "switch_k8": {"step_interval": 8},
        "switch_ema_first": {"ema_init": "first"},
        "lite": {"lite": True},
    }
    assert set(vs) == set(expected) | {"switch_k4"}
    assert ref["lr"] == 1e-2 and ref["objective"] == "switch" and ref["step_interval"] == 4
    for name, diff in expected.items():
        changed = {k: v for k, v in vs[name].items() if v != ref[k]}
        if name == "baseline":  # lr is irrelevant when ΔV never moves
            changed.pop("lr", None)
        assert changed == diff, name
    assert "switch_k4_paper_lr" not in {v.name for v in variants.study_variants(lr=3e-4)}
    (prune_only,) = variants.diagnostic_variants(lr=1e-2)
    assert prune_only.config.lite and not prune_only.config.updates  # Lite's pruning with ΔV frozen


def test_sweep_names_round_trip_to_their_grid_point():
    grid = [(5e-5, 4), (0.03, 4), (3e-3, 1)]
    sweep = variants.sweep_variants(grid)
    assert sweep[0].is_baseline
    assert [study.grid_point(v.name) for v in sweep[1:]] == grid
    assert [(v.config.lr, v.config.step_interval) for v in sweep[1:]] == grid


# ------------------------------------------------------------------ statistics
def test_wilson_interval_matches_the_closed_form():
    acc = stats.accuracy_ci(7, 20)
    z, p, n = scipy_stats.norm.ppf(0.975), 7 / 20, 20
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * (p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5
    assert acc.low == pytest.approx(centre - half, abs=1e-6) and acc.high == pytest.approx(
        centre + half, abs=1e-6
    )
    assert (
        stats.accuracy_ci(0, 10).low == pytest.approx(0.0, abs=1e-12) and stats.accuracy_ci(0, 10).high > 0.2
    )


def test_mcnemar_exact_counts_discordant_pairs():
    base = [True] * 1 + [False] * 8 + [True] * 5 + [False] * 6
    other = [False] * 1 + [True] * 8 + [True] * 5 + [False] * 6
    res = stats.mcnemar_exact(base, other)
    assert (res.n, res.gained, res.lost) == (20, 8, 1)
    assert res.p_value == pytest.approx(2 * (1 + 9) / 2**9)  # two-sided binomial tail of 8+ out of 9
    assert res.diff == pytest.approx(7 / 20) and res.diff_low < res.diff < res.diff_high
    same = stats.mcnemar_exact(base, base)
    assert same.p_value == 1.0 and same.diff == 0.0
    with pytest.raises(ValueError):
        stats.mcnemar_exact([True], [True, False])


def _summary(acc, changed, n=10):
    return {"all": {"n": n, "accuracy": {"value": acc}, "changed_outputs": changed}}


def test_choose_lr_uses_accuracy_then_changed_outputs_then_nearness_to_the_paper():
    sweep = {
        "baseline": _summary(0.3, None),
        "switch_k4_lr0.0003": _summary(0.3, 0.0),
        "switch_k4_lr0.03": _summary(0.3, 0.4),
        "switch_k4_lr0.1": _summary(0.2, 0.9),
        "switch_k1_lr0.03": _summary(0.9, 0.9),
    }
    assert study.choose_lr(sweep) == 0.03  # ties on accuracy, changes more; k=1 points never chosen
    sweep["switch_k4_lr0.1"] = _summary(0.4, 0.9)
    assert study.choose_lr(sweep) == 0.1
    tie = {"switch_k4_lr5e-05": _summary(0.3, 0.0), "switch_k4_lr0.0005": _summary(0.3, 0.0)}
    assert study.choose_lr(tie) == 5e-4  # nearer 3e-4 on a log scale
    with pytest.raises(ValueError):
        study.choose_lr({"baseline": _summary(0.3, None)})


def test_summarise_pairs_on_uids_and_keeps_errors_out():
    def rec(uid, variant, correct, reply="x", error=None):
        r = {
            "uid": uid,
            "variant": variant,
            "correct": correct,
            "reply": reply,
            "num_tokens": 10,
            "hit_budget": False,
            "seconds": 1.0,
            "ema_peak_step": 3,
            "ema_peak": 0.5,
            "final_entropy": 0.1,
            "entropy": [1.0, 0.5],
            "updates": 2,
            "delta_norm": 0.1,
            "extraction": "equals",
        }
        return r | {"error": error} if error else r

    base = [rec(i, "baseline", i < 2) for i in range(4)]
    other = [
        rec(0, "v", False, "y"),
        rec(1, "v", True),
        rec(2, "v", True, "z"),
        rec(3, "v", False, error="boom"),
    ]
    s = stats.summarise(other, base)
    assert s["n"] == 3 and s["errors"] == 1 and s["error_message"] == "boom"
    assert s["accuracy"]["correct"] == 2 and (s["paired"]["gained"], s["paired"]["lost"]) == (1, 1)
    assert s["changed_outputs"] == pytest.approx(2 / 3)
    assert s["ema_peak_at_end"] == 0.0  # peak at token 3 of 10
    assert stats.summarise([rec(0, "v", True) | {"ema_peak_step": 9}], None)["ema_peak_at_end"] == 1.0


def test_identical_replies_table_counts_byte_identical_replies():
    recs = [
        {"phase": "test", "variant": v, "uid": u, "reply": reply}
        for v, u, reply in [
            ("switch_ema_first", 0, "a"),
            ("min_only", 0, "a"),
            ("switch_ema_first", 1, "b"),
            ("min_only", 1, "c"),
            ("switch_k4", 0, "a"),
        ]
    ]
    table = report.identical_replies(recs)
    assert "| switch_ema_first | min_only | 1 / 2 |" in table and "| switch_k4 | min_only | 1 / 1 |" in table
    assert "max_only" not in table


# ------------------------------------------------------------------ generation on a tiny model
def test_baseline_variant_is_plain_generate_and_switch_moves_outputs(tiny, add_sub):
    model, tokenizer = tiny
    problems = add_sub.problems[:2]
    inputs = runner.encode(tokenizer, problems)
    plain = model.generate(**inputs, max_new_tokens=5, do_sample=False)[:, inputs["input_ids"].shape[1] :]
    ids, traces, _ = runner.generate_batch(model, tokenizer, problems, variants.baseline(), 5)
    assert ids == plain.tolist() and [t.num_tokens for t in traces] == [5, 5]

    strong = variants.Variant("strong", variants.VReasonConfig(lr=0.5, step_interval=1), "")
    records = runner.run_batch(model, tokenizer, add_sub, problems, strong, 5, "test")
    base = runner.run_batch(model, tokenizer, add_sub, problems, variants.baseline(), 5, "test")
    assert all(r["updates"] == 4 and r["delta_norm"] > 0 for r in records)  # an update after tokens 1..4
    assert all(len(r["entropy"]) == r["num_tokens"] == 5 and r["hit_budget"] for r in records + base)
    assert [r["reply"] for r in records] != [r["reply"] for r in base]


def test_a_failing_variant_is_recorded_not_raised(tiny, add_sub, monkeypatch):
    model, tokenizer = tiny

    def broken(*args, **kwargs):
        raise NotImplementedError("lite pruning missing")

    monkeypatch.setattr(runner, "generate_batch", broken)
    records = runner.run_batch(
        model, tokenizer, add_sub, add_sub.problems[:2], variants.baseline(), 4, "test"
    )
    assert [r["error"] for r in records] == ["NotImplementedError: lite pruning missing"] * 2


# ------------------------------------------------------------------ the whole driver, resumable
def test_driver_writes_records_summary_and_docs_and_resumes(tmp_path, tiny):
    out, docs = tmp_path / "r.jsonl", tmp_path / "docs" / "page.md"
    argv = [
        "--model",
        "tiny",
        "--tasks",
        "add_sub_2x2",
        "--n",
        "3",
        "--dev-n",
        "1",
        "--batch-size",
        "2",
        "--max-new-tokens",
        "3",
        "--lrs",
        "1e-3",
        "0.3",
        "--k1-lrs",
        "--out",
        str(out),
        "--docs",
        str(docs),
    ]
    summary = reasoning.main(argv)
    records = study.read_records(out)
    sweep = [r for r in records if r["phase"] == "sweep"]
    test = [r for r in records if r["phase"] == "test"]
    assert len(sweep) == 3 and {r["variant"] for r in sweep} == {
        "baseline",
        "switch_k4_lr0.001",
        "switch_k4_lr0.3",
    }
    chosen = summary["chosen_lr"]
    assert chosen in (1e-3, 0.3)
    assert len(test) == 2 * len(variants.study_variants(chosen))
    assert all(
        r["config"]["lr"] == chosen for r in test if r["variant"] not in ("baseline", "switch_k4_paper_lr")
    )
    assert {r["uid"] for r in test}.isdisjoint({r["uid"] for r in sweep})  # never tuned on the test part
    on_disk = json.loads(out.with_suffix(".json").read_text())
    assert (
        on_disk["test"]["switch_k4"]["add_sub_2x2"]["n"] == 2
        and on_disk["meta"]["runs"][0]["model"] == "tiny"
    )

    page = docs.read_text()
    assert report.BEGIN in page and "| switch_k4 | 2 |" in page and "McNemar p" in page
    assert "- `min_only`: " in page and "points against the baseline" in page  # the generated headline
    for fig in ("reasoning_entropy.png", "reasoning_tokens.png", "reasoning_sweep.png"):
        assert (docs.parent / "figures" / fig).stat().st_size > 1000 and f"figures/{fig}" in page

    docs.write_text(page.replace("# V-Reason", "# V-Reason\n\nHand-written findings.", 1))
    with out.open("a") as f:
        f.write('{"truncated": ')  # a run killed mid-write
    reasoning.main(argv)  # resumes: nothing generated twice
    assert len(study.read_records(out)) == len(records)
    assert "Hand-written findings." in docs.read_text() and report.BEGIN in docs.read_text()


# ------------------------------------------------------------------ the VLM path (lmms-eval), without a VLM
def test_lmms_eval_model_args_round_trip_through_the_integration(tmp_path):
    pytest.importorskip("lmms_eval")
    from lmms_eval.utils import simple_parse_args_string
    from reasoning_study import lmms_eval
    from vreason_lmms_eval.model_args import split_model_args

    for variant in variants.study_variants(lr=1e-2):
        text = lmms_eval.model_args(
            variant.config, "Qwen/Qwen2.5-VL-7B-Instruct", tmp_path, "max_num_frames=16"
        )
        config, options, upstream = split_model_args(
            "vreason_qwen2_5_vl", simple_parse_args_string(text), {"pretrained", "max_num_frames"}
        )
        assert config == variant.config and options.trace_dir == str(tmp_path)
        assert upstream == {"pretrained": "Qwen/Qwen2.5-VL-7B-Instruct", "max_num_frames": 16}


def test_lmms_eval_results_become_study_records(tmp_path):
    from reasoning_study import lmms_eval

    variant = variants.study_variants(lr=1e-2)[1]
    run = tmp_path / "switch_k4"
    (run / "model").mkdir(parents=True)
    samples = [
        {"doc_id": d, "target": "A", "filtered_resps": "B" if d == 2 else "A", "acc": float(d != 2)}
        for d in range(4)
    ]
    (run / "model" / "20261122_samples_mmvu_val.jsonl").write_text("\n".join(json.dumps(s) for s in samples))
    trace = {
        "entropy": [2.0, 1.0, 0.5],
        "ema": [0.04, 0.059, 0.0678],
        "update_steps": [3],
        "delta_norm": [0.2],
    }
    traces = [
        {
            "task": "mmvu_val",
            "doc_id": d,
            "failed": d == 3,
            "error": "OOM" if d == 3 else None,
            "output_tokens": 3,
            "time_s": 1.5,
            "trace": None if d == 3 else trace,
        }
        for d in range(4)
    ]
    (run / "20261122_vreason_traces_mmvu_val.jsonl").write_text("\n".join(json.dumps(t) for t in traces))
    records = lmms_eval.load_records(run, "mmvu_val", "acc", variant, "test", keep=lambda d: d >= 1)
    assert [r["uid"] for r in records] == ["mmvu_val/1", "mmvu_val/2", "mmvu_val/3"]
    assert [r.get("correct") for r in records] == [True, False, None] and records[2]["error"] == "OOM"
    assert records[0]["ema_peak_step"] == 2 and records[0]["final_entropy"] == pytest.approx(3.5 / 3)
    assert records[0]["updates"] == 1 and records[0]["config"]["lr"] == 1e-2
