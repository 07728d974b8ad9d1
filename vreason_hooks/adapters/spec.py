"""The adapter spec: a few declarative lines that tell the engine where things are in one model family."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from ..errors import SpecError, validation_message

if TYPE_CHECKING:  # torch only where spans are computed: listing and validating specs stays light
    import torch

_STRICT = ConfigDict(frozen=True, extra="forbid")


class ModulePaths(BaseModel):
    """Dotted attribute paths from the top-level transformers model (``model.get_submodule(path)``)."""

    model_config = _STRICT

    decoder_layers: str
    """The ``nn.ModuleList`` of decoder layers; the last one is controlled."""
    final_norm: str
    lm_head: str


class SpanRule(BaseModel):
    """Which cache positions V-Reason controls.

    ``kind = "token"``: the positions whose input id equals the model config's ``token_id_field``
    (Qwen2.5-VL ``video_token_id``, LLaVA-OneVision ``video_token_index``). ``kind = "prompt"``: every
    non-padding prompt position (text-only models).
    """

    model_config = _STRICT

    kind: Literal["token", "prompt"]
    token_id_field: str | None = None

    @model_validator(mode="after")
    def _field_matches_kind(self) -> "SpanRule":
        if self.kind == "token" and not self.token_id_field:
            raise ValueError("span.kind = 'token' needs span.token_id_field (a config field such as video_token_id)")
        if self.kind == "prompt" and self.token_id_field:
            raise ValueError("span.kind = 'prompt' takes no span.token_id_field")
        return self


class InputRules(BaseModel):
    """Per-model input quirks: ``generate`` keyword arguments the model needs for correct positions."""

    model_config = _STRICT

    required: list[str] = []


class AdapterSpec(BaseModel):
    """One model family, as written in a spec file (see ``docs/adding-a-model.md``)."""

    model_config = _STRICT

    name: str
    description: str = ""
    model_types: list[str]
    architectures: list[str] = []
    modules: ModulePaths
    span: SpanRule
    inputs: InputRules = InputRules()
    source: str = ""
    """Where the spec was read from (set by the loader, not written in files)."""

    def matches(self, config) -> bool:
        """Whether a transformers config belongs to this family (model_type first, then architectures)."""
        if getattr(config, "model_type", None) in self.model_types:
            return True
        return bool(set(getattr(config, "architectures", None) or ()) & set(self.architectures))

    def span_token_id(self, config) -> int | None:
        """The input id that marks span positions, read from the model config (``None`` for prompt spans)."""
        if self.span.kind != "token":
            return None
        value = getattr(config, self.span.token_id_field, None)
        if value is None:
            raise SpecError(
                f"adapter {self.name!r} ({self.source}): the model config has no field "
                f"span.token_id_field = {self.span.token_id_field!r}"
            )
        # bool is an int subclass: a flag such as tie_word_embeddings must not pass as token id 1.
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SpecError(
                f"adapter {self.name!r} ({self.source}): key 'span.token_id_field': config.{self.span.token_id_field} "
                f"= {_short(value)} is not a token id (a non-negative integer); name the config field that holds the "
                "span token's id, e.g. video_token_id"
            )
        return value

    def span_positions(self, config, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> list[torch.Tensor]:
        """Controlled positions of every sequence of a prefill batch.

        Args:
            input_ids: ``(batch, seq_len)`` prompt ids (left padding allowed).
            attention_mask: ``(batch, seq_len)`` with 0 at padding, or ``None``.

        Returns:
            one ``LongTensor`` of sorted positions per sequence (possibly empty), on ``input_ids.device``.
        """
        import torch

        if self.span.kind == "token":
            marked = input_ids == self.span_token_id(config)
        elif attention_mask is not None:
            marked = attention_mask.to(torch.bool)
        else:
            marked = torch.ones_like(input_ids, dtype=torch.bool)
        return [row.nonzero().flatten() for row in marked]


def _short(value) -> str:
    text = " ".join(repr(value).split())
    return f"{text[:60]}… ({type(value).__name__})" if len(text) > 60 else f"{text} ({type(value).__name__})"


def load_spec(path: str | Path) -> AdapterSpec:
    """Read and validate one spec file; any problem is a :class:`SpecError` naming the file and the key."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"adapter spec {path}: no such file") from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"adapter spec {path}: not valid TOML ({err})") from None
    if "source" in data:
        raise SpecError(f"adapter spec {path}: key 'source' is set by the loader, remove it")
    try:
        return AdapterSpec.model_validate({**data, "source": str(path)})
    except ValidationError as err:
        raise SpecError(f"adapter spec {path}: {validation_message(err, noun='key')}") from None
