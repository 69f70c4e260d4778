"""``adamtune worker|up --program/--programs``: bad definitions exit 2 before anything starts,
and good ones are passed on to the workers a supervisor starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from adamtune.cli import build_parser
from adamtune.cli import main as cli_main
from adamtune.cli.service import program_options


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--program", "digits"], "expected NAME='command ...'"),
        (["--program", "a b=python x.py"], "--program 'a b=python x.py'"),
        (["--program", "d=python a.py", "--program", "d=python b.py"], "defined twice"),
        (["--programs", "/nonexistent/programs.yaml"], "cannot read it"),
    ],
)
@pytest.mark.parametrize("command", ["worker", "up"])
def test_bad_program_definitions_exit_2_saying_why(
    command: str, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main([command, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_program_options_are_passed_on_with_absolute_file_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = build_parser().parse_args([
        "worker", "--devices", "cpu*2", "--program", "digits=python train.py --data '/a b'",
        "--programs", "programs.yaml",
    ])
    assert program_options(args) == [
        "--program", "digits=python train.py --data '/a b'",
        "--programs", str(tmp_path / "programs.yaml"),
    ]
