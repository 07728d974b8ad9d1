"""Registration: what the ``vllm.general_plugins`` entry point runs in every vLLM process.

vLLM loads general plugins in the front end, the engine core and every worker, each time a process starts
(``vllm/plugins/__init__.py``); :func:`register` installs, in whichever process it runs, the piece that
process uses (installing the others is harmless: nothing calls them there):

* front end: controlled requests are admitted or refused (:mod:`.admission`) as vLLM validates a request;
* engine core: each controlled request gets a prefix-cache salt of its own (:func:`cache_salt`);
* worker: once the model is loaded, :class:`~vreason_vllm.worker.WorkerControl` hooks it.

If a vLLM internal moved, registration records the one-line error, logs it, and installs nothing further:
plain requests run as stock and every controlled request is refused with that line.
"""

from __future__ import annotations

import logging
import re
import uuid

from vreason_hooks.errors import UpstreamError, VReasonError

from . import admission
from . import vllm_seam as seam
from .request_config import is_controlled
from .traces import RPC_METHOD

logger = logging.getLogger("vreason_vllm")
_REGISTERED = False
_WORKERS: list = []
"""The :class:`WorkerControl` of this process (a worker process has one runner)."""


def register() -> None:
    """Install V-Reason's hooks in this vLLM process (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    _REGISTERED = True
    try:
        seam.check()
        _install_front_end()
        seam.wrap("request_factory", _salting)
        seam.on_runner_loaded(_install_worker)
        seam.keep_weights_before_repacking(_controlled_linear)
        seam.add_worker_method(RPC_METHOD, _rpc_traces)
    except UpstreamError as err:
        admission.PLUGIN_ERRORS.append(str(err))
        logger.error("%s", err)


def _install_front_end() -> None:
    def process_inputs_factory(original):
        def process_inputs(self, *args, **kwargs):
            params, lora_request = seam.request_parameters(original, (self, *args), kwargs)
            try:
                settings = admission.admit(params, self.vllm_config, lora_request)
            except VReasonError as err:
                raise seam.as_client_error(err) from None
            request = original(self, *args, **kwargs)
            if settings is not None and seam.engine_request_has_embeds(request):
                raise seam.as_client_error(
                    admission.UnsupportedSettingError(
                        "V-Reason needs the prompt's token ids to find the controlled span; this request "
                        "gives prompt embeddings"
                    )
                )
            return request

        return process_inputs

    def beam_factory(original):
        def to_beam_search_params(self, *args, **kwargs):
            try:
                admission.refuse_beam_search(seam.beam_search_arguments(self))
            except VReasonError as err:
                raise seam.as_client_error(err) from None
            return original(self, *args, **kwargs)

        return to_beam_search_params

    seam.wrap("process_inputs", process_inputs_factory)
    seam.wrap("chat_beam_search", beam_factory)
    seam.wrap("completion_beam_search", beam_factory)


def cache_salt(sampling_params) -> str | None:
    """A salt no other request has, for a controlled request (``None`` for a plain one).

    With it, the controlled request's prefix-cache blocks (whose span values it edits) can never be reached
    by another request, and it never reads another request's blocks, so it sees the true original values of
    its whole prompt even when that prompt is already cached: plain requests before, during and after it get
    exactly stock tokens. Samples of ``n > 1`` are separate requests and get separate salts.
    """
    if is_controlled(seam.extra_args(sampling_params)):
        return f"vreason:{uuid.uuid4().hex}"
    return None


def _salting(original):
    def from_engine_core_request(cls, request, *args, **kwargs):
        seam.salt_engine_request(request, cache_salt)
        return original(cls, request, *args, **kwargs)

    return from_engine_core_request


_LAYER_PREFIX = re.compile(r"(^|\.)layers\.(\d+)\.(self_attn\.o_proj|mlp\.gate_up_proj|mlp\.down_proj)$")


def _controlled_linear(prefix: str) -> bool:
    """Whether a linear layer (by its vLLM prefix) is one the gradient path multiplies by."""
    match = _LAYER_PREFIX.search(prefix)
    layers = seam.current_num_layers() if match else None
    return layers is not None and int(match.group(2)) == layers - 1


def _install_worker(runner) -> None:
    from .worker import WorkerControl

    if any(w.runner is runner for w in _WORKERS):
        return
    try:
        _WORKERS.append(WorkerControl(runner))
    except VReasonError as err:  # a moved internal: plain serving is unaffected, controlled requests fail
        admission.PLUGIN_ERRORS.append(str(err))
        logger.error("V-Reason is off in this engine: %s", err)
        _refuse_controlled(runner, str(err))


def _refuse_controlled(runner, reason: str) -> None:
    """The front end could not foresee this failure: a controlled request stops the engine, loudly, rather
    than run uncontrolled as if it were."""

    def execute(forward):
        def refusing(scheduler_output, *args, **kwargs):
            if any(is_controlled(extra) for extra in seam.new_request_extra_args(scheduler_output)):
                raise UpstreamError(reason)
            return forward(scheduler_output, *args, **kwargs)

        return refusing

    seam.wrap_step(runner, execute)


def _rpc_traces(keys: list[str]) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for worker in _WORKERS:
        found.update(worker.traces(list(keys)))
    return found
