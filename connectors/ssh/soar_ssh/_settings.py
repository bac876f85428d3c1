"""The ssh connector's settings (`[connectors.ssh]`): where it may connect, how it trusts host
keys, and the allow-list of named commands with their typed, validated parameters. Everything
alert data can reach is checked here, before any connection is made."""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

DEFAULT_PATTERN = r"^[A-Za-z0-9._:/@=+-]{1,256}$"
HOST_SYNTAX = re.compile(r"[A-Za-z0-9_.:\[\]%-]{1,253}")
NAME = r"^[a-z][a-z0-9_]*$"
# Control characters never reach a command line, whatever a parameter's own pattern allows.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


class SettingsError(ValueError):
    """The `[connectors.ssh]` table is wrong; the message lists every problem."""


class InputRefused(ValueError):
    """A host, command or argument the settings do not allow."""


class Param(BaseModel):
    """One typed parameter of a command: how an argument value must look."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["string", "integer"] = "string"
    pattern: str = DEFAULT_PATTERN
    choices: list[str] | None = None
    allow_dash_prefix: bool = False
    default: str | int | None = None

    @model_validator(mode="after")
    def _compiles(self) -> Param:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            raise ValueError(f"pattern does not compile: {exc}") from exc
        return self

    def render(self, name: str, value: JsonValue) -> str:
        """The argument as it goes on the command line.

        Raises:
            InputRefused: the value does not fit the parameter.
        """
        if self.type == "integer":
            if isinstance(value, bool) or not isinstance(value, int | str):
                raise InputRefused(f"argument {name!r} must be an integer")
            text = str(value)
            if not re.fullmatch(r"-?[0-9]{1,18}", text):
                raise InputRefused(f"argument {name!r} must be an integer")
            return text
        if not isinstance(value, str):
            raise InputRefused(f"argument {name!r} must be a string")
        if _CONTROL.search(value) or "\n" in value:
            raise InputRefused(f"argument {name!r} holds a control character or a newline")
        if value.startswith("-") and not self.allow_dash_prefix:
            raise InputRefused(f"argument {name!r} may not start with '-'")
        if self.choices is not None and value not in self.choices:
            raise InputRefused(f"argument {name!r} is not one of {self.choices}")
        if not re.fullmatch(self.pattern, value):
            raise InputRefused(f"argument {name!r} does not match {self.pattern!r}")
        return value


class Command(BaseModel):
    """A named command: its argv template (`{name}` marks a parameter, `{{` a brace), its
    parameters, the exit statuses that count as success, and what undoes it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    argv: list[str] = Field(min_length=1)
    params: dict[Annotated[str, Field(pattern=NAME)], Param] = Field(default_factory=dict)
    ok_exit_codes: list[int] = Field(default_factory=lambda: [0])
    idempotent: bool = False
    undo: str | None = None
    timeout_seconds: float = Field(default=300.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: object) -> object:
        """`backup = ["/usr/local/bin/backup", "{target}"]` is `{argv = [...]}`."""
        return {"argv": data} if isinstance(data, list) else data

    @model_validator(mode="after")
    def _placeholders(self) -> Command:
        used = self.placeholders()
        if self.argv[0].strip() == "" or "{" in self.argv[0].replace("{{", ""):
            raise ValueError("the program (argv[0]) must be fixed")
        missing = used - set(self.params)
        # A placeholder without a declared parameter gets the default, conservative one.
        params = {**{name: Param() for name in missing}, **self.params}
        object.__setattr__(self, "params", params)
        unused = set(self.params) - used
        if unused:
            raise ValueError(f"parameters not used in argv: {sorted(unused)}")
        return self

    def placeholders(self) -> set[str]:
        names: set[str] = set()
        for part in self.argv:
            try:
                fields = list(string.Formatter().parse(part))
            except ValueError as exc:
                raise ValueError(f"argv element {part!r}: {exc}") from exc
            for _, field, spec, conversion in fields:
                if field is None:
                    continue
                if not re.fullmatch(NAME, field) or spec or conversion:
                    raise ValueError(f"argv element {part!r}: {{{field}}} is not a plain name")
                names.add(field)
        return names

    def render(self, args: Mapping[str, JsonValue]) -> list[str]:
        """The argv with every parameter validated and put in place.

        Raises:
            InputRefused: an unknown, missing or invalid argument.
        """
        unknown = set(args) - set(self.params)
        if unknown:
            raise InputRefused(f"unknown arguments: {sorted(unknown)}")
        values: dict[str, str] = {}
        for name, param in self.params.items():
            value = args.get(name, param.default)
            if value is None:
                raise InputRefused(f"argument {name!r} is required")
            values[name] = param.render(name, value)
        return [part.format(**values) for part in self.argv]


class SshSettings(BaseModel):
    """`[connectors.ssh]`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    username: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._][A-Za-z0-9._-]{0,63}$")
    port: int = Field(default=22, ge=1, le=65535)
    connect_timeout_seconds: float = Field(default=10.0, gt=0)
    known_hosts: str | list[str]
    hosts: list[str] = Field(min_length=1)
    commands: dict[Annotated[str, Field(pattern=NAME)], Command] = Field(min_length=1)
    max_output_bytes: int = Field(default=65536, ge=0, le=16 * 1024 * 1024)

    @model_validator(mode="after")
    def _undo_names_a_command(self) -> SshSettings:
        for name, command in self.commands.items():
            if command.undo is not None and command.undo not in self.commands:
                raise ValueError(f"command {name!r}: undo {command.undo!r} is not a command")
        return self

    def known_hosts_text(self) -> str | None:
        """Inline known_hosts lines, or None when `known_hosts` is a file path. A path has no
        whitespace; a known_hosts line always has (host, key type, key)."""
        if isinstance(self.known_hosts, list):
            return "\n".join(self.known_hosts) + "\n"
        if any(c.isspace() for c in self.known_hosts.strip()):
            return self.known_hosts.strip() + "\n"
        return None

    def check_host(self, host: str) -> None:
        """Raises InputRefused unless `host` is a plain host name or address matching one of the
        `hosts` patterns (shell-style: `*`, `?`, `[...]`; case-insensitive)."""
        if not HOST_SYNTAX.fullmatch(host) or host.startswith("-"):
            raise InputRefused(f"host {host[:80]!r} is not a host name or address")
        lowered = host.lower()
        if not any(fnmatchcase(lowered, pattern.lower()) for pattern in self.hosts):
            raise InputRefused(f"host {host!r} is not in the allow-list")

    def command(self, name: str) -> Command:
        try:
            return self.commands[name]
        except KeyError:
            raise InputRefused(f"command {name[:80]!r} is not in the allow-list") from None


def parse_settings(raw: Mapping[str, JsonValue]) -> SshSettings:
    """Raises SettingsError, listing every problem."""
    try:
        return SshSettings.model_validate(dict(raw))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(table)'}: {e['msg']}" for e in exc.errors()
        )
        raise SettingsError(f"[connectors.ssh] is wrong: {problems}") from None
