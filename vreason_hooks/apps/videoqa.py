"""One video question to any supported video-language model, with or without V-Reason (``vreason run``).

Loads a checkpoint (local folder or hub id already in the local cache), finds its adapter from the config
before loading any weights, samples frames with :mod:`vreason_hooks.apps.video`, builds inputs with the
model's own processor and chat template, and generates greedily (the paper's "near-greedy" protocol)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..adapters import AdapterSpec, adapter_for_config
from ..config import VReasonConfig
from ..errors import VReasonError
from ..trace import Trace
from .answers import extract_answer
from .checkpoints import read_checkpoint_config
from .runs import generate_in_session
from .video import Frames

THINK_PROMPT = (
    "{question}\nThink about the question step by step inside <think> </think> tags, "
    "then give the final answer inside <answer> </answer> tags."
)
"""The paper's (Video-R1's) output format: reasoning in ``<think>``, the answer in ``<answer>``."""
PROMPT_STYLES = {"think": THINK_PROMPT, "plain": "{question}"}
DEFAULT_MAX_NEW_TOKENS = 1024
"""Paper: up to 1024 new tokens."""


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


def load_video_model(name: str, device: str = "auto", dtype: str = "auto") -> VideoModel:
    """Load a video-language checkpoint and its processor; fail early when no adapter controls its video.

    Args:
        name: a checkpoint folder, or a hub id already in the local cache.
        device: ``"auto"`` (CUDA when available, else CPU), or any torch device string.
        dtype: ``"auto"`` (bfloat16 on GPU, float32 on CPU), ``"float32"``, ``"bfloat16"`` or ``"float16"``.
    """
    import torch
    from transformers import AutoModelForImageTextToText

    config = read_checkpoint_config(name, f"model {name}")
    spec = adapter_for_config(config)
    spec.check_config(config)  # a wrong field name fails here, before any weights load
    if spec.span.kind != "token":
        raise VReasonError(
            f"model {name} ({config.model_type}, adapter {spec.name!r}) is a text-only model: `vreason run` "
            "needs a video-language model (`vreason adapters` lists them); use the Python API "
            "(vreason_hooks.attach) for text models"
        )
    if Path(name).is_dir():
        check_checkpoint_files(Path(name))
    # The processor first: it is cheap, and a wrong one must fail before gigabytes of weights load.
    processor = _load_processor(name)
    check_processor(processor, config, spec, name)
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
    return VideoModel(model, processor, spec, name)


CHECKPOINT_FILES = {
    "weights (model.safetensors or pytorch_model.bin)": [("*.safetensors",), ("pytorch_model*.bin",)],
    "tokenizer.json (or vocab.json + merges.txt, or tokenizer.model)": [
        ("tokenizer.json",),
        ("vocab.json", "merges.txt"),
        ("tokenizer.model",),
    ],
    "processor_config.json (or preprocessor_config.json)": [
        ("processor_config.json",),
        ("preprocessor_config.json",),
        ("video_preprocessor_config.json",),
    ],
}
"""What ``vreason run`` needs in a checkpoint folder besides config.json: each entry is satisfied by any one
of its alternatives (all files of an alternative present; glob patterns allowed)."""

_SAVE_HINT = (
    "`vreason run` needs the whole checkpoint: save it with model.save_pretrained(DIR) and "
    "AutoProcessor.from_pretrained(ORIGINAL).save_pretrained(DIR)"
)


def check_checkpoint_files(folder: Path) -> None:
    """Raise a one-line :class:`VReasonError` naming every file group :data:`CHECKPOINT_FILES` misses in
    ``folder`` (transformers would otherwise fail late, with a message about video tokens or the hub)."""
    missing = [
        what
        for what, alternatives in CHECKPOINT_FILES.items()
        if not any(all(any(folder.glob(pattern)) for pattern in alt) for alt in alternatives)
    ]
    if missing:
        raise VReasonError(
            f"model folder {folder} is incomplete: it has no {', no '.join(missing)}; {_SAVE_HINT}"
        )


def _load_processor(name: str):
    from transformers import AutoProcessor

    try:
        return AutoProcessor.from_pretrained(name)
    except (OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise VReasonError(f"cannot load the processor of {name} ({first[:200]}); {_SAVE_HINT}") from None


def check_processor(processor, config, spec: AdapterSpec, name: str) -> None:
    """The processor must write the video token the model config expects, and have a chat template.

    A checkpoint without its tokenizer files loads a stub tokenizer that maps ``<|video_pad|>`` to some
    small id, and generation then fails with "video features and video tokens do not match"."""
    expected = spec.span_token_id(config)
    token = getattr(processor, "video_token", None)
    tokenizer = getattr(processor, "tokenizer", None)
    if token is not None and tokenizer is not None:
        got = tokenizer.convert_tokens_to_ids(token)
        if got != expected:
            raise VReasonError(
                f"the tokenizer of {name} maps the video token {token!r} to id {got}, but config.json has "
                f"{spec.span.token_id_field} = {expected}: the checkpoint's tokenizer files (tokenizer.json, "
                "tokenizer_config.json) are missing or belong to another model; copy them from the original "
                "checkpoint"
            )
    if getattr(processor, "chat_template", None) is None:
        raise VReasonError(
            f"{name} has no chat template (chat_template.jinja or chat_template.json): `vreason run` builds "
            "the prompt with the model's own template; copy it from the original checkpoint"
        )


def build_inputs(vm: VideoModel, frames: Frames, question: str, prompt_style: str = "think") -> dict:
    """Processor inputs for one question about ``frames`` (the chat template puts the video before the
    text)."""
    text = PROMPT_STYLES[prompt_style].format(question=question)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
    prompt = vm.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    kwargs = dict(vm.spec.processor.video_kwargs)
    if vm.spec.processor.video_metadata:
        # Frames are sampled and resized already; the metadata gives the model's temporal positions the real
        # fps.
        metadata = {
            "fps": frames.fps or 1.0,
            "frames_indices": frames.indices,
            "total_num_frames": frames.total_frames,
        }
        kwargs["video_metadata"] = [metadata]
    inputs = vm.processor(text=[prompt], videos=[frames.pixels], return_tensors="pt", **kwargs)
    return inputs.to(vm.model.device)


def generate(vm: VideoModel, inputs: dict, config: VReasonConfig, max_new_tokens: int, label: str) -> Answer:
    """Greedy generation inside a V-Reason session (``objective='none'`` gives the traced baseline)."""
    run = generate_in_session(vm.model, inputs, config, max_new_tokens, adapter=vm.spec, label=label)
    text = vm.processor.batch_decode(run.new_tokens[:1], skip_special_tokens=True)[0].strip()
    trace = run.traces[-1]
    return Answer(label, text, extract_answer(text), trace.num_tokens, run.seconds, trace)
