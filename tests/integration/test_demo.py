"""`make demo` as a new user meets it: the README's tour, followed to the letter.

`python -m consrv.demo` runs in a fresh directory (as `make demo` does in a fresh
clone); the test waits for the lines it prints, then runs exactly those lines: the
read-write `ssh` line on a pty (typing `dbl`), the read-only one, and the `curl`
line for the metrics. Ctrl-C (SIGINT) must stop everything it started.

Policy: loopback only (two free ports); every wait bounded and named; the demo and
every process it started are stopped here.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest
import trio

from consrv.demo import pid_alive
from tests.sshclients import PtySSH
from tests.waits import deadline

pytestmark = pytest.mark.integration

# Cold start: three Python processes (consrv, two IOCs) loading their libraries.
START_TIMEOUT = 90


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Demo:
    """``python -m consrv.demo`` in ``cwd``, its stdout collected."""

    def __init__(self, cwd: Path, *args: str) -> None:
        self.cwd, self.args = cwd, args
        self.stdout = bytearray()
        self.process: trio.Process | None = None

    async def read_until(self, pattern: bytes, timeout: float) -> re.Match[bytes]:
        assert self.process is not None
        assert self.process.stdout is not None
        regex = re.compile(pattern)
        with deadline(timeout, f"{pattern!r} from the demo", lambda: self.stdout):
            while (match := regex.search(self.stdout)) is None:
                chunk = await self.process.stdout.receive_some(65536)
                if not chunk:
                    raise AssertionError(f"the demo ended before {pattern!r}: {self.stdout!r}")
                self.stdout += chunk
        return match

    def lines(self) -> list[str]:
        return [line.strip() for line in self.stdout.decode().splitlines()]


def absolute(line: str, cwd: Path) -> list[str]:
    """A printed command line as argv, run from ``cwd`` (its paths are relative to it)."""
    return shlex.split(line.replace("demo-run/", f"{cwd}/demo-run/"))


async def test_the_readme_tour_works_as_printed(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    demo = Demo(tmp_path)
    demo.process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "consrv.demo", "--iocs", "2", "--port", str(port),
         "--metrics-port", str(metrics_port)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        await demo.read_until(rb"Ctrl-C stops everything\.\n", START_TIMEOUT)
        lines = demo.lines()
        writer = lines[lines.index("Read-write (user demo):") + 1]
        watcher = lines[lines.index("Read-only (user watcher):") + 1]
        curl = lines[lines.index("Prometheus metrics:") + 1]
        assert writer.startswith("ssh -t")
        assert writer.endswith("console@127.0.0.1 demo-ioc1")
        assert watcher.endswith("observer@127.0.0.1 demo-ioc1")

        # The IOCs answered before the lines were printed: the first `dbl` works.
        alice = await PtySSH(absolute(writer, tmp_path)).start()
        olga = PtySSH(absolute(watcher, tmp_path))
        try:
            await alice.expect(rb"attached to demo-ioc1: you write")
            await olga.start()
            await olga.expect(rb"attached to demo-ioc1: read-only; demo writes")
            await alice.send(b"dbl\r")
            await alice.expect(rb"demo-ioc1:counter")
            await olga.expect(rb"demo-ioc1:counter")
            await olga.send(b"dbl\r")
            await olga.expect(rb"read-only: your input is not sent")
            await alice.send(b"\x05c.")
            await alice.expect(rb"detached from demo-ioc1")
            assert await alice.wait() == 0
        finally:
            await alice.aclose()
            await olga.aclose()

        # What the README's tour says of names and of restart in the demo.
        for command, said in (
            ("demo-ioc", "consrv: unknown console 'demo-ioc'; did you mean 'demo-ioc1'?\n"),
            ("nope", "consrv: unknown console 'nope'; consoles: demo-ioc1, demo-ioc2\n"),
            (
                "restart demo-ioc1",
                "consrv: demo-ioc1 is not an IOC unit (ioc: true in the config)\n",
            ),
        ):
            argv = absolute(writer.replace("ssh -t ", "ssh -T ", 1), tmp_path)
            argv[-1] = command
            result = await trio.run_process(
                argv, capture_stdout=True, capture_stderr=True, check=False
            )
            assert (result.returncode, result.stderr.decode()) == (1, said)

        web = lines[
            lines.index("In a browser, read-only (open the link it prints within a minute):") + 1
        ]
        assert web.endswith("observer@127.0.0.1 web")
        link = await trio.run_process(
            absolute(web, tmp_path), capture_stdout=True, capture_stderr=True, check=False
        )
        assert link.returncode == 0, link.stderr
        url = link.stdout.decode().strip()
        assert re.fullmatch(rb"http://127\.0\.0\.1:\d+/login/[\w-]{43}", url.encode()), url
        signed_in = await trio.to_thread.run_sync(_sign_in, url)
        assert signed_in == (303, "/")

        metrics = await trio.run_process(
            ["/bin/sh", "-c", curl], capture_stdout=True, capture_stderr=True, check=False
        )
        assert metrics.returncode == 0, metrics.stderr
        shown = metrics.stdout.decode()
        for name in ("demo-ioc1", "demo-ioc2"):
            assert f'consrv_console_up{{console="{name}"}} 1.0' in shown, shown
        assert len(shown.splitlines()) == 2, shown  # one a console, as the README says

        # The readiness probe typed nothing: no input from nobody in a log (nobody
        # typed into demo-ioc2; demo-ioc1's only input is the user's `dbl`).
        logs = tmp_path / "demo-run" / "logs"
        quiet = (logs / "demo-ioc2.log").read_text(errors="replace")
        assert "iocRun: All initialization complete" in quiet
        assert "dbgf" not in quiet, quiet[-2000:]
        assert "dbgf" not in (logs / "demo-ioc1.log").read_text(errors="replace")

        procservs = procserv_pids(tmp_path)
        assert len(procservs) == 2
        demo.process.send_signal(signal.SIGINT)  # Ctrl-C
        await demo.read_until(rb"\nstopped\n", 20)
        with deadline(20, "the demo to exit after Ctrl-C"):
            assert await demo.process.wait() == 0
        assert not any(pid_alive(pid) for pid in procservs), "a procServ outlived the demo"
    finally:
        if demo.process.returncode is None:
            demo.process.kill()
            await demo.process.wait()
        for pid in procserv_pids(tmp_path):  # after a failure: procServ kills its IOC
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        for pid in pids_running_in(tmp_path / "demo-run"):  # a consrv the killed demo left
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def pids_running_in(directory: Path) -> list[int]:
    """Processes whose command line names ``directory`` (the demo's consrv, its config)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if str(directory).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def procserv_pids(cwd: Path) -> list[int]:
    """The pids in the demo's procServ info files (``pid:N`` is their first line)."""
    pids = []
    for info in sorted((cwd / "demo-run" / "procServ").glob("*/info")):
        first = info.read_text().split("\n", 1)[0]
        if first.startswith("pid:"):
            pids.append(int(first[4:]))
    return pids


def _sign_in(url: str) -> tuple[int, str]:
    """GET the link without following the redirect: (status, Location)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        connection.request("GET", parts.path)
        response = connection.getresponse()
        return response.status, response.getheader("location") or ""
    finally:
        connection.close()
