"""The one module that names transformers internals, made version-proof.

Everything vreason-hooks reads from transformers beyond its documented ``generate`` API goes through here:
the keyword under which a module's ``forward`` receives the KV cache, the cache's layers, their tensors and
their classes (``DynamicLayer``, which :class:`~vreason_hooks.grad_path.ControlledLayer` subclasses), the
generation settings as ``generate`` resolves them, its stopping criteria, the logits and the cache in a
model's output, attributes a spec names (M-RoPE offsets), the decoder layer's hidden-states argument, and how
torch marks a compiled module. When a transformers release renames one of them, the fix is one line here, and
``tests/engine/test_transformers_seam.py`` fails first. A layout test (``tests/unit/test_layout.py``) fails
when one of
these names appears anywhere else.

Known moves:

* transformers 5.24 renamed the cache keyword of model and decoder-layer ``forward`` from
  ``past_key_values`` to ``cache`` (a ``deprecate_kwarg`` shim keeps callers working until 5.40), and the
  output field with it (``output.cache``; ``output.past_key_values`` is a deprecated alias).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TypeAlias

from .errors import UnsupportedSettingError, UpstreamError

CACHE_KEYWORDS = ("cache", "past_key_values")
"""Names under which transformers passes the KV cache to ``forward`` (newest first)."""

DISTRIBUTION = "vreason-hooks"

Cache: TypeAlias = Any
"""A transformers ``Cache`` (a ``DynamicCache`` of layer objects, ``(batch, num_kv_heads, seq_len,
head_dim)``)."""
CacheLayer: TypeAlias = Any
"""One layer object of a ``Cache`` (``DynamicLayer``, a sliding-window, linear-attention or dummy layer)."""
ModelConfig: TypeAlias = Any
"""A transformers ``PretrainedConfig``."""

_CLASSES = {"DynamicLayer": "transformers.cache_utils", "StoppingCriteriaList": "transformers.generation"}
"""transformers classes the engine subclasses, imported on first use (listing adapters stays light)."""


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        return getattr(importlib.import_module(_CLASSES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------- versions
def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution``, or ``None`` when it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def supported_ranges() -> dict[str, str]:
    """``{distribution: specifier}`` of our declared dependencies (``pyproject.toml``, read from metadata).

    Extras included (lmms-eval, decord, ...): the supported range of a package is one fact, wherever it is
    declared."""
    from packaging.requirements import Requirement

    ranges: dict[str, str] = {}
    for line in metadata.requires(DISTRIBUTION) or []:
        requirement = Requirement(line)
        name = requirement.name.lower()
        if str(requirement.specifier) and name not in ranges:  # lower bound first: ">=5.23.0,<5.25"
            parts = sorted(map(str, requirement.specifier), key=lambda part: (not part.startswith(">"), part))
            ranges[name] = ",".join(parts)
    return ranges


def in_supported_range(distribution: str) -> bool | None:
    """Whether the installed ``distribution`` is inside our declared range (``None``: not installed / no
    range)."""
    from packaging.specifiers import SpecifierSet

    version, spec = installed_version(distribution), supported_ranges().get(distribution.lower())
    if version is None or spec is None:
        return None
    return SpecifierSet(spec).contains(version, prereleases=True)


def version_note() -> str:
    """``transformers X installed (supported: R)``: the sentence every upstream error ends with."""
    version = installed_version("transformers")
    spec = supported_ranges().get("transformers", "?")
    inside = in_supported_range("transformers")
    where = "" if inside is None else (" inside" if inside else " OUTSIDE")
    return (
        f"transformers {version} installed,{where} the supported range {spec}; run `vreason doctor` to check "
        "this installation"
    )


# ---------------------------------------------------------------------------------------------- keywords
def cache_keyword(module: Any) -> str:
    """The keyword under which ``module.forward`` takes the KV cache (``cache`` or ``past_key_values``).

    Read from the signature (``inspect`` follows transformers' ``deprecate_kwarg`` wrapper to the real one).
    A ``forward`` that names neither is refused: V-Reason could not see the cache and would run uncontrolled.
    """
    forward: Any = getattr(module, "forward", None)
    try:
        parameters: Any = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        parameters = {}
    for name in CACHE_KEYWORDS:
        if name in parameters:
            return name
    raise UpstreamError(
        f"{type(module).__name__}.forward takes the KV cache under none of the keywords V-Reason knows "
        f"({', '.join(CACHE_KEYWORDS)}); {version_note()}"
    )


def find_cache(kwargs: dict, keyword: str) -> tuple[str, Any]:
    """``(key, cache)`` of the cache passed to a ``forward`` (``(keyword, None)`` when there is none).

    ``keyword`` comes first; a caller may still pass a deprecated name that the ``deprecate_kwarg`` shim
    renames after the forward hooks ran, so the other known names are looked at too.
    """
    for name in (keyword, *CACHE_KEYWORDS):
        value = kwargs.get(name)
        if value is not None:
            return name, value
    return keyword, None


def forward_cache(kwargs: dict) -> Any:
    """The cache in the keyword arguments of a ``forward`` or of ``generate``, under any known name."""
    return find_cache(kwargs, CACHE_KEYWORDS[0])[1]


def cache_kwargs(module: Any, cache: Cache) -> dict:
    """``{keyword: cache}`` to pass ``cache`` to ``module``'s ``forward`` without a deprecation warning.

    For a model, the same keyword is the one its ``generate`` takes (both were renamed in the same release).
    """
    return {cache_keyword(module): cache}


def passes_cache_position(kwargs: dict) -> bool:
    """Whether a ``forward`` call carries explicit ``cache_position`` (remote-code models): positions that
    follow the cache length instead of ``position_ids``."""
    return kwargs.get("cache_position") is not None


def output_cache(output: Any) -> Cache:
    """The cache in a model output (``output.cache`` from 5.24, ``output.past_key_values`` before)."""
    if isinstance(output, dict):
        for name in CACHE_KEYWORDS:
            if output.get(name) is not None:
                return output[name]
    return None


def detach_output(output: Any) -> Any:
    """``output`` with every tensor that carries an autograd graph detached, in place (``logits``,
    ``hidden_states`` and ``attentions`` of the layer an update step ran with autograd on), so that what
    ``generate`` collects and returns is exactly what plain decoding returns."""
    if not isinstance(output, dict):
        return output
    for key, value in list(output.items()):
        if hasattr(value, "requires_grad") and value.requires_grad:
            output[key] = value.detach()
        elif isinstance(value, tuple) and any(getattr(v, "requires_grad", False) for v in value):
            output[key] = tuple(v.detach() if getattr(v, "requires_grad", False) else v for v in value)
    return output


def output_logits(output: Any) -> Any:
    """``(batch, seq_len, vocab)`` logits of a causal-LM output (a ``ModelOutput`` or a tuple)."""
    return output["logits"] if isinstance(output, dict) else output[0]


def inside_generate(model: Any) -> bool:
    """Whether the current call stack runs inside transformers' ``GenerationMixin.generate`` of ``model``.

    Read from the calling frames (a frame named ``generate``, in transformers' generation code, whose ``self``
    is ``model``); called at prefill only.
    """
    frame = inspect.currentframe()
    try:
        while frame is not None:
            code = frame.f_code
            if (
                code.co_name == "generate"
                and "transformers" in code.co_filename
                and frame.f_locals.get("self") is model
            ):
                return True
            frame = frame.f_back
        return False
    finally:
        del frame


# ---------------------------------------------------------------------------------------------- generation
SUPPORTED_MODES = ("greedy_search", "sample")
"""``GenerationConfig.get_generation_mode`` values V-Reason runs under: one new token per forward."""


@dataclass(frozen=True)
class GenerationSettings:
    """What one ``generate`` call will run with, resolved the way ``generate`` resolves it: keyword arguments
    over a ``generation_config`` passed by keyword or position, over the model's own generation config."""

    mode: str
    """``greedy_search``, ``sample``, ``beam_search``, ``assisted_generation``, ... (``GenerationMode``)."""
    num_beams: int
    use_cache: bool
    cache_implementation: str | None
    eos_ids: frozenset[int]
    cache: Any
    """The cache passed to ``generate`` (under any known keyword), else ``None``."""


def generation_settings(model: Any, generate: Callable, args: tuple, kwargs: dict) -> GenerationSettings:
    """The :class:`GenerationSettings` of ``generate(*args, **kwargs)`` (``generate``: the model's own,
    unwrapped), from ``GenerationMixin._prepare_generation_config``, the method ``generate`` itself calls."""
    try:
        bound = inspect.signature(generate).bind_partial(*args, **kwargs).arguments
    except TypeError as err:
        raise UnsupportedSettingError(
            f"V-Reason: generate() got arguments it does not take ({err})"
        ) from None
    extra = dict(bound.pop("kwargs", {}))
    assistant = bound.get("assistant_model")
    prepare = getattr(model, "_prepare_generation_config", None)
    if prepare is None:
        raise UpstreamError(
            f"{type(model).__name__} has no `_prepare_generation_config`: V-Reason cannot read the settings "
            f"of its generate calls; {version_note()}"
        )
    config = prepare(bound.get("generation_config"), **extra)[0]
    eos = config.eos_token_id
    eos = eos.tolist() if hasattr(eos, "tolist") else eos
    eos_ids = frozenset(int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos]) if e is not None)
    mode = str(getattr(config.get_generation_mode(assistant), "value", config.get_generation_mode(assistant)))
    return GenerationSettings(mode, int(config.num_beams or 1), config.use_cache is not False,
                              config.cache_implementation, eos_ids, forward_cache(extra))  # fmt: skip


@contextlib.contextmanager
def stopping_watch(model: Any, on_stop: Callable[[Any], None]) -> Iterator[None]:
    """Inside, every stopping-criteria evaluation of ``model.generate`` also calls ``on_stop(is_done)`` with
    the ``(batch,)`` bool tensor ``generate`` folds into its unfinished-sequences state (EOS,
    ``stop_strings``, ``max_length``, a custom ``StoppingCriteria``: whatever ended a row)."""
    prepare = getattr(type(model), "_get_stopping_criteria", None)
    if prepare is None:
        raise UpstreamError(
            f"{type(model).__name__} has no `_get_stopping_criteria`: V-Reason cannot see which rows "
            f"generate finished; {version_note()}"
        )
    base = __getattr__("StoppingCriteriaList")

    class Watched(base):  # type: ignore[misc, valid-type]
        def __call__(self, input_ids, scores, **kw):
            done = super().__call__(input_ids, scores, **kw)
            on_stop(done)
            return done

    def watched(*a, **kw):
        return Watched(prepare(model, *a, **kw))

    model.__dict__["_get_stopping_criteria"] = watched
    try:
        yield
    finally:
        model.__dict__.pop("_get_stopping_criteria", None)


# ---------------------------------------------------------------------------------------------- cache layout
def cache_length(cache: Cache) -> int:
    """Number of tokens held by ``cache`` (0 for ``None``)."""
    return 0 if cache is None else int(cache.get_seq_length())


def cache_layers(cache: Cache) -> list[CacheLayer]:
    """The per-layer objects of a transformers ``Cache`` (``cache.layers``)."""
    return list(getattr(cache, "layers", None) or [])


def cache_layer(cache: Cache, index: int) -> CacheLayer:
    """The layer object ``index`` of a transformers ``Cache`` (``cache.layers[index]``)."""
    return cache.layers[index]


def replace_cache_layer(cache: Cache, index: int, layer: CacheLayer) -> None:
    """Put ``layer`` in place of cache layer ``index``; the ``Cache`` forwards ``update`` to it from then
    on."""
    cache.layers[index] = layer


def masks_by_layer_type(
    model: Any, mapped: Any, original: Any, cache: Cache, positions: Any, pruned_types: set[str], new: int
) -> dict:
    """One prepared attention mask per layer type of ``model`` for a decode step of ``new`` tokens, the way
    the model builds them (``masking_utils.create_masks_for_generate``): the ``pruned_types`` from the 2-D
    ``mapped`` mask ``(batch, L' + t)``, the other types from the ``original`` one ``(batch, L + t)``. The
    models with per-type layers (``layer_types``) take this dict as ``attention_mask``."""
    import torch
    from transformers.masking_utils import create_masks_for_generate

    embeds = torch.empty(
        mapped.shape[0], new, 1, dtype=model.dtype, device=mapped.device
    )  # shape, dtype only
    plain = (
        positions if positions.dim() == 2 else positions[0]
    )  # M-RoPE rows: the temporal row is the plain one
    by_pruned = create_masks_for_generate(model.config, embeds, mapped, cache, plain)
    by_original = create_masks_for_generate(model.config, embeds, original, cache, plain)
    if not (isinstance(by_pruned, dict) and isinstance(by_original, dict)):
        raise UpstreamError(
            f"{type(model).__name__}: transformers built no per-layer-type masks for a cache with "
            "sliding-window layers beside pruned ones; V-Reason Lite cannot mask it: use lite=False; "
            f"{version_note()}"
        )
    return {kind: (by_pruned if kind in pruned_types else by_original)[kind] for kind in by_pruned}


def layer_length(cache: Cache, index: int) -> int:
    """Tokens held by cache layer ``index`` (``Cache.get_seq_length`` reads the first layer, which in a hybrid
    cache may be a sliding window counting original positions)."""
    return int(cache.get_seq_length(index))


def layer_tensors(cache: Cache, index: int) -> tuple[Any, Any]:
    """``(keys, values)`` of cache layer ``index``, each ``(batch, num_kv_heads, seq_len, head_dim)``."""
    layer = cache.layers[index]
    return layer.keys, layer.values


def all_layer_tensors(cache: Cache) -> list[tuple[Any, Any]]:
    """``[(keys, values)]`` of every layer of ``cache`` (see :func:`layer_tensors`)."""
    return [layer_tensors(cache, i) for i in range(len(cache_layers(cache)))]


def layer_values(cache: Cache, index: int) -> Any:
    """``(batch, num_kv_heads, seq_len, head_dim)`` values of cache layer ``index`` (``None`` before
    prefill)."""
    layers = cache_layers(cache)
    return layers[index].values if len(layers) > index else None


def set_layer_tensors(cache: Cache, index: int, keys: Any, values: Any) -> None:
    """Replace the keys and values of cache layer ``index`` (V-Reason Lite's pruned copies)."""
    layer = cache.layers[index]
    layer.keys, layer.values = keys, values


@dataclass(frozen=True)
class LayerKind:
    """What one cache layer holds, asked of the layer object the way transformers' caches ask it
    (``is_sliding``, its linear-attention / dummy / indexed class)."""

    name: str
    """The layer's class name."""
    tokens: bool
    """Keeps keys and values of every position it saw: V-Reason can control it and Lite can prune it."""
    window: bool = False
    """Keeps only the last tokens of a sliding window (``DynamicSlidingWindowLayer``)."""
    recurrent: bool = False
    """Holds a fixed-size recurrent / convolution state (linear attention, Mamba, short conv)."""
    shared: bool = False
    """Stores nothing: the layer reuses another layer's keys and values (KV sharing) or has no attention."""
    indexed: bool = False
    """Sparse indexed attention: an indexer's own keys choose which cached keys a query reads."""
    quantized: bool = False
    """Stores quantized or fixed-size (static) tensors that cannot be edited in place."""

    @property
    def plain(self) -> bool:
        """Full attention over per-token keys and values, nothing else: what V-Reason edits and Lite
        prunes."""
        return self.tokens and not (self.window or self.recurrent or self.indexed or self.quantized)

    def describe(self) -> str:
        """``full attention``, ``sliding-window attention``, ``linear attention (recurrent state)``, ..."""
        if self.shared:
            return (
                "no cache of its own: it reuses another layer's keys and values or has no attention "
                f"({self.name})"
            )
        parts = [
            label
            for flag, label in (
                (self.recurrent, "recurrent state (linear attention / SSM / conv)"),
                (self.window, "sliding-window attention"),
                (self.indexed, "indexed sparse attention"),
                (self.quantized, "quantized or static tensors"),
            )
            if flag
        ]
        return f"{' + '.join(parts) if parts else 'full attention'} ({self.name})"


def layer_kind(layer: CacheLayer) -> LayerKind:
    """The :class:`LayerKind` of one cache layer object."""
    from transformers import cache_utils as cu

    name = type(layer).__name__
    if isinstance(layer, cu.DummyLayer):
        return LayerKind(name, tokens=False, shared=True)
    recurrent = isinstance(layer, cu.LinearAttentionCacheLayerMixin)
    tokens = isinstance(layer, cu.CacheLayerMixin)
    return LayerKind(
        name,
        tokens=tokens,
        window=bool(getattr(layer, "is_sliding", False)),
        recurrent=recurrent,
        indexed=isinstance(layer, (cu.DynamicIndexedLayer, cu.StaticIndexedLayer)),
        quantized=(tokens and not isinstance(layer, cu.DynamicLayer))
        or isinstance(layer, cu.BaseQuantizedLayer),
    )


def cache_layer_kinds(cache: Cache) -> list[LayerKind]:
    """The :class:`LayerKind` of every layer of ``cache``."""
    return [layer_kind(layer) for layer in cache_layers(cache)]


def config_layer_kinds(config: ModelConfig) -> list[LayerKind]:
    """The kinds of the cache layers ``generate`` will build for a model of ``config`` (an empty
    ``DynamicCache(config=...)``, which allocates nothing); ``[]`` when the config names no layer layout
    (every layer is then full attention, created as it is first written)."""
    from transformers import DynamicCache

    return cache_layer_kinds(DynamicCache(config=config))


def layer_types(config: ModelConfig) -> list[str] | None:
    """The text config's ``layer_types`` (``full_attention``, ``sliding_attention``, ...), if it names
    them."""
    text = config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config
    types = getattr(text, "layer_types", None)
    return list(types) if types else None


def unsupported_cache_layers(cache: Cache, indices: list[int] | None = None) -> list[str]:
    """Names of the layer classes of ``cache`` that are not plain full-attention layers
    (:attr:`LayerKind.plain`).

    ``indices``: the layers to look at (default: all). An empty list means every one is plain.
    """
    kinds = cache_layer_kinds(cache)
    chosen = range(len(kinds)) if indices is None else [i for i in indices if i < len(kinds)]
    return sorted({kinds[i].name for i in chosen if not kinds[i].plain})


def is_dynamic_cache(cache: Cache) -> bool:
    """Whether ``cache`` is a transformers ``DynamicCache`` that keeps its tensors on their devices."""
    from transformers.cache_utils import DynamicCache

    return isinstance(cache, DynamicCache) and not getattr(cache, "offloading", False)


def check_dynamic_cache(
    cache: Cache, indices: list[int] | None = None, *, needed_by: str = "V-Reason", remedy: str = ""
) -> None:
    """Refuse anything but a ``DynamicCache`` of plain ``DynamicLayer``\\ s at ``indices`` (default: all, and
    at least one). ``remedy`` ends the message (what the user can do instead)."""
    bad = unsupported_cache_layers(cache, indices)
    if not is_dynamic_cache(cache) or bad or (indices is None and not cache_layers(cache)):
        raise UnsupportedSettingError(
            f"{needed_by} needs a plain DynamicCache of full-attention DynamicLayers; got "
            f"{type(cache).__name__}"
            + (f" with {', '.join(bad)}" if bad else "")
            + f". Sliding-window, static, quantized and offloaded caches are not supported{remedy}"
        )


# ---------------------------------------------------------------------------------------------- model
# internals
def model_attribute(model: Any, path: str) -> Any:
    """The attribute at dotted ``path`` under ``model``, ``None`` if unset or absent.

    A spec names the path (``positions.rope_deltas = "model.rope_deltas"``: the per-sequence M-RoPE offset
    ``(batch or 1, 1)`` Qwen-VL and GLM-4V keep on the inner model after prefill).
    """
    node = model
    for part in path.split("."):
        node = getattr(node, part, None)
    return node


def has_model_attribute(model: Any, path: str) -> bool:
    """Whether every step of dotted ``path`` exists under ``model`` (its value may still be ``None``)."""
    node = model
    for part in path.split("."):
        if not hasattr(node, part):
            return False
        node = getattr(node, part)
    return True


def checkpointed(module: Any) -> bool:
    """Whether ``module`` runs under activation (gradient) checkpointing now (enabled and in training
    mode)."""
    return bool(getattr(module, "gradient_checkpointing", False)) and bool(getattr(module, "training", False))


def compiled(model: Any) -> bool:
    """Whether ``model`` is a ``torch.compile`` result or has a compiled ``forward`` / call."""
    forward = getattr(model, "forward", None)
    return (
        hasattr(model, "_orig_mod")
        or getattr(model, "_compiled_call_impl", None) is not None
        or hasattr(forward, "_torchdynamo_orig_callable")
    )


def layer_index(layer: Any, default: int) -> int:
    """The cache index a decoder layer writes to (``self_attn.layer_idx``), else ``default``."""
    return int(getattr(getattr(layer, "self_attn", None), "layer_idx", default))


def replace_layer_input(args: tuple, kwargs: dict, transform: Callable) -> tuple[tuple, dict]:
    """A decoder layer's call with its hidden states (first positional or ``hidden_states=``) transformed."""
    if args:
        args = (transform(args[0]),) + tuple(args[1:])
    if kwargs.get("hidden_states") is not None:
        kwargs = {**kwargs, "hidden_states": transform(kwargs["hidden_states"])}
    return args, kwargs


# ---------------------------------------------------------------------------------------------- auto classes
def load_video(path: str, backend: str) -> tuple[Any, Any]:
    """``(frames, metadata)`` of a video file, decoded by transformers' own reader
    (``video_utils.load_video``)."""
    from transformers.video_utils import load_video as _load_video

    return _load_video(path, backend=backend)


def generation_auto_class(config: ModelConfig) -> Any:
    """The transformers auto class that loads ``config``'s checkpoint with its language-model head:
    ``AutoModelForCausalLM`` if it maps the config class, else ``AutoModelForImageTextToText``, else ``None``.

    Reads the auto classes' config-class mappings (``_model_mapping``). lmms-eval 0.7.3's ``huggingface``
    model tests ``config.model_type in mapping.keys()``, but the keys are config classes, so it never matches
    and falls back to ``AutoModel``, which loads the base model without a head (it cannot ``generate``).
    """
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText

    for auto in (AutoModelForCausalLM, AutoModelForImageTextToText):
        if type(config) in auto._model_mapping:
            return auto
    return None
