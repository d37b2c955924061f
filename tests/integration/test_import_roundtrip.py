"""Imported configs serve real consoles: `consrv import` → `consrv serve` → ssh → the IOC.

Each test walks the steps of docs/migrating.md with real parts: procServ running an
EPICS soft IOC, `consrv import` and `consrv check-config` as programs, `consrv serve`
(tests/harness.py), asyncssh as the user's client, and for the ioc@ path a private
systemd user manager (tests/systemd_user.py) running the real ioc@.service template
from the environment file the import wrote.

Policy: loopback and UNIX sockets under tmp_path only; every wait is bounded;
every process started here is stopped here.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_asyncio
import yaml

from consrv.demo import ProcServ, socket_path
from consrv.migrate.envfile import format_env_file, quote_exec_words
from tests.harness import Consrv, UserKey, make_key
from tests.sshclients import scripted_ssh
from tests.systemd_user import REPO, SystemdUser
from tests.waits import deadline

pytestmark = pytest.mark.integration

CONSRV = str(REPO / ".venv" / "bin" / "consrv")
IOC = "import-ioc"


def consrv_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CONSRV, *args], capture_output=True, text=True, check=False, timeout=30, env=env
    )


def import_to(path: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Step: `consrv import ... --output FILE`; the config it wrote, as data."""
    result = consrv_cli("import", *args, "--output", str(path), env=env)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def add_keys_and_listen(path: Path, data: dict[str, Any], keys: list[UserKey]) -> None:
    """Step: give the imported users their keys, let consrv listen; check-config must pass."""
    for key in keys:
        data["users"].setdefault(key.name, {})["keys"] = [key.public]
    data["ssh"] = {"listen": ["127.0.0.1:0"], "host_key": str(path.parent / "host_key")}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    checked = consrv_cli("check-config", "--config", str(path))
    assert checked.returncode == 0, checked.stderr


async def see_the_ioc(port: int, alice: UserKey, olga: UserKey, name: str) -> None:
    """Step: alice types `dbl` into the IOC; olga, an observer, sees its answer.

    `dbl` is typed again every 2 s until answered: one typed while consrv was still
    connecting to a just-started procServ would be dropped.
    """
    answer = f"{name}:counter".encode()
    async with (
        trio_asyncio.open_loop(),
        scripted_ssh(port, olga.private, "observer", name) as watcher,
        scripted_ssh(port, alice.private, "console", name) as writer,
    ):
        await writer.expect(rf"attached to {name}: (you write|read-write)".encode(), stderr=True)
        await watcher.expect(rf"attached to {name}: read-only".encode(), stderr=True)
        what = f"{answer!r} in answer to dbl, typed every 2 s"
        with deadline(20, what, lambda: writer.stdout):
            while answer not in writer.stdout:
                writer.send(b"dbl\r")
                with trio.move_on_after(2):
                    while answer not in writer.stdout:
                        await trio.sleep(0.05)
        await watcher.expect(answer, timeout=20)


async def serve_and_see(config: Path, root: Path, keys: list[UserKey]) -> None:
    """Step: `consrv serve` on the imported config; alice types, olga watches; stop."""
    alice, olga = keys
    server = Consrv(config, root).start()
    try:
        await see_the_ioc(server.port, alice, olga, IOC)
    finally:
        server.stop()


async def wait_for_text(path: Path, text: str, timeout: float = 30, count: int = 1) -> None:
    """Wait until `text` appears `count` times in the file at `path`."""
    file = trio.Path(path)

    def tail() -> str:
        return path.read_text(errors="replace") if path.exists() else "(no file)"

    with deadline(timeout, f"{text!r} {count} time(s) in {path}", tail):
        while (
            not await file.exists() or (await file.read_text(errors="replace")).count(text) < count
        ):
            await trio.sleep(0.05)


@pytest.fixture
def keys(tmp_path: Path) -> list[UserKey]:
    return [make_key(tmp_path, "alice"), make_key(tmp_path, "olga")]


@pytest.fixture
def procserv(tmp_path: Path) -> Iterator[ProcServ]:
    with ProcServ(IOC, tmp_path) as server:
        server.wait_ioc()
        yield server


# ---------------------------------------------------------------- from conserver


async def test_conserver_cf_round_trip(
    tmp_path: Path, procserv: ProcServ, keys: list[UserKey]
) -> None:
    alice, olga = keys
    conserver_cf = tmp_path / "conserver.cf"
    conserver_cf.write_text(
        "group operators { users alice; }\n"
        "default * {\n"
        "\tmaster localhost;\n"
        f"\tlogfile {tmp_path}/logs/&.log;\n"
        "\ttimestamp 1l;\n"
        "\trw operators; ro *;\n"
        "}\n"
        f"console {IOC} {{ type uds; uds {procserv.socket}; }}\n"
    )
    config = tmp_path / "consrv.yaml"
    data = import_to(config, "conserver", str(conserver_cf))
    assert data["consoles"] == {IOC: {"socket": str(procserv.socket)}}
    assert data["defaults"] == {"rw": ["@operators"], "ro": ["*"]}
    assert data["log_dir"] == str(tmp_path / "logs")
    add_keys_and_listen(config, data, keys)
    server = Consrv(config, tmp_path).start()
    try:
        await see_the_ioc(server.port, alice, olga, IOC)
        async with (
            trio_asyncio.open_loop(),  # console -u, the consrv way
            scripted_ssh(server.port, olga.private, "observer", "list") as listing,
        ):
            assert await listing.wait_closed() == 0
            assert IOC.encode() in listing.stdout
    finally:
        server.stop()
    log = (tmp_path / "logs" / f"{IOC}.log").read_text(errors="replace")
    assert f"{IOC}:counter" in log  # logfile → log_dir, timestamp → per-line stamps
    assert any(line[:4].isdigit() and "T" in line[:20] for line in log.splitlines())


# ---------------------------------------------------------------- from epics-ioc-runner, units kept


async def test_runner_file_with_keep_units_round_trip(
    tmp_path: Path, procserv: ProcServ, keys: list[UserKey]
) -> None:
    conf_dir = tmp_path / "procServ.d"
    conf_dir.mkdir()
    (conf_dir / f"{IOC}.conf").write_text(
        f'IOC_USER="ioc-srv"\nIOC_CHDIR="{tmp_path}"\nIOC_PORT="unix:{procserv.socket}"\n'
        'IOC_CMD="./st.cmd"\n'
    )
    config = tmp_path / "consrv.yaml"
    data = import_to(config, "procserv", "--keep-units", str(conf_dir))
    assert data["consoles"] == {IOC: {"socket": str(procserv.socket)}}
    assert "ioc" not in data
    data["defaults"]["rw"] = ["alice"]  # step: say who may type
    add_keys_and_listen(config, data, keys)
    await serve_and_see(config, tmp_path, keys)


async def test_procservutils_unix_endpoint_with_owner_and_mode_round_trip(
    tmp_path: Path, keys: list[UserKey]
) -> None:
    """procServ's ``unix:USER:GROUP:MODE:PATH``: consrv connects to PATH."""
    user, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    socket = socket_path(tmp_path, IOC)
    endpoint = f"unix:{user}:{group}:0660:{socket}"
    with ProcServ(IOC, tmp_path, endpoint=endpoint) as procserv:
        procserv.wait_ioc()
        assert stat.S_IMODE(socket.stat().st_mode) == 0o660  # procServ took the mode
        conf = tmp_path / "procServ.conf"
        conf.write_text(f"[{IOC}]\ncommand = ./st.cmd\nport = {endpoint}\n")
        config = tmp_path / "consrv.yaml"
        data = import_to(config, "procserv", "--keep-units", str(conf))
        assert data["consoles"] == {IOC: {"socket": str(socket)}}
        data["defaults"]["rw"] = ["alice"]
        add_keys_and_listen(config, data, keys)
        await serve_and_see(config, tmp_path, keys)


async def test_abstract_unix_endpoint_is_refused_with_a_warning(tmp_path: Path) -> None:
    conf = tmp_path / "procServ.conf"
    conf.write_text(f"[{IOC}]\ncommand = ./st.cmd\nport = unix:@{IOC}\n")
    result = consrv_cli("import", "procserv", "--keep-units", str(conf))
    assert result.returncode == 1, result.stderr
    assert f"{conf}:3: {IOC}: 'unix:@{IOC}' is an abstract UNIX socket" in result.stderr
    assert result.stderr.endswith("consrv import: nothing to import\n")


# ---------------------------------------------------------------- from procServUtils, to ioc@ units


@pytest.fixture(scope="module")
def manager() -> Iterator[SystemdUser]:
    with SystemdUser.running() as systemd:
        yield systemd


async def test_procservutils_ini_runs_under_ioc_units(
    tmp_path: Path, manager: SystemdUser, keys: list[UserKey], monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, olga = keys
    name = "ps-ioc"
    script = (  # one argv word with spaces and quotes: it must reach sh as one word
        'echo "argv ok: [$0]"; echo "IOCNAME=$IOCNAME GREETING=$GREETING"; '
        f"exec {sys.executable} -m consrv.softioc --prefix {name}:"
    )
    (tmp_path / "procServ.conf").write_text(
        "[DEFAULT]\nuser = softioc\n\n"
        f"[{name}]\n"
        f"command = /bin/sh -c '{script.replace('%', '%%')}' 'word with  spaces'\n"
        f"chdir = {REPO}\n"
        'environment = "GREETING=hello  world"\n'
    )
    config = tmp_path / "consrv.yaml"
    env = {**os.environ, **manager.env}
    data = import_to(
        config, "procserv", "--scope", "user", "--env-dir", str(manager.ioc_env_dir),
        str(tmp_path / "procServ.conf"), env=env,
    )  # fmt: skip
    assert data["consoles"] == {name: {"ioc": True}}
    assert data["ioc"] == {"scope": "user"}
    data["defaults"]["rw"] = data["defaults"]["operate"] = ["alice"]
    add_keys_and_listen(config, data, keys)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(manager.runtime_dir))  # consrv's user manager
    server = Consrv(config, tmp_path).start()
    booted = "iocRun: All initialization complete"
    try:
        manager.systemctl("start", f"ioc@{name}.service")
        await wait_for_text(manager.ioc_log_path(name), booted)
        await see_the_ioc(server.port, alice, olga, name)
        restart = f"restart {name}"  # manage-procs restart NAME, the consrv way
        async with (
            trio_asyncio.open_loop(),
            scripted_ssh(server.port, alice.private, "console", restart) as restarting,
        ):
            assert await restarting.wait_closed(timeout=30) == 0, bytes(restarting.stderr)
        await wait_for_text(manager.ioc_log_path(name), booted, count=2)
    finally:
        server.stop()
        manager.stop_iocs()
    ioc_log = manager.ioc_log_path(name).read_text(errors="replace")
    assert "argv ok: [word with  spaces]" in ioc_log
    assert f"IOCNAME={name} GREETING=hello  world" in ioc_log


def test_env_file_values_survive_real_systemd(manager: SystemdUser, tmp_path: Path) -> None:
    """What format_env_file writes is what systemd 252 reads; $IOC_CMD splits to the argv."""
    values = {
        "PLAIN": "/opt/epics/iocs",
        "SPACES": "  lead and trail  ",
        "QUOTES": 'it\'s "quoted" `tick` $HOME ${X} \\back\\',
        "LINES": "one\ntwo\n",
        "TAB": "a\tb",
        "UNICODE": "µs — ünïcode",
        "EMPTY": "",
    }
    argv = ["/bin/echo", "a b", "", "it's", '"q"', "x\\y", "$HOME", "new\nline", "%i"]
    env_file = tmp_path / "test.env"
    env_file.write_text(format_env_file([*values.items(), ("IOC_CMD", quote_exec_words(argv))]))
    shown = subprocess.run(
        ["systemd-run", "--user", "--wait", "--pipe", "--quiet",
         f"--property=EnvironmentFile={env_file}", sys.executable, "-c",
         "import json, os, sys; print(json.dumps([dict(os.environ), sys.argv[1:]]))",
         "$IOC_CMD"],
        env=manager.env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    environ, words = json.loads(shown.stdout)
    assert {key: environ.get(key) for key in values} == values
    assert words == argv
