"""Per-sequence record of what the controller saw and did during one ``generate`` call."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Trace:
    """Signals of one generated sequence; every per-token list has ``num_tokens`` entries.

    Token ``t`` is the ``t``-th generated token (``t = 0`` comes from the prefill logits). ``entropy[t]`` is
    H_t of the raw logits, ``ema[t]`` E_t, ``peak[t]`` the running peak P_t, ``alpha[t]`` the switch
    α_t ∈ {+1, -1} (the sign the loss would use at ``t``). ``update_steps`` lists the tokens after which ΔV
    was updated; ``delta_norm`` (‖ΔV‖ after the step) and ``grad_norm`` (before clipping) have one entry per
    update. ``span`` holds the controlled cache positions of this sequence. A token whose entropy was not finite
    is recorded as ``None`` (with ``alpha`` ``None``) and ends the sequence's updates (``diverged``): traces never
    hold NaN, so their JSON is standard.
    """

    sequence: int = 0
    call: int = 0
    entropy: list[float | None] = field(default_factory=list)
    ema: list[float] = field(default_factory=list)
    peak: list[float] = field(default_factory=list)
    alpha: list[int | None] = field(default_factory=list)
    update_steps: list[int] = field(default_factory=list)
    delta_norm: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    span: list[int] = field(default_factory=list)
    pruned: list[int] = field(default_factory=list)
    diverged: bool = False
    """Whether updates stopped because ΔV, the loss or the entropy became non-finite (span values restored)."""
    config: dict[str, Any] = field(default_factory=dict)
    adapter: str = ""
    label: str = ""

    @property
    def num_tokens(self) -> int:
        """Number of generated tokens recorded (EOS included, padding after it excluded)."""
        return len(self.entropy)

    @property
    def peak_step(self) -> int | None:
        """Token index where the EMA reached its global peak (``None`` for an empty trace)."""
        if not self.ema:
            return None
        return max(range(len(self.ema)), key=self.ema.__getitem__)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (``num_tokens`` and ``peak_step`` included for readers)."""
        data = asdict(self)
        data["num_tokens"] = self.num_tokens
        data["peak_step"] = self.peak_step
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Trace":
        """Inverse of :meth:`to_dict` (derived keys are ignored)."""
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def save_traces(traces: list[Trace], path: str | Path) -> Path:
    """Write traces as a JSON list (one object per trace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([t.to_dict() for t in traces], indent=1, allow_nan=False))
    return path


def load_traces(path: str | Path) -> list[Trace]:
    """Read traces written by :func:`save_traces`, a single trace object, or JSONL (one per line)."""
    text = Path(path).read_text().strip()
    if not text:
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError:  # JSONL: one object per line
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    items = data if isinstance(data, list) else [data]
    return [Trace.from_dict(_unwrap(item)) for item in items]


def _unwrap(item: dict[str, Any]) -> dict[str, Any]:
    """Accept an lmms-eval trace record ``{"doc_id": .., "trace": {...}}`` as well as a bare trace."""
    return item["trace"] if "trace" in item and isinstance(item["trace"], dict) else item
