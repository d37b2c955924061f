"""conserver under test: Debian's conserver with ``type uds`` consoles, in the foreground.

Owns: conserver.cf (every console ``type uds`` on its procServ socket, logged
to a file as consrv's are, ``rw *``, loopback trusted so no password is asked,
initdelay 0), conserver.passwd, the process (master bound to 127.0.0.1 on a
free port; its group children pick their own ports) and the ``console`` client
command lines. Client connections are TLS-encrypted (the Debian build's default,
anonymous, no certificate), as SSH sessions are.

Must not know: what is measured.
"""

from __future__ import annotations

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
    wait_tcp,
)

USER = "bench"

CONFIG_HEAD = """config * {{
  defaultaccess rejected;
  initdelay 0;
  autocomplete no;
}}
default * {{
  master {host};
  type uds;
  rw *;
  logfile {logs}/&.log;
  timestamp "";
}}
access * {{
  trusted {host};
}}
"""


class Conserver(ServerProcess):
    """``conserver -C CF -P PASSWD -p PORT -M 127.0.0.1`` (foreground)."""

    label = "conserver"
    viewer_ready = Ready(rb"\[spy", "stdout")
    holds_connections = True
    connect_at_once = 1  # concurrent attaches hang, or a spy gets "[attached]"

    def __init__(self, workdir: Path, reaper: Reaper, *, encrypted: bool = True) -> None:
        super().__init__(workdir, reaper, "conserver.log")
        self.encrypted = encrypted

    def _write_files(self, consoles: Mapping[str, Path]) -> tuple[Path, Path]:
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        lines = [CONFIG_HEAD.format(host=HOST, logs=logs)]
        lines += [f'console {name} {{ uds "{path}"; }}\n' for name, path in consoles.items()]
        config = self.workdir / "conserver.cf"
        config.write_text("".join(lines))
        passwd = self.workdir / "conserver.passwd"
        passwd.write_text("*any*:\n")  # empty password field: no password check
        return config, passwd

    def start(self, consoles: Mapping[str, Path]) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config, passwd = self._write_files(consoles)
        self.port = free_port()
        argv = [program("conserver"), "-C", str(config), "-P", str(passwd),
                "-p", str(self.port), "-M", HOST, *self._plain()]  # fmt: skip
        with self.log.open("wb") as out:
            self._proc = self.reaper.popen(argv, stdout=out.fileno(), stderr=out.fileno())
        # It listens only once every console is set up: ~48 s for 1,000 here.
        wait_tcp(self.port, self._proc, self.log, 30.0 + 0.2 * len(consoles))

    def _client(self, *args: str) -> list[str]:
        return [program("console"), "-n", *self._plain(), "-M", HOST, "-p", str(self.port),
                "-l", USER, *args]  # fmt: skip

    def _plain(self) -> list[str]:
        """``-E``: no TLS (server: also accept plain clients; client: do not encrypt)."""
        return [] if self.encrypted else ["-E"]

    def interactive_argv(self, console: str) -> list[str]:
        return self._client(console)

    def viewer_argv(self, console: str) -> list[str]:
        return self._client("-s", console)

    def login_argv(self) -> list[str]:
        return self._client("-u")

    def version(self) -> str:
        return command_output([program("conserver"), "-V"]).splitlines()[0].split(": ", 1)[-1]
