"""V-Reason in one vLLM worker: hooks on the loaded model that drive one :class:`RequestControl` per
controlled request, and do nothing else.

Per forward of ``execute_model`` (a batch of requests, flattened into token rows):

1. forward pre-hook on the last decoder layer: find the controlled requests of the batch (their
   ``extra_args``); none, and the forward is stock. On a request's update step, keep the residual stream of
   its newest token (the gradient path's detached input);
2. forward pre-hook on that layer's ``Attention``: copy each controlled request's keys and values into its
   control before vLLM writes them to the cache (positions recomputed after a preemption are written from the
   copy instead), and keep the newest token's query on an update step;
3. ``compute_logits`` (wrapped on the model instance): from the raw logits of every controlled request that
   emits a token, record the entropy and the switch; every ``step_interval`` tokens take one AdamW step on ΔV
   and write the span's new values into the cache through the attention implementation's own update call.

A step with no controlled request costs a dictionary lookup per request. Requests are dropped when vLLM
removes them from its batch state; their traces are published then (and as soon as their last token is seen).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from vreason_hooks.adapters import adapter_for_config

from . import vllm_seam as seam
from .grad_path import DecoderTail, Linear, RMSNorm
from .request_config import is_controlled, request_settings
from .request_control import RequestControl
from .traces import TraceStore, write_trace_file

logger = logging.getLogger("vreason_vllm")


@dataclass
class _Entry:
    row_index: int
    row: seam.Row
    control: RequestControl
    update: bool
    residual: torch.Tensor | None = None


def build_tail(layer: seam.ControlledLayer) -> DecoderTail:
    """The gradient path's weights, read from vLLM's modules (the CPU backend's kept copies for linears)."""

    def linear(module) -> Linear:
        return Linear(seam.linear_weight(module), getattr(module, "bias", None))

    vocab, scale, soft_cap = seam.logits_fields(layer.logits_processor)
    return DecoderTail(
        o_proj=linear(layer.o_proj),
        post_norm=RMSNorm(*seam.norm_fields(layer.post_norm)),
        gate_up=linear(layer.gate_up),
        down=linear(layer.down),
        final_norm=RMSNorm(*seam.norm_fields(layer.final_norm)),
        lm_head=Linear(seam.linear_weight(layer.lm_head)),
        vocab_size=vocab,
        logit_scale=scale,
        soft_cap=soft_cap,
    )


class WorkerControl:
    """The hooks and the controls of one model runner (one per worker process)."""

    def __init__(self, runner):
        seam.check_runner(runner)
        self.runner = runner
        self.layer = seam.controlled_layer(seam.runner_model(runner))
        self.layer_name = seam.layer_name(self.layer.attention)
        heads, kv_heads, head_size, self.scale = seam.attention_shape(self.layer.attention)
        self.heads, self.kv_shape = heads, (kv_heads, head_size)
        self.tail = build_tail(self.layer)
        hf_config, self.max_model_len, self.dtype = seam.runner_model_config(runner)
        self.adapter = adapter_for_config(hf_config)
        self.hf_config = hf_config
        self.controls: dict[str, tuple[object, RequestControl]] = {}
        self.plain: dict[str, object] = {}
        self.store = TraceStore()
        self.step: list[_Entry] | None = None
        self.executing = False
        self._install()

    # ------------------------------------------------------------------ hooks
    def _install(self) -> None:
        self.layer.decoder_layer.register_forward_pre_hook(self._before_layer, with_kwargs=True)
        self.layer.attention.register_forward_pre_hook(self._before_attention, with_kwargs=True)

        def execute(forward):
            def executing(scheduler_output, *args, **kwargs):
                self._drop_finished(seam.finished_ids(scheduler_output))
                self.executing = True
                try:
                    return forward(scheduler_output, *args, **kwargs)
                finally:
                    self.executing, self.step = False, None

            return executing

        def logits(logits_of):
            def logits_hook(hidden_states, *args, **kwargs):
                result = logits_of(hidden_states, *args, **kwargs)
                step, self.step = self.step, None
                if step and result is not None:
                    self._after_forward(step, result)
                return result

            return logits_hook

        def sample(sample_step):
            def sampling(*args, **kwargs):
                output = sample_step(*args, **kwargs)
                if self.controls:
                    self._publish_stopped(seam.sampled_tokens(output))
                return output

            return sampling

        seam.wrap_step(self.runner, execute, sample, logits)

    def _before_layer(self, module, args, kwargs):
        self.step = None
        if not self.executing or not self._any_controlled():
            return None
        rows = seam.step_rows(self.runner, self.layer_name)
        entries = []
        for i, row in enumerate(rows):
            control = self._control(row.req_id, row.state)
            if control is not None:
                view = seam.request_view(row.state)
                update = control.update_now(row.seq_len, view.num_output_tokens)
                entries.append(_Entry(i, row, control, update))
        if entries:
            hidden, residual = seam.decoder_inputs(args, kwargs)
            for entry in entries:
                if entry.update:
                    last = entry.row.end - 1
                    stream = (
                        hidden[last] if residual is None else hidden[last].float() + residual[last].float()
                    )
                    entry.residual = stream.to(hidden.dtype)
            self.step = entries
        return None

    def _before_attention(self, module, args, kwargs):
        if not self.step:
            return None
        query, key, value = seam.attention_inputs(args, kwargs)
        slots = seam.slot_mapping(self.layer_name)
        kv_heads, head_size = self.kv_shape
        replaced_key = replaced_value = None
        for entry in self.step:
            row = entry.row
            first = row.seq_len - (row.end - row.start)
            keys = key[row.start : row.end].view(-1, kv_heads, head_size)
            values = value[row.start : row.end].view(-1, kv_heads, head_size)
            replacement = entry.control.capture(first, keys, values, slots[row.start : row.end])
            if replacement is not None:  # recomputed positions: write what the cache held before
                if replaced_key is None:
                    replaced_key, replaced_value = key.clone(), value.clone()
                replaced_key[row.start : row.end] = replacement[0].reshape(row.end - row.start, -1)
                replaced_value[row.start : row.end] = replacement[1].reshape(row.end - row.start, -1)
            if entry.update:
                entry.control.set_grad_inputs(query[row.end - 1].view(self.heads, -1), entry.residual)
        if replaced_key is None:
            return None
        return seam.replace_attention_inputs(args, kwargs, replaced_key, replaced_value)

    def _after_forward(self, step: list[_Entry], logits: torch.Tensor) -> None:
        for entry in step:
            control, row = entry.control, entry.row
            view = seam.request_view(row.state)
            if not control.produces_token(row.seq_len, view.num_output_tokens):
                continue
            write = control.observe(logits[entry.row_index], self.tail, self.scale)
            if write is not None:
                seam.write_cache(self.layer.attention, write.keys, write.values, write.slots)
            if view.max_tokens is not None and control.next_token >= view.max_tokens:
                self._publish(control)

    # ------------------------------------------------------------------ requests
    def _any_controlled(self) -> bool:
        """Whether the batch of this forward holds a controlled request (a lookup per request)."""
        found = False
        states = seam.request_states(self.runner)
        for req_id in seam.batch_request_ids(self.runner):
            state = states.get(req_id)
            known = self.controls.get(req_id)
            if known is not None and known[0] is state:
                found = True
            elif self.plain.get(req_id) is not state:
                found |= self._classify(req_id, state)
        return found

    def _classify(self, req_id: str, state) -> bool:
        """Note a request seen for the first time; ``True`` if it is controlled."""
        view = seam.request_view(state)
        if not is_controlled(view.extra_args):
            states = seam.request_states(self.runner)
            if len(self.plain) > 4 * max(len(states), 64):
                self.plain = {k: v for k, v in self.plain.items() if k in states}
            self.plain[req_id] = state
            return False
        self.controls[req_id] = (state, self._new_control(req_id, view))
        return True

    def _control(self, req_id: str, state) -> RequestControl | None:
        known = self.controls.get(req_id)
        return known[1] if known is not None and known[0] is state else None

    def _new_control(self, req_id: str, view: seam.RequestView) -> RequestControl:
        settings = request_settings(view.extra_args)  # validated by the front end already
        if view.prompt_token_ids is None or view.has_lora:
            raise seam.moved("a controlled request with prompt embeddings or LoRA reached the worker")
        prompt = view.prompt_token_ids
        span = self.adapter.span_positions(self.hf_config, torch.tensor([prompt]), None)[0].tolist()
        if self.adapter.span.kind == "token":
            span = [p for p in span if any(o <= p < o + n for o, n in view.video_ranges)]
        limit = self.max_model_len if view.max_tokens is None else len(prompt) + view.max_tokens
        return RequestControl.create(
            seam.external_request_key(req_id),
            settings,
            self.adapter.name,
            span,
            len(prompt),
            min(limit, self.max_model_len) + 1,
            self.kv_shape,
            self.dtype,
        )

    def _drop_finished(self, finished: set[str]) -> None:
        states = seam.request_states(self.runner)
        gone = [r for r in self.controls if r in finished or r not in states]
        for req_id in gone:
            _, control = self.controls.pop(req_id)
            self._publish(control)

    def _publish_stopped(self, sampled: dict[str, list[int]]) -> None:
        for req_id, tokens in sampled.items():
            known = self.controls.get(req_id)
            if known is not None and tokens and tokens[-1] in seam.stop_token_ids(known[0]):
                self._publish(known[1])

    def _publish(self, control: RequestControl) -> None:
        trace = control.trace.to_dict()
        self.store.put(control.key, trace)
        if control.settings.trace_dir:
            try:
                write_trace_file(control.settings.trace_dir, control.key, trace)
            except OSError as err:  # a bad folder must not stop the engine: say so once per request
                if not control.notes or "trace file" not in control.notes[-1]:
                    control.notes.append("trace file")
                    logger.error("V-Reason: cannot write the trace of %s: %s", control.key, err)

    def traces(self, keys: list[str]) -> dict[str, dict]:
        """The traces called ``keys``: live requests' as they stand, published ones (then forgotten)."""
        live = {control.key: control for _, control in self.controls.values()}
        found = {}
        for key in keys:
            stored = self.store.pop(key)
            if key in live:
                found[key] = live[key].trace.to_dict()
            elif stored is not None:
                found[key] = stored
        return found
