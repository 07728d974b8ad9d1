"""``lmms-eval --model vreason_vllm``: lmms-eval's own ``vllm`` chat model with V-Reason inside vLLM.

    lmms-eval --model vreason_vllm --model_args model=Qwen/Qwen2.5-VL-7B-Instruct,lr=3e-4 \\
        --tasks mvbench --output_path runs/ --log_samples

Upstream's class builds the prompts, the messages, the media and the answers; this subclass only adds the
V-Reason settings to every request's ``SamplingParams.extra_args`` (so the plugin controls it), starts the
engine in eager mode (``enforce_eager=True`` unless given), gives tasks the upstream name ``vllm`` to pick
their prompts by (``prompt_model=own`` keeps ``vreason_vllm``), and writes the per-document traces next to
lmms-eval's samples (``<stamp>_vreason_traces_<task>.jsonl``, the records of
:mod:`vreason_lmms_eval.records`).
``objective=none`` runs the hooks without ever moving ΔV: its answers equal upstream ``vllm``'s.
"""

from __future__ import annotations

from pathlib import Path

from lmms_eval.models.chat.vllm import VLLM as _VLLMChat
from loguru import logger as eval_logger
from vreason_lmms_eval import lmms_eval_seam
from vreason_lmms_eval.cli_context import rename_pending_task_manager, run_stamp
from vreason_lmms_eval.records import DocRecord, Records, cli_output_dir

from vreason_hooks.config import VReasonConfig

from .request_config import request_settings
from .traces import traces

MODEL_NAME = "vreason_vllm"
UPSTREAM_NAME = "vllm"
OWN_KEYS = (*VReasonConfig.model_fields, "trace_dir", "prompt_model")


class VReasonVLLM(_VLLMChat):
    """``vreason_vllm``: see the module docstring. ``--model_args`` keys that are V-Reason fields (``lr``,
    ``objective``, ...) go to V-Reason, ``trace_dir`` and ``prompt_model`` to this integration, the rest to
    upstream ``vllm`` (and from there to ``vllm.LLM``)."""

    is_simple = False

    def __init__(self, **kwargs) -> None:
        own = {key: kwargs.pop(key) for key in list(kwargs) if key in OWN_KEYS}
        prompt_model = own.pop("prompt_model", UPSTREAM_NAME)
        self._vreason_trace_dir = own.pop("trace_dir", None)
        settings = request_settings({"vreason": own})  # a bad value fails here, before the engine starts
        self.vreason_config = settings.config
        self._vreason_extra = {"vreason": settings.config.model_dump()}
        if prompt_model != "own":
            rename_pending_task_manager(prompt_model, own_names=(MODEL_NAME,))
        self._vreason_stamp = run_stamp()
        kwargs.setdefault("enforce_eager", True)
        super().__init__(**kwargs)
        self._vreason_records = Records(MODEL_NAME, settings.config.model_dump())
        self._vreason_outputs: list = []
        chat = self.client.chat

        def recording_chat(*args, **chat_kwargs):
            outputs = chat(*args, **chat_kwargs)
            self._vreason_outputs.extend(outputs)
            return outputs

        self.client.chat = recording_chat
        eval_logger.info(f"V-Reason in vLLM: {settings.config.model_dump()}")

    def _build_sampling_params_dict(self, gen_kwargs):
        params = super()._build_sampling_params_dict(gen_kwargs)
        params["extra_args"] = {**(params.get("extra_args") or {}), **self._vreason_extra}
        return params

    def generate_until(self, requests):
        size = max(1, lmms_eval_seam.wrapper_batch_size(self))
        answers = []
        for start in range(0, len(requests), size):
            batch = requests[start : start + size]
            self._vreason_outputs = []
            answers.extend(super().generate_until(batch))
            self._record(batch, self._vreason_outputs)
        return answers

    def _record(self, batch, outputs) -> None:
        """One record per document: upstream sends a batch as one ``chat`` call, outputs in request order."""
        found = traces(self.client, outputs) if len(outputs) == len(batch) else [[None]] * len(batch)
        if len(outputs) != len(batch):
            eval_logger.warning(
                "V-Reason: could not match vLLM outputs to documents; traces of a batch dropped"
            )
        for request, output, (trace, *_) in zip(batch, outputs or [None] * len(batch), found):
            self._vreason_records.add(
                DocRecord(
                    task=request.task_name,
                    doc_id=int(request.doc_id),
                    rank=self.rank,
                    output_tokens=len(output.outputs[0].token_ids) if output is not None else None,
                    trace=trace.to_dict() if trace is not None else None,
                )
            )

    def clean(self):
        out_dir = Path(self._vreason_trace_dir) if self._vreason_trace_dir else cli_output_dir()
        self._vreason_records.finish(out_dir, self._vreason_stamp, self.rank)
        return super().clean()
