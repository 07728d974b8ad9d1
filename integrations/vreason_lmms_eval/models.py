"""The lmms-eval model classes: lmms-eval's own wrappers, with generation inside a V-Reason session.

* ``vreason_qwen2_5_vl``: lmms-eval's ``qwen2_5_vl`` (chat class by default, simple with ``--force_simple``).
* ``vreason_llava_video``: lmms-eval's ``llava_hf`` simple class, which runs the transformers
  ``LlavaOnevisionForConditionalGeneration`` (LLaVA-OneVision and LLaVA-Video ``-hf`` checkpoints) and reads
  frames with decord. (lmms-eval's ``llava_onevision`` needs the LLaVA-NeXT repository, not on PyPI; the chat
  variant of ``llava_hf`` decodes video through torchcodec, which needs system FFmpeg.)
"""

from __future__ import annotations

from typing import ClassVar

import torch
from lmms_eval.api.model import lmms
from lmms_eval.models.chat.qwen2_5_vl import Qwen2_5_VL as _QwenChat
from lmms_eval.models.simple.llava_hf import LlavaHf as _LlavaSimple
from lmms_eval.models.simple.qwen2_5_vl import Qwen2_5_VL as _QwenSimple

from .wrapper import VReasonModel, upstream_arguments


def _cpu_fallback(device, device_map, cuda_default_map):
    """Upstream defaults assume CUDA (``device="cuda"``, ``device_map="auto"``); on a CPU-only machine use the CPU."""
    if torch.cuda.is_available():
        return device, device_map
    device = "cpu" if device in (None, "", "cuda") or str(device).startswith("cuda") else device
    device_map = device if device_map in (None, "", "auto", cuda_default_map) or str(device_map).startswith("cuda") else device_map
    return device, device_map


class _QwenLoader(VReasonModel):
    """Loads Qwen2.5-VL like lmms-eval's ``qwen2_5_vl.__init__`` and sets the same attributes.

    Not the upstream ``__init__`` itself: under ``accelerate launch`` it always puts rank ``i`` on
    ``cuda:i`` and refuses any distributed type but multi-GPU / FSDP, so CPU (gloo) data parallelism is
    impossible with it. Everything else follows it: same defaults (read from its signature), same
    ``bfloat16`` weights unless ``dtype=`` says otherwise, same processor arguments.
    """

    UPSTREAM = _QwenSimple
    UPSTREAM_NAME = "qwen2_5_vl"
    MODEL_NAME = "vreason_qwen2_5_vl"
    EXTRA_ARGS: ClassVar[dict[str, object]] = {"dtype": "bfloat16"}

    def _load_upstream(self, **kwargs) -> None:
        from accelerate import Accelerator
        from transformers import AutoProcessor, AutoTokenizer, Qwen2_5_VLForConditionalGeneration

        args = {**upstream_arguments(_QwenSimple), **self.EXTRA_ARGS, **kwargs}
        lmms.__init__(self)
        valid_attn = [None, "flash_attention_2", "sdpa", "eager"]
        if args["attn_implementation"] not in valid_attn:
            raise ValueError(f"attn_implementation must be one of {valid_attn}, got {args['attn_implementation']}")
        accelerator = Accelerator()
        self.accelerator = accelerator
        if accelerator.num_processes > 1:
            local = f"cuda:{accelerator.local_process_index}" if torch.cuda.is_available() else "cpu"
            device, device_map = local, local
        else:
            device, device_map = _cpu_fallback(args["device"], args["device_map"], "auto")
        self._device, self.device_map = torch.device(device), device_map
        model_kwargs = {"dtype": args["dtype"], "device_map": device_map}
        if args["attn_implementation"] is not None:
            model_kwargs["attn_implementation"] = args["attn_implementation"]
        pretrained = args["pretrained"]
        self._model = Qwen2_5_VLForConditionalGeneration.from_pretrained(pretrained, **model_kwargs).eval()
        self.max_pixels, self.min_pixels = args["max_pixels"], args["min_pixels"]
        self.max_num_frames, self.fps = args["max_num_frames"], args["fps"]
        reasoning = args["reasoning_prompt"]
        self.reasoning_prompt = reasoning.replace("\\n", "\n") if reasoning else None
        self.processor = AutoProcessor.from_pretrained(pretrained, max_pixels=self.max_pixels, min_pixels=self.min_pixels)
        self._tokenizer = AutoTokenizer.from_pretrained(pretrained)
        self.system_prompt = args["system_prompt"]
        self.interleave_visuals = args["interleave_visuals"]
        self._config = self.model.config
        self._max_length = 2048
        self.batch_size_per_gpu = int(args["batch_size"])
        self.use_cache = args["use_cache"]
        # Data parallel: lmms-eval shards documents by rank; no model wrapping is needed for generation.
        self._rank, self._world_size = accelerator.process_index, accelerator.num_processes


class VReasonQwen2_5_VL(_QwenLoader, _QwenChat):
    """``vreason_qwen2_5_vl`` (chat): lmms-eval's chat ``qwen2_5_vl`` under V-Reason."""

    is_simple = False


class VReasonQwen2_5_VLSimple(_QwenLoader, _QwenSimple):
    """``vreason_qwen2_5_vl --force_simple``: lmms-eval's simple ``qwen2_5_vl`` under V-Reason.

    The upstream simple class only handles the first video of a batch, so documents run one at a time.
    """

    is_simple = True
    DOC_BATCHING = False


class VReasonLlavaVideo(VReasonModel, _LlavaSimple):
    """``vreason_llava_video``: lmms-eval's ``llava_hf`` (simple) under V-Reason, for LLaVA-OneVision /
    LLaVA-Video ``-hf`` checkpoints. The upstream ``__init__`` is used as is (CPU defaults aside)."""

    is_simple = True
    UPSTREAM = _LlavaSimple
    UPSTREAM_NAME = "llava_hf"
    MODEL_NAME = "vreason_llava_video"
    ALIASES = ("vreason_llava_onevision",)
    DOC_BATCHING = False  # upstream asserts batch_size == 1

    def _load_upstream(self, **kwargs) -> None:
        args = {**upstream_arguments(_LlavaSimple), **kwargs}
        args["device"], args["device_map"] = _cpu_fallback(args["device"], args["device_map"], "")
        _LlavaSimple.__init__(self, **args)
        if not hasattr(self.model.config, "video_token_index"):
            raise ValueError(
                f"{self.MODEL_NAME}: pretrained={args['pretrained']} is a {type(self.model).__name__}; V-Reason needs a "
                "LLaVA-OneVision / LLaVA-Video checkpoint (a video token to control)"
            )
