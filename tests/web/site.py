"""An in-process web site for route tests: a real Registry over scripted procServ peers,
the real Starlette app, httpx's ASGI transport, and a hand-written ASGI WebSocket driver.

Everything runs in the test's trio loop (no server thread), so tests can drive the
consoles and the pages side by side.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import trio

from consrv.config import Config, parse_config
from consrv.host import Host
from consrv.logins import LoginTokens
from consrv.registry import Registry
from consrv.web.app import Web
from consrv.web.server import build_app, make_web
from tests.fakes import Peer, UnixServer, unix_server, wait_for

BANNER = b'@@@ Child "T" PID: 77\r\n\xff\xfb\x01\xff\xfd\x22'
ORIGIN = "https://consrv.test"


def site_config(root: Path, **web: Any) -> dict[str, Any]:
    return {
        "log_dir": str(root / "logs"),
        "users": {"alice": {}, "bob": {}, "olga": {}},
        "defaults": {"rw": ["alice", "bob"], "ro": ["*"]},
        "consoles": {
            "ioc-a": {"socket": str(root / "ioc-a.sock")},
            "secret": {"socket": str(root / "secret.sock"), "ro": [], "rw": ["bob"]},
        },
        "web": {"listen": "127.0.0.1:0", **web},
    }


@dataclass
class Site:
    root: Path
    registry: Registry
    web: Web
    app: Any
    peers: dict[str, Peer]
    servers: dict[str, UnixServer]

    def client(self, peer: str = "127.0.0.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(peer, 40000))
        return httpx.AsyncClient(transport=transport, base_url=ORIGIN)

    async def signed_in(self, user: str, peer: str = "127.0.0.1") -> httpx.AsyncClient:
        client = self.client(peer)
        token = self.web.logins.mint(user)
        response = await client.get(f"/login/{token}")
        assert response.status_code == 303
        return client

    def reload(self, data: dict[str, Any]) -> Config:
        config = parse_config(data, self.root)
        self.registry.reload(config)
        return config


@asynccontextmanager
async def web_site(root: Path, **web: Any) -> AsyncIterator[Site]:
    (root / "logs").mkdir(exist_ok=True)
    config = parse_config(site_config(root, **web), root)
    registry = Registry(config)
    assert config.web is not None
    logins = LoginTokens(ttl=config.web.login_ttl)
    state = make_web(Host(registry, logins=logins), logins, config.web)
    async with AsyncExitStack() as stack:
        servers = {
            name: await stack.enter_async_context(unix_server(console.socket))
            for name, console in config.consoles.items()
            if console.socket is not None
        }
        nursery = await stack.enter_async_context(trio.open_nursery())
        await nursery.start(registry.run)
        peers = {name: await server.next_peer() for name, server in servers.items()}
        for peer in peers.values():
            await peer.send(BANNER)
        await wait_for(lambda: all(c.child_pid == 77 for c in registry.consoles.values()))
        yield Site(root, registry, state, build_app(state), peers, servers)
        nursery.cancel_scope.cancel()


class WebSocketDriver:
    """The server side of an ASGI WebSocket as a browser would drive it, by hand."""

    def __init__(
        self, app: Any, path: str, headers: dict[str, str], stalled: trio.Event | None = None
    ) -> None:
        """`stalled`: until it is set, the first data frame is not taken (a browser that
        stops reading)."""
        self.app, self.stalled = app, stalled
        self.scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "wss",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": ("127.0.0.1", 40001),
            "server": ("consrv.test", 443),
            "subprotocols": [],
        }
        self.to_app, self._app_in = trio.open_memory_channel[dict[str, Any]](10)
        self.sent: list[dict[str, Any]] = []
        self.done = trio.Event()
        self.gone = False  # then sending fails, as to a browser whose connection broke
        self.raised: BaseException | None = None

    async def run(self) -> None:
        await self.to_app.send({"type": "websocket.connect"})

        async def send(message: dict[str, Any]) -> None:
            if self.gone:
                raise OSError("connection reset by the browser")
            self.sent.append(message)
            if message["type"] == "websocket.send" and self.stalled is not None:
                await self.stalled.wait()

        try:
            await self.app(self.scope, self._app_in.receive, send)
        except Exception as exc:  # noqa: BLE001 (kept for the test to look at)
            self.raised = exc
        finally:
            self.done.set()

    def data(self) -> bytes:
        return b"".join(m.get("bytes") or b"" for m in self.sent if m["type"] == "websocket.send")

    def close_code(self) -> int | None:
        closes = [m for m in self.sent if m["type"] == "websocket.close"]
        return closes[0].get("code", 1000) if closes else None

    def accepted(self) -> bool:
        return any(m["type"] == "websocket.accept" for m in self.sent)
