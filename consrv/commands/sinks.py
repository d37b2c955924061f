"""What a read-only watcher (``tail -f``, ``follow``, ``watch``) reads and writes
through: input that only waits for the end, a sink that asks the config in force
before every write, a sink that prefixes each line with its console's name.

Owns nothing but these adapters over a `contracts.Sink`; knows no console.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from consrv.contracts import Sink


class EofWaiter:
    """Input for read-only watching: ignores keystrokes, ends at EOF or ^C/^D."""

    def __init__(self) -> None:
        self._done = trio.Event()

    def feed(self, data: bytes) -> None:
        if b"\x03" in data or b"\x04" in data:
            self._done.set()

    def eof(self) -> None:
        self._done.set()

    def drained(self) -> None:
        pass

    async def wait(self) -> None:
        await self._done.wait()

    def is_set(self) -> bool:
        return self._done.is_set()


class GatedSink:
    """A read-only watcher's sink that asks, at every write, whether the config in
    force still lets the user see the console (cheap until a reload: the check
    runs again only when the registry's config is a new one)."""

    def __init__(
        self,
        inner: Sink,
        allowed: Callable[[], bool],
        config: Callable[[], object],
    ) -> None:
        self.inner, self.allowed, self.config = inner, allowed, config
        self.on_refused: Callable[[], None] | None = None
        self._seen = config()
        self._ok = True

    def check(self) -> bool:
        """Still allowed by the config in force? Once refused, ``on_refused`` is called
        (once) and nothing more is shown."""
        config = self.config()
        if config is self._seen or not self._ok:
            return self._ok
        self._seen, self._ok = config, self.allowed()
        if not self._ok and self.on_refused is not None:
            self.on_refused()
        return self._ok

    def write(self, data: bytes) -> None:
        if self.check():
            self.inner.write(data)

    def write_notice(self, data: bytes) -> None:
        self.inner.write_notice(data)

    def buffered(self) -> int:
        return self.inner.buffered()


class PrefixSink:
    """A sink that writes whole lines, each prefixed with its console's name."""

    MAX_PARTIAL = 4096

    def __init__(self, channel: Sink, name: str) -> None:
        self.channel, self.prefix = channel, name.encode() + b": "
        self._partial = b""

    def write(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > self.MAX_PARTIAL:
            lines.append(self._partial)
            self._partial = b""
        if lines:
            self.channel.write(b"".join(self.prefix + ln.rstrip(b"\r") + b"\n" for ln in lines))

    def write_notice(self, data: bytes) -> None:
        self.channel.write_notice(self.prefix + data.strip(b"\r\n") + b"\n")

    def buffered(self) -> int:
        return self.channel.buffered()
