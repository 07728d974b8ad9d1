"""Entropy plots of V-Reason traces, the way the paper draws them.

Top panel: raw next-token entropy H_t (thin) and its moving average E_t (thick) over generated tokens, the
running peak P_t (dotted) and the global EMA peak (star). Bottom strip: one row per trace, shaded where the
switch explores (α = +1) and ticked at the tokens after which ΔV was updated. Several traces overlay (e.g.
baseline vs V-Reason), one colour each.

matplotlib is imported lazily and always with the headless ``Agg`` backend: plotting never needs a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure

from ..trace import Trace

PLOT_SUFFIXES = (".png", ".svg", ".pdf", ".jpg", ".jpeg")
"""The image formats :func:`plot_traces` writes (the file name's suffix picks one)."""
# Colour-blind-safe pair first (baseline grey-blue, V-Reason orange), then matplotlib's cycle.
_COLOURS = ["#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C"]


def trace_label(trace: Trace, index: int = 0) -> str:
    """A short legend label: the trace's own ``label``, else its objective and position in the file."""
    if trace.label:
        return trace.label
    objective = trace.config.get("objective", "")
    name = (
        "baseline" if objective == "none" else "V-Reason" if objective == "switch" else objective or "trace"
    )
    return f"{name} #{index}" if index else name


def explore_spans(alpha: Sequence[int | None]) -> list[tuple[int, int]]:
    """``(start, length)`` runs of consecutive tokens with ``α = +1`` (the explore phase; ``None``: a diverged
    token, not exploring)."""
    spans, start = [], None
    for t, a in enumerate([-1 if a is None else a for a in alpha] + [-1]):
        if a > 0 and start is None:
            start = t
        elif a <= 0 and start is not None:
            spans.append((start, t - start))
            start = None
    return spans


def plot_traces(
    traces: Sequence[Trace],
    path: str | Path | None = None,
    *,
    labels: Sequence[str] | None = None,
    title: str | None = None,
    dpi: int = 110,
) -> Path | Figure:
    """Draw one or more traces on shared axes; write a PNG (or any matplotlib format) when ``path`` is given.

    Args:
        traces: the traces to overlay (checked with :meth:`Trace.check`: a malformed one is a ``ValueError``
            naming the field, not a matplotlib error).
        path: output file; its suffix picks the format. ``None`` returns the figure without saving.
        labels: legend labels, one per trace (default: :func:`trace_label`).
        title: figure title.
        dpi: resolution of raster output.

    Returns:
        the written ``Path`` when ``path`` is given, else the matplotlib ``Figure``.

    Raises:
        ValueError: ``path`` is a folder or does not end in one of :data:`PLOT_SUFFIXES` (matplotlib would
            write another file than the one named: ``out`` becomes ``out.png``).
    """
    if path is not None:
        path = Path(path)
        if path.is_dir() or path.suffix.lower() not in PLOT_SUFFIXES:
            raise ValueError(
                f"plot file {path}: {'a folder' if path.is_dir() else 'no image suffix'}; pass a file name "
                f"ending in {', '.join(PLOT_SUFFIXES)}"
            )
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    traces = [trace.check() for trace in traces]
    if not traces:
        raise ValueError("no traces to plot")
    labels = list(labels) if labels is not None else [trace_label(t, i) for i, t in enumerate(traces)]
    fig, (ax, strip) = plt.subplots(
        2,
        1,
        figsize=(8, 4.2 + 0.25 * len(traces)),
        sharex=True,
        gridspec_kw={"height_ratios": [5, 0.45 * len(traces) + 0.3], "hspace": 0.08},
    )
    for row, (trace, label) in enumerate(zip(traces, labels)):
        colour = _COLOURS[row % len(_COLOURS)]
        steps = range(trace.num_tokens)
        ax.plot(
            steps, [float("nan") if h is None else h for h in trace.entropy], color=colour, lw=0.8, alpha=0.45
        )
        ax.plot(steps, trace.ema, color=colour, lw=2.2, label=f"{label} ({trace.num_tokens} tokens)")
        ax.plot(steps, trace.peak, color=colour, lw=1.0, ls=":")
        if trace.peak_step is not None:
            ax.plot(
                [trace.peak_step],
                [trace.ema[trace.peak_step]],
                marker="*",
                ms=13,
                color=colour,
                markeredgecolor="black",
                markeredgewidth=0.6,
                ls="none",
            )
        # Strip row: explore phases shaded, update steps ticked.
        y = len(traces) - 1 - row
        strip.broken_barh(explore_spans(trace.alpha), (y + 0.15, 0.7), facecolors=colour, alpha=0.35)
        if trace.update_steps:
            strip.plot(
                trace.update_steps,
                [y + 0.5] * len(trace.update_steps),
                ls="none",
                marker="|",
                ms=9,
                color=colour,
                markeredgewidth=1.2,
            )
    # Legend entries for the line styles, so a reader does not need the docs to decode the figure.
    handles, names = ax.get_legend_handles_labels()
    style = [
        plt.Line2D([], [], color="grey", lw=0.8, alpha=0.6),
        plt.Line2D([], [], color="grey", lw=2.2),
        plt.Line2D([], [], color="grey", lw=1.0, ls=":"),
        plt.Line2D([], [], color="grey", marker="*", ms=11, ls="none", markeredgecolor="black"),
    ]
    # Above the axes, so the legend never hides a curve.
    ax.legend(
        handles + style,
        names + ["raw entropy H_t", "EMA E_t", "running peak P_t", "EMA peak"],
        loc="lower left",
        bbox_to_anchor=(0.0, 1.01),
        fontsize=8,
        ncol=3,
        frameon=False,
    )
    ax.set_ylabel("entropy (nats)")
    ax.grid(alpha=0.25)
    ax.set_ylim(bottom=0)
    if title:  # padded above the legend rows
        rows = -(-(len(names) + len(style)) // 3)
        ax.set_title(title, fontsize=10, loc="left", pad=8 + 14 * rows)
    strip.set_yticks([len(traces) - 1 - r + 0.5 for r in range(len(traces))], labels, fontsize=8)
    strip.set_ylim(0, len(traces))
    strip.set_xlabel("generated token  (shaded: α = +1, explore;  |: ΔV update)")
    strip.grid(axis="x", alpha=0.25)
    strip.set_xlim(
        left=-0.5, right=max(t.num_tokens for t in traces) - 0.5 if any(t.num_tokens for t in traces) else 1
    )
    if path is None:
        return fig
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
