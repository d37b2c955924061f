"""Console output for a reader that is not a terminal: ``ssh host tail NAME > file``.

Owns the rule for ``tail``, ``log`` and ``follow`` over SSH: without a pty (the
server cannot see the client's stdout; a pty is what the client asks for when it is
a terminal, or when told to with ``ssh -t``) terminal escape sequences are taken
out, unless ``--raw`` asks for the bytes as they came; the output of a finished
command ends with a newline, so a shell's prompt does not land on ``epics>``.
`StripSink` does the same for a stream (``tail -f``, ``follow``). Knows nothing of
consoles or SSH.
"""

from __future__ import annotations

from consrv.contracts import Sink
from consrv.protocol.ansi import AnsiStripper, strip

RAW = "--raw"


def plain_wanted(*, pty: bool, raw: bool) -> bool:
    """Whether escape sequences are taken out: not for a terminal, not with ``--raw``."""
    return not pty and not raw


def finished(data: bytes, *, pty: bool, plain: bool) -> bytes:
    """The output of a command that ends here: stripped when `plain`, ending with a
    newline (a terminal's ``\\r\\n``) unless it is empty or already does."""
    if plain:
        data = strip(data)
    if data and not data.endswith(b"\n"):
        data += b"\r\n" if pty else b"\n"
    return data


class StripSink:
    """A sink that passes output on without its escape sequences (a sequence split
    across writes is carried over); consrv's notices go as they are."""

    def __init__(self, inner: Sink) -> None:
        self.inner = inner
        self._stripper = AnsiStripper()

    def write(self, data: bytes) -> None:
        data = self._stripper.receive_data(data)
        if data:
            self.inner.write(data)

    def write_notice(self, data: bytes) -> None:
        self.inner.write_notice(data)

    def buffered(self) -> int:
        return self.inner.buffered()
