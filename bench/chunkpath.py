"""``python -m bench.chunkpath``: what consrv's own code costs per chunk of console output.

The steps ``Console._on_output`` and ``Console._drain`` take for every chunk read
from procServ, each timed alone in a loop with the real objects (telnet decoder,
procServ line parser, scrollback ring, console log on a temporary file with
its default rotation, with and without per-line timestamps) on chunks of the
bench's burst (numbered 100-byte lines). Prints microseconds per chunk and
CPU-seconds per GB for each step: the part of the log-only and fan-out
figures that is consrv's Python, without the sockets, the scheduler or SSH.

    python -m bench.chunkpath [--chunk 65536] [--mb 200]
    cd /tmp && PYTHONPATH=OTHER_CHECKOUT:THIS_CHECKOUT python -m bench.chunkpath  # the other side

(``-m`` puts the working directory first on sys.path, before PYTHONPATH: run
the other side from outside the repository.)

CPU time of this process only (``time.process_time``): other processes on the
machine change it far less than wall-clock time; run it twice and take the lower.

Must not know: sockets, trio, SSH.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from consrv.consolelog import ConsoleLog
from consrv.protocol.procserv import ProcServParser
from consrv.protocol.telnet import TelnetDecoder
from consrv.scrollback import Scrollback

LINE_PAD = "y" * 81  # a line of the bench's burst file: 100 bytes with "\r\n"
SCROLLBACK = 256 << 10  # consrv's default


def burst_chunks(chunk: int, count: int) -> list[bytes]:
    """``count`` chunks of ``chunk`` bytes cut from the burst's text, lines split anywhere."""
    text = b"".join(f"burst {n:010d} {LINE_PAD}\r\n".encode() for n in range(chunk * 2 // 100 + 1))
    offsets = [(i * 37) % (len(text) - chunk) for i in range(count)]
    return [text[o : o + chunk] for o in offsets]


def per_chunk(step: Callable[[bytes], object], chunks: Sequence[bytes], total: int) -> float:
    """CPU seconds per chunk of ``step``, over ``total`` bytes of ``chunks`` in turn."""
    rounds = max(1, total // sum(len(c) for c in chunks))
    start = time.process_time()
    for _ in range(rounds):
        for chunk in chunks:
            step(chunk)
    return (time.process_time() - start) / (rounds * len(chunks))


def steps(directory: Path) -> dict[str, Callable[[bytes], object]]:
    decoder, parser, ring = TelnetDecoder(), ProcServParser(), Scrollback(SCROLLBACK)
    plain = ConsoleLog(directory / "plain.log")
    stamped = ConsoleLog(directory / "stamped.log", timestamps=True)
    return {
        "telnet decode": decoder.receive_data,
        "procServ parser": parser.receive_data,
        "scrollback": ring.append,
        "log": plain.write_output,
        "log, timestamps on": stamped.write_output,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chunkpath")
    parser.add_argument("--chunk", type=int, default=65536, help="bytes per read")
    parser.add_argument("--mb", type=float, default=200.0, help="bytes through each step")
    args = parser.parse_args(argv)
    chunks = burst_chunks(args.chunk, 64)
    total = int(args.mb * 1e6)
    with tempfile.TemporaryDirectory(prefix="consrv-chunkpath-") as tmp:
        for name, step in steps(Path(tmp)).items():
            seconds = per_chunk(step, chunks, total)
            print(
                f"{name:20s} {seconds * 1e6:8.2f} us per {args.chunk}-byte chunk"
                f" = {seconds / args.chunk * 1e9:6.3f} CPU-s per GB"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
