"""Dependencies point inward, by test: consrv/protocol/ imports no I/O, logging or clock;
the core imports no front (ssh/, web/, fleet/), no edge and no asyncio; no front
imports another."""

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


# ---------------------------------------------------------------- every layer

CONSRV_DIR = PROTOCOL_DIR.parent
# Fronts: how people and peers reach consrv. Each stands on the core; none on another.
FRONTS = ("ssh", "web", "fleet", "pva")
# Edges: the process itself (they wire fronts to the core) and the demo.
EDGES = frozenset({"__main__", "cli", "daemon", "demo", "exposure", "softioc"})
# The core may parse SSH keys with asyncssh (config/, revocation.py: key formats,
# no connection), but it runs no asyncio and knows no front.
CORE_FORBIDDEN = frozenset({"asyncio", "trio_asyncio"})


def package_of(path: Path) -> tuple[str, ...]:
    """``("consrv", "ssh")`` for consrv/ssh/server.py."""
    return path.relative_to(CONSRV_DIR.parent).with_suffix("").parts[:-1]


def consrv_imports(source: str, package: tuple[str, ...]) -> set[str]:
    """``consrv.X`` (first component below consrv) for every consrv module ``source``
    (a module of ``package``) imports, relative imports resolved; and the top-level
    name of every other module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names = [module] if node.module else [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            found.add(".".join(parts[:2]) if parts[0] == "consrv" and len(parts) > 1 else parts[0])
    return found


def layer_of(path: Path) -> str:
    parts = path.relative_to(CONSRV_DIR).with_suffix("").parts
    if parts[0] in FRONTS:
        return parts[0]
    return "edge" if parts[0] in EDGES else "core"


def consrv_modules() -> list[Path]:
    return sorted(CONSRV_DIR.rglob("*.py"))


@pytest.mark.parametrize("path", consrv_modules(), ids=lambda p: str(p.relative_to(CONSRV_DIR)))
def test_dependencies_point_inward(path: Path) -> None:
    """The core imports no front, no edge and no asyncio; a front imports no other front."""
    layer = layer_of(path)
    imports = consrv_imports(path.read_text(encoding="utf-8"), package_of(path))
    fronts = {f"consrv.{front}" for front in FRONTS}
    edges = {f"consrv.{edge}" for edge in EDGES}
    if layer == "core":
        assert imports & (fronts | edges | CORE_FORBIDDEN) == set()
    elif layer in FRONTS:
        assert imports & (fronts - {f"consrv.{layer}"}) == set()
        assert imports & (edges - {"consrv.softioc"}) == set()


def test_layer_checker_sees_relative_and_aliased_imports() -> None:
    assert layer_of(CONSRV_DIR / "registry.py") == "core"
    assert layer_of(CONSRV_DIR / "ssh" / "server.py") == "ssh"
    assert layer_of(CONSRV_DIR / "daemon.py") == "edge"
    assert layer_of(CONSRV_DIR / "fleet" / "gateway.py") == "fleet"
    assert layer_of(CONSRV_DIR / "config" / "fleet.py") == "core"  # settings, not the front
    assert layer_of(CONSRV_DIR / "pva" / "front.py") == "pva"
    assert layer_of(CONSRV_DIR / "config" / "pva.py") == "core"
    assert package_of(CONSRV_DIR / "ssh" / "server.py") == ("consrv", "ssh")
    source = "from ..web import app\nfrom . import keys\nimport consrv.fleet.peers as p\n"
    assert {"consrv.web", "consrv.ssh", "consrv.fleet"} <= consrv_imports(source, ("consrv", "ssh"))
    assert consrv_imports("from .console import Console\n", ("consrv",)) == {"consrv.console"}


def test_every_front_that_exists_is_checked() -> None:
    """Every front is there, so the walk above covers it (and the SSH front reaches
    the fleet only through ``service.Commands``, wired in daemon.py)."""
    present = {p.relative_to(CONSRV_DIR).parts[0] for p in consrv_modules()} & set(FRONTS)
    assert present == set(FRONTS)
    assert any(layer_of(p) == "fleet" for p in consrv_modules())


# The web framework stays in the web front: the core serves SSH and the web alike.
WEB_ONLY = frozenset({"starlette", "hypercorn", "jinja2", "httpx", "selenium"})


def test_the_web_front_is_covered() -> None:
    web = [p for p in consrv_modules() if layer_of(p) == "web"]
    assert {p.name for p in web} >= {"__init__.py", "app.py", "server.py", "stream.py"}
    assert layer_of(CONSRV_DIR / "logins.py") == "core"
    assert layer_of(CONSRV_DIR / "logfiles.py") == "core"


@pytest.mark.parametrize(
    "path",
    [p for p in consrv_modules() if layer_of(p) != "web"],
    ids=lambda p: str(p.relative_to(CONSRV_DIR)),
)
def test_only_the_web_front_imports_the_web_stack(path: Path) -> None:
    imports = consrv_imports(path.read_text(encoding="utf-8"), package_of(path))
    assert imports & WEB_ONLY == set()


# p4p (the optional extra) stays in the pva front: hosts without it run as before.
@pytest.mark.parametrize(
    "path",
    [p for p in consrv_modules() if layer_of(p) != "pva"],
    ids=lambda p: str(p.relative_to(CONSRV_DIR)),
)
def test_only_the_pva_front_imports_p4p(path: Path) -> None:
    imports = consrv_imports(path.read_text(encoding="utf-8"), package_of(path))
    assert "p4p" not in imports


def test_the_daemon_imports_the_pva_front_only_when_configured() -> None:
    """consrv/daemon.py imports consrv.pva inside a function (or for type checking only)."""
    tree = ast.parse((CONSRV_DIR / "daemon.py").read_text(encoding="utf-8"))
    top = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert all(node.module != "consrv.pva" for node in top)
