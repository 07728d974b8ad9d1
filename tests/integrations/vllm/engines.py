"""Engines and scenarios for the vLLM tests (imported by conftest.py only where vLLM is installed).

A *scenario* is a list of ``LLM.generate`` calls, each a list of named requests. It runs twice: in an engine
with the plugin (in this process) and in stock vLLM (a subprocess with the plugin switched off through
``VLLM_PLUGINS``, started first so that both engines start at the same time). The stock run mirrors the
plugin run's prefix-cache behaviour exactly: a request that is controlled in the plugin run carries a
``cache_salt`` of its own in the stock run (what the plugin gives it), so every plain request meets the same
cached blocks in both runs.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from vreason_vllm.testing import write_tiny_checkpoint

HERE = Path(__file__).resolve().parent
ENGINE = {"enforce_eager": True, "dtype": "float32", "seed": 0, "max_model_len": 2048}
"""Stock defaults (prefix caching and chunked prefill on) plus the eager mode V-Reason needs. float32: vLLM's
CPU bf16 kernels round differently with the batch's shape (measured here: a plain request's log-probs move by
up to 0.06 between a batch of two and a solo run, same tokens), and V-Reason's feedback loop amplifies that
into different tokens after a dozen steps; in fp32, "equals its solo run" tests V-Reason, not bf16 rounding.
The bf16 path is exercised by the server test (lr=0 identical to plain there)."""
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache per engine: plenty for tiny models
# Engines of this process (and the stock subprocess) run in one process each: front end, engine core and
# worker together start in ~17 s instead of ~40 s. The plugin's pieces are the same; the multi-process
# deployment (a process per role, the default) is what the server and lmms-eval tests run.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
ENGINE["distributed_executor_backend"] = "uni"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
STOCK_PLUGINS = "none"
"""``VLLM_PLUGINS`` of the stock engine: an allow-list naming no installed plugin, so V-Reason stays out."""


def prompt(seed: int, length: int) -> list[int]:
    """Random ordinary token ids (no special tokens) of the real Qwen vocabulary."""
    import random

    rng = random.Random(seed)
    return [rng.randrange(1000, 150000) for _ in range(length)]


@dataclass
class Request:
    name: str
    prompt: list[int]
    params: dict[str, Any] = field(default_factory=dict)
    """``SamplingParams`` keyword arguments (``extra_args`` makes it controlled)."""
    expect_error: bool = False

    @property
    def controlled(self) -> bool:
        return "vreason" in (self.params.get("extra_args") or {})

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "prompt": self.prompt,
            "params": self.params,
            "controlled": self.controlled,
        }


def sampling_params(params: dict[str, Any]):
    from vllm import SamplingParams
    from vllm.sampling_params import StructuredOutputsParams

    params = dict(params)
    if "structured_outputs" in params:
        params["structured_outputs"] = StructuredOutputsParams(**params["structured_outputs"])
    return SamplingParams(**{"temperature": 0.0, "logprobs": 0, **params})


def result(output) -> dict:
    """Tokens, the sampled tokens' log-probabilities and the cache hits of one ``RequestOutput``."""
    samples = [
        {
            "tokens": list(sample.token_ids),
            "logprobs": [
                entry[token].logprob for token, entry in zip(sample.token_ids, sample.logprobs or [])
            ],
            "text": sample.text,
        }
        for sample in output.outputs
    ]
    return {"samples": samples, "cached_tokens": output.num_cached_tokens or 0}


def make_engine(model: str | Path, **kwargs):
    from vllm import LLM

    return LLM(model=str(model), **{**ENGINE, **kwargs})


def close_engine(llm) -> None:
    """Stop the engine's processes now (module-scoped engines must not pile up on a 2-core machine)."""
    try:
        llm.llm_engine.engine_core.shutdown()
    finally:
        del llm
        gc.collect()


def run_calls(llm, calls: list[list[Request]]) -> dict[str, Any]:
    """Run a scenario in a plugin engine: ``{name: result}``, plus ``{name: error line}`` for refusals and
    ``{name + ":traces": [trace dicts]}`` for controlled requests."""
    import vreason_vllm

    found: dict[str, Any] = {}
    for call in calls:
        if len(call) == 1 and call[0].expect_error:
            try:
                llm.generate([{"prompt_token_ids": call[0].prompt}], sampling_params(call[0].params))
            except ValueError as err:
                found[call[0].name] = f"{type(err).__name__}: {err}"
            continue
        outputs = llm.generate(
            [{"prompt_token_ids": r.prompt} for r in call], [sampling_params(r.params) for r in call]
        )
        for request, output, traces in zip(call, outputs, vreason_vllm.traces(llm, outputs)):
            found[request.name] = result(output)
            found[request.name + ":traces"] = [t.to_dict() if t is not None else None for t in traces]
    return found


def start_stock(model: str | Path, calls: list[list[Request]], out: Path, **engine) -> subprocess.Popen:
    """Run the scenario in stock vLLM in a subprocess (see the module docstring); read it with
    :func:`stock_results`."""
    scenario = {
        "model": str(model),
        "engine": {**ENGINE, **engine},
        "calls": [[r.to_json() for r in call if not r.expect_error] for call in calls],
        "out": str(out),
    }
    spec = out.with_suffix(".scenario.json")
    spec.write_text(json.dumps(scenario))
    env = {**os.environ, "VLLM_PLUGINS": STOCK_PLUGINS}
    return subprocess.Popen(
        [sys.executable, str(HERE / "stock_run.py"), str(spec)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(out.with_suffix(".log"), "w"),
    )


def stock_results(process: subprocess.Popen, out: Path, timeout: float = 600) -> dict[str, Any]:
    code = process.wait(timeout=timeout)
    if code != 0 or not out.exists():
        log = out.with_suffix(".log").read_text()[-3000:]
        raise AssertionError(f"the stock vLLM run failed (exit {code}):\n{log}")
    return json.loads(out.read_text())


def unique_salt() -> str:
    return f"stock-mirror:{uuid.uuid4().hex}"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """``checkpoint(family)``: the path of a tiny random checkpoint (written once per session)."""
    root = tmp_path_factory.mktemp("checkpoints")
    written: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in written:
            written[family] = write_tiny_checkpoint(family, root / family)
        return written[family]

    return get
