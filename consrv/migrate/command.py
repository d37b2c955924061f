"""`consrv import procserv|conserver`: read, convert, check, print or write; exit status.

Exit statuses: 0 imported (notices or not), 1 nothing imported, an input that
cannot be read, or an output that exists (without --force) or cannot be written,
2 usage. Notices go to stderr as `consrv import: FILE:LINE: ...`; the YAML goes
to stdout unless --output is given. Must not know: the formats' details.
"""

from __future__ import annotations

import argparse
import grp
import os
import pwd
import socket
import sys
from pathlib import Path

from consrv.migrate import conserver, procserv
from consrv.migrate.draft import Draft
from consrv.migrate.output import check, factor_defaults, render, write_files

__all__ = ["add_arguments", "env_dir_default", "run", "system_group_members"]

PROG = "consrv import"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `import` command's two sources (cli.py makes the subcommand)."""
    parser.description = (
        "Make a consrv config from the configs a host already has. "
        "Prints YAML (or writes --output); what cannot be carried over is listed on stderr."
    )
    sources = parser.add_subparsers(dest="source", required=True)
    ps = sources.add_parser(
        "procserv",
        help="procServUtils (manage-procs) and epics-ioc-runner files",
        description="IOCs from procServUtils' INI files and epics-ioc-runner's files.",
    )
    ps.add_argument(
        "paths", nargs="*", metavar="PATH",
        help="files or directories of *.conf (default: /etc/procServ.conf /etc/procServ.d, "
        "or ~/.config/... with --scope user)",
    )  # fmt: skip
    ps.add_argument("--scope", choices=("system", "user"), default="system",
                    help="the systemd manager of the IOCs (default: system)")  # fmt: skip
    ps.add_argument(
        "--env-dir", type=Path, metavar="DIR",
        help="write the ioc@NAME.service environment files (NAME.env) into DIR; "
        "without it they are only listed",
    )  # fmt: skip
    ps.add_argument(
        "--keep-units", action="store_true",
        help="leave the IOCs in their current units: consoles on the sockets and ports "
        "those serve, no ioc@ units",
    )  # fmt: skip
    _common(ps)
    cs = sources.add_parser(
        "conserver",
        help="console blocks of conserver.cf",
        description="Consoles (type uds and host), users, groups and logs from conserver.cf.",
    )
    cs.add_argument("file", type=Path, metavar="FILE", help="conserver.cf")
    _common(cs)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="write the config to FILE instead of stdout")  # fmt: skip
    parser.add_argument("--force", action="store_true", help="overwrite files that exist")
    parser.add_argument("--host", default=socket.gethostname(), metavar="NAME",
                        help="this host's name: IOCs and consoles of other hosts are "
                        "left out (default: %(default)s)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Carry out `consrv import ...`; the exit status."""
    if args.source == "procserv":
        if args.keep_units and args.env_dir is not None:
            print(f"{PROG}: --env-dir with --keep-units: there are no env files", file=sys.stderr)
            return 2
        draft = _procserv(args)
    else:
        draft = _conserver(args)
    if draft is None:
        return 1
    return _finish(draft, args)


def _procserv(args: argparse.Namespace) -> Draft | None:
    explicit = bool(args.paths)
    paths = args.paths or list(procserv.DEFAULT_PATHS[args.scope])
    scratch = Draft("procserv")
    try:
        files = procserv.read_paths(paths, scratch, explicit=explicit)
    except OSError as exc:
        print(f"{PROG}: {exc.filename}: cannot read: {exc.strerror}", file=sys.stderr)
        return None
    options = procserv.Options(
        scope=args.scope,
        keep_units=args.keep_units,
        hostname=args.host,
        runtime_dir=os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}",
    )
    draft = procserv.import_procserv(files, options)
    draft.notices[:0] = scratch.notices
    if not files:
        _notices(draft)
        print(f"{PROG}: no files to read in {' '.join(paths)}", file=sys.stderr)
        return None
    return draft


def _conserver(args: argparse.Namespace) -> Draft | None:
    options = conserver.Options(hostname=args.host, system_group=system_group_members)
    try:
        return conserver.import_conserver(str(args.file), _read, options)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        print(f"{PROG}: {args.file}: cannot read: {reason}", file=sys.stderr)
        return None


def _read(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


def _finish(draft: Draft, args: argparse.Namespace) -> int:
    _notices(draft)
    if not draft.consoles:
        print(f"{PROG}: nothing to import", file=sys.stderr)
        return 1
    factor_defaults(draft)
    text = render(draft)
    base_dir = (args.output.absolute().parent if args.output else Path.cwd()).resolve()
    problems = check(text, base_dir)
    if problems:
        print(f"{PROG}: the result does not pass check-config (please report this):",
              file=sys.stderr)  # fmt: skip
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    files = _files(draft, args, text)
    try:
        write_files(files, force=args.force)
    except FileExistsError as exc:
        print(f"{PROG}: {exc}: exists (--force overwrites); nothing written", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"{PROG}: {exc.filename}: cannot write: {exc.strerror}", file=sys.stderr)
        return 1
    if args.output is None:
        sys.stdout.write(text)
    _summary(draft, args, files)
    return 0


def _files(draft: Draft, args: argparse.Namespace, text: str) -> dict[Path, str]:
    files: dict[Path, str] = {}
    if args.output is not None:
        files[args.output] = text
    env_dir = getattr(args, "env_dir", None)
    if env_dir is not None:
        for env in draft.env_files.values():
            files[env_dir / env.filename] = env.text()
    return files


def _notices(draft: Draft) -> None:
    for notice in draft.sorted_notices():
        print(f"{PROG}: {notice}", file=sys.stderr)


def _summary(draft: Draft, args: argparse.Namespace, files: dict[Path, str]) -> None:
    count, warnings = len(draft.consoles), len(draft.notices)
    line = f"{count} console{'s' if count != 1 else ''}, {len(draft.users)} user(s)"
    print(f"{PROG}: {line}; {warnings} warning{'s' if warnings != 1 else ''}", file=sys.stderr)
    for path in files:
        print(f"{PROG}: wrote {path}", file=sys.stderr)
    if draft.env_files and getattr(args, "env_dir", None) is None:
        names = ", ".join(env.filename for env in draft.env_files.values())
        print(
            f"{PROG}: would write {len(draft.env_files)} environment file(s) for ioc@.service "
            f"into {env_dir_default(args.scope)} (give --env-dir DIR): {names}",
            file=sys.stderr,
        )


def env_dir_default(scope: str) -> Path:
    """Where ioc@.service reads NAME.env: %E/consrv/ioc."""
    if scope == "user":
        config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        return Path(config) / "consrv" / "ioc"
    return Path("/etc/consrv/ioc")


def system_group_members(name: str) -> list[str] | None:
    """The members of system group `name` (listed, or by primary group), None if none."""
    try:
        group = grp.getgrnam(name)
    except KeyError:
        return None
    primary = {entry.pw_name for entry in pwd.getpwall() if entry.pw_gid == group.gr_gid}
    return sorted(set(group.gr_mem) | primary)
