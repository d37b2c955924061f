"""Output of an import: the draft as a commented YAML config, checked, and written safely.

`render` turns a `Draft` into YAML text with comments (where each console came
from, which users still need keys); `config_data` is the same as plain data.
`check` loads the text the way `consrv check-config` does. `write_files` writes
the config and environment files, refusing to overwrite anything without `force`.
Must not know: the input formats.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from consrv.config import ConfigError, parse_config
from consrv.migrate.draft import ConsoleDraft, Draft

__all__ = ["check", "config_data", "factor_defaults", "render", "write_files"]

_Path = tuple[str, ...]


def factor_defaults(draft: Draft) -> None:
    """Move the most common (rw, ro) pair into `defaults` and drop it from those consoles.

    Only when every console has explicit lists, so no console falls back to
    consrv's own defaults (ro: ["*"]) by accident.
    """
    consoles = list(draft.consoles.values())
    pairs = [(c.rw, c.ro) for c in consoles]
    if not pairs or any(rw is None or ro is None for rw, ro in pairs):
        return
    (rw, ro), _ = Counter(pairs).most_common(1)[0]
    draft.defaults_rw, draft.defaults_ro = rw, ro
    for console in consoles:
        if (console.rw, console.ro) == (rw, ro):
            console.rw = console.ro = None


def config_data(draft: Draft) -> dict[str, Any]:
    """The config as plain data, in the order the YAML shows it."""
    return _Builder(draft).data


def render(draft: Draft) -> str:
    """The config as YAML text with comments."""
    builder = _Builder(draft)
    lines = [f"# {line}".rstrip() for line in _header(draft)]
    _emit(builder.data, (), 0, builder, lines)
    return "\n".join(lines) + "\n"


def check(text: str, base_dir: Path) -> list[str]:
    """The problems `consrv check-config` would report for `text` (none: [])."""
    try:
        parse_config(yaml.safe_load(text), base_dir)
    except ConfigError as exc:
        return [str(problem) for problem in exc.problems]
    return []


def write_files(files: Mapping[Path, str], *, force: bool) -> None:
    """Write every file (atomically, mode 0644), or none if one exists and not `force`.

    Raises FileExistsError naming the files that exist, OSError for other failures.
    """
    if not force:
        existing = [str(path) for path in files if path.exists()]
        if existing:
            raise FileExistsError(", ".join(existing))
    for path, text in files.items():
        _write_atomically(path, text)


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- building the data


class _Builder:
    """Plain data for the YAML plus the comments that go with its keys."""

    def __init__(self, draft: Draft) -> None:
        self.draft = draft
        self.comments: dict[_Path, str] = {}  # end of the key's line
        self.notes: dict[_Path, list[str]] = {}  # comment lines above the key
        self.data: dict[str, Any] = {}
        self._top()

    def _top(self) -> None:
        d, data = self.draft, self.data
        if d.log_dir is not None:
            data["log_dir"] = d.log_dir
        log = {
            key: value
            for key, value in (("timestamps", d.log_timestamps), ("max_size", d.log_max_size))
            if value is not None
        }
        if log:
            data["log"] = log
        data["users"] = {name: {} for name in d.users}
        for name in d.users:
            self.comments[("users", name)] = "no key yet: add keys or keys_file"
        if d.groups:
            data["groups"] = {name: list(members) for name, members in d.groups.items()}
        data["defaults"] = self._defaults()
        data["consoles"] = {name: self._console(c) for name, c in d.consoles.items()}
        if d.ioc_scope is not None:
            data["ioc"] = {"scope": d.ioc_scope}
        self._notes()

    def _defaults(self) -> dict[str, Any]:
        d = self.draft
        return {
            "rw": list(d.defaults_rw if d.defaults_rw is not None else ()),
            "ro": list(d.defaults_ro if d.defaults_ro is not None else ("*",)),
        }

    def _console(self, console: ConsoleDraft) -> dict[str, Any]:
        self.comments[("consoles", console.name)] = f"from {console.origin}"
        entry: dict[str, Any] = {}
        for key in ("socket", "tcp", "rw", "ro", "timestamps"):
            value = getattr(console, key)
            if value is not None:
                entry[key] = list(value) if isinstance(value, tuple) else value
        if console.ioc:
            entry["ioc"] = True
        return entry

    def _notes(self) -> None:
        self.notes[("users",)] = [
            "Users log in with SSH keys: give each user `keys:` (or `keys_file:`),",
            "or they cannot log in. ACL entries below name these users and groups.",
        ]
        if not self.draft.users:
            self.notes[("users",)].append("None were imported: add your users here.")
        self.notes[("defaults",)] = ["rw may type into a console, ro may watch it."]
        if self.draft.ioc_scope is not None:
            self.notes[("ioc",)] = [
                "IOC consoles (ioc: true) are the ioc@NAME.service units; their",
                "sockets are /run/procServ/NAME/control (%t/procServ/NAME/control).",
            ]


def _header(draft: Draft) -> list[str]:
    sources = draft.sources or ["(nothing)"]
    lines = [
        f"consrv config made by `consrv import {draft.command}` from:",
        *(f"  {source}" for source in sources),
        "Check it with: consrv check-config --config FILE",
    ]
    if draft.notices:
        count = len(draft.notices)
        lines.append(f"{count} thing{'s' if count > 1 else ''} could not be carried over:")
        lines += [f"  {notice}" for notice in draft.sorted_notices()]
    lines += [
        "",
        "ssh: not set, so consrv listens on 127.0.0.1:2222 (docs/configuration.md), e.g.",
        "ssh:",
        '  listen: ["0.0.0.0:22"]',
    ]
    return lines


# ---------------------------------------------------------------- YAML text


def _emit(
    mapping: Mapping[str, Any], path: _Path, indent: int, builder: _Builder, out: list[str]
) -> None:
    pad = " " * indent
    for key, value in mapping.items():
        here = (*path, key)
        out += [f"{pad}# {note}" for note in builder.notes.get(here, ())]
        comment = builder.comments.get(here)
        tail = f"  # {comment}" if comment else ""
        if isinstance(value, dict) and value:
            out.append(f"{pad}{_flow(key)}:{tail}")
            _emit(value, here, indent + 2, builder, out)
        else:
            out.append(f"{pad}{_flow(key)}: {_flow(value)}{tail}")
        if indent == 0:
            out.append("")


def _flow(value: object) -> str:
    """One value in YAML flow style, on one line."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).rstrip("\n")
    if text.endswith("\n..."):
        text = text[: -len("\n...")]
    if "\n" in text:
        return json.dumps(value)  # JSON is YAML, and escapes newlines
    return text
