"""Program definitions: ``--program NAME='cmd'`` options and programs files."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.program_runner import device_environment
from workers.programs import (
    ProgramError,
    collect_programs,
    load_programs_file,
    parse_program_option,
)


def test_an_option_is_a_name_and_a_shell_like_command() -> None:
    program = parse_program_option("mnist=python train.py --data '/data/my set'")
    assert program.name == "mnist"
    assert program.command == ("python", "train.py", "--data", "/data/my set")
    assert program.time_limit is None
    assert program.describe() == {"name": "mnist", "time_limit": None}  # never the command


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("python train.py", "expected NAME="),
        ("mnist=", "expected NAME="),
        ("my prog=python t.py", "name"),
    ],
)
def test_a_bad_option_says_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ProgramError, match=message):
        parse_program_option(text)


def test_a_programs_file_has_commands_directories_environments_and_limits(
    tmp_path: Path,
) -> None:
    (tmp_path / "proj").mkdir()
    path = tmp_path / "programs.yaml"
    path.write_text(
        "programs:\n"
        "  mnist:\n"
        "    command: python train.py --epochs 1\n"
        "    working_directory: proj\n"
        "    environment: {DATA_DIR: /data, WORKERS: 4}\n"
        "    time_limit: 600\n"
        "  quick: [python, -c, 'print(1)']\n"
    )
    programs = load_programs_file(path)
    assert set(programs) == {"mnist", "quick"}
    mnist = programs["mnist"]
    assert mnist.command == ("python", "train.py", "--epochs", "1")
    assert mnist.working_directory == str((tmp_path / "proj").resolve())
    assert mnist.environment == {"DATA_DIR": "/data", "WORKERS": "4"}
    assert mnist.time_limit == 600
    assert programs["quick"].command == ("python", "-c", "print(1)")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("programs: [a, b]", "expected a mapping"),
        ("programs:\n  x: {command: run, time_limit: -1}", "time_limit"),
        ("programs:\n  x: {command: run, shell: true}", "shell"),
        ("programs: {x: {", "not valid YAML"),
    ],
)
def test_a_bad_programs_file_says_where_and_why(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "programs.yaml"
    path.write_text(content)
    with pytest.raises(ProgramError, match=message):
        load_programs_file(path)


def test_a_name_defined_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "programs.yaml"
    path.write_text("programs:\n  mnist: python a.py\n")
    with pytest.raises(ProgramError, match="defined twice"):
        collect_programs(["mnist=python b.py"], [path])
    with pytest.raises(ProgramError, match="defined twice"):
        collect_programs(["a=python a.py", "a=python b.py"])
    assert set(collect_programs(["b=python b.py"], [path])) == {"mnist", "b"}


def test_the_workers_device_reaches_the_child() -> None:
    assert device_environment("cuda:3") == {"CUDA_VISIBLE_DEVICES": "3"}
    assert device_environment("cpu") == {"CUDA_VISIBLE_DEVICES": ""}
    assert device_environment("cuda") == {}
