"""Every ``adamtune`` command's ``--help`` says what it does and what each option means."""

from __future__ import annotations

import argparse

from adamtune.cli import build_parser


def _commands(parser: argparse.ArgumentParser, path: str = "adamtune"):  # type: ignore[no-untyped-def]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{path} {name}", sub
                yield from _commands(sub, f"{path} {name}")


def test_every_command_describes_itself_and_its_options() -> None:
    commands = dict(_commands(build_parser()))
    assert {"adamtune tune", "adamtune up", "adamtune demo", "adamtune recommendation",
            "adamtune keys create", "adamtune db upgrade"} <= set(commands)
    for name, parser in commands.items():
        assert parser.description, f"`{name} --help` does not say what it does"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            assert action.help, f"`{name}`: {action.option_strings or action.dest} has no help"
