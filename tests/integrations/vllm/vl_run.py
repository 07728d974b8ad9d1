"""The Qwen2.5-VL runs of test_vllm_vl.py, in their own process (started with the TEST-ONLY torchvision
stand-in on PYTHONPATH): ``python vl_run.py CHECKPOINT OUT.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

VIDEO = "<|vision_start|><|video_pad|><|vision_end|>"
PROMPT = f"<|im_start|>user\n{VIDEO}Which shape moves first?<|im_end|>\n<|im_start|>assistant\n"
TEXT_ONLY = "<|im_start|>user\nWhich shape moves first?<|im_end|>\n<|im_start|>assistant\n"
PLAIN = {"max_tokens": 16}
STRONG = {"max_tokens": 16, "extra_args": {"vreason": {"lr": 2.0}}}
ZERO = {"max_tokens": 16, "extra_args": {"vreason": {"lr": 0.0}}}


def chain(err: BaseException | None) -> str:
    parts = []
    while err is not None and len(parts) < 6:
        parts.append(f"{type(err).__name__}: {err}")
        err = err.__cause__ or err.__context__
    return " <- ".join(parts)


def main(model: str, out: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import numpy as np
    import torchvision
    import vreason_vllm
    from engines import close_engine, make_engine, result, sampling_params
    from vreason_vllm.testing import video_embeddings

    assert torchvision.STAND_IN  # never the real one here
    llm = make_engine(model, enable_mm_embeds=True, limit_mm_per_prompt={"video": 1})
    video = {"video": video_embeddings((2, 8, 8))}
    runs = [("plain", PROMPT, video, PLAIN), ("zero", PROMPT, video, ZERO), ("strong", PROMPT, video, STRONG)]
    runs += [("after", PROMPT, video, PLAIN), ("text_only", TEXT_ONLY, None, STRONG)]
    runs += [("text_plain", TEXT_ONLY, None, PLAIN)]
    found = {}
    try:
        for name, text, media, params in runs:
            item = {"prompt": text} | ({"multi_modal_data": media} if media else {})
            (output,) = llm.generate([item], sampling_params(params))
            (trace,) = vreason_vllm.traces(llm, [output])[0]
            found[name] = {
                **result(output)["samples"][0],
                "prompt_token_ids": list(output.prompt_token_ids),
                "trace": trace.to_dict() if trace is not None else None,
            }
        meta = {"fps": 2.0, "total_num_frames": 4, "duration": 2.0, "frames_indices": [0, 1, 2, 3]}
        frames = {"video": (np.zeros((4, 56, 56, 3), dtype="uint8"), meta)}
        try:
            llm.generate([{"prompt": PROMPT, "multi_modal_data": frames}], sampling_params(STRONG))
            found["raw_frames"] = "served"
        except Exception as err:  # noqa: BLE001 - whatever vLLM's processor raises, the test reads its message
            found["raw_frames"] = chain(err)
    finally:
        close_engine(llm)
    out.write_text(json.dumps(found))


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
