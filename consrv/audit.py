"""The audit trail: one JSON object a line for everything people do through consrv.

Owns the record format: every record has ``time`` (UTC, ISO-8601 with
milliseconds), ``event``, and, where they apply, ``user``, ``from`` (the SSH
peer address), ``login`` and ``console``; the other keys depend on the event
(docs/security.md lists them). Values come from consrv, not from console
output; user-typed text (broadcasts, notes, input when audited) is stored as a
JSON string, so it can never forge a record. Writing goes through a
`ConsoleLog` (append, size rotation, failures counted and never raised), so the
audit trail never stops the server. Knows nothing of SSH, trio or consoles.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from pathlib import Path

from consrv.consolelog import ConsoleLog

__all__ = ["EVENTS", "AuditLog"]

EVENTS = frozenset(
    {
        "login", "login_failed", "auth_failed", "attach", "detach", "write", "procserv_key",
        "ioc_action", "reload", "input", "broadcast", "note", "tunnel", "keys_command",
        "key_owner_command",
    }
)  # fmt: skip


def utc_now() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class AuditLog:
    """Appends records to a JSON-lines file; with no path, records go nowhere."""

    def __init__(
        self,
        path: Path | None,
        *,
        max_size: int = 10 << 20,
        keep: int = 5,
        clock: Callable[[], str] = utc_now,
    ) -> None:
        self.path = path
        self._log = None if path is None else ConsoleLog(path, max_size=max_size, keep=keep)
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return self._log is not None

    @property
    def write_errors(self) -> int:
        return self._log.write_errors if self._log is not None else 0

    def record(self, event: str, **fields: object) -> None:
        """One record: ``record("attach", user="alice", console="my-ioc", role="rw")``."""
        assert event in EVENTS, event
        if self._log is None:
            return
        data: dict[str, object] = {"time": self._clock(), "event": event}
        data.update({key: value for key, value in fields.items() if value is not None})
        line = json.dumps(data, ensure_ascii=True, separators=(",", ":"), default=str)
        self._log.write_output(line.encode() + b"\n")

    def close(self) -> None:
        if self._log is not None:
            self._log.close()


NO_AUDIT = AuditLog(None)
