"""The label values metrics may carry: fixed enums, and `bounded` for everything else.

Label values come only from the config and from these enums; anything else maps to
`OTHER`. Never from user input or console output.
"""

from __future__ import annotations

from collections.abc import Collection

from consrv.access import Role

UNIT_STATES = (
    "active",
    "reloading",
    "inactive",
    "failed",
    "activating",
    "deactivating",
    "maintenance",
    "refreshing",
)
LOAD_STATES = frozenset({"stub", "loaded", "not-found", "bad-setting", "error", "merged", "masked"})
SUB_STATES = frozenset(
    {
        "dead", "condition", "start-pre", "start", "start-post", "running", "exited",
        "reload", "reload-signal", "reload-notify", "mounting", "stop", "stop-watchdog",
        "stop-sigterm", "stop-sigkill", "stop-post", "final-watchdog", "final-sigterm",
        "final-sigkill", "failed", "dead-before-auto-restart", "failed-before-auto-restart",
        "dead-resources-pinned", "auto-restart", "auto-restart-queued", "cleaning",
    }
)  # fmt: skip
AUTO_RESTART_MODES = ("on", "off", "oneshot")
ROLE_LABELS = {Role.RW: "rw", Role.RO: "ro", None: "none"}
OTHER = "other"


def bounded(value: str, allowed: Collection[str]) -> str:
    return value if value in allowed else OTHER
