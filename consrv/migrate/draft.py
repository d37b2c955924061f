"""The draft: what an import found, before it becomes YAML and files.

The importers (`procserv`, `conserver`) fill a `Draft`; `output` renders it. Every
thing that could not be carried over is a `Notice` naming the file and line it
came from. Must not know: the input formats, YAML, the file system.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from consrv.migrate.envfile import format_env_file

__all__ = ["ConsoleDraft", "Draft", "EnvFileDraft", "Notice", "Origin"]


@dataclass(frozen=True, order=True)
class Origin:
    """Where something came from: a file, and the line when known."""

    path: str
    line: int | None = None

    def __str__(self) -> str:
        return self.path if self.line is None else f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Notice:
    """A warning for the user: `FILE:LINE: what was not carried over, and why`."""

    origin: Origin
    message: str

    def __str__(self) -> str:
        return f"{self.origin}: {self.message}"


@dataclass
class ConsoleDraft:
    """One console as it will appear under `consoles:` (None = not written)."""

    name: str
    origin: Origin
    socket: str | None = None
    tcp: str | None = None
    ioc: bool = False
    rw: tuple[str, ...] | None = None
    ro: tuple[str, ...] | None = None
    timestamps: bool | None = None


@dataclass
class EnvFileDraft:
    """The environment file `ioc@NAME.service` reads: IOC_CHDIR, IOC_CMD, and the rest."""

    name: str
    origin: Origin
    assignments: list[tuple[str, str]]

    @property
    def filename(self) -> str:
        return f"{self.name}.env"

    def text(self) -> str:
        comments = [
            f"ioc@{self.name}.service: what to run (systemd EnvironmentFile= syntax).",
            f"Imported by `consrv import` from {self.origin}.",
        ]
        return format_env_file(self.assignments, comments)


@dataclass
class Draft:
    """A consrv config being built, plus the environment files and the notices."""

    command: str  # "procserv" or "conserver": named in the YAML's header
    sources: list[str] = field(default_factory=list)
    consoles: dict[str, ConsoleDraft] = field(default_factory=dict)
    users: list[str] = field(default_factory=list)
    groups: dict[str, list[str]] = field(default_factory=dict)
    defaults_rw: tuple[str, ...] | None = None
    defaults_ro: tuple[str, ...] | None = None
    log_dir: str | None = None
    log_timestamps: bool | None = None
    log_max_size: int | None = None
    ioc_scope: str | None = None
    env_files: dict[str, EnvFileDraft] = field(default_factory=dict)
    notices: list[Notice] = field(default_factory=list)

    def warn(self, origin: Origin, message: str) -> None:
        """Record a notice once (the same statement reached twice is one warning)."""
        notice = Notice(origin, message)
        if notice not in self.notices:
            self.notices.append(notice)

    def sorted_notices(self) -> list[Notice]:
        """By file and line, as a compiler lists its warnings."""
        return sorted(self.notices, key=lambda n: (n.origin.path, n.origin.line or 0))

    def add_user(self, name: str) -> None:
        if name not in self.users:
            self.users.append(name)
