"""The pydantic field types of the config file: each a value parser wrapped so its
ValueError becomes a problem at the right key path."""

import re
import typing
from pathlib import Path
from typing import Annotated, Any, NoReturn

import pydantic
from pydantic import Field, PlainValidator, StrictInt
from pydantic_core import PydanticCustomError

from consrv.config.model import CIPHERS
from consrv.config.values import (
    Endpoint,
    ca_line,
    check_acl_entry,
    check_discover_pattern,
    check_escape,
    check_pattern_name,
    check_template,
    compile_pattern,
    parse_command,
    parse_duration,
    parse_endpoint,
    parse_public_key,
    parse_size,
)
from consrv.names import (
    validate_console_name,
    validate_group_name,
    validate_user_name,
)


def fail(message: str) -> NoReturn:
    raise PydanticCustomError("consrv", "{message}", {"message": message})


def checked(check: typing.Callable[[Any], object]) -> PlainValidator:
    """A pydantic validator from a plain `check` that raises ValueError (or InvalidName)."""

    def validate(value: object) -> object:
        try:
            return check(value)
        except ValueError as exc:
            fail(str(exc))

    return PlainValidator(validate)


def _path(value: object) -> Path:
    if not isinstance(value, str) or not value or "\0" in value:
        raise ValueError("expected a path")
    return Path(value)


def _socket_path(value: object) -> Path:
    """A console's UNIX socket: an absolute path to a socket file.

    procServ's endpoint syntax (``unix:USER:GROUP:MODE:/path``, ``unix:@name``) is
    not a path: saying so here keeps a pasted ``--port`` value from becoming a
    relative path under the config directory that no procServ will ever create.
    """
    path = _path(value)
    text = str(value)
    if text.startswith("unix:"):
        raise ValueError(f"give the socket's path, not procServ's endpoint {text!r}")
    if text.startswith("@"):
        raise ValueError("abstract UNIX sockets are not supported: give procServ a socket path")
    if not path.is_absolute():
        raise ValueError(
            f"must be an absolute path (e.g. /run/procServ/NAME/control), not {text!r}"
        )
    return path


PathValue = Annotated[Path, checked(_path)]
SocketPath = Annotated[Path, checked(_socket_path)]
Size = Annotated[int, checked(parse_size)]
ListenEndpoint = Annotated[Endpoint, checked(lambda v: parse_endpoint(v, allow_port_zero=True))]
TcpEndpoint = Annotated[Endpoint, checked(parse_endpoint)]


def _metrics_endpoint(value: object) -> Endpoint:
    """``metrics.listen``: HOST:PORT, or a bare port, which listens on loopback only."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and value.isdigit():
        value = f"127.0.0.1:{value}"
    return parse_endpoint(value, allow_port_zero=True)


MetricsEndpoint = Annotated[Endpoint, checked(_metrics_endpoint)]
PublicKey = Annotated[bytes, checked(parse_public_key)]
ConsoleName = Annotated[str, checked(validate_console_name)]
UserName = Annotated[str, checked(validate_user_name)]
Command = Annotated[tuple[str, ...], checked(parse_command)]  # ssh.authorized_keys_command
GroupName = Annotated[str, checked(validate_group_name)]
AclEntry = Annotated[str, checked(check_acl_entry)]
DiscoverPattern = Annotated[str, checked(check_discover_pattern)]
CaKey = Annotated[str, checked(lambda v: ca_line(v))]
Duration = Annotated[float, checked(parse_duration)]
UnitTemplate = Annotated[str, checked(lambda v: check_template(v, suffix=".service"))]
SocketTemplate = Annotated[str, checked(lambda v: check_template(v, absolute=True))]
PatternName = Annotated[str, checked(check_pattern_name)]
Regex = Annotated[re.Pattern[bytes], checked(compile_pattern)]
Escape = Annotated[bytes, checked(check_escape)]
Lines = Annotated[StrictInt, Field(ge=0, le=10000)]
Positive = Annotated[StrictInt, Field(ge=1)]


def _cipher(value: object) -> str:
    if value not in CIPHERS:
        hint = " (CBC is never offered)" if isinstance(value, str) and "cbc" in value else ""
        raise ValueError(f"unknown cipher {value!r}{hint}; choose from {', '.join(CIPHERS)}")
    return str(value)


def check_ciphers(value: tuple[str, ...]) -> tuple[str, ...]:
    if not value:
        fail("must not be empty")
    if len(set(value)) != len(value):
        fail("names a cipher twice")
    return value


Cipher = Annotated[str, checked(_cipher)]


def not_empty(value: tuple[Endpoint, ...]) -> tuple[Endpoint, ...]:
    if not value:
        fail("must not be empty")
    return value


NoneIsEmpty = pydantic.BeforeValidator(lambda v: {} if v is None else v)
