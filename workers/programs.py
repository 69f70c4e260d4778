"""The programs a worker was configured to run: a user's training script per name.

A program is defined on the worker only (``adamtune worker --program NAME='cmd'`` or
``--programs FILE``); a job names one and never carries a command, so a REST caller can run
only what the worker's operator wrote down. A programs file is YAML::

    programs:
      mnist:
        command: python train.py --data /data     # a string (split like a shell) or a list
        working_directory: /srv/mnist             # default: the worker's own
        environment: {DATA_DIR: /data}            # added to the worker's environment
        time_limit: 600                           # seconds per trial (and for the sweep)
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tuner.spec import WORKLOAD_NAME

DEFAULT_GRACE_S = 10.0  # SIGTERM, then this long, then SIGKILL to the whole process group


class ProgramError(ValueError):
    """A program definition (option or file) that cannot be used; the message says why."""


class Program(BaseModel):
    """One program: the command a worker runs for each phase of a job that names it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=WORKLOAD_NAME.pattern)
    command: tuple[str, ...] = Field(min_length=1)
    working_directory: str | None = None
    environment: dict[str, str] = Field(default_factory=dict)
    time_limit: float | None = Field(default=None, gt=0, description="seconds per trial")
    grace: float = Field(default=DEFAULT_GRACE_S, ge=0, description="seconds after SIGTERM")

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return shlex.split(value) if isinstance(value, str) else value

    @field_validator("environment", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): str(v) for k, v in value.items()}
        return value

    def describe(self) -> dict[str, Any]:
        """What a worker advertises: the name and limits, never the command."""
        return {"name": self.name, "time_limit": self.time_limit}


def _error(where: str, exc: ValidationError) -> ProgramError:
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'program'}: {e['msg']}" for e in exc.errors()
    )
    return ProgramError(f"{where}: {problems}")


def parse_program_option(text: str) -> Program:
    """``NAME=command args...`` (the ``--program`` option) as a Program."""
    name, sep, command = text.partition("=")
    if not sep or not name.strip() or not command.strip():
        raise ProgramError(
            f"--program {text!r}: expected NAME='command ...', "
            "e.g. --program mnist='python train.py'"
        )
    try:
        return Program.model_validate({"name": name.strip(), "command": command})
    except ValidationError as exc:
        raise _error(f"--program {text!r}", exc) from exc


def load_programs_file(path: str | Path) -> dict[str, Program]:
    """The programs of a YAML file (see the module docstring for its shape)."""
    where = f"programs file {path}"
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ProgramError(f"{where}: cannot read it ({exc.strerror})") from exc
    except yaml.YAMLError as exc:
        raise ProgramError(f"{where}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("programs"), dict):
        raise ProgramError(f"{where}: expected a mapping 'programs: {{NAME: {{command: ...}}}}'")
    programs = {}
    base = Path(path).resolve().parent
    for name, body in data["programs"].items():
        if isinstance(body, str | list):
            body = {"command": body}
        if not isinstance(body, dict):
            raise ProgramError(f"{where}: program {name!r} must be a mapping with a 'command'")
        try:
            program = Program(name=str(name), **body)
        except (ValidationError, TypeError) as exc:
            if isinstance(exc, ValidationError):
                raise _error(f"{where}, program {name!r}", exc) from exc
            raise ProgramError(f"{where}, program {name!r}: {exc}") from exc
        if program.working_directory is not None:  # relative to the file, not the worker's cwd
            cwd = str((base / program.working_directory).resolve())
            program = program.model_copy(update={"working_directory": cwd})
        programs[program.name] = program
    return programs


def collect_programs(
    options: Iterable[str] = (), files: Iterable[str | Path] = ()
) -> dict[str, Program]:
    """Every program of the ``--program`` options and ``--programs`` files; a name twice is
    an error (which one was meant cannot be guessed)."""
    found: dict[str, Program] = {}
    sources = [load_programs_file(f) for f in files]
    sources += [{p.name: p} for p in map(parse_program_option, options)]
    for programs in sources:
        for name, program in programs.items():
            if name in found:
                raise ProgramError(f"program {name!r} is defined twice; keep one definition")
            found[name] = program
    return found
