"""The one configuration object of V-Reason: validated, frozen, serialisable."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Objective = Literal["switch", "max", "min", "none"]


class VReasonConfig(BaseModel):
    """Settings of the V-Reason controller (defaults from the paper where it gives one).

    Unknown fields are rejected and every value is checked, so a typo fails at construction with a message
    that names the field. Build one from keyword arguments, ``VReasonConfig.model_validate(dict)``, or
    :meth:`from_file` (TOML / JSON).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    lr: float = Field(3e-4, ge=0.0, description="AdamW learning rate of the controller ΔV (paper: 3e-4).")
    step_interval: int = Field(
        4, ge=1, description="k: one optimiser step every k generated tokens (paper: 4; ablation 2, 8, 16)."
    )
    ema_beta: float = Field(0.98, gt=0.0, lt=1.0, description="β of the entropy moving average (paper: 0.98).")
    ema_init: Literal["zero", "first"] = Field(
        "zero",
        description="'zero': E_{-1}=0, the EMA rises from zero (our default, see docs/method.md); "
        "'first': E_0 = H_0, the EMA is seeded with the first token's entropy.",
    )
    objective: Objective = Field(
        "switch",
        description="'switch': the paper's entropy switching; 'max' / 'min': ablations that only raise / only "
        "lower entropy; 'none': hooks and traces stay on, ΔV is never updated.",
    )
    max_grad_norm: float | None = Field(
        1.0, gt=0.0, description="Per-sequence gradient clipping of ΔV (the paper clips; the value is ours)."
    )
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW weight decay on ΔV (torch's AdamW default).")
    lite: bool = Field(False, description="V-Reason Lite: prune the lowest-norm span tokens after prefill.")
    prune_ratio: float = Field(0.5, ge=0.0, lt=1.0, description="Lite: fraction of span tokens dropped.")
    prune_score: Literal["value", "key"] = Field(
        "value", description="Lite: which cached tensor's L2 norm scores a span token (see docs/lite.md)."
    )
    prune_scope: Literal["last_layer", "per_layer"] = Field(
        "last_layer",
        description="Lite: 'last_layer': the last decoder layer's scores choose one token set dropped from every "
        "layer; 'per_layer': each layer drops its own lowest-scoring tokens (see docs/lite.md).",
    )
    prune_at: Literal["after_prefill", "prefill"] = Field(
        "after_prefill",
        description="Lite: 'after_prefill': prune every layer once prefill is done (any prune_scope); 'prefill': "
        "prune each layer right after it ran inside the prefill, so the full cache never exists at once and the "
        "whole-run peak drops too; scores are then each layer's own (needs prune_scope='per_layer'). See "
        "docs/lite.md.",
    )

    @model_validator(mode="after")
    def _prefill_pruning_scores_per_layer(self) -> "VReasonConfig":
        if self.prune_at == "prefill" and self.prune_scope != "per_layer":
            raise ValueError(
                "prune_at='prefill' scores each layer by its own norms while prefill writes it (the last layer's do "
                "not exist yet): set prune_scope='per_layer' with it"
            )
        return self

    @classmethod
    def from_file(cls, path: str | Path) -> "VReasonConfig":
        """Read a config from a ``.toml`` or ``.json`` file (flat table of the fields above)."""
        path = Path(path)
        text = path.read_text()
        if path.suffix == ".toml":
            import tomllib

            return cls.model_validate(tomllib.loads(text))
        return cls.model_validate_json(text)

    @property
    def updates(self) -> bool:
        """Whether this configuration ever changes ΔV."""
        return self.objective != "none"
