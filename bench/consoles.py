"""The procServ consoles the bench measures through, and a plain client on their sockets.

Owns: the children (an echoing ``cat``, a switchable ~1 MB/s flood, a 20 MB
burst on a trigger byte, an idle ``sleep infinity``), starting and stopping
procServ for them in ESS's layout (``<root>/procServ/<NAME>/control``), and
`DirectClient`, the bench's own client on a procServ socket: it sends triggers,
drains everything (procServ stalls on a client that does not read) and notes
when a marker goes by (the direct baseline).

Must not know: consrv, sshd or conserver.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

from bench.procs import Reaper
from consrv.demo import TELNET_OFFER, ProcServ, socket_path

ECHO, FLOOD, BURST = "echo", "flood", "burst"
ECHO_COMMAND = ["/bin/sh", "-c", "stty raw -echo; exec cat"]
IDLE_COMMAND = [shutil.which("sleep") or "/bin/sleep", "infinity"]  # procServ needs a path
CHILDREN = Path(__file__).with_name("children.py")
# Waits for one byte, then cats the file and a numbered end marker, forever.
BURST_SCRIPT = (
    'stty raw -echo; n=0; while head -c1 >/dev/null; do n=$((n+1)); cat "$1";'
    ' printf "BURST-END-%d\\r\\n" "$n"; done'
)
LINE = 100
CHILD_SETTLE = 0.5


def burst_marker(number: int) -> bytes:
    """The line the burst child prints after its ``number``-th burst."""
    return b"BURST-END-%d\r\n" % number


def write_burst_file(path: Path, size: int) -> int:
    """A text file of numbered 100-byte lines, about ``size`` bytes; its exact size."""
    pad = "y" * (LINE - 19)  # "burst", space, 10 digits, space, pad, CR LF
    with path.open("w", encoding="ascii") as out:
        for n in range(max(1, size // LINE)):
            out.write(f"burst {n:010d} {pad}\r\n")
    return path.stat().st_size


class ActiveConsoles:
    """The three consoles that do something: echo, flood and burst."""

    def __init__(self, root: Path, burst_file: Path, flood_rate: int) -> None:
        self.root = root
        commands = {
            ECHO: ECHO_COMMAND,
            FLOOD: [sys.executable, str(CHILDREN), "flood", str(flood_rate)],
            BURST: ["/bin/sh", "-c", BURST_SCRIPT, "burst", str(burst_file)],
        }
        self.servers = [ProcServ(name, root, cmd) for name, cmd in commands.items()]
        self.bursts = 0  # triggers sent so far: the burst child numbers its markers

    def sockets(self) -> dict[str, Path]:
        return {server.name: server.socket for server in self.servers}

    def pids(self) -> list[int]:
        return [pid for server in self.servers if (pid := server.pid) is not None]

    @contextmanager
    def running(self, reaper: Reaper) -> Iterator[ActiveConsoles]:
        try:
            for server in self.servers:
                server.start()
                if server.pid is not None:
                    reaper.add(server.pid)
            for server in self.servers:
                server.wait_ready()
            _wait_children(self.servers)
            yield self
        finally:
            for server in self.servers:
                server.stop()


def _wait_children(servers: list[ProcServ], timeout: float = 10.0) -> None:
    """Until every procServ runs its child (it starts it ~0.5 s after its socket; input
    sent before is lost), and a little longer for the child's ``stty``."""
    deadline = time.monotonic() + timeout
    while not all(server.child_pids() for server in servers):
        if time.monotonic() > deadline:
            raise RuntimeError("a procServ did not start its child")
        time.sleep(0.05)
    time.sleep(CHILD_SETTLE)


class IdleConsoles:
    """Many procServ instances whose child never prints (``sleep infinity``)."""

    def __init__(self, root: Path, count: int) -> None:
        self.root = root
        self.names = [f"idle-{n:04d}" for n in range(1, count + 1)]
        self._procs: list[subprocess.Popen[bytes]] = []

    def sockets(self, count: int) -> dict[str, Path]:
        """The first ``count`` consoles."""
        return {name: socket_path(self.root, name) for name in self.names[:count]}

    def start(self, reaper: Reaper) -> None:
        self._procs += [self.start_one(reaper, name) for name in self.names]

    def start_one(self, reaper: Reaper, name: str) -> subprocess.Popen[bytes]:
        """procServ for the console ``name`` (its socket in ESS's layout under the root)."""
        server = ProcServ(name, self.root, IDLE_COMMAND)
        server.directory.mkdir(parents=True, exist_ok=True)
        with server.output_file.open("ab") as out:
            return reaper.popen(server.argv(), stdout=out.fileno(), stderr=out.fileno(),
                                cwd=server.directory)  # fmt: skip

    def stop(self, reaper: Reaper) -> None:
        """Stop them all at once (SIGTERM: procServ kills its child), then reap."""
        reaper.stop([proc.pid for proc in self._procs], grace=10.0)
        for proc in self._procs:
            proc.wait()
        self._procs.clear()

    async def wait_ready(self) -> None:
        """Until every socket answers with procServ's banner."""
        limiter = trio.CapacityLimiter(50)
        async with trio.open_nursery() as nursery:
            for path in self.sockets(len(self.names)).values():
                nursery.start_soon(_wait_socket, path, limiter)


async def _wait_socket(path: Path, limiter: trio.CapacityLimiter) -> None:
    async with limiter:
        while not await _answers(path):  # noqa: ASYNC110 - a socket file has no event to await
            await trio.sleep(0.05)


async def _answers(path: Path) -> bool:
    """Connect, read the banner up to the telnet offer, close (a shorter read makes
    procServ log a SIGPIPE into the console)."""
    try:
        stream = await trio.open_unix_socket(str(path))
    except OSError:
        return False
    async with stream:
        received = b""
        while TELNET_OFFER not in received:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return False
            received += chunk
    return True


class DirectClient:
    """The bench's own connection to one procServ: sends bytes, reads everything."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.received = 0
        self._stream: trio.SocketStream | None = None
        self._marker = b""
        self._tail = b""
        self._seen: trio.Event = trio.Event()
        self.seen_at = 0.0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, skip the banner, report started, then drain until cancelled."""
        self._stream = await trio.open_unix_socket(str(self.path))
        async with self._stream:
            banner = b""
            while TELNET_OFFER not in banner:
                banner += await self._stream.receive_some(4096)
            task_status.started()
            while chunk := await self._stream.receive_some(1 << 20):
                self._take(chunk)

    def _take(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self._marker and not self._seen.is_set():
            window = self._tail + chunk
            if self._marker in window:
                self.seen_at = time.perf_counter()
                self._seen.set()
            self._tail = window[-len(self._marker) :]

    def expect(self, marker: bytes) -> None:
        """Watch for ``marker`` in what arrives from now on."""
        self._marker, self._tail, self._seen = marker, b"", trio.Event()
        self.seen_at = 0.0

    async def wait_seen(self) -> float:
        """When the expected marker went by (``time.perf_counter``)."""
        await self._seen.wait()
        return self.seen_at

    async def send(self, data: bytes) -> None:
        assert self._stream is not None, "DirectClient.run() first"
        await self._stream.send_all(data)
