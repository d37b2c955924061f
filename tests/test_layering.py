"""The sans-I/O layer stays sans-I/O: consrv/protocol/ imports no I/O, logging or clock."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROTOCOL_DIR = Path(__file__).resolve().parent.parent / "consrv" / "protocol"
FORBIDDEN = frozenset(
    {"trio", "asyncio", "socket", "logging", "time", "datetime", "trio_asyncio", "asyncssh"}
)


def forbidden_imports(source: str) -> list[str]:
    """Top-level names of forbidden modules that ``source`` imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [n for n in names if n.split(".")[0] in FORBIDDEN]
    return found


def protocol_modules() -> list[Path]:
    return sorted(PROTOCOL_DIR.glob("*.py"))


def test_protocol_package_has_the_modules() -> None:
    names = {p.name for p in protocol_modules()}
    assert {"__init__.py", "telnet.py", "procserv.py"} <= names


@pytest.mark.parametrize("path", protocol_modules(), ids=lambda p: p.name)
def test_protocol_module_imports_no_io(path: Path) -> None:
    assert forbidden_imports(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize(
    "source",
    [
        "import trio",
        "import os, socket",
        "import asyncio.streams",
        "from logging import getLogger",
        "from time import monotonic",
        "def f():\n    import datetime",
    ],
)
def test_checker_catches(source: str) -> None:
    assert forbidden_imports(source) != []


def test_checker_allows_lookalikes() -> None:
    assert forbidden_imports("import timeit, sockets_util\nfrom . import socket") == []
