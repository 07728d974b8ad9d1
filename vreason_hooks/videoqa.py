"""One video question to any supported video-language model, with or without V-Reason (``vreason run``).

Loads a checkpoint (local folder or hub id already in the local cache), finds its adapter from the config
before loading any weights, samples frames with :mod:`vreason_hooks.video`, builds inputs with the model's
own processor and chat template, and generates greedily (the paper's "near-greedy" protocol).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from .adapters import AdapterSpec, available
from .config import VReasonConfig
from .errors import NoAdapterError, VReasonError
from .trace import Trace
from .video import Frames

THINK_PROMPT = (
    "{question}\nThink about the question step by step inside <think> </think> tags, "
    "then give the final answer inside <answer> </answer> tags."
)
"""The paper's (Video-R1's) output format: reasoning in ``<think>``, the answer in ``<answer>``."""
PROMPT_STYLES = {"think": THINK_PROMPT, "plain": "{question}"}
DEFAULT_MAX_NEW_TOKENS = 1024
"""Paper: up to 1024 new tokens."""

_ANSWER = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)


def extract_answer(text: str) -> str:
    """The text inside ``<answer>...</answer>`` (an unclosed tag runs to the end); else the whole output."""
    match = _ANSWER.search(text)
    return (match.group(1) if match else text).strip()


@dataclass
class VideoModel:
    """A loaded checkpoint with its processor and the adapter spec that matches it."""

    model: object
    processor: object
    spec: AdapterSpec
    name: str


@dataclass
class Answer:
    """One generation: full text, extracted answer, token count, wall time and the controller trace."""

    label: str
    text: str
    answer: str
    num_tokens: int
    seconds: float
    trace: Trace


def match_adapter(config) -> AdapterSpec:
    """The adapter for a transformers config, found before any weights are loaded."""
    for spec in available():
        if spec.matches(config):
            return spec
    names = ", ".join(s.name for s in available())
    raise NoAdapterError(
        f"no adapter matches model_type={getattr(config, 'model_type', None)!r}; available: {names}. "
        "Add one with a spec file (see docs/adding-a-model.md)"
    )


def _load_config(name: str):
    from transformers import AutoConfig

    local = Path(name)
    if local.exists() and not (local / "config.json").is_file():
        raise VReasonError(f"model folder {name} has no config.json: pass a transformers checkpoint folder")
    try:
        return AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as err:
        if local.exists():
            raise VReasonError(f"cannot read the model config in {name}: {str(err).splitlines()[0]}") from None
        raise VReasonError(
            f"unknown model {name!r}: not a local folder and not in the local Hugging Face cache; pass a "
            "checkpoint folder, or download the model first (e.g. `hf download Qwen/Qwen2.5-VL-7B-Instruct`)"
        ) from None


def load_video_model(name: str, device: str = "auto", dtype: str = "auto") -> VideoModel:
    """Load a video-language checkpoint and its processor; fail early when no adapter controls its video.

    Args:
        name: a checkpoint folder, or a hub id already in the local cache.
        device: ``"auto"`` (CUDA when available, else CPU), or any torch device string.
        dtype: ``"auto"`` (bfloat16 on GPU, float32 on CPU), ``"float32"``, ``"bfloat16"`` or ``"float16"``.
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    config = _load_config(name)
    spec = match_adapter(config)
    spec.check_config(config)  # a wrong field name fails here, before any weights load
    if spec.span.kind != "token":
        raise VReasonError(
            f"model {name} ({config.model_type}, adapter {spec.name!r}) is a text-only model: `vreason run` needs a "
            "video-language model (`vreason adapters` lists them); use the Python API (vreason_hooks.attach) for text models"
        )
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype == "auto":
        dtype = "bfloat16" if str(device).startswith("cuda") else "float32"
    import importlib.util

    kwargs = {"dtype": getattr(torch, dtype)}
    # With accelerate, weights load straight onto the device (a 7B model never sits in CPU RAM first).
    if importlib.util.find_spec("accelerate") is not None:
        kwargs["device_map"] = device
    model = AutoModelForImageTextToText.from_pretrained(name, **kwargs)
    model = (model if "device_map" in kwargs else model.to(device)).eval()
    processor = AutoProcessor.from_pretrained(name)
    return VideoModel(model, processor, spec, name)


def build_inputs(vm: VideoModel, frames: Frames, question: str, prompt_style: str = "think") -> dict:
    """Processor inputs for one question about ``frames`` (the chat template puts the video before the text)."""
    text = PROMPT_STYLES[prompt_style].format(question=question)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
    prompt = vm.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    kwargs = dict(vm.spec.processor.video_kwargs)
    if vm.spec.processor.video_metadata:
        # Frames are sampled and resized already; the metadata gives the model's temporal positions the real fps.
        metadata = {"fps": frames.fps or 1.0, "frames_indices": frames.indices, "total_num_frames": frames.total_frames}
        kwargs["video_metadata"] = [metadata]
    inputs = vm.processor(text=[prompt], videos=[frames.pixels], return_tensors="pt", **kwargs)
    return inputs.to(vm.model.device)


def generate(vm: VideoModel, inputs: dict, config: VReasonConfig, max_new_tokens: int, label: str) -> Answer:
    """Greedy generation inside a V-Reason session (``objective='none'`` gives the traced baseline)."""
    import torch

    from .session import attach

    start = time.perf_counter()
    with attach(vm.model, config, adapter=vm.spec) as session, torch.inference_mode():
        out = vm.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    seconds = time.perf_counter() - start
    new = out[0, inputs["input_ids"].shape[1]:]
    text = vm.processor.batch_decode(new[None], skip_special_tokens=True)[0].strip()
    trace = session.traces[-1]
    trace.label = label
    return Answer(label, text, extract_answer(text), trace.num_tokens, seconds, trace)
