"""lmms-eval integration: model args, registration, the synthetic task, and the real CLI end to end.

The CLI tests (``slow``) run ``lmms-eval`` in subprocesses, offline, on tiny checkpoints with the real Qwen
tokenizer. The CLI can exit 0 after an error, so they assert on the files it writes, never on the exit code.
All CLI runs start together in one module fixture (they are mostly start-up time) and are read by several
tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from vreason_lmms_eval.model_args import ModelArgsError, split_model_args
from vreason_lmms_eval.records import summarise
from vreason_lmms_eval.synthetic_task import extract_answer, make_task, option_letter, process_results

from vreason_hooks import VReasonConfig

BIN = Path(sys.executable).parent
UPSTREAM_KEYS = {"pretrained", "max_num_frames", "max_pixels"}
NEW_TOKENS = 8
VIDEO_ARGS = "max_pixels=12544,min_pixels=3136,max_num_frames=8"  # 8 frames of 56x56: 16 video tokens


# ---------------------------------------------------------------- model args (fast)
def test_every_config_field_is_a_model_arg():
    defaults = VReasonConfig().model_dump()
    config, options, upstream = split_model_args("m", {**defaults, "pretrained": "/x"}, UPSTREAM_KEYS)
    assert config == VReasonConfig() and upstream == {"pretrained": "/x"}
    # As lmms-eval hands them over: numbers and booleans already parsed, the rest strings.
    config, options, upstream = split_model_args(
        "m",
        {
            "lr": 5e-4,
            "step_interval": 8,
            "objective": "max",
            "lite": True,
            "prune_ratio": 0.25,
            "ema_init": "first",
            "max_grad_norm": "none",
            "trace_dir": "/t",
            "prompt_model": "own",
            "max_num_frames": 16,
        },
        UPSTREAM_KEYS,
    )
    assert (config.lr, config.step_interval, config.objective, config.lite) == (5e-4, 8, "max", True)
    assert config.prune_ratio == 0.25 and config.ema_init == "first" and config.max_grad_norm is None
    assert (options.trace_dir, options.prompt_model) == ("/t", "own") and upstream == {"max_num_frames": 16}
    config, _, _ = split_model_args(
        "m", {"lite": True, "prune_at": "prefill", "prune_scope": "per_layer"}, UPSTREAM_KEYS
    )
    assert (config.prune_at, config.prune_scope) == ("prefill", "per_layer")
    with pytest.raises(
        ModelArgsError, match="prune_scope='per_layer'"
    ):  # prefill pruning has per-layer scores only
        split_model_args("m", {"lite": True, "prune_at": "prefill"}, UPSTREAM_KEYS)


@pytest.mark.parametrize(
    "args, named",
    [
        ({"lr": -1.0}, "lr=-1.0"),
        ({"step_interval": 0}, "step_interval=0"),
        ({"objective": "maximise"}, "objective='maximise'"),
        ({"lite": "perhaps"}, "lite='perhaps'"),
        ({"lrr": 1e-4}, "'lrr'"),
    ],
)
def test_bad_model_args_name_the_argument(args, named):
    with pytest.raises(ModelArgsError, match="vreason_qwen2_5_vl") as err:
        split_model_args("vreason_qwen2_5_vl", args, UPSTREAM_KEYS)
    assert named in str(err.value)


def test_bad_value_fails_at_startup_before_loading(tmp_path):
    """The CLI's own path (``create_from_arg_string``) with a folder that holds no model: the argument error
    comes first, so nothing is loaded for a run that cannot be right."""
    from lmms_eval.models import get_model

    for name in ("vreason_qwen2_5_vl", "vreason_qwen3_vl", "vreason_hf", "vreason_llava_video"):
        with pytest.raises(ModelArgsError, match=r"step_interval=0"):
            get_model(name).create_from_arg_string(
                f"pretrained={tmp_path},step_interval=0", {"batch_size": 1}
            )


def test_family_without_adapter_fails_before_loading(tmp_path):
    """A checkpoint whose ``model_type`` no adapter matches stops the run from its config alone: the folder
    holds no weights, so loading them would fail differently."""
    from lmms_eval.models import get_model
    from transformers import GPT2Config

    from vreason_hooks.errors import NoAdapterError

    GPT2Config(n_layer=1).save_pretrained(tmp_path)
    for name in ("vreason_hf", "vreason_qwen3_vl"):
        with pytest.raises(
            NoAdapterError, match=rf"{name}: pretrained=.* is a 'gpt2' checkpoint and no V-Reason adapter"
        ):
            get_model(name).create_from_arg_string(f"pretrained={tmp_path}", {"batch_size": 1})


MODEL_NAMES = ("vreason_qwen2_5_vl", "vreason_qwen3_vl", "vreason_hf", "vreason_llava_video")


def _build(name: str, model_args: str):
    from lmms_eval.models import get_model

    return get_model(name).create_from_arg_string(model_args, {"batch_size": 1})


def test_output_locations_are_checked_when_the_model_is_built(tmp_path, monkeypatch):
    """A ``trace_dir`` (or the ``--output_path`` folder the traces default to) that cannot be written stops
    the run when the model is built: ``pretrained`` is a folder without a model, so reaching the checkpoint
    (let alone the weights) would fail differently. Before, it was found after every document had run."""
    from vreason_hooks.errors import VReasonError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    for name in MODEL_NAMES:
        for trace_dir, needle in ((blocker / "traces", "is a file, not a folder"), (blocker, "a file, not")):
            with pytest.raises(VReasonError, match=rf"^{name}: trace_dir={trace_dir}: .*{needle}"):
                _build(name, f"pretrained={tmp_path},trace_dir={trace_dir}")
    monkeypatch.setattr(
        sys,
        "argv",
        ["lmms-eval", "--model_args", f"pretrained={tmp_path}", "--output_path", str(blocker / "results")],
    )
    with pytest.raises(VReasonError, match=r"--output_path folder .*cannot write there"):
        _build("vreason_qwen2_5_vl", f"pretrained={tmp_path}")
    made = tmp_path / "new" / "traces"
    with pytest.raises(VReasonError, match=r"no config\.json"):  # a good trace_dir passes, and is created
        _build("vreason_hf", f"pretrained={tmp_path},trace_dir={made}")
    assert made.is_dir()


def test_missing_checkpoint_folder_and_prompt_model_typo_are_named(tmp_path):
    from vreason_hooks.errors import VReasonError

    for name in MODEL_NAMES:
        with pytest.raises(VReasonError) as err:
            _build(name, f"pretrained={tmp_path / 'missing'}")
        assert f"{name}: pretrained={tmp_path / 'missing'}: no such checkpoint folder" in str(err.value)
        assert "Repo id" not in str(err.value)
    with pytest.raises(
        ModelArgsError,
        match=r"prompt_model='qwen25_vl' is not an lmms-eval model name; "
        r"did you mean 'qwen2_5_vl'",
    ):
        _build("vreason_qwen2_5_vl", f"pretrained={tmp_path},prompt_model=qwen25_vl")
    for accepted in ("own", "qwen2_5_vl", "llava_hf"):  # known names pass on to the checkpoint check
        with pytest.raises(VReasonError, match=r"no config\.json in this folder"):
            _build("vreason_qwen2_5_vl", f"pretrained={tmp_path},prompt_model={accepted}")


def test_non_finite_trace_values_do_not_cost_the_file(tmp_path):
    from vreason_lmms_eval.records import DocRecord, Records

    records = Records("m", {})
    records.add(
        DocRecord("t", 0, output_tokens=2, trace={"entropy": [1.0, float("nan")], "update_steps": []})
    )
    records.add(DocRecord("t", 1, output_tokens=1, trace={"entropy": [0.5], "update_steps": []}))
    summary = records.finish(tmp_path, "stamp", rank=0)
    lines = [
        json.loads(line) for line in (tmp_path / "stamp_vreason_traces_t.jsonl").read_text().splitlines()
    ]
    assert [line["trace"]["entropy"] for line in lines] == [[1.0, None], [0.5]]
    assert summary["completed"] == 2 and json.loads((tmp_path / "stamp_vreason_summary.json").read_text())


def test_batch_rows_are_matched_by_document():
    """lmms-eval's ``huggingface`` model builds every row's messages with the first request's
    ``doc_to_messages``; rows are still filed under their own documents, in the order they were built."""
    from types import SimpleNamespace

    from vreason_lmms_eval.wrapper import VReasonModel

    docs = [{"q": "a"}, {"q": "b"}, {"q": "c"}]
    lm = VReasonModel.__new__(VReasonModel)  # no model needed: only the task's documents
    lm.task_dict = {"t": {"test": docs}}
    group = [
        SimpleNamespace(doc_id=i, arguments=("ctx", lambda doc: doc, {}, i, "t", "test")) for i in (2, 0, 1)
    ]
    seen = []
    first = VReasonModel.tracked_request(group[0], seen)
    for request in group:  # the huggingface pattern: the first request's doc_to_messages for every row
        first.arguments[1](docs[request.doc_id])
    assert lm.batch_rows(group, seen) == [2, 0, 1]
    assert lm.batch_rows(group, [{"q": "z"}]) == []  # not a document of the group: no guess


def test_registered_through_the_entry_point():
    from lmms_eval.models import get_model
    from vreason_lmms_eval import models

    assert (
        get_model("vreason_qwen2_5_vl") is models.VReasonQwen2_5_VL and not models.VReasonQwen2_5_VL.is_simple
    )
    assert get_model("vreason_qwen2_5_vl", force_simple=True) is models.VReasonQwen2_5_VLSimple
    assert get_model("vreason_qwen3_vl") is models.VReasonQwen3_VL and not models.VReasonQwen3_VL.is_simple
    assert get_model("vreason_qwen3_vl", force_simple=True) is models.VReasonQwen3_VLSimple
    assert get_model("vreason_hf") is models.VReasonHF
    assert (
        get_model("vreason_llava_video") is models.VReasonLlavaVideo is get_model("vreason_llava_onevision")
    )
    # Built on lmms-eval's own wrappers: their generate_until is the one that runs.
    from lmms_eval.models.chat.huggingface import Huggingface
    from lmms_eval.models.chat.qwen2_5_vl import Qwen2_5_VL
    from lmms_eval.models.chat.qwen3_vl import Qwen3_VL

    for ours, theirs in (
        (models.VReasonQwen2_5_VL, Qwen2_5_VL),
        (models.VReasonQwen3_VL, Qwen3_VL),
        (models.VReasonHF, Huggingface),
    ):
        assert issubclass(ours, theirs) and "generate_until" not in vars(ours)


# ---------------------------------------------------------------- synthetic task (fast)
@pytest.mark.parametrize(
    "output, letter",
    [
        ("<think>it moves</think><answer>B</answer>", "B"),
        ("<think>x</think><answer> (C) </answer>", "C"),
        ("<answer>A</answer> then <answer>D. down</answer>", "D"),  # the last tag counts
        ("B", "B"),  # no tag: the whole output
        ("B. right", "B"),
        ("<answer>right</answer>", "B"),  # the option's text
        ("<answer>Both</answer>", None),
        ("", None),
    ],
)
def test_video_r1_answer_extraction(output, letter):
    options = ["A. left", "B. right", "C. up", "D. down"]
    assert option_letter(extract_answer(output), options) == letter
    doc = {"options": options, "answer": "B"}
    assert process_results(doc, [output])["accuracy"] == float(letter == "B")


def test_make_task_writes_a_runnable_folder(tmp_path):
    import yaml

    folder = make_task(tmp_path / "task", n=3)
    lines = [json.loads(line) for line in (folder / "data.jsonl").read_text().splitlines()]
    assert [d["kind"] for d in lines] == ["move", "appear", "change"] and all(
        Path(d["video"]).is_file() for d in lines
    )

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))
    config = yaml.load((folder / "vreason_synth.yaml").read_text(), Loader=Loader)
    assert config["dataset_kwargs"]["data_files"]["test"] == str(folder / "data.jsonl")
    assert "<answer>" in config["lmms_eval_specific_kwargs"]["qwen2_5_vl"]["post_prompt"]
    assert "<answer>" not in config["lmms_eval_specific_kwargs"]["default"]["post_prompt"]


def test_summary_lists_failures_and_averages_the_rest():
    def record(doc_id, failed=False, tokens=None, peak=None, updates=0):
        return {
            "task": "t",
            "doc_id": doc_id,
            "failed": failed,
            "error": "boom" if failed else None,
            "output_tokens": tokens,
            "time_s": None if failed else 2.0,
            "generate_s": None if failed else 1.0,
            "peak_step": peak,
            "num_updates": updates,
        }

    summary = summarise(
        [
            record(0, tokens=10, peak=4, updates=2),
            record(1, failed=True),
            record(2, tokens=20, peak=9, updates=5),
        ],
        "m",
        {},
    )
    assert summary["failed"] == [{"task": "t", "doc_id": 1, "error": "boom"}]
    assert (summary["documents"], summary["completed"], summary["updates"]) == (3, 2, 7)
    assert (
        summary["mean_output_tokens"] == 15
        and summary["mean_peak_step"] == 6.5
        and summary["mean_time_s"] == 2.0
    )


# ---------------------------------------------------------------- the real CLI (slow)
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Run:
    """One lmms-eval CLI process and the files it leaves in ``out``."""

    def __init__(self, root: Path, name: str, argv: list[str], env: dict):
        self.name, self.out = name, root / name
        self.out.mkdir(parents=True)
        self.log = self.out / "log.txt"
        env = {**env, "HF_DATASETS_CACHE": str(self.out / "hf-datasets")}
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                argv + ["--output_path", str(self.out / "results"), "--log_samples"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=root,
            )

    def wait(self) -> Run:
        self.proc.wait(timeout=900)
        return self

    def one(self, pattern: str) -> Path:
        found = sorted((self.out / "results").glob(f"*/{pattern}"))
        assert len(found) == 1, (
            f"{self.name}: expected one {pattern}, found {found}; log tail:\n{self.tail()}"
        )
        return found[0]

    def tail(self) -> str:
        return "\n".join(self.log.read_text().splitlines()[-40:])

    def results(self) -> dict:
        return json.loads(self.one("*_results.json").read_text())

    def samples(self) -> dict[int, dict]:
        return {
            s["doc_id"]: s
            for s in map(json.loads, self.one("*_samples_vreason_synth.jsonl").read_text().splitlines())
        }

    def traces(self) -> dict[int, dict]:
        return {
            r["doc_id"]: r
            for r in map(
                json.loads, self.one("*_vreason_traces_vreason_synth.jsonl").read_text().splitlines()
            )
        }

    def summary(self) -> dict:
        return json.loads(self.one("*_vreason_summary.json").read_text())


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """Start every CLI run at once, wait for all; ``{name: Run}``."""
    from vreason_hooks.apps.tiny_checkpoints import write_tiny_checkpoint

    root = tmp_path_factory.mktemp("lmms-eval")
    qwen = write_tiny_checkpoint("qwen2_5_vl", root / "tiny-qwen")
    qwen3 = write_tiny_checkpoint("qwen3_vl", root / "tiny-qwen3")
    llava = write_tiny_checkpoint("llava_onevision", root / "tiny-llava")
    good = make_task(root / "task-good", n=3)
    # 5 documents: under two ranks, rank 1 runs 2 and lmms-eval pads it with a copy of its last one.
    bad = make_task(root / "task-bad", n=5)
    (bad / "videos" / "clip_001.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))  # corrupt
    (bad / "videos" / "clip_003.mp4").unlink()  # missing
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(root / "hf-home"),
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    lmms_eval = [str(BIN / "lmms-eval")]
    common = ["--tasks", "vreason_synth", "--gen_kwargs", f"max_new_tokens={NEW_TOKENS}", "--batch_size", "1"]
    switch = f"pretrained={qwen},{VIDEO_ARGS},lr=5e-4,step_interval=4,objective=switch"
    runs = {
        "qwen": Run(
            root,
            "qwen",
            lmms_eval
            + ["--model", "vreason_qwen2_5_vl", "--model_args", switch, "--include_path", str(bad)]
            + common,
            env,
        ),
        "qwen3": Run(
            root,
            "qwen3",
            lmms_eval
            + [
                "--model",
                "vreason_qwen3_vl",
                "--model_args",
                f"pretrained={qwen3},{VIDEO_ARGS},lr=2e-4,step_interval=2,objective=max",
                "--include_path",
                str(bad),
            ]
            + common,
            env,
        ),
        # The generic model on a non-Qwen family: the adapter comes from the checkpoint's model_type.
        "hf": Run(
            root,
            "hf",
            lmms_eval
            + [
                "--model",
                "vreason_hf",
                "--model_args",
                f"pretrained={llava},lr=1e-3,step_interval=3,ema_beta=0.8",
                "--include_path",
                str(bad),
            ]
            + common,
            env,
        ),
        "qwen_dp": Run(
            root,
            "qwen_dp",
            [
                str(BIN / "accelerate"),
                "launch",
                "--multi_gpu",
                "--num_processes",
                "2",
                "--main_process_port",
                str(_free_port()),
                "-m",
                "lmms_eval",
                "--model",
                "vreason_qwen2_5_vl",
                "--model_args",
                switch,
                "--include_path",
                str(bad),
            ]
            + common,
            {**env, "ACCELERATE_USE_CPU": "1"},
        ),  # gloo on CPU
        # objective=none against the upstream model, both through the CLI (upstream needs the CPU spelled
        # out).
        "qwen3_upstream": Run(
            root,
            "qwen3_upstream",
            lmms_eval
            + [
                "--model",
                "qwen3_vl",
                "--model_args",
                f"pretrained={qwen3},{VIDEO_ARGS},device=cpu,device_map=cpu",
                "--include_path",
                str(good),
            ]
            + common,
            env,
        ),
        "qwen3_none": Run(
            root,
            "qwen3_none",
            lmms_eval
            + [
                "--model",
                "vreason_qwen3_vl",
                "--model_args",
                f"pretrained={qwen3},{VIDEO_ARGS},objective=none",
                "--include_path",
                str(good),
            ]
            + common,
            env,
        ),
        "llava": Run(
            root,
            "llava",
            lmms_eval
            + [
                "--model",
                "vreason_llava_video",
                "--model_args",
                f"pretrained={llava},max_frames_num=8,step_interval=2,lite=true",
                "--include_path",
                str(good),
            ]
            + common,
            env,
        ),
    }
    return {name: run.wait() for name, run in runs.items()}


def _check_trace(record: dict, tokens: int, span: int, step_interval: int) -> None:
    trace = record["trace"]
    assert not record["failed"] and record["output_tokens"] == tokens == len(trace["entropy"]) == len(
        trace["ema"]
    )
    assert set(trace["alpha"]) <= {1, -1} and len(trace["span"]) == span
    assert trace["update_steps"] == list(range(step_interval - 1, tokens, step_interval))
    assert all(n > 0 for n in trace["delta_norm"]) and record["num_updates"] == len(trace["update_steps"])
    assert record["time_s"] > 0 and 0 < record["generate_s"] <= record["time_s"] * 1.05
    assert record["peak_step"] == max(range(tokens), key=trace["ema"].__getitem__)


# Per CLI run on the bad task: adapter, video span, and the V-Reason settings given in --model_args.
BAD_TASK_RUNS = {
    # 8 frames of 56x56 (patch 14, 2x2 merge, 2 frames per temporal patch): 16 video tokens.
    "qwen": {
        "adapter": "qwen2_5_vl",
        "span": 16,
        "config": {"lr": 5e-4, "step_interval": 4, "objective": "switch"},
    },
    # 8 frames of 64x64 (patch 16): 16 video tokens, in 4 runs between timestamps.
    "qwen3": {
        "adapter": "qwen3_vl",
        "span": 16,
        "config": {"lr": 2e-4, "step_interval": 2, "objective": "max"},
    },
    # 8 pooled frames + the newline token.
    "hf": {
        "adapter": "llava_onevision",
        "span": 9,
        "config": {"lr": 1e-3, "step_interval": 3, "ema_beta": 0.8},
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("name", BAD_TASK_RUNS)
def test_cli_end_to_end(cli, name):
    run, expected = cli[name], BAD_TASK_RUNS[name]
    results = run.results()
    assert "accuracy,none" in results["results"]["vreason_synth"], run.tail()
    assert results["n-samples"]["vreason_synth"]["effective"] == 5
    traces = run.traces()
    assert sorted(traces) == list(range(5))
    step_interval = expected["config"]["step_interval"]
    for doc_id in (0, 2, 4):
        _check_trace(traces[doc_id], NEW_TOKENS, span=expected["span"], step_interval=step_interval)
        trace = traces[doc_id]["trace"]
        assert trace["adapter"] == expected["adapter"]
        assert {key: trace["config"][key] for key in expected["config"]} == expected["config"]
    summary = run.summary()
    updates = len(range(step_interval - 1, NEW_TOKENS, step_interval))
    assert summary["completed"] == 3 and summary["mean_output_tokens"] == NEW_TOKENS
    assert (
        summary["updates"] == 3 * updates
        and summary["mean_peak_step"] is not None
        and summary["mean_time_s"] > 0
    )
    # The task saw the upstream name (qwen2_5_vl, qwen3_vl, huggingface): its think/answer prompt, not the
    # default.
    assert all("<answer>" in s["input"] for s in run.samples().values())


@pytest.mark.slow
@pytest.mark.parametrize("name", BAD_TASK_RUNS)
def test_bad_videos_fail_alone(cli, name):
    run = cli[name]
    samples, traces, summary = run.samples(), run.traces(), run.summary()
    assert [f["doc_id"] for f in summary["failed"]] == [1, 3]
    assert "clip_001.mp4" in traces[1]["error"] and "clip_003.mp4 (missing)" in traces[3]["error"]
    assert traces[1]["failed"] and traces[1]["trace"] is None
    for doc_id, sample in samples.items():
        answered = bool(sample["filtered_resps"].strip())
        assert answered == (doc_id not in (1, 3)), (doc_id, sample["filtered_resps"])
    assert "document vreason_synth/3 failed" in run.log.read_text()


@pytest.mark.slow
def test_cli_objective_none_equals_upstream(cli):
    """``lmms-eval --model vreason_qwen3_vl --model_args ...,objective=none`` and ``--model qwen3_vl`` on the
    same tiny checkpoint: the same prompt (the task saw the upstream name), the same answer and score per
    document."""
    ours, upstream = cli["qwen3_none"], cli["qwen3_upstream"]
    assert ours.results()["results"] == upstream.results()["results"], (ours.tail(), upstream.tail())
    samples, baseline = ours.samples(), upstream.samples()
    assert sorted(samples) == sorted(baseline) == [0, 1, 2]
    for doc_id, sample in samples.items():
        assert sample["input"] == baseline[doc_id]["input"] and "<answer>" in sample["input"]
        assert sample["filtered_resps"] == baseline[doc_id]["filtered_resps"] != ""
    assert all(r["num_updates"] == 0 and r["output_tokens"] == NEW_TOKENS for r in ours.traces().values())


@pytest.mark.slow
def test_cli_llava_end_to_end(cli):
    run = cli["llava"]
    assert "accuracy,none" in run.results()["results"]["vreason_synth"], run.tail()
    traces = run.traces()
    assert sorted(traces) == [0, 1, 2]
    for record in traces.values():
        _check_trace(record, NEW_TOKENS, span=8 + 1, step_interval=2)  # 8 pooled frames + newline
        assert record["trace"]["adapter"] == "llava_onevision"
        # lite=true from --model_args: half the video tokens (rounded down) pruned after prefill.
        assert record["trace"]["config"]["lite"] is True and len(record["trace"]["pruned"]) == 4
    assert all("<answer>" in s["input"] for s in run.samples().values())  # llava_hf's prompt
    assert run.summary()["failed"] == []


@pytest.mark.slow
def test_data_parallel_matches_single_process(cli):
    single, dp = cli["qwen"], cli["qwen_dp"]
    assert dp.results()["results"] == single.results()["results"], dp.tail()
    assert {k: s["filtered_resps"] for k, s in dp.samples().items()} == {
        k: s["filtered_resps"] for k, s in single.samples().items()
    }
    dp_traces, single_traces = dp.traces(), single.traces()
    lines = dp.one("*_vreason_traces_vreason_synth.jsonl").read_text().splitlines()
    assert len(lines) == 5  # rank 1's padding copy is not a document of its own
    assert {r["rank"] for r in dp_traces.values()} == {0, 1}  # both ranks ran documents, rank 0 gathered them
    for doc_id, record in single_traces.items():
        other = dp_traces[doc_id]
        assert other["failed"] == record["failed"] and other["output_tokens"] == record["output_tokens"]
        if record["trace"]:
            assert other["trace"]["entropy"] == pytest.approx(record["trace"]["entropy"], abs=1e-4)
            assert other["trace"]["update_steps"] == record["trace"]["update_steps"]
    assert dp.summary()["failed"] == single.summary()["failed"] != []


QWEN_VIDEO = {"max_pixels": 12544, "min_pixels": 3136, "max_num_frames": 8}
THINK = "\\nThink inside <think> </think> then answer inside <answer> </answer>."


def _upstream_huggingface(pretrained: str, **kwargs):
    """lmms-eval's own ``huggingface`` model, with the two loading fixes ``vreason_hf`` makes and nothing else
    (on transformers 5 upstream loads a head-less ``AutoModel`` and its processor call fails; see
    models.py)."""
    import torch
    from deprecations import upstream_call_deprecations
    from lmms_eval.models.chat.huggingface import Huggingface
    from transformers import AutoModelForImageTextToText
    from vreason_lmms_eval import lmms_eval_seam
    from vreason_lmms_eval.models import _MediaKeywords

    with upstream_call_deprecations():  # lmms-eval's Huggingface passes torch_dtype= (its call, not ours)
        lm = Huggingface(pretrained=pretrained, device="cpu", device_map="cpu", **kwargs)
    assert not hasattr(lm.model, "lm_head")  # the upstream bug the fix is for
    model = AutoModelForImageTextToText.from_pretrained(pretrained, dtype=torch.bfloat16, device_map="cpu")
    lmms_eval_seam.set_wrapper_state(lm, model=model.eval())
    lm.processor = _MediaKeywords(lm.processor)
    return lm


# name: (family of the tiny checkpoint, request kind, upstream class or factory, our class, extra model args)
EQUALITY_CASES = {
    "qwen2_5_vl": (
        "qwen2_5_vl",
        "chat",
        "lmms_eval.models.chat.qwen2_5_vl:Qwen2_5_VL",
        "VReasonQwen2_5_VL",
        QWEN_VIDEO,
    ),
    # --force_simple, the path the paper's commands use, with upstream's reasoning_prompt.
    "qwen2_5_vl_simple": (
        "qwen2_5_vl",
        "simple",
        "lmms_eval.models.simple.qwen2_5_vl:Qwen2_5_VL",
        "VReasonQwen2_5_VLSimple",
        {**QWEN_VIDEO, "reasoning_prompt": THINK},
    ),
    # (The chat vreason_qwen3_vl is compared with upstream through the CLI:
    # test_cli_objective_none_equals_upstream.)
    "qwen3_vl_simple": (
        "qwen3_vl",
        "simple",
        "lmms_eval.models.simple.qwen3_vl:Qwen3_VL",
        "VReasonQwen3_VLSimple",
        {**QWEN_VIDEO, "reasoning_prompt": THINK},
    ),
    "hf_llava_onevision": (
        "llava_onevision",
        "chat",
        _upstream_huggingface,
        "VReasonHF",
        {"reasoning_prompt": THINK},
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", EQUALITY_CASES)
def test_objective_none_answers_equal_upstream(tmp_path, case):
    """In one process: lmms-eval's own model and ours with ``objective=none`` answer the same requests (built
    by lmms-eval's task code) on the same tiny checkpoint with the same answers. (In process because upstream
    ``huggingface`` cannot run through the CLI on transformers 5, and to keep the CLI runs few.)"""
    import importlib

    import torch
    from vreason_lmms_eval import models
    from vreason_lmms_eval.synthetic_task import build_requests

    from vreason_hooks.apps.tiny_checkpoints import write_tiny_checkpoint

    family, kind, upstream_cls, ours_name, args = EQUALITY_CASES[case]
    if isinstance(upstream_cls, str):
        module, name = upstream_cls.split(":")
        upstream_cls = getattr(importlib.import_module(module), name)
    ckpt = str(write_tiny_checkpoint(family, tmp_path / "tiny"))
    task, requests = build_requests(make_task(tmp_path / "task", n=3), task_type=kind)
    for request in requests:
        request.arguments[2 if kind == "chat" else 1]["max_new_tokens"] = NEW_TOKENS
    extra = {} if upstream_cls is _upstream_huggingface else {"device": "cpu", "device_map": "cpu"}
    upstream = upstream_cls(pretrained=ckpt, **extra, **args)
    ours = getattr(models, ours_name)(
        pretrained=ckpt, objective="none", prompt_model="own", trace_dir=str(tmp_path / "traces"), **args
    )
    assert ours.model.dtype == upstream.model.dtype == torch.bfloat16  # upstream's precision, by default
    answers = {}
    for name, lm in (("upstream", upstream), ("ours", ours)):
        lm.task_dict["vreason_synth"] = task.dataset
        answers[name] = [getattr(r, "text", r) for r in lm.generate_until(requests)]
    assert answers["ours"] == answers["upstream"] and all(a.strip() for a in answers["ours"])
    records = ours.vreason_records.items
    assert [r.doc_id for r in records] == [0, 1, 2]
    assert all(r.output_tokens == NEW_TOKENS and r.trace["update_steps"] == [] for r in records)
    assert records[0].trace["adapter"] == family
    ours.clean()
    assert ours.vreason_summary["completed"] == 3 and ours.vreason_summary["updates"] == 0
    assert len(list((tmp_path / "traces").glob("*_vreason_traces_vreason_synth.jsonl"))) == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "family, cls", [("qwen2_5_vl", "VReasonQwen2_5_VL"), ("qwen3_vl", "VReasonQwen3_VL")]
)
def test_batched_documents_get_their_own_traces(tmp_path, family, cls):
    """``--batch_size 2`` with the chat class: one upstream call per batch, each row's trace filed under its
    document. The batch is left-padded, so the shorter prompt's video span starts later by the length gap:
    that tells the rows apart."""
    from vreason_lmms_eval import models
    from vreason_lmms_eval.synthetic_task import build_requests, doc_to_text

    from vreason_hooks.apps.tiny_checkpoints import write_tiny_checkpoint

    ckpt = str(write_tiny_checkpoint(family, tmp_path / "tiny"))
    task, requests = build_requests(make_task(tmp_path / "task", n=3))
    for request in requests:
        request.arguments[2]["max_new_tokens"] = 4
    lm = getattr(models, cls)(
        pretrained=ckpt,
        batch_size=2,
        prompt_model="own",
        trace_dir=str(tmp_path / "traces"),
        max_pixels=12544,
        min_pixels=3136,
        max_num_frames=8,
    )
    lm.task_dict["vreason_synth"] = task.dataset
    answers = lm.generate_until(requests)
    assert len(answers) == 3 and lm.vreason.traces == []  # popped into the records
    records = {r.doc_id: r for r in lm.vreason_records.items}
    assert sorted(records) == [0, 1, 2] and all(r.trace is not None for r in records.values())
    kwargs = task.lmms_eval_specific_kwargs
    length = {i: len(lm.tokenizer(doc_to_text(task.dataset["test"][i], kwargs))["input_ids"]) for i in (0, 1)}
    assert length[0] != length[1]
    start = {i: records[i].trace["span"][0] for i in (0, 1)}  # docs 0 and 1 shared the first batch
    assert start[0] - start[1] == length[1] - length[0]
    lm.clean()


@pytest.mark.slow
def test_a_trace_that_cannot_be_written_never_takes_the_results_down(tmp_path):
    """lmms-eval calls ``clean()`` before it scores and writes its results: a trace folder removed (or a
    disk filled) during the run is logged, and ``clean()`` returns normally, the upstream one included."""
    from loguru import logger
    from vreason_lmms_eval import models
    from vreason_lmms_eval.synthetic_task import build_requests

    from vreason_hooks.apps.tiny_checkpoints import write_tiny_checkpoint

    ckpt = str(write_tiny_checkpoint("qwen2_5_vl", tmp_path / "tiny"))
    task, requests = build_requests(make_task(tmp_path / "task", n=1))
    requests[0].arguments[2]["max_new_tokens"] = 2
    trace_dir = tmp_path / "traces"
    lm = models.VReasonQwen2_5_VL(pretrained=ckpt, prompt_model="own", trace_dir=str(trace_dir), **QWEN_VIDEO)
    lm.task_dict["vreason_synth"] = task.dataset
    assert len(lm.generate_until(requests)) == 1
    if trace_dir.is_dir():  # created when the model was built (test_output_locations_are_checked_...)
        trace_dir.rmdir()
    trace_dir.write_text("the folder became a file")  # what a full disk or a removed folder looks like
    logged: list[str] = []
    sink = logger.add(lambda message: logged.append(str(message)), level="ERROR")
    try:
        lm.clean()  # raised FileExistsError before, and lmms-eval wrote no results
    finally:
        logger.remove(sink)
    assert lm.vreason_summary["completed"] == 1 and not lm.vreason.attached
    assert any("could not write" in m and "lmms-eval's results are not affected" in m for m in logged), logged
