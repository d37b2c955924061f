"""Keystroke round trips through a terminal client, measured in a process of its own.

``python keystroke.py --count N [--gap S] -- CLIENT ARGV...`` runs the client
(``ssh -tt ...`` or conserver's ``console ...``) on a new pty, waits until a
probe typed into it comes back (the console's child echoes every byte), then
types N single letters one at a time and times each from the write to the pty
until the same letter is read back. Prints one JSON object:
``{"samples_us": [...]}``, or ``{"error": "..."}`` with exit status 1.

A process of its own, so that the timing loop is never held up by the bench's
other work (the GIL, trio's scheduling). Standalone: stdlib only.

Must not know: which server is behind the client.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
import tty

PROBE = b"#%"
LETTERS = b"abcdefghijklmnopqrstuvwxyz"


class Timeout(Exception):
    """The expected bytes did not come back in time."""


class Terminal:
    """A client process on a pty whose master side we type into and read."""

    def __init__(self, argv: list[str]) -> None:
        self.master, slave = pty.openpty()
        tty.setraw(slave)  # no local echo, ever: what comes back came from the console
        try:
            self.proc = subprocess.Popen(  # noqa: S603 - an argv list, no shell
                argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True
            )
        finally:
            os.close(slave)
        self.poller = select.poll()
        self.poller.register(self.master, select.POLLIN)

    def read(self, timeout: float) -> bytes:
        """What is there within ``timeout`` s (b"" if nothing)."""
        if not self.poller.poll(max(0, int(timeout * 1000))):
            return b""
        try:
            return os.read(self.master, 65536)
        except OSError:  # EIO: the client has exited
            raise Timeout("the client exited") from None

    def wait_for(self, wanted: bytes, timeout: float) -> None:
        """Read until ``wanted`` appears; Timeout if it does not."""
        deadline = time.monotonic() + timeout
        received = b""
        while wanted not in received:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Timeout(f"{wanted!r} did not come back; got {received[-200:]!r}")
            received = received[-64:] + self.read(left)

    def drain(self, quiet: float) -> None:
        """Read until nothing has come for ``quiet`` s."""
        while self.read(quiet):
            pass

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(3)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        os.close(self.master)


def wait_attached(term: Terminal, timeout: float) -> None:
    """Type the probe every 0.5 s until it comes back, then let the line go quiet."""
    deadline = time.monotonic() + timeout
    while True:
        os.write(term.master, PROBE)
        try:
            term.wait_for(PROBE, 0.5)
            break
        except Timeout:
            if time.monotonic() > deadline or term.proc.poll() is not None:
                raise Timeout("the console never echoed the probe") from None
    term.drain(0.5)


def measure(term: Terminal, count: int, gap: float) -> list[float]:
    """``count`` round trips in microseconds."""
    samples = []
    for i in range(count):
        letter = LETTERS[i % len(LETTERS) : i % len(LETTERS) + 1]
        start = time.perf_counter_ns()
        os.write(term.master, letter)
        term.wait_for(letter, 5.0)
        samples.append((time.perf_counter_ns() - start) / 1000)
        time.sleep(gap)
    return samples


def _exit_on_signal(signum: int, frame: object) -> None:
    sys.exit(128 + signum)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--gap", type=float, default=0.005, help="seconds between keystrokes")
    parser.add_argument("--ready-timeout", type=float, default=30.0)
    parser.add_argument("client", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_signal)  # so that `finally` stops the client
    client = args.client[1:] if args.client[:1] == ["--"] else args.client
    term = Terminal(client)
    try:
        wait_attached(term, args.ready_timeout)
        result: dict[str, object] = {"samples_us": measure(term, args.count, args.gap)}
        status = 0
    except Timeout as exc:
        result, status = {"error": str(exc)}, 1
    finally:
        term.close()
    print(json.dumps(result))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
