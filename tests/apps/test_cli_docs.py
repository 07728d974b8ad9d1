"""docs/cli.md is the command line as it is: every sub-command, every option, the real `vreason adapters`
and `vreason doctor` output (fast: reads the parser and the docs, runs nothing heavy)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from vreason_hooks.adapters import available, builtin_spec_paths
from vreason_hooks.apps import cli

DOCS = Path(__file__).resolve().parents[2] / "docs"
CLI_MD = (DOCS / "cli.md").read_text()
OWN_PAGE = {"reproduce": DOCS / "reproducing.md"}
"""Sub-commands documented on a page of their own (linked from docs/cli.md)."""
NUMBERS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _code_block(after: str) -> str:
    start = CLI_MD.index("```text\n", CLI_MD.index(after)) + len("```text\n")
    return CLI_MD[start : CLI_MD.index("```", start)]


def test_every_sub_command_is_in_the_table_and_counted():
    commands = _commands()
    rows = re.findall(r"^\| `vreason (\w+)` \|", CLI_MD, flags=re.M)
    assert rows == list(commands)
    assert re.search(rf"It has the {NUMBERS[len(commands)]}\s+sub-commands below", CLI_MD)


@pytest.mark.parametrize("command", list(_commands()))
def test_every_option_is_documented(command):
    page = OWN_PAGE[command].read_text() if command in OWN_PAGE else CLI_MD
    options = [
        option
        for action in _commands()[command]._actions
        for option in action.option_strings
        if option.startswith("--") and option not in ("--help", "--debug")
    ]
    missing = [option for option in options if f"`{option}" not in page and f" {option} " not in page]
    assert not missing, f"vreason {command}: {missing} not in {page.name}"


def test_the_adapters_example_is_the_real_output(capsys):
    builtin = {str(p) for p in builtin_spec_paths()}
    if any(spec.source not in builtin for spec in available()):
        pytest.skip("an installed plugin adds adapters: the example shows the built-in ones")
    assert cli.main(["adapters"]) == 0
    assert _code_block("## `vreason adapters`") == "$ vreason adapters\n" + capsys.readouterr().out


def test_the_doctor_example_lists_the_adapters():
    (line,) = [line for line in _code_block("## `vreason doctor`").splitlines() if " adapters " in line]
    assert line.split()[-len(available()) :] == [f"{s.name}," for s in available()[:-1]] + [
        available()[-1].name
    ]
