"""sd_notify: telling systemd that consrv is ready, busy, stopping or alive; silent elsewhere.

Also the file descriptor store (FDSTORE=1 with FDNAME=, FDSTOREREMOVE=1, and BARRIER=1 to
know systemd has them all), which carries consoles across a restart (handover.py).

`Notifier.from_environ()` reads ``NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract
socket). Without it every call is a no-op, so consrv runs the same under systemd, in a
terminal and in tests. Each message is one ``AF_UNIX`` datagram of ``KEY=VALUE`` lines,
sent without blocking; a failure is logged once and otherwise ignored: notifying
systemd must never stop the server. The watchdog interval comes from ``WATCHDOG_USEC``
(and ``WATCHDOG_PID``, when set, must be this process).

Must not know: what consrv does, SSH, consoles.
"""

from __future__ import annotations

import array
import logging
import os
import re
import select
import socket
from collections.abc import Mapping

import trio

__all__ = ["Notifier", "watchdog_forever", "watchdog_interval"]

logger = logging.getLogger(__name__)

_KEY_RE = re.compile(r"[A-Z][A-Z0-9_]*")


def _address(value: str) -> str | None:
    """NOTIFY_SOCKET as a socket address: ``@name`` is abstract (a leading NUL)."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def _line(key: str, value: object) -> str:
    """One ``KEY=VALUE`` line; a newline in the value would start a field of its own."""
    if _KEY_RE.fullmatch(key) is None:
        raise ValueError(f"not an sd_notify field name: {key!r}")
    text = str(int(value)) if isinstance(value, bool) else str(value)
    return f"{key}={' '.join(text.splitlines())}"


class Notifier:
    """One process's sd_notify channel: a non-blocking datagram socket, or nothing."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._socket: socket.socket | None = None
        self._failed = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier NOTIFY_SOCKET asks for; a silent one when it is unset or unusable."""
        value = (os.environ if environ is None else environ).get("NOTIFY_SOCKET", "")
        address = _address(value)
        if value and address is None:
            logger.warning("NOTIFY_SOCKET %r is not a path or @name: not notifying", value)
        return cls(address)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, **fields: object) -> bool:
        """Send ``KEY=VALUE`` fields in one datagram (``notify(READY=1, STATUS="x")``).

        True if it was sent; False when disabled or on an error (logged the first time).
        """
        if self.address is None:
            return False
        message = "\n".join(_line(key, value) for key, value in fields.items())
        try:
            self._open().sendto(message.encode(), self.address)
        except OSError as exc:
            self._report(exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """READY=1: the service is up (listeners bound); optionally with a STATUS= line."""
        if status is None:
            return self.notify(READY=1)
        return self.notify(READY=1, STATUS=status)

    def status(self, text: str) -> bool:
        """STATUS=: one line shown by ``systemctl status``."""
        return self.notify(STATUS=text)

    def reloading(self) -> bool:
        """RELOADING=1: re-reading the config (send ready() when done)."""
        return self.notify(RELOADING=1)

    def stopping(self) -> bool:
        """STOPPING=1: shutting down."""
        return self.notify(STOPPING=1)

    def watchdog(self) -> bool:
        """WATCHDOG=1: still alive."""
        return self.notify(WATCHDOG=1)

    def store_fds(self, name: str, fds: list[int], timeout: float = 2.0) -> bool:
        """FDSTORE=1 with FDNAME=`name`: systemd keeps duplicates of `fds` for the next
        start of this service (FileDescriptorStoreMax=). Waits for room on the socket
        (up to `timeout`): a restart may store many at once. False when disabled or failed."""
        message = f"FDSTORE=1\nFDNAME={name}".encode()
        return self._send_with_fds(message, fds, timeout)

    def remove_fds(self, name: str) -> bool:
        """FDSTOREREMOVE=1: systemd closes its copies of the descriptors named `name`."""
        return self.notify(FDSTOREREMOVE=1, FDNAME=name)

    def barrier(self, timeout: float = 2.0) -> bool:
        """BARRIER=1: wait until systemd has handled every message sent before (it
        closes the pipe it is given then). True when it did within `timeout`."""
        if self.address is None:
            return False
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        try:
            sent = self._send_with_fds(b"BARRIER=1", [write_end], timeout)
            os.close(write_end)
            write_end = -1
            if not sent:
                return False
            poller = select.poll()
            poller.register(read_end, select.POLLHUP)
            return bool(poller.poll(int(timeout * 1000)))
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)

    def _send_with_fds(self, message: bytes, fds: list[int], timeout: float) -> bool:
        if self.address is None:
            return False
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.settimeout(timeout)
                sock.sendmsg([message], rights, 0, self.address)
        except OSError as exc:
            self._report(exc)
            return False
        return True

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _open(self) -> socket.socket:
        if self._socket is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.setblocking(False)
            self._socket = sock
        return self._socket

    def _report(self, exc: OSError) -> None:
        if not self._failed:
            self._failed = True
            logger.warning("sd_notify to %r failed (not reported again): %s", self.address, exc)


def watchdog_interval(
    environ: Mapping[str, str] | None = None, pid: int | None = None
) -> float | None:
    """Seconds between watchdog deadlines (WATCHDOG_USEC), or None when not for us.

    None when WATCHDOG_USEC is unset, not a positive integer, or WATCHDOG_PID names
    another process (``pid`` defaults to ``os.getpid()``).
    """
    env = os.environ if environ is None else environ
    usec, owner = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if owner and (not owner.isdigit() or int(owner) != (os.getpid() if pid is None else pid)):
        return None
    return int(usec) / 1_000_000


async def watchdog_forever(notifier: Notifier, interval: float | None = None) -> None:
    """Send WATCHDOG=1 every half interval, forever; return at once without a watchdog.

    ``interval`` defaults to `watchdog_interval()`. Run it in the same trio loop as
    the work it vouches for: a blocked loop then misses its pings and systemd acts.
    """
    if interval is None:
        interval = watchdog_interval()
    if interval is None or not notifier.enabled:
        return
    while True:
        notifier.watchdog()
        await trio.sleep(interval / 2)
