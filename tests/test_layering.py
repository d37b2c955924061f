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
    the fleet only through ``contracts.Commands``, wired in daemon.py)."""
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


# ---------------------------------------------------------------- the host layer


def module_name(path: Path) -> str:
    """``consrv.host.policy`` for consrv/host/policy.py, ``consrv.host`` for its __init__."""
    parts = path.relative_to(CONSRV_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in consrv_modules()}


def consrv_module_imports(path: Path) -> set[str]:
    """Every consrv module ``path`` imports, by full name: at the top, inside functions and
    under ``if TYPE_CHECKING`` alike (``from consrv.x import y`` is ``consrv.x.y`` when y is a
    module, else ``consrv.x``)."""
    package = package_of(path)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names = [f"{module}.{a.name}" if f"{module}.{a.name}" in MODULES else module
                     for a in node.names]  # fmt: skip
        else:
            continue
        found |= {name for name in names if name in MODULES}
    return found


def cycles() -> list[list[str]]:
    """Strongly connected groups of more than one module in consrv's import graph."""
    graph = {name: sorted(consrv_module_imports(path) - {name}) for name, path in MODULES.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def test_no_import_cycles_anywhere() -> None:
    """No two consrv modules import each other, even only for types (a cycle kept alive
    by ``if TYPE_CHECKING`` is still two modules that cannot be read apart)."""
    assert cycles() == []


def test_contracts_stand_on_nothing() -> None:
    """consrv/contracts.py imports only the standard library: every layer may import it."""
    path = CONSRV_DIR / "contracts.py"
    source = path.read_text(encoding="utf-8")
    imports = consrv_imports(source, package_of(path))
    assert {name for name in imports if name.startswith("consrv")} == set()
    assert imports <= {"__future__", "collections", "dataclasses", "typing"}


# What web/ and fleet/ (and any later front but ssh/) may import of consrv: the contracts,
# the host layer, the command grammar (as data), and the pure helpers below the host
# (reports' shapes, roles, names, settings, log files). Never the command line itself
# (commands.shell), a session, the registry or the IOC manager: those are the host's.
FRONT_MAY_IMPORT = frozenset(
    {
        "consrv.contracts", "consrv.host", "consrv.commands.grammar", "consrv.protocol.feed",
        "consrv.views", "consrv.access", "consrv.names", "consrv.config", "consrv.menu",
        "consrv.logins", "consrv.logfiles", "consrv.consolelog", "consrv.audit",
        "consrv.recordings",  # web/replay.py: a time range of a recording (like logfiles)
        "consrv.ratelimit",  # fleet/link.py: a token bucket per peer (pure)
        "consrv.protocol.ansi",  # web/logs.py: log lines without terminal escapes (pure)
        "consrv.protocol.procserv",  # pva/front.py: procServ's child events (pure)
        # web/stream.py: a read-only Viewer on a console; pva/front.py: its Observer hook
        "consrv.console",
    }
)  # fmt: skip


def allowed_for_front(name: str, front: str) -> bool:
    return (
        name.startswith(f"consrv.{front}")
        or any(name == m or name.startswith(m + ".") for m in FRONT_MAY_IMPORT)
        or name == "consrv"
    )


@pytest.mark.parametrize(
    "path",
    [p for p in consrv_modules() if layer_of(p) in FRONTS and layer_of(p) != "ssh"],
    ids=lambda p: str(p.relative_to(CONSRV_DIR)),
)
def test_fronts_reach_the_core_through_contracts_and_host(path: Path) -> None:
    front = layer_of(path)
    refused = {m for m in consrv_module_imports(path) if not allowed_for_front(m, front)}
    assert refused == set()


def test_the_gateway_reads_the_grammar_not_its_own_lists() -> None:
    """One grammar: fleet/ keeps no list of verbs of its own."""
    source = (CONSRV_DIR / "fleet" / "gateway.py").read_text(encoding="utf-8")
    assert "consrv.commands.grammar" in consrv_module_imports(CONSRV_DIR / "fleet" / "gateway.py")
    for verb in ('"restart"', '"version"', '"watch"', '"log"'):
        assert verb not in source


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
