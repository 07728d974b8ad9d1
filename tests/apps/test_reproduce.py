"""``vreason reproduce``: the plan, the scores, what "finished" means, the table, the one-line errors, and the
command end to end through the real lmms-eval CLI on a tiny checkpoint and the synthetic task.

The end-to-end runs (``slow``) share one module fixture: a first call (data parallel, two processes), a second
call that must run nothing, and a third after a half-run was simulated, which must run only that job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vreason_hooks import VReasonConfig
from vreason_hooks.apps.cli import main
from vreason_hooks.apps.reproduction import plan as planning
from vreason_hooks.apps.reproduction import table
from vreason_hooks.apps.reproduction.jobs import incomplete_reason, settings_conflict
from vreason_hooks.apps.reproduction.scores import NoScore, task_score

BIN = Path(sys.executable).parent
NEW_TOKENS = 8
VIDEO = ["--frames", "8", "--max-pixels", "12544", "--min-pixels", "3136"]  # 16 video tokens per document


def _settings(tmp_path: Path, **kwargs) -> planning.Settings:
    fields = dict(pretrained="/ckpt", lmms_model="vreason_qwen2_5_vl", config=VReasonConfig())
    return planning.Settings(**{**fields, **kwargs})


def _model_args(job: planning.Job) -> dict[str, str]:
    text = job.arguments[job.arguments.index("--model_args") + 1]
    return dict(part.split("=", 1) for part in text.split(","))


# ---------------------------------------------------------------- the plan (fast)
def test_variants_differ_only_in_their_vreason_config(tmp_path):
    settings = _settings(tmp_path, include_path="/tasks", limit=5)
    jobs = planning.plan(settings, list(planning.VARIANTS), ["mvbench", "videomme"], tmp_path)
    assert [(j.variant, j.task) for j in jobs][:3] == [
        ("baseline", "mvbench"),
        ("vreason", "mvbench"),
        ("lite", "mvbench"),
    ]
    args = {j.variant: _model_args(j) for j in jobs if j.task == "mvbench"}
    differs = {k for k in args["baseline"] if len({a[k] for a in args.values()}) > 1}
    assert differs == {"objective", "lite"}
    assert (args["baseline"]["objective"], args["vreason"]["objective"], args["lite"]["objective"]) == (
        "none",
        "switch",
        "switch",
    )
    assert (args["baseline"]["lite"], args["vreason"]["lite"], args["lite"]["lite"]) == (
        "false",
        "false",
        "true",
    )
    assert set(VReasonConfig.model_fields) <= set(args["lite"]) and args["lite"]["lr"] == "0.0003"
    assert args["lite"]["reasoning_prompt"] == planning.THINK_PROMPT and "," not in planning.THINK_PROMPT
    assert (args["lite"]["max_num_frames"], args["lite"]["max_pixels"]) == ("32", str(256 * 28 * 28))
    job = jobs[0]
    assert "--force_simple" in job.arguments and job.arguments[-4:] == (
        "--include_path",
        "/tasks",
        "--limit",
        "5",
    )
    gen = job.arguments[job.arguments.index("--gen_kwargs") + 1]
    assert "max_new_tokens=1024" in gen and "temperature=0" in gen
    assert job.folder == tmp_path / "runs" / "baseline" / "mvbench"


def test_the_baseline_keeps_only_the_settings_its_traces_show(tmp_path):
    config = VReasonConfig(lr=5e-4, step_interval=2, ema_beta=0.9, prune_ratio=0.25)
    baseline = planning.variant_config("baseline", config)
    assert baseline == VReasonConfig(objective="none", ema_beta=0.9)  # the EMA it records; no lr, k, Lite
    assert planning.variant_config("lite", config) == config.model_copy(update={"lite": True})


def test_the_plugin_accepts_every_model_args_string(tmp_path):
    """What the plan writes is what the lmms-eval model reads back: lmms-eval's own parser, then the plugin's
    split into the V-Reason config and the upstream wrapper's arguments."""
    from lmms_eval.utils import simple_parse_args_string
    from vreason_lmms_eval.model_args import split_model_args
    from vreason_lmms_eval.models import VReasonQwen2_5_VLSimple
    from vreason_lmms_eval.wrapper import upstream_arguments

    upstream = set(upstream_arguments(VReasonQwen2_5_VLSimple.UPSTREAM)) | {"dtype"}
    settings = _settings(tmp_path, config=VReasonConfig(prune_at="prefill", prune_scope="per_layer"))
    for job in planning.plan(settings, list(planning.VARIANTS), ["mvbench"], tmp_path):
        parsed = simple_parse_args_string(job.arguments[job.arguments.index("--model_args") + 1])
        config, _, rest = split_model_args("vreason_qwen2_5_vl", parsed, upstream)
        assert config == planning.variant_config(job.variant, settings.config)
        assert rest["reasoning_prompt"] == planning.THINK_PROMPT and rest["pretrained"] == "/ckpt"


def test_data_parallel_goes_through_accelerate():
    job = planning.Job("vreason", "mvbench", Path("/o/runs/vreason/mvbench"), ("--model", "m"))
    single = job.command(1)
    assert single[1:3] == ["-m", "lmms_eval"] and single[-2:] == [
        "--output_path",
        "/o/runs/vreason/mvbench/lmms-eval",
    ]
    dp = job.command(4, port=29511)
    assert dp[1:4] == ["-m", "accelerate.commands.launch", "--multi_gpu"]
    assert dp[dp.index("--num_processes") + 1] == "4" and dp[dp.index("--main_process_port") + 1] == "29511"
    assert dp[dp.index("-m", 3) + 1] == "lmms_eval"


# ---------------------------------------------------------------- scores (fast)
def _results(**tasks) -> dict:
    """A results.json with ``task=(metrics, documents)`` leaves and ``group_subtasks``."""
    results = {"results": {}, "n-samples": {}, "group_subtasks": {}}
    for task, value in tasks.items():
        if isinstance(value, list):
            results["group_subtasks"][task] = value
            results["results"][task] = {"alias": task}
        else:
            metrics, n = value
            results["results"][task] = {"alias": task, **{f"{k},none": v for k, v in metrics.items()}}
            results["n-samples"][task] = {"original": n, "effective": n}
            results["group_subtasks"][task] = []
    return results


def test_scores_are_percent_on_each_tasks_own_metric():
    results = _results(
        vsibench=({"vsibench_overall": 0.338, "route_planning_accuracy": 0.9}, 50),
        mvbench_a=({"mvbench_accuracy": 60.0}, 100),
        mvbench_b=({"mvbench_accuracy": 30.0}, 50),
        mvbench=["mvbench_a", "mvbench_b"],
        my_task=({"exact_match": 0.2, "my_accuracy": 0.25, "my_accuracy_stderr": 0.1}, 10),
    )
    assert task_score(results, "vsibench").value == pytest.approx(33.8)  # 0-1 scale, known
    group = task_score(results, "mvbench")
    assert group.value == pytest.approx((60 * 100 + 30 * 50) / 150) and group.documents == 150
    assert group.parts == {"mvbench_a": 60.0, "mvbench_b": 30.0}
    guessed = task_score(results, "my_task")
    assert (guessed.metric, guessed.value, guessed.scale_guessed) == ("my_accuracy", 25.0, True)
    with pytest.raises(NoScore, match="no task 'videomme'"):
        task_score(results, "videomme")
    with pytest.raises(NoScore, match="vsibench_overall"):
        task_score(_results(vsibench=({"other": 1.0}, 5)), "vsibench")


# ---------------------------------------------------------------- what "finished" means (fast)
def _fake_run(job: planning.Job, docs: int = 2, stamp: str = "20260101_000000") -> Path:
    """The files a complete lmms-eval run of ``job`` leaves (one task, ``docs`` documents)."""
    folder = job.output_path / "model"
    folder.mkdir(parents=True)
    (job.folder / "job.json").write_text(json.dumps({"arguments": list(job.arguments), "started": "t"}))
    (folder / f"{stamp}_results.json").write_text(
        json.dumps(_results(**{job.task: ({"accuracy": 0.5}, docs)}))
    )
    (folder / f"{stamp}_vreason_summary.json").write_text(
        json.dumps({"documents": docs, "peak_memory": None})
    )
    (folder / f"{stamp}_samples_{job.task}.jsonl").write_text("{}\n" * docs)
    record = {"task": job.task, "failed": False, "output_tokens": 5, "time_s": 1.0, "trace": None}
    (folder / f"{stamp}_vreason_traces_{job.task}.jsonl").write_text(
        "".join(json.dumps({**record, "doc_id": i}) + "\n" for i in range(docs))
    )
    return folder


def _break(kind: str, job: planning.Job, folder: Path) -> None:
    stamp = "20260101_000000"
    if kind == "no_summary":  # killed before the model's clean-up
        (folder / f"{stamp}_vreason_summary.json").unlink()
    elif kind == "summary_short":  # a rank died: fewer documents gathered
        (folder / f"{stamp}_vreason_summary.json").write_text(json.dumps({"documents": 1}))
    elif kind == "samples_short":
        (folder / f"{stamp}_samples_{job.task}.jsonl").write_text("{}\n")
    elif kind == "no_traces":
        (folder / f"{stamp}_vreason_traces_{job.task}.jsonl").unlink()
    elif kind == "no_results":
        (folder / f"{stamp}_results.json").unlink()
    elif kind == "two_runs":
        (folder / "20260102_000000_results.json").write_text("{}")
    elif kind == "other_settings":
        (job.folder / "job.json").write_text(json.dumps({"arguments": ["--model", "other"]}))
    elif kind == "no_score":
        (folder / f"{stamp}_results.json").write_text(json.dumps(_results(**{job.task: ({"x": 1}, 2)})))


@pytest.mark.parametrize(
    "kind",
    [
        "no_summary",
        "summary_short",
        "samples_short",
        "no_traces",
        "no_results",
        "two_runs",
        "other_settings",
        "no_score",
    ],
)
def test_a_half_run_is_not_finished(tmp_path, kind):
    job = planning.Job(
        "vreason", "vreason_synth", tmp_path / "runs" / "vreason" / "vreason_synth", ("--model", "m")
    )
    folder = _fake_run(job)
    assert incomplete_reason(job) is None  # the complete run counts
    _break(kind, job, folder)
    assert incomplete_reason(job), kind


def test_a_run_with_other_settings_is_named(tmp_path):
    settings = _settings(tmp_path)
    old = planning.plan(
        _settings(tmp_path, config=VReasonConfig(lr=5e-4)), ["vreason"], ["mvbench"], tmp_path
    )[0]
    old.folder.mkdir(parents=True)
    (old.folder / "job.json").write_text(json.dumps({"arguments": list(old.arguments)}))
    now = planning.plan(settings, ["vreason"], ["mvbench"], tmp_path)[0]
    assert settings_conflict(now) == "lr: 0.0005 then, 0.0003 now"
    assert settings_conflict(old) is None


# ---------------------------------------------------------------- the table (fast)
def _cell(score: float, tokens: float) -> dict:
    return {
        "score": score,
        "failed": 0,
        "mean_output_tokens": tokens,
        "mean_time_s": 2.0,
        "peak_memory_mb": 2048.0,
        "memory_kind": "cuda_max_allocated",
        "scale_guessed": False,
    }


def test_the_papers_numbers_stand_beside_ours_for_its_checkpoint():
    tasks = list(planning.PAPER_TASKS)
    cells = {v: {t: _cell(50.0 + i, 200.0 - 20 * i) for t in tasks} for i, v in enumerate(planning.VARIANTS)}
    checkpoint = {"name": "Qwen2.5-VL-7B-Instruct", "paper": True, "tiny": False}
    document = table.build(checkpoint, tasks, list(planning.VARIANTS), cells, [], [])
    rows = {r["variant"]: r for r in document["rows"]}
    assert (
        rows["vreason"]["mean_score"] == 51.0 and rows["vreason"]["vs_baseline"]["mean_output_tokens"] == 0.9
    )
    paper = {r["variant"]: r for r in document["paper"]}
    assert paper["vreason"]["mean_score"] == 55.9 and paper["lite"]["scores"]["vsibench"] == 37.3
    assert paper["baseline"]["scores"]["tempcompass_multi_choice"] == 72.4
    text = table.markdown(document)
    assert "| paper: V-Reason | 62.7 | 37.1 | 46.3 | 60.9 | 73.3 | 54.9 | 55.9 | 176 |" in text
    assert (
        "| V-Reason | 51.0 | 51.0 | 51.0 | 51.0 | 51.0 | 51.0 | 51.0 | 180 (0.90×) | 2.00 (1.00×) | 2.00 "
        "(1.00×) | 0 |" in text
    )
    other = table.build(
        {**checkpoint, "paper": False}, tasks[:2], ["baseline"], cells, ["lite × vsibench: x"], []
    )
    assert other["paper"] is None and "paper:" not in table.markdown(other)
    assert other["rows"][0]["mean_score"] == 50.0 and "- lite × vsibench: x" in table.markdown(other)


# ---------------------------------------------------------------- one-line errors (fast)
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from vreason_hooks.apps.tiny_checkpoints import write_tiny_checkpoint

    return write_tiny_checkpoint("qwen2_5_vl", tmp_path_factory.mktemp("ckpt") / "tiny-qwen")


def _one_line_error(capsys, argv: list[str]) -> str:
    code = main(["reproduce", *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("vreason reproduce: error: ")
    return err[0]


def test_bad_input_is_one_line_before_any_work(tmp_path, capsys, tiny):
    out = tmp_path / "out"
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    cases = {
        "unknown variant 'vreasn'": ["--model", str(tiny), "--variants", "baseline,vreasn"],
        "no such checkpoint folder": ["--model", str(tmp_path / "nope")],
        "no config.json in this folder": ["--model", str(tmp_path / "empty")],
        "cannot write there": ["--model", str(tiny), "--out", str(tmp_path / "file" / "out")],
        "bad V-Reason setting: field 'lr'": ["--model", str(tiny), "--lr", "-1"],
        "cannot pass through lmms-eval's --model_args": [
            "--model",
            str(tiny),
            "--reasoning-prompt",
            "Think, then answer",
        ],
        "not a V-Reason lmms-eval model": ["--model", str(tiny), "--lmms-model", "qwen2_5_vl"],
        "--include-path": ["--model", str(tiny), "--include-path", str(tmp_path / "nope")],
    }
    for expected, argv in cases.items():
        argv = argv if "--out" in argv else [*argv, "--out", str(out)]
        assert expected in _one_line_error(capsys, argv)
        assert not out.exists()  # nothing written, nothing run


def test_an_unknown_task_is_one_line_before_any_run(tmp_path, capsys, tiny):
    line = _one_line_error(
        capsys, ["--model", str(tiny), "--tasks", "mvbench,mvbenhc", "--out", str(tmp_path / "o")]
    )
    assert "lmms-eval has no task mvbenhc" in line
    assert not (tmp_path / "o" / "runs").exists()


# ---------------------------------------------------------------- end to end (slow)
def _reproduce(root: Path, argv: list[str]) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(root / "hf-home"),
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HF_DATASETS_CACHE": str(root / "hf-datasets"),
    }
    return subprocess.run(
        [str(BIN / "vreason"), "reproduce", *argv],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=900,
    )


def _snapshot(folder: Path) -> dict[str, int]:
    return {
        str(p.relative_to(folder)): p.stat().st_mtime_ns for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, tiny):
    """First call, second call (must run nothing), third after a simulated half-run of ``lite`` (which it
    runs again, data parallel in two processes), then a call with another lr (refused)."""
    from vreason_lmms_eval.synthetic_task import make_task

    root = tmp_path_factory.mktemp("reproduce")
    task = make_task(root / "task", n=3)
    out = root / "out"
    argv = [
        "--model",
        str(tiny),
        "--tasks",
        "vreason_synth",
        "--include-path",
        str(task),
        "--limit",
        "2",
        "--out",
        str(out),
        "--max-new-tokens",
        str(NEW_TOKENS),
        *VIDEO,
    ]
    calls = {"first": _reproduce(root, argv)}
    calls["runs_after_first"] = _snapshot(out / "runs")
    calls["table_after_first"] = json.loads((out / "table.json").read_text())
    calls["second"] = _reproduce(root, [*argv, "--num-processes", "2"])  # the process count is no setting
    calls["runs_after_second"] = _snapshot(out / "runs")
    summary = next((out / "runs" / "lite" / "vreason_synth").rglob("*_vreason_summary.json"))
    summary.unlink()  # as if the lite run had been killed before the model's clean-up
    calls["third"] = _reproduce(root, [*argv, "--num-processes", "2"])
    calls["conflict"] = _reproduce(root, [*argv, "--lr", "5e-4"])
    return out, calls


def _job_files(out: Path, variant: str, pattern: str) -> list[dict]:
    path = next((out / "runs" / variant / "vreason_synth" / "lmms-eval").glob(f"*/{pattern}"))
    return (
        [json.loads(line) for line in path.read_text().splitlines()]
        if path.suffix == ".jsonl"
        else [json.loads(path.read_text())]
    )


@pytest.mark.slow
def test_end_to_end_writes_the_table_figures_and_commands(e2e):
    out, calls = e2e
    first = calls["first"]
    assert first.returncode == 0, first.stdout + first.stderr
    document = json.loads((out / "table.json").read_text())
    rows = {r["variant"]: r for r in document["rows"]}
    assert list(rows) == ["baseline", "vreason", "lite"] and document["paper"] is None
    for variant, r in rows.items():
        cell = r["tasks"]["vreason_synth"]
        records = _job_files(out, variant, "*_vreason_traces_vreason_synth.jsonl")
        results = _job_files(out, variant, "*_results.json")[0]
        assert (
            cell["documents"] == 2
            and cell["score"] == 100 * results["results"]["vreason_synth"]["accuracy,none"]
        )
        assert cell["mean_output_tokens"] == NEW_TOKENS == r["mean_output_tokens"]
        assert cell["mean_time_s"] == pytest.approx(sum(x["time_s"] for x in records) / 2)
        assert r["memory_kind"] == "rss_peak" and r["peak_memory_mb"] > 100
    text = (out / "table.md").read_text()
    assert "These numbers are meaningless" in text and "| V-Reason Lite | 0.0 |" in text
    names = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert names == [
        "output_lengths.png",
        "output_lengths_vreason_synth.png",
        "traces_vreason_synth_0.png",
        "traces_vreason_synth_1.png",
    ]
    assert all((out / "figures" / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in names)
    commands = (out / "commands.sh").read_text().splitlines()  # as last run: lite by the third call
    lines = {
        v: commands[commands.index(next(c for c in commands if c.startswith(f"# {v} "))) + 1] for v in rows
    }
    assert " -m lmms_eval " in lines["baseline"] and " -m lmms_eval " in lines["vreason"]
    assert "-m accelerate.commands.launch --multi_gpu --num_processes 2" in lines["lite"]
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["versions"]["lmms-eval"] == "0.7.3" and "--limit 2" in provenance["command"]


@pytest.mark.slow
def test_end_to_end_runs_the_three_variants_fairly(e2e):
    """Same prompt and documents for every variant; only the V-Reason config differs, and it did its work."""
    out, _ = e2e
    samples = {v: _job_files(out, v, "*_samples_vreason_synth.jsonl") for v in planning.VARIANTS}
    assert (
        [s["input"] for s in samples["baseline"]]
        == [s["input"] for s in samples["vreason"]]
        == [s["input"] for s in samples["lite"]]
    )
    records = {v: _job_files(out, v, "*_vreason_traces_vreason_synth.jsonl") for v in planning.VARIANTS}
    updates = len(range(3, NEW_TOKENS, 4))  # k = 4
    # The video positions of each document (the simple class's frames), the same under every variant
    spans = {v: [r["trace"]["span"] for r in records[v]] for v in records}
    assert spans["baseline"] == spans["vreason"] == spans["lite"] and all(spans["lite"])
    for variant, has_updates, pruned in (("baseline", 0, 0), ("vreason", updates, 0), ("lite", updates, 0.5)):
        for record in records[variant]:
            trace = record["trace"]
            assert record["num_updates"] == has_updates and trace["config"]["lr"] == 3e-4, variant
            assert set(trace["pruned"]) <= set(trace["span"]) and len(trace["pruned"]) == int(
                len(trace["span"]) * pruned
            )
    assert {r["rank"] for r in records["lite"]} == {0, 1}  # data parallel: both ranks ran a document
    memory = _job_files(out, "lite", "*_vreason_summary.json")[0]["peak_memory"]
    assert len(memory["per_rank_mb"]) == 2 and memory["max_mb"] == max(memory["per_rank_mb"])


@pytest.mark.slow
def test_a_second_call_runs_nothing_and_a_half_run_is_run_again(e2e):
    out, calls = e2e
    second, third = calls["second"], calls["third"]
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("finished earlier, not run again") == 3 and "running" not in second.stdout
    assert calls["runs_after_second"] == calls["runs_after_first"]  # not one file of runs/ touched
    assert third.returncode == 0, third.stderr
    assert third.stdout.count("finished earlier, not run again") == 2
    assert "[3/3] lite × vreason_synth: running" in third.stdout
    assert (out / "runs" / "lite" / "vreason_synth" / "log.previous.txt").is_file()
    before = {r["variant"]: r for r in calls["table_after_first"]["rows"]}
    after = {r["variant"]: r for r in json.loads((out / "table.json").read_text())["rows"]}
    assert (
        after["baseline"] == before["baseline"] and after["vreason"] == before["vreason"]
    )  # read, not re-run
    assert (
        after["lite"]["tasks"]["vreason_synth"]["stamp"] != before["lite"]["tasks"]["vreason_synth"]["stamp"]
    )
    assert len(list((out / "runs" / "lite" / "vreason_synth").rglob("*_vreason_summary.json"))) == 1


@pytest.mark.slow
def test_other_settings_in_the_same_out_are_refused(e2e):
    _, calls = e2e
    conflict = calls["conflict"]
    assert conflict.returncode == 1 and len(conflict.stderr.strip().splitlines()) == 1, conflict.stderr
    assert (
        "runs/vreason/vreason_synth was run with other settings (lr: 0.0003 then, 0.0005 now)"
        in conflict.stderr
    )


def test_the_papers_checkpoint_is_known_by_its_family_and_shapes(tiny):
    from vreason_hooks.apps.reproduction.checks import Checkpoint, checkpoint

    ours = checkpoint(str(tiny)).describe()
    assert (ours["tiny"], ours["paper"], ours["lmms_model"], ours["hidden_size"]) == (
        True,
        False,
        "vreason_qwen2_5_vl",
        64,
    )
    seven_b = Checkpoint("/m/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl", 3584, 28, "vreason_qwen2_5_vl")
    assert seven_b.paper and not seven_b.tiny
    assert not Checkpoint("/m/Qwen3-VL-8B", "qwen3_vl", 4096, 36, "vreason_qwen3_vl").paper
