"""OpenSSH sshd + socat under test: a throwaway sshd on loopback whose ForceCommand
bridges each session to a procServ socket.

Owns: the sshd config (own host key, own AuthorizedKeysFile, UsePAM no,
StrictModes no, root login by key only), the bridge script (the ssh command
line names the console; only ``[A-Za-z0-9][A-Za-z0-9_.-]*`` names of the
configured consoles are accepted, never passed to a shell), and the client
command lines. With a pty the bridge runs ``socat STDIO,raw,echo=0
UNIX-CONNECT:SOCKET``; without one ``socat STDIO UNIX-CONNECT:SOCKET`` (socat's
``raw`` fails on a non-terminal).

Must not know: what is measured.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from bench.procs import Reaper
from bench.servers.base import (
    HOST,
    Ready,
    ServerProcess,
    command_output,
    free_port,
    program,
    ssh_argv,
    wait_tcp,
)
from consrv.demo import ensure_client_key

LOGIN = "root"  # sshd runs as root; the bench's key is the only one it accepts

BRIDGE = """#!/bin/sh
# ForceCommand of the bench's sshd: the ssh command line names a console.
name=$SSH_ORIGINAL_COMMAND
case $name in
  version) echo "sshd+socat bridge"; exit 0 ;;
  [A-Za-z0-9]*) ;;
  *) echo "usage: ssh HOST CONSOLE" >&2; exit 2 ;;
esac
case $name in
  *[!A-Za-z0-9_.-]*) echo "invalid console name" >&2; exit 2 ;;
esac
sock=@LINKS@/$name
[ -S "$sock" ] || { echo "unknown console: $name" >&2; exit 1; }
if [ -t 0 ]; then
  exec @SOCAT@ STDIO,raw,echo=0 "UNIX-CONNECT:$sock"
fi
exec @SOCAT@ STDIO "UNIX-CONNECT:$sock"
"""

CONFIG = """ListenAddress {host}:{port}
HostKey {host_key}
AuthorizedKeysFile {authorized_keys}
ForceCommand {bridge}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
UseDNS no
PrintMotd no
PrintLastLog no
AllowTcpForwarding no
AllowAgentForwarding no
X11Forwarding no
MaxStartups 200
MaxSessions 200
LogLevel ERROR
"""


class SshdSocat(ServerProcess):
    """``sshd -D -e -f CONFIG`` with a socat bridge per session."""

    label = "sshd+socat"
    # procServ's banner comes first on every new connection to its socket.
    viewer_ready = Ready(rb"@@@ Welcome to procServ", "stdout")
    holds_connections = False
    connect_at_once = 8

    def __init__(self, workdir: Path, reaper: Reaper, key: Path, public_key: str) -> None:
        super().__init__(workdir, reaper, "sshd.log")
        self.key, self.public_key = key, public_key

    def _link_consoles(self, consoles: Mapping[str, Path]) -> Path:
        links = self.workdir / "consoles"
        links.mkdir(parents=True, exist_ok=True)
        for old in links.iterdir():
            old.unlink()
        for name, path in consoles.items():
            (links / name).symlink_to(path)
        return links

    def _write_files(self, consoles: Mapping[str, Path]) -> Path:
        links = self._link_consoles(consoles)
        bridge = self.workdir / "bridge"
        script = BRIDGE.replace("@LINKS@", str(links)).replace("@SOCAT@", program("socat"))
        bridge.write_text(script)
        bridge.chmod(0o755)
        authorized = self.workdir / "authorized_keys"
        authorized.write_text(self.public_key + "\n")
        ensure_client_key(self.workdir / "host_key", "bench-sshd")
        self.port = free_port()
        config = self.workdir / "sshd_config"
        config.write_text(
            CONFIG.format(host=HOST, port=self.port, host_key=self.workdir / "host_key",
                          authorized_keys=authorized, bridge=bridge)
        )  # fmt: skip
        return config

    def start(self, consoles: Mapping[str, Path]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self._write_files(consoles)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege-separation dir
        with self.log.open("wb") as out:
            self._proc = self.reaper.popen(
                [program("sshd"), "-D", "-e", "-f", str(config)],
                stdout=out.fileno(),
                stderr=out.fileno(),
            )
        wait_tcp(self.port, self._proc, self.log, 30.0)

    def interactive_argv(self, console: str) -> list[str]:
        return ssh_argv(self.port, self.key, LOGIN, console, tty=True)

    def viewer_argv(self, console: str) -> list[str]:
        return ssh_argv(self.port, self.key, LOGIN, console, tty=False)

    def login_argv(self) -> list[str]:
        return ssh_argv(self.port, self.key, LOGIN, "version", tty=False)

    def version(self) -> str:
        sshd = command_output([program("sshd"), "-V"]).splitlines()[0]
        socat = command_output([program("socat"), "-V"]).splitlines()
        return f"{sshd}; {next((s for s in socat if 'version' in s), '?').strip()}"
