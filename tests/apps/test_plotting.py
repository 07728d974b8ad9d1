"""Entropy plots: the explore-span helper, and that the drawn figure follows the trace data."""

from __future__ import annotations

import numpy as np
import pytest

from vreason_hooks.apps.plotting import explore_spans, plot_traces, trace_label
from vreason_hooks.trace import Trace


def make_trace(n: int, seed: int = 0, objective: str = "switch", updates: int = 4) -> Trace:
    """A trace with the real switch rule applied to synthetic entropies (E from zero, β = 0.9)."""
    rng = np.random.default_rng(seed)
    entropy = (1.5 + np.sin(np.arange(n) / 3.0) + rng.random(n)).tolist()
    ema, peak, alpha, e, p = [], [], [], 0.0, float("-inf")
    for h in entropy:
        e = 0.9 * e + 0.1 * h
        p = max(p, e)
        ema.append(e), peak.append(p), alpha.append(1 if e >= p else -1)
    steps = list(range(updates - 1, n, updates)) if objective != "none" else []
    return Trace(
        entropy=entropy, ema=ema, peak=peak, alpha=alpha, update_steps=steps, config={"objective": objective}
    )


def test_explore_spans_are_the_runs_of_plus_one():
    assert explore_spans([1, 1, -1, 1, -1, -1, 1]) == [(0, 2), (3, 1), (6, 1)]
    assert explore_spans([-1, -1]) == []
    assert explore_spans([]) == []


def test_labels_name_baseline_and_vreason():
    assert trace_label(make_trace(3, objective="none")) == "baseline"
    assert trace_label(make_trace(3)) == "V-Reason"
    labelled = make_trace(3)
    labelled.label = "mine"
    assert trace_label(labelled, 5) == "mine"


def test_figure_draws_the_trace_values():
    trace = make_trace(40)
    fig = plot_traces([trace])
    ax, strip = fig.axes
    raw, ema, peak = ax.lines[:3]
    np.testing.assert_allclose(raw.get_ydata(), trace.entropy)
    np.testing.assert_allclose(ema.get_ydata(), trace.ema)
    np.testing.assert_allclose(peak.get_ydata(), trace.peak)
    star = ax.lines[3]
    assert list(star.get_xdata()) == [trace.peak_step]
    # One shaded bar per explore run, one tick per update step.
    bars = strip.collections[0]
    assert len(bars.get_paths()) == len(explore_spans(trace.alpha))
    np.testing.assert_array_equal(strip.lines[0].get_xdata(), trace.update_steps)


def test_overlay_draws_every_trace(tmp_path):
    fig = plot_traces([make_trace(30, objective="none"), make_trace(50, seed=1)])
    ax, strip = fig.axes
    lengths = sorted(len(line.get_xdata()) for line in ax.lines if len(line.get_xdata()) > 1)
    assert lengths == [30, 30, 30, 50, 50, 50]
    assert [t.get_text() for t in strip.get_yticklabels()] == ["baseline", "V-Reason #1"]


def test_png_changes_with_the_trace(tmp_path):
    a = plot_traces([make_trace(30)], tmp_path / "a.png")
    b = plot_traces([make_trace(30, seed=7)], tmp_path / "b.png")
    c = plot_traces([make_trace(30), make_trace(80, seed=2)], tmp_path / "c.png")
    assert a.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert a.read_bytes() != b.read_bytes()
    assert c.stat().st_size != a.stat().st_size


def test_empty_input_is_refused():
    with pytest.raises(ValueError, match="no traces"):
        plot_traces([])


def test_malformed_trace_is_refused_before_matplotlib_sees_it():
    broken = make_trace(10)
    broken.ema = broken.ema[:4]
    with pytest.raises(ValueError, match="field 'ema' has 4 values for 10 tokens"):
        plot_traces([broken])
