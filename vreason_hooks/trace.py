"""Per-sequence record of what the controller saw and did during one ``generate`` call."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import TraceError
from .files import read_text, write_text


@dataclass
class Trace:
    """Signals of one generated sequence; every per-token list has ``num_tokens`` entries.

    Token ``t`` is the ``t``-th generated token (``t = 0`` comes from the prefill logits). ``entropy[t]`` is
    H_t of the raw logits, ``ema[t]`` E_t, ``peak[t]`` the running peak P_t, ``alpha[t]`` the switch
    α_t ∈ {+1, -1} (the sign the loss would use at ``t``). ``update_steps`` lists the tokens after which ΔV
    was updated; ``delta_norm`` (‖ΔV‖ after the step) and ``grad_norm`` (before clipping) have one entry per
    update. ``span`` holds the controlled cache positions of this sequence. A token whose entropy was not
    finite is recorded as ``None`` (with ``alpha`` ``None``) and ends the sequence's updates (``diverged``):
    traces never hold NaN, so their JSON is standard."""

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
    """Whether updates stopped because ΔV, the loss or the entropy became non-finite (span values
    restored)."""
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
    def from_dict(cls, data: dict[str, Any]) -> Trace:
        """Inverse of :meth:`to_dict` (derived keys are ignored); checked with :meth:`check`."""
        if not isinstance(data, dict):
            raise ValueError(f"a JSON {_json_type(data)} where a trace object was expected")
        known = {f for f in cls.__dataclass_fields__}
        if data and not known & set(data):
            raise ValueError(
                f"an object with none of the trace fields (keys: {', '.join(sorted(map(str, data))[:5])})"
            )
        return cls(**{k: v for k, v in data.items() if k in known}).check()

    def check(self) -> Trace:
        """``self`` if every field has the type and length :meth:`to_dict` writes, else a one-line
        ``ValueError`` naming the field (so a hand-edited or truncated file never reaches matplotlib)."""
        self._check_lists()
        self._check_lengths()
        self._check_scalars()
        return self

    def _check_lists(self) -> None:
        for name in _NUMBER_LISTS + _INT_LISTS:
            values = getattr(self, name)
            kind = int if name in _INT_LISTS else (int, float)
            # A diverged sequence records its non-finite token as None (entropy and alpha), never as NaN.
            gaps = self.diverged and name in ("entropy", "alpha")
            if not isinstance(values, list) or not all(
                (isinstance(v, kind) and not isinstance(v, bool)) or (gaps and v is None) for v in values
            ):
                what = "whole numbers" if name in _INT_LISTS else "numbers"
                raise ValueError(
                    f"field {name!r} must be a list of {what}, got {_json_type(values)} {_head(values)}"
                )
            bad = next((v for v in values if isinstance(v, float) and not math.isfinite(v)), None)
            if bad is not None:
                raise ValueError(
                    f"field {name!r} holds {bad}: trace values are finite (a diverged token is null, not NaN)"
                )

    def _check_lengths(self) -> None:
        for name in ("ema", "peak", "alpha"):
            if len(getattr(self, name)) != self.num_tokens:
                raise ValueError(
                    f"field {name!r} has {len(getattr(self, name))} values for {self.num_tokens} tokens (the "
                    "length of 'entropy')"
                )
        if any(a not in (-1, 1, None) for a in self.alpha):
            raise ValueError(f"field 'alpha' must hold only +1 and -1, got {_head(self.alpha)}")
        if any(not 0 <= t < self.num_tokens for t in self.update_steps):
            raise ValueError(
                f"field 'update_steps' must index generated tokens 0..{self.num_tokens - 1}, got "
                f"{_head(self.update_steps)}"
            )
        for name in ("delta_norm", "grad_norm"):
            if len(getattr(self, name)) not in (0, len(self.update_steps)):
                raise ValueError(
                    f"field {name!r} has {len(getattr(self, name))} values for {len(self.update_steps)} "
                    "update steps"
                )

    def _check_scalars(self) -> None:
        for name, kind in (
            ("sequence", int),
            ("call", int),
            ("diverged", bool),
            ("config", dict),
            ("adapter", str),
            ("label", str),
        ):
            if not isinstance(getattr(self, name), kind):
                raise ValueError(
                    f"field {name!r} must be a JSON {_json_type(kind())}, got "
                    f"{_json_type(getattr(self, name))}"
                )


_NUMBER_LISTS = ("entropy", "ema", "peak", "delta_norm", "grad_norm")
_INT_LISTS = ("alpha", "update_steps", "span", "pruned")


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _head(values: object) -> str:
    text = repr(values)
    return text if len(text) <= 40 else text[:40] + "…"


def save_traces(traces: Trace | Iterable[Trace], path: str | Path) -> Path:
    """Write traces (one, or a list) as a JSON list (one object per trace); returns the path.

    Raises:
        TraceError: for something that is not a trace (naming its position and type), a non-finite value, or a
            path that cannot be written (one line naming it).
    """
    items = [traces] if isinstance(traces, Trace) else traces
    if isinstance(items, (str, bytes, dict)) or not isinstance(items, Iterable):
        raise TraceError(f"save_traces takes a Trace or a list of Traces, got {type(traces).__name__}")
    items = list(items)
    bad = next((i for i, t in enumerate(items) if not isinstance(t, Trace)), None)
    if bad is not None:
        raise TraceError(
            f"save_traces: item {bad} is a {type(items[bad]).__name__}, not a Trace (session.traces)"
        )
    for i, trace in enumerate(items):
        _checked(trace.check, f"trace {i}")
    if not isinstance(path, (str, Path)):
        raise TraceError(f"save_traces: the path must be a str or Path, got {type(path).__name__}")
    text = json.dumps([t.to_dict() for t in items], indent=1, allow_nan=False)
    return write_text(Path(path), text, "save_traces:", TraceError)


def load_traces(path: str | Path) -> list[Trace]:
    """Read traces written by :func:`save_traces`, a single trace object, or JSONL (one per line).

    Raises:
        TraceError: for a missing, unreadable or malformed file, or a field of the wrong type, length or a
            non-finite number (one line naming the trace and the field).
    """
    text = read_text(Path(path), "trace file", TraceError).strip()
    if not text:
        return []
    try:
        data = _checked(lambda: json.loads(text, parse_constant=_refuse_constant), f"{path}")
    except TraceError:  # JSONL: one object per line (a real syntax error fails again, line by line)
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        parse = functools.partial(json.loads, parse_constant=_refuse_constant)
        data = [_checked(functools.partial(parse, line), f"{path}: line {n}") for n, line in lines]
    items = data if isinstance(data, list) else [data]
    where = [f"{path}: trace {i}" if len(items) > 1 else f"{path}" for i in range(len(items))]
    return [_checked(lambda item=item: Trace.from_dict(_unwrap(item)), w) for item, w in zip(items, where)]


def _refuse_constant(name: str) -> float:
    """JSON's non-standard ``NaN`` / ``Infinity``: a trace never holds them (a diverged token is ``null``)."""
    raise ValueError(f"holds {name}, which a trace never does (a non-finite entropy is written as null)")


def _checked(build: Any, where: str) -> Any:
    """``build()``; its ``TypeError`` / ``ValueError`` becomes one :class:`TraceError` line led by
    ``where``."""
    try:
        return build()
    except (TypeError, ValueError) as err:
        raise TraceError(f"{where}: {err}") from None


def _unwrap(item: Any) -> Any:
    """Accept an lmms-eval trace record ``{"doc_id": .., "trace": {...} or null}`` as well as a bare trace (a
    failed document's null trace is an empty one)."""
    if (
        isinstance(item, dict)
        and "trace" in item
        and (item["trace"] is None or isinstance(item["trace"], dict))
    ):
        return item["trace"] if item["trace"] is not None else {}
    return item
