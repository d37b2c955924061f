"""Consoles from config and from discovery globs (ESS layout: the directory names the console)."""

from __future__ import annotations

from pathlib import Path

import trio

from consrv.config import Config, parse_config
from consrv.registry import Registry, discover
from tests.fakes import unix_server, wait_for


def test_discover_names_consoles_by_directory_and_skips_bad_names(tmp_path: Path) -> None:
    for name in ("ioc-a", "ioc.b", "bad name", "-dash"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "control").touch()
    (tmp_path / "no-socket").mkdir()
    found = discover((str(tmp_path / "*" / "control"),))
    assert found == {
        "ioc-a": tmp_path / "ioc-a" / "control",
        "ioc.b": tmp_path / "ioc.b" / "control",
    }


async def test_a_new_socket_becomes_a_connected_console_within_a_second(tmp_path: Path) -> None:
    configured = tmp_path / "configured.sock"
    config = parse_config(
        {
            "ssh": {"host_key": str(tmp_path / "key")},
            "consoles": {"fixed": {"socket": str(configured)}},
            "discover": [str(tmp_path / "run" / "*" / "control")],
        },
        tmp_path,
    )
    registry = Registry(config)
    socket_dir = tmp_path / "run" / "new-ioc"
    socket_dir.mkdir(parents=True)
    async with trio.open_nursery() as nursery:
        await nursery.start(registry.run)
        assert set(registry.consoles) == {"fixed"}
        started = trio.current_time()
        async with unix_server(socket_dir / "control") as server:
            await server.next_peer(timeout=1.0)
            await wait_for(lambda: registry.consoles["new-ioc"].up, timeout=1.0)
        assert trio.current_time() - started < 1.0
        assert registry.settings["new-ioc"].socket == socket_dir / "control"
        nursery.cancel_scope.cancel()


async def test_reload_replaces_a_console_whose_upstream_changed(tmp_path: Path) -> None:
    def config(socket: Path, write: str) -> Config:
        consoles = {"ioc": {"socket": str(socket), "write": write}}
        return parse_config(
            {"ssh": {"host_key": str(tmp_path / "key")}, "consoles": consoles}, tmp_path
        )

    first, second = tmp_path / "a.sock", tmp_path / "b.sock"
    registry = Registry(config(first, "exclusive"))
    async with trio.open_nursery() as nursery, unix_server(first), unix_server(second) as new:
        await nursery.start(registry.run)
        old = registry.consoles["ioc"]
        await wait_for(lambda: old.up)
        changes = registry.reload(config(first, "shared"))
        assert (changes.changed, registry.consoles["ioc"]) == (["ioc"], old)
        assert old.lock.shared
        changes = registry.reload(config(second, "shared"))
        assert changes.replaced == ["ioc"]
        await new.next_peer()
        await wait_for(lambda: registry.consoles["ioc"].up)
        await wait_for(lambda: not old.up)  # the old one's task was cancelled
        nursery.cancel_scope.cancel()


async def test_reload_turns_recording_on_and_off_without_replacing_the_console(
    tmp_path: Path,
) -> None:
    def config(record: bool) -> Config:
        return parse_config(
            {
                "ssh": {"host_key": str(tmp_path / "key")},
                "log_dir": str(tmp_path / "logs"),
                "log": {"record": record},
                "consoles": {"ioc": {"socket": str(tmp_path / "a.sock")}},
            },
            tmp_path,
        )

    registry = Registry(config(False))
    async with trio.open_nursery() as nursery, unix_server(tmp_path / "a.sock") as server:
        await nursery.start(registry.run)
        console = registry.consoles["ioc"]
        peer = await server.next_peer()
        await wait_for(lambda: console.up)
        assert console.recording is None
        assert registry.reload(config(True)).changed == []
        assert registry.consoles["ioc"] is console
        assert console.recording is not None
        await peer.send(b"recorded\r\n")
        cast = tmp_path / "logs" / "ioc.cast"
        await wait_for(lambda: cast.exists() and b"recorded" in cast.read_bytes())
        registry.reload(config(False))
        assert console.recording is None
        await peer.send(b"not recorded\r\n")
        await wait_for(lambda: b"not recorded" in (tmp_path / "logs" / "ioc.log").read_bytes())
        assert b"not recorded" not in cast.read_bytes()
        nursery.cancel_scope.cancel()
