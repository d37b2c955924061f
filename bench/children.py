"""Programs the bench runs under procServ as a console's child (standalone scripts).

``python children.py flood RATE``: prints text lines at about RATE bytes/s while
on; the byte ``g`` on stdin turns it on, ``s`` off (starts off). The terminal is
put in raw mode first, so input arrives byte by byte and nothing is echoed.

The echo and burst children are one-line shell commands (see ``bench.consoles``).

Must not know: the bench package (it runs as a plain script under procServ).
"""

from __future__ import annotations

import os
import select
import sys
import termios
import time
import tty

TICK = 0.01  # one write every 10 ms
LINE = 100  # bytes per line, "\r\n" included


def _lines(count: int, start: int) -> bytes:
    """``count`` lines of ``LINE`` bytes, numbered from ``start``."""
    pad = "x" * (LINE - 20)
    return "".join(f"flood {n:010d} {pad}\r\n" for n in range(start, start + count)).encode()


def _write_all(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(1, view) :]


def flood(rate: int) -> None:
    """Write about ``rate`` bytes/s of lines while on; ``g``/``s`` on stdin switch it."""
    if os.isatty(0):
        tty.setraw(0, termios.TCSANOW)
    per_tick = max(1, round(rate * TICK / LINE))
    on, sent, next_tick = False, 0, time.monotonic()
    while True:
        timeout = max(0.0, next_tick - time.monotonic()) if on else None
        ready, _, _ = select.select([0], [], [], timeout)
        if ready:
            data = os.read(0, 1024)
            if not data:
                return
            if b"g" in data or b"s" in data:
                on = data.rfind(b"g") > data.rfind(b"s")
                next_tick = time.monotonic()
            continue
        if on:
            _write_all(_lines(per_tick, sent))
            sent += per_tick
            # A reader that held us up does not earn a catch-up burst.
            next_tick = max(next_tick + TICK, time.monotonic() - TICK)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "flood":
        flood(int(argv[1]))
        return 0
    print("usage: children.py flood RATE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
