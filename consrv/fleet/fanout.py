"""One user's channel shared by several hosts' sessions (``follow`` across hosts).

Owns the two adapters: `Fanout`, the user's input for several readers (an EOF or
^C/^D ends them all), and `Lines`, a channel that passes only whole lines, so
that lines from several hosts never mix on the user's screen.
"""

from __future__ import annotations

from consrv.contracts import Channel, Input


class Fanout:
    """One user's input for several readers (``follow`` over hosts): EOF ends them all."""

    def __init__(self) -> None:
        self.readers: list[Input] = []
        self._eof = False

    def add(self, reader: Input) -> None:
        self.readers.append(reader)
        if self._eof:
            reader.eof()

    def feed(self, data: bytes) -> None:
        for reader in self.readers:
            reader.feed(data)

    def eof(self) -> None:
        self._eof = True
        for reader in self.readers:
            reader.eof()

    def drained(self) -> None:
        for reader in self.readers:
            reader.drained()


class Lines:
    """A channel that passes only whole lines, so lines from several hosts never mix."""

    MAX_PARTIAL = 4096

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self._partial = b""

    def write(self, data: bytes) -> None:
        data, self._partial = self._partial + data, b""
        end = data.rfind(b"\n") + 1
        if end == 0 and len(data) <= self.MAX_PARTIAL:
            self._partial = data
            return
        if end:
            data, self._partial = data[:end], data[end:]
        self.channel.write(data)

    def write_notice(self, data: bytes) -> None:
        self.channel.write_notice(data)

    def buffered(self) -> int:
        return self.channel.buffered()

    def pause_reading(self) -> None:
        self.channel.pause_reading()

    def resume_reading(self) -> None:
        self.channel.resume_reading()
