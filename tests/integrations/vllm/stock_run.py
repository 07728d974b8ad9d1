"""Run a scenario in stock vLLM (the parent sets ``VLLM_PLUGINS`` so that V-Reason is not loaded) and write
``{name: result}``; see engines.py. A request that is controlled in the plugin run gets a cache salt of its
own here, as the plugin gives it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from engines import make_engine, result, sampling_params, unique_salt

    scenario = json.loads(Path(sys.argv[1]).read_text())
    llm = make_engine(scenario["model"], **{k: v for k, v in scenario["engine"].items() if k != "model"})
    import vreason_vllm.plugin

    assert not vreason_vllm.plugin._REGISTERED, "VLLM_PLUGINS did not keep the V-Reason plugin out"
    found = {}
    for call in scenario["calls"]:
        prompts = []
        for r in call:
            item = {"prompt_token_ids": r["prompt"]}
            if r["controlled"]:
                item["cache_salt"] = unique_salt()
            prompts.append(item)
        params = [sampling_params({k: v for k, v in r["params"].items() if k != "extra_args"}) for r in call]
        for r, output in zip(call, llm.generate(prompts, params)):
            found[r["name"]] = result(output)
    Path(scenario["out"]).write_text(json.dumps(found))
