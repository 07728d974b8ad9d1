"""The lmms-eval model classes: lmms-eval's own wrappers, with generation inside a V-Reason session.

* ``vreason_qwen2_5_vl``: lmms-eval's ``qwen2_5_vl`` (chat class by default, simple with ``--force_simple``).
* ``vreason_qwen3_vl``: lmms-eval's ``qwen3_vl`` (chat / simple), for Qwen3-VL checkpoints, dense and MoE.
* ``vreason_hf``: lmms-eval's generic ``huggingface`` chat class, for any checkpoint of a family that has a
  V-Reason adapter (picked from the checkpoint's ``model_type``).
* ``vreason_llava_video``: lmms-eval's ``llava_hf`` simple class, which runs the transformers
  ``LlavaOnevisionForConditionalGeneration`` (LLaVA-OneVision and LLaVA-Video ``-hf`` checkpoints) and reads
  frames with decord. (lmms-eval's ``llava_onevision`` needs the LLaVA-NeXT repository, not on PyPI; the chat
  variant of ``llava_hf`` decodes video through torchcodec, which needs system FFmpeg.)
"""

from __future__ import annotations

from typing import ClassVar

import torch
from lmms_eval.api.model import lmms
from lmms_eval.models.chat.huggingface import Huggingface as _HFChat
from lmms_eval.models.chat.qwen2_5_vl import Qwen2_5_VL as _QwenChat
from lmms_eval.models.chat.qwen3_vl import Qwen3_VL as _Qwen3Chat
from lmms_eval.models.simple.llava_hf import LlavaHf as _LlavaSimple
from lmms_eval.models.simple.qwen2_5_vl import Qwen2_5_VL as _QwenSimple
from lmms_eval.models.simple.qwen3_vl import Qwen3_VL as _Qwen3Simple

from vreason_hooks import transformers_seam

from . import lmms_eval_seam
from .wrapper import VReasonModel, upstream_arguments

VALID_ATTN = (None, "flash_attention_2", "sdpa", "eager")


def _cpu_fallback(device, device_map, cuda_default_map):
    """Upstream defaults assume CUDA (``device="cuda"``, ``device_map="auto"``); on a CPU-only machine use the
    CPU."""
    if torch.cuda.is_available():
        return device, device_map
    device = "cpu" if device in (None, "", "cuda") or str(device).startswith("cuda") else device
    device_map = (
        device
        if device_map in (None, "", "auto", cuda_default_map) or str(device_map).startswith("cuda")
        else device_map
    )
    return device, device_map


class _Loader(VReasonModel):
    """Loads the model like the upstream ``__init__`` of the lmms-eval wrapper and sets the same attributes.

    Not the upstream ``__init__`` itself: under ``accelerate launch`` it always puts rank ``i`` on
    ``cuda:i`` and refuses any distributed type but multi-GPU / FSDP, so CPU (gloo) data parallelism is
    impossible with it. Everything else follows it: same defaults (read from its signature), same
    ``bfloat16`` weights unless ``dtype=`` says otherwise, same processor arguments.
    """

    EXTRA_ARGS: ClassVar[dict[str, object]] = {"dtype": "bfloat16"}

    def _arguments(self, kwargs: dict) -> dict:
        """Upstream defaults, our extra ones, then the user's; checked like upstream checks them."""
        args = {**upstream_arguments(self.UPSTREAM), **self.EXTRA_ARGS, **kwargs}
        if args["attn_implementation"] not in VALID_ATTN:
            raise ValueError(
                f"attn_implementation must be one of {list(VALID_ATTN)}, got {args['attn_implementation']}"
            )
        lmms.__init__(self)
        return args

    def _place(self, args: dict) -> dict:
        """Set accelerator, device, device map, rank and world size; return the ``from_pretrained`` kwargs."""
        from accelerate import Accelerator

        accelerator = Accelerator()
        self.accelerator = accelerator
        if accelerator.num_processes > 1:
            local = f"cuda:{accelerator.local_process_index}" if torch.cuda.is_available() else "cpu"
            device, device_map = local, local
        else:
            device, device_map = _cpu_fallback(args["device"], args["device_map"], "auto")
        self.device_map = device_map
        # Data parallel: lmms-eval shards documents by rank; no model wrapping is needed for generation.
        lmms_eval_seam.set_wrapper_state(
            self,
            device=torch.device(device),
            rank=accelerator.process_index,
            world_size=accelerator.num_processes,
        )
        model_kwargs = {"dtype": args["dtype"], "device_map": device_map}
        if args["attn_implementation"] is not None:
            model_kwargs["attn_implementation"] = args["attn_implementation"]
        return model_kwargs

    def _finish(self, args: dict) -> None:
        """The attributes every upstream ``__init__`` ends with."""
        lmms_eval_seam.set_wrapper_state(
            self, config=self.model.config, max_length=2048, batch_size=int(args["batch_size"])
        )
        self.use_cache = args["use_cache"]


class _QwenLoader(_Loader):
    """Loads a Qwen-VL like lmms-eval's ``qwen2_5_vl`` / ``qwen3_vl`` ``__init__``."""

    UPSTREAM_ATTRS: ClassVar[tuple[str, ...]] = ()
    """Upstream arguments kept as attributes of the same name, beyond those of every Qwen wrapper."""

    def _model_class(self, pretrained: str):  # pragma: no cover - abstract
        raise NotImplementedError

    def _load_upstream(self, **kwargs) -> None:
        from transformers import AutoProcessor, AutoTokenizer

        args = self._arguments(kwargs)
        model_kwargs = self._place(args)
        pretrained = args["pretrained"]
        model = self._model_class(pretrained).from_pretrained(pretrained, **model_kwargs).eval()
        lmms_eval_seam.set_wrapper_state(self, model=model)
        self.max_pixels, self.min_pixels = args["max_pixels"], args["min_pixels"]
        self.max_num_frames, self.fps = args["max_num_frames"], args["fps"]
        for name in self.UPSTREAM_ATTRS:
            setattr(self, name, args[name])
        reasoning = args["reasoning_prompt"]
        self.reasoning_prompt = reasoning.replace("\\n", "\n") if reasoning else None
        self.processor = AutoProcessor.from_pretrained(
            pretrained, max_pixels=self.max_pixels, min_pixels=self.min_pixels
        )
        lmms_eval_seam.set_wrapper_state(self, tokenizer=AutoTokenizer.from_pretrained(pretrained))
        self.system_prompt = args["system_prompt"]
        self.interleave_visuals = args["interleave_visuals"]
        self._finish(args)


class _Qwen2_5Loader(_QwenLoader):
    UPSTREAM = _QwenSimple
    UPSTREAM_NAME = "qwen2_5_vl"
    MODEL_NAME = "vreason_qwen2_5_vl"

    def _model_class(self, pretrained: str):
        from transformers import Qwen2_5_VLForConditionalGeneration

        return Qwen2_5_VLForConditionalGeneration


class VReasonQwen2_5_VL(_Qwen2_5Loader, _QwenChat):
    """``vreason_qwen2_5_vl`` (chat): lmms-eval's chat ``qwen2_5_vl`` under V-Reason."""

    is_simple = False


class VReasonQwen2_5_VLSimple(_Qwen2_5Loader, _QwenSimple):
    """``vreason_qwen2_5_vl --force_simple``: lmms-eval's simple ``qwen2_5_vl`` under V-Reason.

    The upstream simple class only handles the first video of a batch, so documents run one at a time.
    """

    is_simple = True
    DOC_BATCHING = False


class _Qwen3Loader(_QwenLoader):
    UPSTREAM = _Qwen3Simple
    UPSTREAM_NAME = "qwen3_vl"
    MODEL_NAME = "vreason_qwen3_vl"
    UPSTREAM_ATTRS = ("total_pixels", "enable_thinking")

    def _model_class(self, pretrained: str):
        """Upstream's choice of class (Qwen3-VL or Qwen3.5, dense or MoE). Upstream guesses MoE from an
        ``A<n>B`` in the checkpoint name; the config's ``model_type`` also gets a local folder right."""
        from transformers import AutoConfig

        from .lmms_eval_seam import qwen3_model_class

        model_type = AutoConfig.from_pretrained(pretrained).model_type
        return qwen3_model_class(pretrained, is_moe=model_type.endswith("_moe"))


class VReasonQwen3_VL(_Qwen3Loader, _Qwen3Chat):
    """``vreason_qwen3_vl`` (chat): lmms-eval's chat ``qwen3_vl`` under V-Reason."""

    is_simple = False


class VReasonQwen3_VLSimple(_Qwen3Loader, _Qwen3Simple):
    """``vreason_qwen3_vl --force_simple``: lmms-eval's simple ``qwen3_vl`` under V-Reason (one document per
    call: the per-document traces of a batch are matched through chat requests only)."""

    is_simple = True
    DOC_BATCHING = False


class _MediaKeywords:
    """A processor called the way lmms-eval 0.7.3's ``huggingface`` chat model calls it, made to run on
    transformers 5 without torchcodec.

    Upstream passes every kind of media as a list, empty when the document has none, audio as ``audios=``
    and videos as file paths: ``processor(text=..., images=[], videos=[path], audios=[])``. transformers 5
    processors reject ``audios`` ("deprecated. Please use `audio` instead"), fail on an empty image list
    (``IndexError``) and decode video paths only through torchcodec, which needs a system FFmpeg (the
    torchvision fallback is gone in torchvision 0.26). So only non-empty media are passed on, audio under
    ``audio``, and video files are decoded here with transformers' own ``load_video`` (PyAV backend, which
    bundles FFmpeg) and passed as frames with their metadata: the processor then samples frames exactly as it
    does for a path. Everything else is the processor's own.
    """

    RENAMED: ClassVar[dict[str, str]] = {"audios": "audio"}
    VIDEO_BACKEND = "pyav"

    def __init__(self, processor) -> None:
        self.processor = processor

    def __call__(self, *args, **kwargs):
        for key in ("images", "videos", "audios"):
            media = kwargs.pop(key, None)
            if media:
                kwargs[self.RENAMED.get(key, key)] = media
        videos = kwargs.get("videos")
        if videos and all(isinstance(v, str) for v in videos) and "video_metadata" not in kwargs:
            frames, metadata = zip(
                *(transformers_seam.load_video(path, self.VIDEO_BACKEND) for path in videos)
            )
            kwargs["videos"], kwargs["video_metadata"] = list(frames), list(metadata)
        return self.processor(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.processor, name)


class VReasonHF(_Loader, _HFChat):
    """``vreason_hf``: lmms-eval's generic ``huggingface`` chat model under V-Reason, for any checkpoint whose
    ``model_type`` has a V-Reason adapter (checked before loading).

    Upstream's ``generate_until`` runs unchanged. Loading follows its ``__init__`` (same arguments,
    ``bfloat16``, ``AutoProcessor`` / ``AutoTokenizer``, system / reasoning prompt) with two fixes without
    which upstream cannot generate on transformers 5: the model is loaded with its language-model head
    (:func:`vreason_hooks.transformers_seam.generation_auto_class`; upstream falls back to ``AutoModel``), and
    the processor takes upstream's media arguments (:class:`_MediaKeywords`)."""

    is_simple = False
    UPSTREAM = _HFChat
    UPSTREAM_NAME = "huggingface"
    MODEL_NAME = "vreason_hf"

    def _load_upstream(self, **kwargs) -> None:
        from transformers import AutoConfig, AutoModel, AutoProcessor, AutoTokenizer

        args = self._arguments(kwargs)
        model_kwargs = self._place(args)
        pretrained, remote = args["pretrained"], bool(args["trust_remote_code"])
        self.trust_remote_code = remote
        config = AutoConfig.from_pretrained(pretrained, trust_remote_code=remote)
        auto = transformers_seam.generation_auto_class(config) or (AutoModel if remote else None)
        if auto is None:
            raise ValueError(
                f"{self.MODEL_NAME}: pretrained={pretrained} ({config.model_type}) has no transformers class "
                "with a language-model head (AutoModelForCausalLM / AutoModelForImageTextToText), so it "
                "cannot generate"
            )
        model = auto.from_pretrained(pretrained, trust_remote_code=remote, **model_kwargs).eval()
        lmms_eval_seam.set_wrapper_state(self, model=model)
        self.max_num_frames = args["max_num_frames"]
        prompt = args["reasoning_prompt"] or args["system_prompt"]
        self.system_prompt = self._resolve_system_prompt(prompt.replace("\\n", "\n")) if prompt else None
        self.processor = _MediaKeywords(AutoProcessor.from_pretrained(pretrained, trust_remote_code=remote))
        tokenizer = AutoTokenizer.from_pretrained(pretrained, trust_remote_code=remote)
        lmms_eval_seam.set_wrapper_state(self, tokenizer=tokenizer)
        self.interleave_visuals = args["interleave_visuals"]
        self._finish(args)


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
                f"{self.MODEL_NAME}: pretrained={args['pretrained']} is a {type(self.model).__name__}; "
                "V-Reason needs a LLaVA-OneVision / LLaVA-Video checkpoint (a video token to control)"
            )
