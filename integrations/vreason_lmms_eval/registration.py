"""Entry point of the ``lmms_eval.models`` group (declared in pyproject.toml): the model manifests.

Kept free of heavy imports: lmms-eval loads it while building its registry, and imports a class only when
its name is requested with ``--model``.
"""

from __future__ import annotations

from lmms_eval.models.registry_v2 import ModelManifest

_MODELS = "vreason_lmms_eval.models"


def manifests() -> list[ModelManifest]:
    """``vreason_qwen2_5_vl`` and ``vreason_qwen3_vl`` (chat and simple, like upstream), ``vreason_hf`` (chat,
    like upstream ``huggingface``) and ``vreason_llava_video`` (simple)."""
    return [
        ModelManifest(
            model_id="vreason_qwen2_5_vl",
            chat_class_path=f"{_MODELS}.VReasonQwen2_5_VL",
            simple_class_path=f"{_MODELS}.VReasonQwen2_5_VLSimple",
        ),
        ModelManifest(
            model_id="vreason_qwen3_vl",
            chat_class_path=f"{_MODELS}.VReasonQwen3_VL",
            simple_class_path=f"{_MODELS}.VReasonQwen3_VLSimple",
        ),
        ModelManifest(model_id="vreason_hf", chat_class_path=f"{_MODELS}.VReasonHF"),
        ModelManifest(
            model_id="vreason_llava_video",
            simple_class_path=f"{_MODELS}.VReasonLlavaVideo",
            aliases=("vreason_llava_onevision",),
        ),
        # V-Reason inside vLLM (lmms-eval's own `vllm` chat model; integrations/vreason_vllm, docs/vllm.md)
        ModelManifest(model_id="vreason_vllm", chat_class_path="vreason_vllm.lmms_eval_model.VReasonVLLM"),
    ]
