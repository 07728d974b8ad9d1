"""The adapter spec: a few declarative lines that tell the engine where things are in one model family."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, StrictBool, ValidationError, model_validator

from ..errors import SpecError, validation_message
from ..files import read_text

if TYPE_CHECKING:  # torch only where spans are computed: listing and validating specs stays light
    import torch

_STRICT = ConfigDict(frozen=True, extra="forbid")


class ModulePaths(BaseModel):
    """Dotted attribute paths from the top-level transformers model (``model.get_submodule(path)``)."""

    model_config = _STRICT

    decoder_layers: str
    """The ``nn.ModuleList`` of decoder layers; the last one is controlled (unless ``controlled_layer``)."""
    final_norm: str
    lm_head: str
    controlled_layer: int | None = None
    """Index in ``decoder_layers`` of the layer ΔV edits (negative counts from the end); default the last.
    It must keep per-token keys and values, and no layer after it may hold recurrent state."""


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
    def _field_matches_kind(self) -> SpanRule:
        if self.kind == "token" and not self.token_id_field:
            raise ValueError(
                "span.kind = 'token' needs span.token_id_field (a config field such as video_token_id)"
            )
        if self.kind == "prompt" and self.token_id_field:
            raise ValueError("span.kind = 'prompt' takes no span.token_id_field")
        return self


class InputRules(BaseModel):
    """Per-model input quirks: ``generate`` keyword arguments the model needs for correct positions."""

    model_config = _STRICT

    required: list[str] = []


class ConfigFields(BaseModel):
    """Where the model config keeps what the engine and the tools read (field names, checked at attach).

    The video token id field is ``span.token_id_field``; these are the others.
    """

    model_config = _STRICT

    text_config: str | None = None
    """The sub-config of the language model (``"text_config"``); ``None``: the top-level config is it."""
    image_token_id: str | None = None
    """The field holding the image placeholder id (``image_token_id``, ``image_token_index``), if any."""


class PositionRule(BaseModel):
    """How the model positions a decode step, i.e. what it computes itself when given no ``position_ids``.

    ``kind = "plain"``: ``arange(past, past + new)`` (Llama, LLaVA, InternVL...). ``kind = "mrope"``:
    multimodal rotary positions (Qwen-VL, GLM-4V): ``rows`` identical rows of the plain positions plus a
    per-sequence offset the model keeps after prefill at the attribute path ``rope_deltas``. V-Reason Lite
    reads this to position decode steps after it shrank the cache.
    """

    model_config = _STRICT

    kind: Literal["plain", "mrope"] = "plain"
    rows: int | None = None
    """``mrope``: number of position rows (3: temporal, height, width)."""
    rope_deltas: str | None = None
    """``mrope``: dotted attribute path, from the top-level model, of the ``(batch or 1, 1)`` offsets."""
    sections_field: str | None = None
    """``mrope``: dotted path in the text config of the rotary sections (checked at attach), e.g.
    ``rope_parameters.mrope_section``."""

    @model_validator(mode="after")
    def _fields_match_kind(self) -> PositionRule:
        mrope = ("rows", "rope_deltas")
        if self.kind == "mrope":
            missing = [name for name in mrope if getattr(self, name) in (None, "")]
            if missing:
                raise ValueError(f"positions.kind = 'mrope' needs positions.{missing[0]}")
            if (self.rows or 0) < 1:
                raise ValueError("positions.rows must be >= 1")
        else:
            extra = [name for name in (*mrope, "sections_field") if getattr(self, name) is not None]
            if extra:
                raise ValueError(f"positions.kind = 'plain' takes no positions.{extra[0]}")
        return self


class ProcessorRules(BaseModel):
    """How ``vreason run`` calls the model's processor with frames it sampled itself."""

    model_config = _STRICT

    video_metadata: StrictBool = False
    """Pass ``video_metadata`` (fps, frame indices, total frames) so the model's temporal positions or
    timestamps follow the real clip timing."""
    video_kwargs: dict[str, bool | int | float | str] = {}
    """Extra keyword arguments of the processor call (e.g. ``do_sample_frames = false``: frames are
    sampled)."""


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
    config: ConfigFields = ConfigFields()
    positions: PositionRule = PositionRule()
    processor: ProcessorRules = ProcessorRules()
    attention: list[Literal["sdpa", "eager", "flash_attention_2"]] = ["sdpa", "eager"]
    """The attention kernels the family supports and the test matrix runs (bit-identity under each)."""
    min_transformers: str | None = None
    """The oldest transformers release that has this family's classes; an older installation is refused at
    ``attach`` in one line naming it."""
    lmms_eval_model: str | None = None
    """The lmms-eval model name that runs this family with V-Reason (``--model NAME``), for the support
    table."""
    source: str = ""
    """Where the spec was read from (set by the loader, not written in files)."""

    def check_transformers(self) -> None:
        """Refuse an installed transformers older than :attr:`min_transformers` (one line naming both)."""
        from packaging.version import Version

        from .. import transformers_seam
        from ..errors import UnsupportedModelError

        installed = transformers_seam.installed_version("transformers")
        if self.min_transformers and installed and Version(installed) < Version(self.min_transformers):
            raise UnsupportedModelError(
                f"{self.where()} needs transformers>={self.min_transformers} (its model classes first appear "
                f"there); transformers {installed} is installed: pip install "
                f"'transformers>={self.min_transformers}'"
            )

    def matches(self, config: Any) -> bool:
        """Whether a transformers config belongs to this family (model_type first, then architectures)."""
        if getattr(config, "model_type", None) in self.model_types:
            return True
        return bool(set(getattr(config, "architectures", None) or ()) & set(self.architectures))

    def where(self) -> str:
        """How errors name this spec: its file, else its name."""
        return f"adapter spec {self.source or self.name}"

    def text_config(self, config):
        """The language model's config (``config.<config.text_config>``, else ``config`` itself)."""
        if self.config.text_config is None:
            return config
        return getattr(config, self.config.text_config)

    def check_config(self, config: Any) -> None:
        """Every config field the spec names exists in ``config``; else a :class:`SpecError` naming the key.

        Called before any weights load (``vreason run``) and at ``attach``, so a wrong field never surfaces
        as a confusing error in the middle of ``generate``.
        """
        kind = type(config).__name__

        def fail(key: str, value: str) -> None:
            raise SpecError(f"{self.where()}: key {key!r}: the model config ({kind}) has no field {value!r}")

        if self.config.text_config is not None and getattr(config, self.config.text_config, None) is None:
            fail("config.text_config", self.config.text_config)
        for key, value in (
            ("span.token_id_field", self.span.token_id_field),
            ("config.image_token_id", self.config.image_token_id),
        ):
            if value is not None:
                self._token_id(config, key, value)
        if self.positions.sections_field is not None:
            node = self.text_config(config)
            for part in self.positions.sections_field.split("."):
                node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
            if not node or (self.positions.rows is not None and len(node) != self.positions.rows):
                raise SpecError(
                    f"{self.where()}: key 'positions.sections_field': the text config has no "
                    f"{self.positions.sections_field!r} with positions.rows = {self.positions.rows} entries"
                )

    def decode_positions(self, model: Any, past: int, new: int, batch: int, device: Any) -> torch.Tensor:
        """The ``position_ids`` the model computes itself for ``new`` tokens after ``past`` cached ones.

        Returns:
            ``(batch, new)`` for plain positions; ``(rows, batch, new)`` for M-RoPE: the plain positions plus
            the per-sequence offset the model kept at prefill (``positions.rope_deltas``).
        """
        import torch

        from .. import transformers_seam

        positions = torch.arange(past, past + new, device=device).expand(batch, new)
        if self.positions.kind == "plain":
            return positions
        rows = self.positions.rows or 1  # set for mrope (checked at load)
        deltas = transformers_seam.model_attribute(model, self.positions.rope_deltas or "")
        if deltas is None:  # no multimodal prefill (text-only prompt): the model falls back to plain rows too
            return positions.unsqueeze(0).expand(rows, batch, new)
        deltas = deltas.to(device).repeat_interleave(batch // deltas.shape[0], dim=0)
        return (positions + deltas).unsqueeze(0).expand(rows, batch, new)

    def span_token_id(self, config: Any) -> int | None:
        """The input id that marks span positions, read from the model config (``None`` for prompt spans)."""
        if self.span.kind != "token":
            return None
        return self._token_id(config, "span.token_id_field", self.span.token_id_field)

    def _token_id(self, config: Any, key: str, field: str | None) -> int:
        """``config.<field>`` if it holds a token id; else a :class:`SpecError` naming ``key``."""
        value = getattr(config, field or "", None)
        if value is None:
            raise SpecError(
                f"{self.where()}: key {key!r}: the model config ({type(config).__name__}) has no field "
                f"{field!r}"
            )
        # bool is an int subclass: a flag such as tie_word_embeddings must not pass as token id 1.
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SpecError(
                f"{self.where()}: key {key!r}: config.{field} = {_short(value)} is not a token id (a "
                "non-negative integer); name the config field that holds the span token's id, e.g. "
                "video_token_id"
            )
        return value

    def span_positions(
        self, config: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> list[torch.Tensor]:
        """Controlled positions of every sequence of a prefill batch.

        Args:
            input_ids: ``(batch, seq_len)`` prompt ids (left padding allowed).
            attention_mask: ``(batch, seq_len)`` with 0 at padding, or ``None``.

        Returns:
            one ``LongTensor`` of sorted positions per sequence (possibly empty), on ``input_ids.device``.
        """
        import torch

        marked: torch.Tensor
        if self.span.kind == "token":
            marked = torch.eq(
                input_ids, self._token_id(config, "span.token_id_field", self.span.token_id_field)
            )
        elif attention_mask is not None:
            marked = attention_mask.to(torch.bool)
        else:
            marked = torch.ones_like(input_ids, dtype=torch.bool)
        return [row.nonzero().flatten() for row in marked]


def _short(value: object) -> str:
    text = " ".join(repr(value).split())
    return f"{text[:60]}… ({type(value).__name__})" if len(text) > 60 else f"{text} ({type(value).__name__})"


def load_spec(path: str | Path) -> AdapterSpec:
    """Read and validate one spec file; any problem is a :class:`SpecError` naming the file and the key."""
    path = Path(path)
    text = read_text(path, "adapter spec", SpecError)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"adapter spec {path}: not valid TOML ({err})") from None
    if "source" in data:
        raise SpecError(f"adapter spec {path}: key 'source' is set by the loader, remove it")
    try:
        return AdapterSpec.model_validate({**data, "source": str(path)})
    except ValidationError as err:
        raise SpecError(f"adapter spec {path}: {validation_message(err, noun='key')}") from None
