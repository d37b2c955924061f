"""The console menu of `ssh -t console@host`: a line editor and choosing a console.

Owns reading one line from a terminal (echo, backspace, ^U, ^C/^D to quit) and
turning what was typed into a console: a number from the list, a name, or a
unique prefix of one. Knows nothing of SSH or consoles' internals.
"""

from __future__ import annotations

from collections.abc import Sequence

import trio

from consrv.contracts import Sink

MAX_LINE = 256
# Lines typed ahead of the menu's reading them: more are dropped (a paste of a
# million Enters must not become a million queued lines).
MAX_PENDING = 8


class LineReader:
    """Collects typed bytes into lines, echoing them (the remote side has no tty)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self._line = bytearray()
        self._lines: list[str | None] = []
        self._ready = trio.Event()
        self._after_cr = False

    # The input side, called from the SSH layer like a session's.
    def feed(self, data: bytes) -> None:
        for byte in data:
            self._key(byte)
        if self._lines:
            self._ready.set()

    def eof(self) -> None:
        if len(self._lines) >= MAX_PENDING:
            self._lines.pop()  # the end always counts
        self._lines.append(None)
        self._ready.set()

    def drained(self) -> None:
        pass

    async def read_line(self) -> str | None:
        """The next line typed; None when the user quit (^C, ^D, EOF)."""
        while not self._lines:
            await self._ready.wait()
            self._ready = trio.Event()
        return self._lines.pop(0)

    def _queue(self, line: str | None) -> None:
        if len(self._lines) < MAX_PENDING:
            self._lines.append(line)

    def _key(self, byte: int) -> None:
        after_cr, self._after_cr = self._after_cr, False
        if byte in (0x0A, 0x00) and after_cr:
            return
        if byte in (0x0D, 0x0A):
            self._after_cr = byte == 0x0D
            self.sink.write_notice(b"\r\n")
            self._queue(self._line.decode(errors="replace").strip())
            self._line.clear()
        elif byte in (0x03, 0x04):
            self.sink.write_notice(b"\r\n")
            self._queue(None)
        elif byte in (0x7F, 0x08):
            if self._line:
                del self._line[-1]
                self.sink.write_notice(b"\b \b")
        elif byte == 0x15:
            self.sink.write_notice(b"\b \b" * len(self._line))
            self._line.clear()
        elif 0x20 <= byte < 0x7F and len(self._line) < MAX_LINE:
            self._line.append(byte)
            self.sink.write_notice(bytes([byte]))


def pick(text: str, names: Sequence[str]) -> str | list[str]:
    """The console `text` means: a list number, a name or a unique prefix.

    Returns the name, or the list of candidates (empty: nothing matches;
    several: the prefix is ambiguous).
    """
    if text.isdigit():
        index = int(text)
        return names[index - 1] if 1 <= index <= len(names) else []
    if text in names:
        return text
    matches = [name for name in names if name.startswith(text)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        lowered = [name for name in names if name.lower().startswith(text.lower())]
        return lowered[0] if len(lowered) == 1 else lowered
    return matches
