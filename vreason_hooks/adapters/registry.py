"""One registry of adapter specs: the shipped ones, those of installed plugins, and files given by path."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import NoAdapterError, SpecError
from .controlled import controlled_layer
from .plugins import PluginProblem, load_plugins
from .spec import AdapterSpec, load_spec

if TYPE_CHECKING:  # listing specs must not import torch (the CLI's `vreason adapters` stays fast)
    from torch import nn

HOW_TO_ADD = (
    "add one with a spec file (docs/adding-a-model.md) and pass attach(model, adapter='my_model.toml')"
)


def builtin_spec_paths() -> list[Path]:
    """The spec files shipped in ``vreason_hooks/adapters/specs``."""
    return sorted(
        Path(str(p)) for p in files(__package__).joinpath("specs").iterdir() if p.name.endswith(".toml")
    )


@functools.cache
def _loaded() -> tuple[tuple[AdapterSpec, ...], tuple[PluginProblem, ...]]:
    shipped = [load_spec(p) for p in builtin_spec_paths()]
    plugins, problems = load_plugins(shipped)
    return tuple(shipped + plugins), tuple(problems)


def _cached_available() -> tuple[AdapterSpec, ...]:
    return _loaded()[0]


def plugin_problems() -> list[PluginProblem]:
    """The plugins skipped (they failed to load) or shadowed (they reuse a shipped name or model type)."""
    return list(_loaded()[1])


def refresh() -> None:
    """Forget the specs read so far: the next lookup reads the shipped specs and the plugins' again (after a
    plugin was installed or removed in a running process)."""
    _loaded.cache_clear()
    refused.cache_clear()


@dataclass(frozen=True)
class RefusedFamily:
    """A family V-Reason does not carry, with the reason (``adapters/refused.toml``)."""

    name: str
    model_types: tuple[str, ...]
    reason: str


@functools.cache
def refused() -> tuple[RefusedFamily, ...]:
    """The families V-Reason refuses, from ``refused.toml`` beside the specs."""
    import tomllib

    entries = tomllib.loads(files(__package__).joinpath("refused.toml").read_text())["refused"]
    return tuple(RefusedFamily(e["name"], tuple(e["model_types"]), e["reason"]) for e in entries)


def available() -> list[AdapterSpec]:
    """Every adapter this installation knows: shipped specs first, then plugin specs."""
    return list(_cached_available())


def get(name: str) -> AdapterSpec:
    """The adapter called ``name``."""
    for spec in available():
        if spec.name == name:
            return spec
    raise NoAdapterError(f"no adapter named {name!r}; available: {_names()}; {HOW_TO_ADD}")


def find_adapter(model: nn.Module) -> AdapterSpec:
    """The first adapter whose spec matches ``model.config`` (plugin specs may not shadow shipped ones)."""
    config = getattr(unwrap_model(model), "config", None)
    if config is None:
        raise NoAdapterError(
            f"{type(model).__name__} is not a transformers model (it has no .config), so no adapter can "
            f"match it; attach a PreTrainedModel (a pipeline's .model). Available: {_names()}; {HOW_TO_ADD}"
        )
    return adapter_for_config(config, model_class=type(unwrap_model(model)).__name__)


def adapter_for_config(config: Any, model_class: str | None = None) -> AdapterSpec:
    """The first adapter whose spec matches a transformers ``config``: known before any weights are loaded."""
    for spec in available():
        if spec.matches(config):
            return spec
    model_type = getattr(config, "model_type", None)
    for family in refused():
        if model_type in family.model_types:
            raise NoAdapterError(f"V-Reason does not carry {model_type!r} ({family.name}): {family.reason}")
    shown = f" ({model_class})" if model_class else ""
    raise NoAdapterError(
        f"no adapter matches model_type={getattr(config, 'model_type', None)!r}{shown}; available: "
        f"{_names()}; {HOW_TO_ADD}"
    )


def _names() -> str:
    return ", ".join(f"{s.name} ({'/'.join(s.model_types)})" for s in available())


def unwrap_model(model: nn.Module) -> nn.Module:
    """The transformers model under a ``peft.PeftModel`` (LoRA layers stay in place), else ``model``."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


@dataclass(frozen=True)
class ResolvedAdapter:
    """A spec bound to one model instance: the modules the engine hooks."""

    spec: AdapterSpec
    model: nn.Module
    """The transformers model whose ``forward`` ``generate`` calls (a PEFT wrapper is unwrapped)."""
    controlled_layer: nn.Module
    """The decoder layer whose values ΔV edits (the last one unless the spec names another)."""
    final_norm: nn.Module
    lm_head: nn.Module
    cache_layer_index: int
    """Index of the controlled layer in the KV cache."""
    later_layers: tuple[nn.Module, ...] = ()
    """Decoder layers after the controlled one (on the update step's autograd path)."""
    layer_kinds: tuple = ()
    """The :class:`~vreason_hooks.transformers_seam.LayerKind` of every cache layer (``()``: all full
    attention, the config names no layout)."""

    @property
    def graph_modules(self) -> tuple[nn.Module, ...]:
        """The modules an update step's backward goes through: controlled layer, later layers, norm, head."""
        return (self.controlled_layer, *self.later_layers, self.final_norm, self.lm_head)


def resolve(model: nn.Module, adapter: str | Path | AdapterSpec | None = None) -> ResolvedAdapter:
    """Pick the spec (auto, by name, by path, or given) and find its modules in ``model``."""
    from torch import nn

    from .. import transformers_seam

    spec = _pick_spec(model, adapter)
    spec.check_transformers()
    hf_model = unwrap_model(model)
    config = getattr(hf_model, "config", None)
    if config is not None:
        spec.check_config(config)
    layers = _submodule(spec, hf_model, "decoder_layers")
    if not isinstance(layers, nn.ModuleList) or len(layers) == 0:
        raise SpecError(
            f"{spec.where()}: key 'modules.decoder_layers': {spec.modules.decoder_layers!r} is not a "
            "non-empty nn.ModuleList"
        )
    if spec.positions.rope_deltas is not None and not transformers_seam.has_model_attribute(
        hf_model, spec.positions.rope_deltas
    ):
        raise SpecError(
            f"{spec.where()}: key 'positions.rope_deltas': {type(hf_model).__name__} has no attribute "
            f"{spec.positions.rope_deltas!r}"
        )
    final_norm, lm_head = _submodule(spec, hf_model, "final_norm"), _submodule(spec, hf_model, "lm_head")
    _check_kinds(spec, hf_model, final_norm, lm_head)
    spec.span_token_id(hf_model.config)  # a bad span.token_id_field fails here, not at the first generate
    layer = controlled_layer(spec, hf_model, layers)
    return ResolvedAdapter(
        spec, hf_model, layer.module, final_norm, lm_head, layer.cache_index, layer.later, layer.kinds
    )


def _submodule(spec: AdapterSpec, hf_model: nn.Module, key: str) -> nn.Module:
    """The module at the spec's ``modules.<key>`` path; a :class:`SpecError` naming the key if absent."""
    path = getattr(spec.modules, key)
    try:
        return hf_model.get_submodule(path)
    except AttributeError:
        raise SpecError(
            f"{spec.where()}: key 'modules.{key}': {type(hf_model).__name__} has no submodule {path!r}"
        ) from None


def _pick_spec(model: nn.Module, adapter: str | Path | AdapterSpec | None) -> AdapterSpec:
    """The spec :func:`resolve` uses: matched to ``model`` (``None``), given, loaded from a ``.toml`` path, or
    registered under a name."""
    if adapter is None:
        return find_adapter(model)
    if isinstance(adapter, AdapterSpec):
        return adapter
    if not isinstance(adapter, (str, Path)):
        raise SpecError(
            f"attach(adapter=...) takes an adapter name, a path to a .toml spec file or an AdapterSpec; got "
            f"{type(adapter).__name__}"
        )
    path = Path(adapter)
    if isinstance(adapter, Path) or path.suffix or path.exists() or len(path.parts) > 1:  # a file, not a name
        if path.suffix.lower() != ".toml":
            raise SpecError(f"adapter spec {path}: not a .toml spec file (see docs/adding-a-model.md)")
        return load_spec(path)
    return get(adapter)


def _check_kinds(spec: AdapterSpec, hf_model: nn.Module, final_norm: nn.Module, lm_head: nn.Module) -> None:
    """Refuse a spec whose ``final_norm`` / ``lm_head`` paths name the wrong kind of module."""
    config: Any = hf_model.config
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    where = spec.source or spec.name
    _check_lm_head(spec, where, lm_head, getattr(text, "vocab_size", None))
    _check_final_norm(spec, where, final_norm, getattr(text, "hidden_size", None))


def _check_lm_head(spec: AdapterSpec, where: str, lm_head: nn.Module, vocab: int | None) -> None:
    """The LM head must map hidden states to vocabulary logits: not an embedding, and a 2-D ``weight`` (or
    ``out_features``, for quantized linears) of ``vocab_size`` rows."""
    import torch
    from torch import nn

    weight = getattr(lm_head, "weight", None)
    rows = getattr(lm_head, "out_features", None)
    if rows is None and isinstance(weight, torch.Tensor) and weight.dim() == 2:
        rows = weight.shape[0]
    if isinstance(lm_head, nn.Embedding) or rows is None or (vocab is not None and rows != vocab):
        got = type(lm_head).__name__ + (
            f" with {rows} outputs" if rows is not None else " without a 2-D weight"
        )
        raise SpecError(
            f"adapter spec {where}: key 'modules.lm_head': {spec.modules.lm_head!r} is a {got}, not the LM "
            f"head: point it at the Linear that maps hidden states to the {vocab} vocabulary logits (usually "
            "'lm_head')"
        )


def _check_final_norm(spec: AdapterSpec, where: str, final_norm: nn.Module, hidden: int | None) -> None:
    """The final norm must hold only 1-D parameters of size ``hidden_size`` (RMSNorm / LayerNorm, or none): a
    decoder layer, a ``ModuleList`` or a linear has matrices."""
    from torch import nn

    shapes = [tuple(p.shape) for p in final_norm.parameters()]
    if isinstance(final_norm, (nn.ModuleList, nn.ModuleDict, nn.Sequential)) or any(
        len(shape) != 1 or (hidden is not None and shape[0] != hidden) for shape in shapes
    ):
        raise SpecError(
            f"adapter spec {where}: key 'modules.final_norm': {spec.modules.final_norm!r} is a "
            f"{type(final_norm).__name__} with parameters of shapes "
            f"{shapes[:3]}{' …' if len(shapes) > 3 else ''}, not a norm: point it at the norm applied after "
            f"the last decoder layer (1-D weight of size {hidden})"
        )
