"""The hand-over across a restart (consrv/handover.py), without systemd.

systemd's side is played by a real ``AF_UNIX`` datagram socket bound as NOTIFY_SOCKET:
it keeps the descriptors each FDSTORE=1 message carries, by FDNAME, and closes the
BARRIER=1 pipe as systemd does. The consoles talk to a scripted procServ over real UNIX
sockets (tests/fakes.py). The decoders' snapshots are checked with hypothesis: stopping
anywhere in a byte stream and resuming from the snapshot gives what one decoder gives.
The whole path under a real systemd: tests/integration/test_upgrade.py.
"""

from __future__ import annotations

import array
import json
import os
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio
from hypothesis import given
from hypothesis import strategies as st

from consrv.console import Console, ProcServKeys
from consrv.consolelog import ConsoleLog
from consrv.handover import Handover, unit_of_cgroup
from consrv.protocol.procserv import ProcServParser
from consrv.protocol.telnet import TelnetDecoder
from consrv.sdnotify import Notifier
from consrv.upstream import UnixTarget
from tests.fakes import running, unix_server, wait_for

TELNETISH = st.binary(max_size=64).map(lambda b: b.replace(b"\x00", b"\xff"))


@given(TELNETISH, st.integers(min_value=0, max_value=64))
def test_a_resumed_telnet_decoder_goes_on_where_the_old_one_stopped(data: bytes, cut: int) -> None:
    old = TelnetDecoder()
    head = old.receive_data(data[:cut])
    new = TelnetDecoder.resume(json.loads(json.dumps(old.snapshot())))
    assert head + new.receive_data(data[cut:]) == TelnetDecoder().receive_data(data)
    assert new.negotiation_seen == _seen(data)


def _seen(data: bytes) -> bool:
    decoder = TelnetDecoder()
    decoder.receive_data(data)
    return decoder.negotiation_seen


LINES = st.lists(
    st.sampled_from(
        [b'@@@ Child "x" PID: 42\r\n', b"@@@ Toggled auto restart to OFF\r\n", b"n=1\r\n", b"@@"]
    )
).map(b"".join)


@given(LINES, st.integers(min_value=0, max_value=200))
def test_a_resumed_procserv_parser_goes_on_where_the_old_one_stopped(data: bytes, cut: int) -> None:
    old = ProcServParser()
    events = old.receive_data(data[:cut])
    new = ProcServParser.resume(json.loads(json.dumps(old.snapshot())))
    assert events + new.receive_data(data[cut:]) == ProcServParser().receive_data(data)


def test_a_snapshot_that_is_not_one_is_refused() -> None:
    for bad in ({}, {"state": "NOPE", "negotiation_seen": False}, {"state": "DATA"}):
        try:
            TelnetDecoder.resume(bad)
        except ValueError:
            continue
        raise AssertionError(f"accepted {bad}")


def test_the_unit_comes_from_the_cgroup() -> None:
    text = "12:pids:/u.slice\n1:name=systemd:/a.slice/consrv.service\n0::/a.slice/consrv.service\n"
    assert unit_of_cgroup(text) == "consrv.service"
    assert unit_of_cgroup("0::/init.scope\n") is None


class FakeStore:
    """systemd's notify socket and fd store: descriptors by FDNAME; BARRIER=1 answered."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(os.fspath(path))
        self.address = os.fspath(path)
        self.fds: dict[str, list[int]] = {}
        self.removed: list[str] = []
        self.barriers = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            fds = array.array("i")
            message, ancillary, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(64 * 4))
            if not message:
                return
            for level, kind, payload in ancillary:
                if (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS):
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            fields = dict(line.split("=", 1) for line in message.decode().splitlines())
            if fields.get("BARRIER") == "1":
                for fd in fds:
                    os.close(fd)  # as systemd: closing it says "all before it is handled"
                self.barriers += 1
            elif fields.get("FDSTORE") == "1":
                self.fds.setdefault(fields["FDNAME"], []).extend(fds)
            elif fields.get("FDSTOREREMOVE") == "1":
                self.removed.append(fields["FDNAME"])

    @contextmanager
    def serving(self) -> Iterator[FakeStore]:
        self._thread.start()
        try:
            yield self
        finally:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as poke:
                poke.sendto(b"", self.address)
            self._thread.join(5)
            self.sock.close()


async def test_a_console_goes_on_from_the_next_byte_with_its_state(tmp_path: Path) -> None:
    path = tmp_path / "control"
    store_path = tmp_path / "notify"
    store = FakeStore(store_path)
    notifier = Notifier(os.fspath(store_path))
    log_path = tmp_path / "ioc.log"
    greeting = (
        b"@@@ Welcome to procServ (procServ Process Server 2.7.0)\r\n"
        b"@@@ Use ^K to kill the child, auto restart is OFF, use ^T to toggle auto restart\r\n"
        b'@@@ Child "ioc" PID: 4242\r\n\xff\xfb\x01\xff\xfd\x22'
    )
    with store.serving():
        async with unix_server(path) as server:
            old = Console("ioc", UnixTarget(path), scrollback=4096, log=ConsoleLog(log_path))
            handover = Handover(notifier)
            async with running(old) as nursery:
                peer = await server.next_peer()
                # a line cut in two, and an IAC command cut after its first byte
                await peer.send(greeting + b"line one\r\nline t\xff")
                await wait_for(lambda: old.child_pid == 4242 and b"line t" in log_path.read_bytes())
                handover.arm({"ioc": old})
                nursery.cancel_scope.cancel()
            await trio.to_thread.run_sync(handover.store)
            assert old.log is not None
            old.log.close()
            assert store.barriers == 1
            assert sorted(store.fds) == ["console", "consrv-state"]

            received = {name: list(fds) for name, fds in store.fds.items()}
            new_handover = Handover(notifier, received=received)
            new = Console("ioc", UnixTarget(path), scrollback=4096, log=ConsoleLog(log_path))
            new_handover.adopt(new)
            new_handover.finish_adopting()
            assert new_handover.adopted == ["ioc"]
            assert new.keys == ProcServKeys(kill=0x0B, toggle=0x14)
            assert (new.child_pid, new.auto_restart) == (4242, "OFF")
            async with running(new):
                await peer.send(b"\xfe\x01wo\r\n@@@ Toggled auto restart to ON\r\n")
                await wait_for(lambda: new.auto_restart == "ON")
            assert new.log is not None
            new.log.close()
    notifier.close()
    assert sorted(store.removed) == ["console", "consrv-state", "ssh-listen"]
    assert server.peers == [peer]  # the same connection: procServ saw no new client
    log = log_path.read_bytes()
    assert b"line one\r\nline two\r\n@@@ Toggled" in log
    # one connection, one "up"; the only "down" is the new process's own stop
    assert log.count(b"upstream up") == 1
    assert log.count(b"upstream down") == 1
    assert log.rstrip().endswith(b"upstream down")
