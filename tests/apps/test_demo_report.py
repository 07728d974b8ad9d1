"""The demo's summary reads well on an 80-column terminal and on a wide one: no cell cut to "…"."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from vreason_hooks.apps import demo


def _results() -> list[demo.Result]:
    def run(answer, correct, tokens, seconds, updates=0, text="t"):
        return demo.Run(text, answer, correct, tokens, seconds, updates, 3)

    return [
        demo.Result(
            demo.Question("chain_sum-4", "q", "13"), run("13", True, 26, 4.6), run("13", True, 26, 5.0, 13)
        ),
        demo.Result(
            demo.Question("basic_arithmetic-4", "q", "-8"),
            run("8", False, 34, 9.8),
            run("100", False, 101, 36.6, 50, text="u"),
        ),
        demo.Result(
            demo.Question("products-2", "q", "0"), run("0", True, 35, 9.4), run(None, False, 65, 17.7, 32)
        ),
    ]


def _render(width: int, plots: bool = True) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, color_system=None, legacy_windows=False)
    results = _results()
    for r in results:
        r.files = {"traces": f"traces/{r.question.id}.json"} | (
            {"plot": f"plots/{r.question.id}.png"} if plots else {}
        )
    report = {
        "baseline": demo.totals([r.baseline for r in results]),
        "vreason": demo.totals([r.vreason for r in results]),
        "verdicts": {"helped": 0, "hurt": 1, "both right": 1, "both wrong": 1},
    }
    demo.print_summary(console, results, report, Path("out"))
    return buffer.getvalue()


@pytest.mark.parametrize("width", [60, 80, 100, 200])
def test_summary_fits_the_terminal_without_cutting_cells(width):
    text = _render(width)
    assert "…" not in text, text
    assert max(map(len, text.splitlines())) <= width
    for word in (
        "chain_sum-4",
        "basic_arithmetic-4",
        "products-2",
        "both right, same text",
        "both wrong",
        "hurt",
        "✓ 13",
        "✗ 100",
        "✗ —",
        "36.6s",
        "101",
        "50",
    ):
        assert word in text, (width, word, text)


def test_wide_terminals_get_the_table_narrow_ones_a_block_per_question():
    wide, narrow = _render(200), _render(80)
    assert "┃ question" in wide and "verdict" in wide and "┃" not in narrow
    assert "basic_arithmetic-4 (known -8): both wrong" in narrow
    assert "V-Reason  ✗ 100  101 tokens  36.6s  50 ΔV updates" in narrow


def test_the_plots_folder_is_named_only_when_plots_were_written():
    """``vreason demo --no-plots`` must not point at a plots folder that is not there."""
    assert "plots: out/plots" in _render(200)
    without = _render(200, plots=False)
    assert "plots" not in without and "report: out/report.json" in without and "traces: out/traces" in without
