"""The reliability suite's bench: consrv as a process in front of real procServ instances.

Each test builds what it needs with the `site` fixture: procServ instances running
small real children (``cat``, a shell that records its input, a flood, a crash loop),
then ``consrv serve`` with a config naming them. Users: alice and bob are read-write,
olga is read-only, stranger's key is unknown to consrv.

Policy: loopback and UNIX sockets in tmp_path only, port 0, every wait bounded;
every process and mount made here is undone here (consrv first, then procServ).
"""

from __future__ import annotations

import re
import resource
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from consrv.demo import ProcServ, banner_read
from tests.harness import Consrv, UserKey, make_key, write_config
from tests.witness import Witness

USERS = ("alice", "bob", "olga", "stranger")
KNOWN = ("alice", "bob", "olga")  # stranger's key is not in the config
# Sessions, logins and flood viewers need file descriptors (consrv inherits this limit).
NOFILE = 8192


def raise_nofile(wanted: int = NOFILE) -> None:
    """Raise this process's (and so its children's) open-file limit to ``wanted`` if allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def wait_accepting(path: Path, timeout: float = 10) -> None:
    """Until procServ at ``path`` accepts a client and has sent its banner."""
    deadline = time.monotonic() + timeout
    while not banner_read(path):
        assert time.monotonic() < deadline, f"procServ at {path} does not accept"
        time.sleep(0.05)


def bug(message: str) -> pytest.RaisesGroup[AssertionError]:
    """What an xfail test must fail with: our own assertion (pytest-trio wraps it in a group)."""
    return pytest.RaisesGroup(
        pytest.RaisesExc(AssertionError, match=re.escape(message)), flatten_subgroups=True
    )


class Site:
    """procServ instances and one consrv, started on demand, all stopped at teardown."""

    def __init__(self, root: Path, stack: ExitStack) -> None:
        self.root, self._stack = root, stack
        self.keys: dict[str, UserKey] = {name: make_key(root, name) for name in USERS}
        self.procservs: dict[str, ProcServ] = {}
        self._consrv: Consrv | None = None
        self.logs = root / "logs"

    def key(self, user: str) -> Path:
        return self.keys[user].private

    @property
    def consrv(self) -> Consrv:
        assert self._consrv is not None, "start consrv first"
        return self._consrv

    @property
    def port(self) -> int:
        return self.consrv.port

    @property
    def pid(self) -> int:
        assert self.consrv.process is not None
        return self.consrv.process.pid

    def procserv(
        self, name: str, command: list[str], *, holdoff: int = 1, child: bool = True
    ) -> ProcServ:
        """A procServ running ``command``; stopped at teardown.

        Returns once its socket accepts and (``child``) its child runs: until then
        procServ drops what is typed. A child that exits at once may never be seen
        running: pass ``child=False``.
        """
        server = ProcServ(name, self.root, command, holdoff=holdoff)
        self._stack.callback(server.stop)
        server.start()
        if child:
            server.wait_ready()
        else:
            wait_accepting(server.socket)
        self.procservs[name] = server
        return server

    def config(
        self,
        consoles: Mapping[str, Mapping[str, Any]],
        *,
        defaults: Mapping[str, Any] | None = None,
        **top: Any,
    ) -> Path:
        """consrv.yaml: alice and bob rw, everyone ro, logs in ``logs``; ``top`` adds or
        replaces top-level sections (``metrics``, ``ioc``, ``log_dir=None``, ...)."""
        data: dict[str, Any] = {
            "ssh": {"listen": ["127.0.0.1:0"], "host_key": str(self.root / "host_key")},
            "log_dir": str(self.logs),
            "users": {name: {"keys": [self.keys[name].public]} for name in KNOWN},
            "defaults": {"rw": ["alice", "bob"], "ro": ["*"], **(defaults or {})},
            "consoles": {name: dict(settings) for name, settings in consoles.items()},
        }
        data.update(top)
        return write_config(self.root / "consrv.yaml", data)

    def start(
        self,
        consoles: Mapping[str, Mapping[str, Any]],
        *,
        env: Mapping[str, str] | None = None,
        defaults: Mapping[str, Any] | None = None,
        **top: Any,
    ) -> Consrv:
        """Write the config and start ``consrv serve``; it is stopped at teardown."""
        config = self.config(consoles, defaults=defaults, **top)
        self._consrv = Consrv(config, self.root, env)
        self._stack.callback(self._stop_consrv)
        return self._consrv.start()

    def witness(self, path: Path) -> Witness:
        """A direct client of the procServ at ``path``: what the IOC got and said; closed at
        teardown."""
        witness = Witness(path)
        self._stack.callback(witness.close)
        return witness

    def socket_of(self, name: str) -> dict[str, str]:
        """A console entry for procServ ``name``."""
        return {"socket": str(self.procservs[name].socket)}

    def mount_tmpfs(self, path: Path, size: str) -> Path:
        """A small tmpfs at ``path`` (root only), unmounted after consrv has stopped."""
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       check=True, timeout=10)  # fmt: skip
        self._stack.callback(_unmount, path)
        return path

    def _stop_consrv(self) -> None:
        if self._consrv is not None and self._consrv.process is not None:
            self._consrv.stop()


def _unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], check=False, timeout=10).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], check=True, timeout=10)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    raise_nofile()
    with ExitStack() as stack:
        yield Site(tmp_path, stack)
