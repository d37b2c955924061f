"""``python -m bench.identity``: logins with keys from YAML, a command and NSS; cache memory.

Rows (each: N sequential OpenSSH logins running ``version``, consrv's CPU with its
children, i.e. the keys commands it ran, as ``bench.logins`` measures it):

- ``yaml``: ``console@``, the key in ``users:``;
- ``command, cached``: ``alice@``, the key from ``ssh.authorized_keys_command`` (a
  /bin/sh script that prints one file), answers cached (ttl 5 min): the command ran once;
- ``command, every login``: the same with ``ttl``/``negative_ttl`` 1 ms: a run per
  authentication request (OpenSSH makes two per login: the query and the signature);
- ``command + NSS, every login``: also ``identity.nss`` (libnss-wrapper's files:
  getpwnam and getgrouplist in a worker thread), ttl 1 ms.

Then the memory of 10,000 cached users, in this process: a ``Directory`` whose two
caches hold 10,000 answers each, made by the same code a login runs (an
authorized_keys line parsed by asyncssh, an NSS entry with 3 groups), measured with
tracemalloc (Python's allocations) and as RSS growth.

    python -m bench.identity [--logins 200] [--users 10000]

Owns: these configs and the memory measurement. Must not know: the other servers.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import trio
import yaml

from bench.logins import logins
from bench.procs import kill_trees
from bench.servers.base import ssh_argv, wait_log
from consrv.config import IdentityConfig
from consrv.identity import Directory, Person
from consrv.identity.authkeys import parse_authorized_keys
from consrv.identity.cache import _Entry
from consrv.identity.nss import Passwd
from consrv.ssh.keys import write_new_key

NSS_WRAPPER = "libnss_wrapper.so"
V = TypeVar("V")


class IdentityConsrv:
    """consrv with one user, logging in as ``login`` (the ``bench.logins`` Server protocol)."""

    def __init__(self, label: str, root: Path, settings: dict[str, object]) -> None:
        self.label, self.root, self.settings = label, root, settings
        self.pid = 0
        self.port = 0

    def start(self, key: Path, public: str, login: str, nss: bool) -> None:
        self.key, self.login = key, login
        config = self.root / f"{self.label.replace(' ', '-').replace(',', '')}.yaml"
        data = {"consoles": {"bench": {"tcp": "127.0.0.1:9"}}, **self.settings}
        config.write_text(yaml.safe_dump(data))
        env = dict(os.environ)
        if nss:
            env.update(LD_PRELOAD=NSS_WRAPPER, NSS_WRAPPER_PASSWD=str(self.root / "passwd"),
                       NSS_WRAPPER_GROUP=str(self.root / "group"))  # fmt: skip
        log = config.with_suffix(".log")
        with log.open("wb") as out:
            proc = subprocess.Popen(  # noqa: S603 - an argv list, never a shell
                [sys.executable, "-m", "consrv", "serve", "--config", str(config)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                start_new_session=True,
            )  # fmt: skip
        self.proc = proc
        self.pid = proc.pid
        self.port = int(wait_log(log, rb"ssh listening on [\d.]+:(\d+)", proc, 20).group(1))

    def login_argv(self) -> list[str]:
        return ssh_argv(self.port, self.key, self.login, "version", tty=False)

    def stop(self) -> None:
        kill_trees([self.proc.pid], 5.0)
        self.proc.wait()


def _setup(root: Path) -> tuple[Path, str]:
    key = root / "id_alice"
    public = write_new_key(key, "alice@bench").export_public_key().decode().strip()
    (root / "keys").mkdir()
    (root / "keys" / "alice").write_text(public + "\n")
    script = root / "keys.sh"
    script.write_text(f'#!/bin/sh\nexec cat "{root}/keys/$1"\n')
    script.chmod(0o755)
    (root / "passwd").write_text("alice:x:2001:2001::/home/alice:/bin/sh\n")
    (root / "group").write_text("alice:x:2001:\nops:x:3000:alice\nlab:x:3001:alice\n")
    return key, public


Row = tuple[str, str, bool, bool, dict[str, object]]  # label, login, NSS, command, settings


def _rows(public: str) -> list[Row]:
    every = {"ttl": 0.001, "negative_ttl": 0.001}
    return [
        ("yaml", "console", False, False, {"users": {"alice": {"keys": [public]}}}),
        ("command, cached", "alice", False, True, {"identity": {}}),
        ("command, every login", "alice", False, True, {"identity": every}),
        ("command + NSS, every login", "alice", True, True, {"identity": {"nss": True, **every}}),
    ]


async def _measure_logins(root: Path, count: int) -> None:
    key, public = _setup(root)
    print(f"| keys from | logins/s | server CPU ms/login (with the commands) |  ({count} logins)")
    print("|---|---|---|")
    for label, login, nss, command, settings in _rows(public):
        ssh: dict[str, object] = {"listen": ["127.0.0.1:0"], "host_key": str(root / "host_key")}
        if command:
            ssh["authorized_keys_command"] = f"{root}/keys.sh %u"
        server = IdentityConsrv(label, root, {**settings, "ssh": ssh})
        server.start(key, public, login, nss)
        try:
            result = await logins(server, count)  # type: ignore[arg-type]
        finally:
            server.stop()
        print(f"| {label} | {result.per_second:.1f} | {result.cpu_ms_per_login:.1f} |")


def _rss() -> int:
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize()


def measure_memory(users: int) -> None:
    """``users`` answers in each cache, as logins would leave them: RSS growth in one pass,
    Python's allocations (tracemalloc, which has its own overhead) in another."""
    import asyncssh  # after consrv, which quiets asyncssh's DSA import warning

    lines = [
        asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode()
        for _ in range(min(users, 200))
    ]  # keys differ per user in life; 200 distinct texts reused keep key generation short
    before = _rss()
    kept = _fill(users, lines)
    grown = _rss() - before
    tracemalloc.start()
    kept = _fill(users, lines)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del kept
    print(f"{users} cached users (keys + NSS): RSS grew {grown / 1e6:.1f} MB "
          f"({grown / users:.0f} B each); tracemalloc: {current / users:.0f} B each")  # fmt: skip


def _fill(users: int, lines: list[str]) -> Directory:
    directory = Directory(IdentityConfig(command=("/bin/true",), nss=True))
    groups = frozenset({"users", "ops", "lab"})
    for n in range(users):
        name = f"user{n:05d}"
        text = lines[n % len(lines)].replace("@", f"{n}@", 1)
        directory.keys.entries[("/usr/bin/keys", name)] = _entry(parse_authorized_keys(text))
        person = Person(Passwd(name, 10000 + n, 100, f"/home/{name}"), groups)
        directory.people.entries[name] = _entry(person)
    return directory


def _entry(value: V) -> _Entry[V]:
    """An answer as ``Cache.get`` stores it."""
    return _Entry(value, 0.0, True)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.identity")
    parser.add_argument("--logins", type=int, default=200, help="(default: %(default)s)")
    parser.add_argument("--users", type=int, default=10000, help="(default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse(argv)
    if shutil.which("ssh") is None:
        raise SystemExit("needs the OpenSSH client (make setup)")
    # The keys command's directory: only root may write it or above it (sshd's safe_path).
    root = Path(tempfile.mkdtemp(prefix="consrv-bench-identity-", dir="/run"))
    root.chmod(0o755)
    try:
        if args.logins:
            trio.run(_measure_logins, root, args.logins)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    measure_memory(args.users)


if __name__ == "__main__":
    main()
