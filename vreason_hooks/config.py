"""The one configuration object of V-Reason: validated, frozen, serialisable."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ConfigError, ConfigTypeError, validation_message
from .files import read_text

Objective = Literal["switch", "max", "min", "none"]
CONFIG_SUFFIXES = (".toml", ".json", ".yaml", ".yml")
"""File types :meth:`VReasonConfig.from_file` reads."""


@dataclass(frozen=True)
class Range:
    """A closed or open interval of valid values of one numeric field (printed as ``[0, 10]``, ``(0, 1)``)."""

    low: float
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        high = "∞)" if math.isinf(self.high) else f"{self.high:g}{')' if self.high_open else ']'}"
        return f"{'(' if self.low_open else '['}{self.low:g}, {high}"


RANGES = {
    "lr": Range(0.0, 10.0),
    "step_interval": Range(1, math.inf, high_open=True),
    "ema_beta": Range(0.0, 1.0, low_open=True, high_open=True),
    "max_grad_norm": Range(0.0, math.inf, low_open=True, high_open=True),
    "weight_decay": Range(0.0, 1.0),
    "prune_ratio": Range(0.0, 1.0, high_open=True),
}
"""Valid values of every numeric field; all must also be finite (NaN and ±inf are refused). Why these bounds:
``lr`` beyond 10 makes Adam steps of ΔV far larger than any value vector (the paper uses 3e-4, the demo 0.3);
``weight_decay`` is a fraction of ΔV removed per step; ``ema_beta`` 0 or 1 makes the EMA the raw entropy or a
constant; ``prune_ratio`` 1 would drop the whole span. Across fields: ``lr · weight_decay < 1``."""


class VReasonConfig(BaseModel):
    """Settings of the V-Reason controller (defaults from the paper where it gives one).

    Unknown fields are rejected and every value is checked, so a typo fails at construction with a message
    that names the field. Build one from keyword arguments, ``VReasonConfig.model_validate(dict)``, or
    :meth:`from_file` (TOML / JSON / YAML), or :func:`coerce_config` (``None``, a config or a mapping).
    Numeric fields must be finite and inside :data:`RANGES` (the message gives the range), and ``lr ·
    weight_decay < 1``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lr: float = Field(
        3e-4,
        description="AdamW learning rate of the controller ΔV (paper: 3e-4). Valid: [0, 10], and "
        "lr · weight_decay < 1 (AdamW multiplies ΔV by 1 − lr · weight_decay every step).",
    )
    step_interval: int = Field(
        4,
        description="k: one optimiser step every k generated tokens (paper: 4; ablation 2, 8, 16). Valid: ≥ "
        "1.",
    )
    ema_beta: float = Field(0.98, description="β of the entropy moving average (paper: 0.98). Valid: (0, 1).")
    ema_init: Literal["zero", "first"] = Field(
        "zero",
        description="'zero': E_{-1}=0, the EMA rises from zero (our default, see docs/method.md); "
        "'first': E_0 = H_0, the EMA is seeded with the first token's entropy.",
    )
    objective: Objective = Field(
        "switch",
        description="'switch': the paper's entropy switching; 'max' / 'min': ablations that only raise / "
        "only "
        "lower entropy; 'none': hooks and traces stay on, ΔV is never updated.",
    )
    max_grad_norm: float | None = Field(
        1.0,
        description="Per-sequence gradient clipping of ΔV (the paper clips; the value is ours). Valid: a "
        "finite number > 0, or None for no clipping.",
    )
    weight_decay: float = Field(
        0.01,
        description="AdamW weight decay on ΔV (torch's AdamW default). Valid: [0, 1], and lr · weight_decay "
        "< 1.",
    )
    lite: bool = Field(False, description="V-Reason Lite: prune the lowest-norm span tokens after prefill.")
    prune_ratio: float = Field(0.5, description="Lite: fraction of span tokens dropped. Valid: [0, 1).")
    prune_score: Literal["value", "key"] = Field(
        "value", description="Lite: which cached tensor's L2 norm scores a span token (see docs/lite.md)."
    )
    prune_scope: Literal["last_layer", "per_layer"] = Field(
        "last_layer",
        description="Lite: 'last_layer': the last decoder layer's scores choose one token set dropped from "
        "every "
        "layer; 'per_layer': each layer drops its own lowest-scoring tokens (see docs/lite.md).",
    )
    prune_at: Literal["after_prefill", "prefill"] = Field(
        "after_prefill",
        description="Lite: 'after_prefill': prune every layer once prefill is done (any prune_scope); "
        "'prefill': "
        "prune each layer right after it ran inside the prefill, so the full cache never exists at once and "
        "the "
        "whole-run peak drops too; scores are then each layer's own (needs prune_scope='per_layer'). See "
        "docs/lite.md.",
    )

    def __init__(self, **data: Any) -> None:
        """Keyword arguments of the fields above; a bad one is a one-line :class:`ConfigError` naming it."""
        try:
            super().__init__(**data)
        except ValidationError as err:
            raise ConfigError(f"bad V-Reason config: {_message(err, data)}", err) from None

    # The base __init__ plus a one-line error: model_validate keeps validating without calling it (pydantic's
    # RootModel marks its own __init__ the same way).
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @classmethod
    def model_validate(cls, obj: Any, **kwargs: Any) -> VReasonConfig:
        """``VReasonConfig`` from a mapping; a bad field is a one-line :class:`ConfigError` naming it."""
        try:
            return super().model_validate(obj, **kwargs)
        except ValidationError as err:
            values = obj if isinstance(obj, Mapping) else None
            raise ConfigError(f"bad V-Reason config: {_message(err, values)}", err) from None

    def checked(self) -> VReasonConfig:
        """This config validated again (``model_copy(update=...)`` skips validation): ``attach`` calls it."""
        return type(self).model_validate(self.model_dump())

    @model_validator(mode="after")
    def _prefill_pruning_scores_per_layer(self) -> VReasonConfig:
        if self.prune_at == "prefill" and self.prune_scope != "per_layer":
            raise ValueError(
                "prune_at='prefill' scores each layer by its own norms while prefill writes it (the last "
                "layer's do not exist yet): set prune_scope='per_layer' with it"
            )
        return self

    @field_validator(*RANGES, mode="after")
    @classmethod
    def _in_range(cls, value, info):
        valid = RANGES[info.field_name]
        if value is not None and not (math.isfinite(value) and value in valid):
            extra = "; use None for no clipping" if info.field_name == "max_grad_norm" else ""
            raise ValueError(f"must be a finite number in {valid}, got {value!r}{extra}")
        return value

    @model_validator(mode="after")
    def _decay_keeps_its_sign(self) -> VReasonConfig:
        if self.lr * self.weight_decay >= 1:
            raise ValueError(
                f"lr · weight_decay = {self.lr:g} · {self.weight_decay:g} = {self.lr * self.weight_decay:g} "
                "must be below 1 (AdamW multiplies ΔV by 1 − lr · weight_decay each step): lower lr or "
                "weight_decay"
            )
        return self

    @classmethod
    def from_file(cls, path: str | Path) -> VReasonConfig:
        """Read a config from a ``.toml``, ``.json``, ``.yaml`` or ``.yml`` file (a flat table of the fields
        above). Any problem (unknown file type, syntax, a bad field) is one :class:`ConfigError` line."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in CONFIG_SUFFIXES:
            raise ConfigError(
                f"bad config file {path}: unknown type {path.suffix or '(no suffix)'!r}; use a "
                f"{', '.join(CONFIG_SUFFIXES)} file of VReasonConfig fields"
            )
        text = read_text(path, "bad config file", ConfigError)
        try:
            if suffix == ".toml":
                import tomllib

                data = tomllib.loads(text)
            elif suffix == ".json":
                import json

                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except Exception as err:  # noqa: BLE001 - each parser has its own error class; all mean "bad syntax"
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ConfigError(
                f"bad config file {path}: not valid {suffix[1:].upper().replace('YML', 'YAML')} ({first})"
            ) from None
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"bad config file {path}: holds a {type(data).__name__}, not a table of VReasonConfig fields "
                "(e.g. lr = 3e-4)"
            )
        try:
            return cls.model_validate(data)
        except ConfigError as err:
            raise ConfigError(f"bad config file {path}: {_message(err.validation)}", err.validation) from None

    @property
    def updates(self) -> bool:
        """Whether this configuration ever changes ΔV."""
        return self.objective != "none"


def _message(err: ValidationError, data: Mapping | None = None) -> str:
    return validation_message(err, values=data, known=VReasonConfig.model_fields)


def coerce_config(value: Any = None) -> VReasonConfig:
    """A :class:`VReasonConfig` from what a user passes to ``attach``: ``None`` (the paper's defaults), a
    config, or a mapping of its fields (``{"lr": 1e-3}``).

    Raises:
        ConfigTypeError: for anything else (one line saying what to pass).
        ConfigError: for a mapping with an unknown field or a bad value (one line naming it and its range).
    """
    if value is None:
        return VReasonConfig()
    if isinstance(value, VReasonConfig):
        value.checked()  # a model_copy(update=...) may hold values no constructor would accept
        return value
    if isinstance(value, Mapping):
        return VReasonConfig.model_validate(dict(value))
    raise ConfigTypeError(
        f"expected a VReasonConfig, a dict of its fields or None, got {type(value).__name__}: pass e.g. "
        "VReasonConfig(lr=3e-4) or {'lr': 3e-4}"
    )
