"""Value parsers: sizes, durations, HOST:PORT, public keys, names, templates, globs.

Plain functions that raise ValueError with a message for the user; no pydantic. Also
the one value type they make that every stage uses, `Endpoint` (HOST:PORT).
"""

import dataclasses
import ipaddress
import re
import shlex
from pathlib import PurePosixPath

import asyncssh

from consrv.access import ANY_USER, GROUP_PREFIX
from consrv.names import (
    InvalidName,
    safe_repr,
    validate_group_name,
    validate_user_name,
)
from consrv.protocol.escape import parse_prefix


@dataclasses.dataclass(frozen=True)
class Endpoint:
    """A TCP address. `host` is a name, an IPv4 address or a bare IPv6 address."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_SIZE_RE = re.compile(r"\s*([0-9]+)\s*([KMG]?)\s*", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
_SIZE_HELP = "expected a size: bytes as an integer, or a number with K, M or G (256K, 10M, 1G)"


def parse_size(value: object) -> int:
    """Bytes from an int or a string like "64K", "10M", "1G" (binary). Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(_SIZE_HELP)
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE_RE.fullmatch(value)):
        size = int(match[1]) * _SIZE_UNITS[match[2].upper()]
    else:
        raise ValueError(_SIZE_HELP)
    if size <= 0:
        raise ValueError("must be a positive size")
    return size


_DURATION_RE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|m|h)?\s*")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_DURATION_HELP = "expected a duration: seconds as a number, or 500ms, 30s, 5m, 2h"


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like "500ms", "30s", "5m", "2h". Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(_DURATION_HELP)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION_RE.fullmatch(value)):
        seconds = float(match[1]) * _DURATION_UNITS[match[2]]
    else:
        raise ValueError(_DURATION_HELP)
    if not 0 < seconds < 10 * 365 * 86400:
        raise ValueError("must be a positive duration")
    return seconds


def check_template(value: object, *, suffix: str = "", absolute: bool = False) -> str:
    if not isinstance(value, str) or value.count("{name}") != 1:
        raise ValueError("expected a template with {name} exactly once")
    try:
        example = value.format(name="x")
    except (KeyError, IndexError, ValueError):
        raise ValueError("only {name} may appear in braces") from None
    if suffix and not example.endswith(suffix):
        raise ValueError(f"must end in {suffix}")
    if absolute and not example.startswith("/"):
        raise ValueError("must be an absolute path")
    if not absolute and any(c in example for c in "/ \t\n"):
        raise ValueError("a unit name has no '/' or spaces")
    return value


_PATTERN_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def compile_pattern(value: object) -> re.Pattern[bytes]:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a regular expression")
    try:
        return re.compile(value.encode())
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None


def check_pattern_name(value: object) -> str:
    if not isinstance(value, str) or not _PATTERN_NAME_RE.fullmatch(value):
        raise ValueError("a pattern name is 1-64 characters from A-Z a-z 0-9 _, not a digit first")
    return value


# procServ's default keys (PROCSERV.md): an escape prefix must not start with one, or
# a lone first key, passed on after a pause, would be that key.
_PROCSERV_KEYS = {
    0x18: "procServ's kill key",
    0x14: "procServ's auto-restart toggle key",
    0x12: "procServ's restart key",
    0x11: "procServ's quit key",
}


def check_escape(value: object) -> bytes:
    if not isinstance(value, str):
        raise ValueError('expected an escape like "^Ec"')
    prefix = parse_prefix(value)
    if prefix[0] in _PROCSERV_KEYS:
        key = "^" + chr(prefix[0] + 64)
        raise ValueError(
            f"escape prefix {value!r} starts with {key}, {_PROCSERV_KEYS[prefix[0]]}:"
            f" a lone {key} would reach procServ; start it with another control key"
            " (the default is ^Ec)"
        )
    return prefix


_BRACKETED_RE = re.compile(r"\[([^\]]+)\]:([0-9]{1,5})")
_HOST_PORT_RE = re.compile(r"([A-Za-z0-9_.-]+):([0-9]{1,5})")
_ENDPOINT_HELP = "expected HOST:PORT (127.0.0.1:2222, host.example:2222, [::1]:2222)"


def parse_endpoint(value: object, *, allow_port_zero: bool = False) -> Endpoint:
    """An Endpoint from "HOST:PORT" or "[IPv6]:PORT". Raises ValueError."""
    if not isinstance(value, str):
        raise ValueError(_ENDPOINT_HELP)
    if match := _BRACKETED_RE.fullmatch(value):
        try:
            host = str(ipaddress.IPv6Address(match[1]))
        except ValueError:
            raise ValueError(f"{safe_repr(match[1])} is not an IPv6 address") from None
    elif match := _HOST_PORT_RE.fullmatch(value):
        host = match[1]
    elif value.count(":") > 1:
        raise ValueError(f"{_ENDPOINT_HELP}; put an IPv6 address in brackets")
    else:
        raise ValueError(_ENDPOINT_HELP)
    port, lowest = int(match[2]), 0 if allow_port_zero else 1
    if not lowest <= port <= 65535:
        raise ValueError(f"port must be {lowest}-65535")
    return Endpoint(host, port)


_CERT_SUFFIX = "-cert-v01@openssh.com"
_KEY_HELP = "not an OpenSSH public key"


def parse_public_key(line: object) -> bytes:
    """The `public_data` of one OpenSSH public-key line ("TYPE BASE64 [COMMENT]").

    Refuses, with a message saying why: private keys (asyncssh would happily derive
    the public half), several lines, certificates and authorized_keys options.
    Raises ValueError.
    """
    if not isinstance(line, str):
        raise ValueError(f"{_KEY_HELP}: expected a string")
    text = line.strip()
    if "PRIVATE KEY" in text:
        raise ValueError("this is a PRIVATE key: give the public key (the .pub file)")
    if "\n" in text or "\r" in text:
        raise ValueError(f"{_KEY_HELP}: expected one line, TYPE BASE64 [COMMENT]")
    fields = text.split()
    if fields and fields[0].endswith(_CERT_SUFFIX):
        raise ValueError("certificates are not supported here: give the user's public key")
    key = _import_key(text)
    if key is None or key.algorithm.decode("ascii") != fields[0]:
        if _has_options(fields):
            raise ValueError("authorized_keys options are not supported: remove them")
        raise ValueError(_KEY_HELP)
    return bytes(key.public_data)


_FROM_RE = re.compile(r'\s*from="([^"]*)"\s+(.*)', re.DOTALL)
_FROM_PATTERN_RE = re.compile(r"!?[A-Za-z0-9.:*?/_-]{1,255}")


def ca_line(value: object) -> str:
    """A CA public key, checked like a user key, kept as "TYPE BASE64"; or, limited to
    some client addresses with sshd's ``from=`` option, as ``from="PATTERNS" TYPE BASE64``
    (what fleet gateways' CAs need: docs/fleet.md)."""
    if isinstance(value, str) and (match := _FROM_RE.fullmatch(value)):
        patterns = match[1].split(",")
        bad = [p for p in patterns if not _FROM_PATTERN_RE.fullmatch(p)]
        if bad:
            raise ValueError(f"from=: {safe_repr(bad[0])} is not an address or host pattern")
        return f'from="{",".join(patterns)}" {ca_line(match[2])}'
    parse_public_key(value)
    assert isinstance(value, str)
    return " ".join(value.split()[:2])


def split_ca_line(line: str) -> tuple[str | None, str]:
    """``(PATTERNS, "TYPE BASE64")`` of a line `ca_line` kept; PATTERNS is None without from=."""
    if match := _FROM_RE.fullmatch(line):
        return match[1], match[2]
    return None, line


def _import_key(text: str) -> asyncssh.SSHKey | None:
    try:
        return asyncssh.import_public_key(text)
    except (asyncssh.KeyImportError, ValueError):
        return None


def _has_options(fields: list[str]) -> bool:
    """True if the key proper starts after some leading fields (authorized_keys options)."""
    for start in range(1, min(len(fields) - 1, 16)):
        if fields[start + 1].startswith("AAAA") and _import_key(" ".join(fields[start:])):
            return True
    return False


def check_discover_pattern(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a glob pattern such as /run/procServ/*/control")
    pattern = PurePosixPath(value)
    example = "e.g. /run/procServ/*/control"
    if not pattern.is_absolute():
        raise ValueError(f"must be an absolute path ({example})")
    if ".." in pattern.parts:
        raise ValueError("must not contain '..'")
    parts = pattern.parts[1:]
    if len(parts) < 2 or parts[-2] != "*":
        raise ValueError(
            f"must end in /*/FILE: the directory '*' matches names the console ({example})"
        )
    if any(_has_glob(part) for part in (*parts[:-2], parts[-1])):
        raise ValueError(
            f"only the console directory may be a wildcard, and it must be '*' ({example})"
        )
    return str(pattern)


def _has_glob(part: str) -> bool:
    return any(char in part for char in "*?[")


def check_acl_entry(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError("expected a user name, '@group' or '*'")
    if value == ANY_USER:
        return value
    try:
        if value.startswith(GROUP_PREFIX):
            validate_group_name(value[len(GROUP_PREFIX) :])
        else:
            validate_user_name(value)
    except InvalidName:
        raise ValueError(f"{safe_repr(value)} is not a user name, '@group' or '*'") from None
    return value


# sshd's AuthorizedKeysCommand tokens (ssh.authorized_keys_command).
TOKENS = frozenset("uUftkh%")
_TOKEN_RE = re.compile(r"%(.?)")


def parse_command(value: object) -> tuple[str, ...]:
    """An absolute program and its arguments, split as a shell would (but run without one)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a command line such as '/usr/bin/sss_ssh_authorizedkeys %u'")
    try:
        argv = tuple(shlex.split(value))
    except ValueError as exc:
        raise ValueError(f"cannot split the command line: {exc}") from None
    if not argv[0].startswith("/"):
        raise ValueError("the program must be an absolute path (as sshd requires)")
    if "%" in argv[0]:
        raise ValueError("the program path may not contain %-tokens")
    for arg in argv:
        for match in _TOKEN_RE.finditer(arg):
            if match[1] not in TOKENS:
                raise ValueError(
                    f"unknown token %{match[1]} in {arg!r}: known are %u %U %f %t %k %h %%"
                )
    return argv
