"""The scrollback ring: the last N bytes of a console's output, in memory.

Knows nothing of consoles or viewers; it only keeps bytes.
"""

from __future__ import annotations


class Scrollback:
    """A bounded byte ring: appending past ``capacity`` forgets the oldest bytes."""

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        self._buf = bytearray()

    def append(self, data: bytes) -> None:
        if len(data) >= self.capacity:
            self._buf[:] = data[len(data) - self.capacity :]
            return
        self._buf += data
        excess = len(self._buf) - self.capacity
        if excess > 0:
            del self._buf[:excess]

    def resize(self, capacity: int) -> None:
        """Keep at most `capacity` bytes from now on (the newest, if it shrinks)."""
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        excess = len(self._buf) - capacity
        if excess > 0:
            del self._buf[:excess]

    def __len__(self) -> int:
        return len(self._buf)

    def data(self) -> bytes:
        """Everything held, oldest first."""
        return bytes(self._buf)

    def last_lines(self, n: int) -> bytes:
        """The last ``n`` lines (a trailing partial line counts as one)."""
        if n <= 0:
            return b""
        buf = self._buf
        end = len(buf) - 1 if buf.endswith(b"\n") else len(buf)
        pos = end
        for _ in range(n):
            pos = buf.rfind(b"\n", 0, pos)
            if pos < 0:
                return bytes(buf)
        return bytes(buf[pos + 1 :])
