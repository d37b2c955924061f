"""Fixtures with real parts: procServ running a real EPICS soft IOC, consrv as a process.

Policy: loopback and UNIX sockets in tmp_path only; every wait is bounded; every
process started here is stopped here (procServ, IOC, consrv, ssh clients).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from consrv.demo import ProcServ
from tests.harness import Consrv, UserKey, make_key, write_config
from tests.systemd_user import SystemdUser
from tests.witness import Witness

IOC = "e2e-ioc"


@dataclass
class World:
    """One IOC under procServ, consrv in front, three users' keys."""

    root: Path
    procserv: ProcServ
    consrv: Consrv
    alice: UserKey  # read-write
    bob: UserKey  # read-write
    olga: UserKey  # read-only everywhere
    stranger: UserKey  # a key consrv does not know

    @property
    def port(self) -> int:
        return self.consrv.port

    @property
    def log(self) -> Path:
        return self.root / "logs" / f"{IOC}.log"


def consrv_config(
    root: Path, keys: list[UserKey], consoles: dict[str, Path], **settings: object
) -> Path:
    """consrv's config for the tests; `settings` go into every console's entry."""
    return write_config(
        root / "consrv.yaml",
        {
            "ssh": {"listen": ["127.0.0.1:0"], "host_key": str(root / "host_key")},
            "log_dir": str(root / "logs"),
            "users": {k.name: {"keys": [k.public]} for k in keys},
            "defaults": {"rw": ["alice", "bob"], "ro": ["*"], "viewer_buffer": "64K"},
            "consoles": {
                name: {"socket": str(path), **settings} for name, path in consoles.items()
            },
        },
    )


@pytest.fixture
def world(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    """Mark a test ``@pytest.mark.console(key=value)`` to set console options."""
    marker = request.node.get_closest_marker("console")
    settings = marker.kwargs if marker is not None else {}
    alice, bob, olga = keys = [make_key(tmp_path, name) for name in ("alice", "bob", "olga")]
    stranger = make_key(tmp_path, "stranger")
    with ProcServ(IOC, tmp_path) as procserv:
        # Booted and answering before consrv starts, so no test can depend on
        # consrv having seen the boot, and no input is typed before the shell reads.
        procserv.wait_ioc()
        config = consrv_config(tmp_path, keys, {IOC: procserv.socket}, **settings)
        consrv = Consrv(config, tmp_path).start()
        try:
            yield World(tmp_path, procserv, consrv, alice, bob, olga, stranger)
        finally:
            consrv.stop()


@pytest.fixture
def witness(world: World) -> Iterator[Witness]:
    """A direct client of the world's procServ (connected before the test acts)."""
    with Witness(world.procserv.socket) as witness:
        yield witness


@pytest.fixture(scope="module")
def manager() -> Iterator[SystemdUser]:
    """A private systemd user manager with ioc@.service, one per test module.

    Per module, so each module starts from a manager with no units and no
    leftover procServ directories; everything under it is stopped at the end.
    """
    with SystemdUser.running() as systemd:
        yield systemd
