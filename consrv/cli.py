"""The ``consrv`` command: ``serve``, ``check-config``, ``import``, ``fleet init``, ``version``.

``consrv version`` and ``--help`` import nothing beyond this module: each command's
own modules (the config, asyncssh, the server) are imported once it is chosen.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from consrv import __version__

if TYPE_CHECKING:
    from consrv.config import Config, ConfigError

# Commands whose arguments their own module adds (`add_arguments(parser)`), once chosen.
DELEGATED = {
    "import": ("consrv.migrate.command", "make a consrv config from procServ or conserver configs"),
    "fleet": ("consrv.fleet.setup", "set up a fleet gateway (docs/fleet.md)"),
}


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The command line; the arguments of `DELEGATED` commands only for ``command``."""
    parser = argparse.ArgumentParser(prog="consrv", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the console server in the foreground")
    serve.add_argument("--config", type=Path, required=True, help="the YAML config file")
    serve.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    serve.add_argument(
        "--fd-store",
        action="store_true",
        help="under systemd with FileDescriptorStoreMax=: keep the consoles and the SSH"
        " listeners across a restart (docs/operations.md, Upgrades)",
    )
    check = sub.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("--config", type=Path, required=True, help="the YAML config file")
    sub.add_parser("version", help="print the version")
    for name, (module, text) in DELEGATED.items():
        delegated = sub.add_parser(name, help=text)
        if name == command:
            importlib.import_module(module).add_arguments(delegated)
    return parser


def describe(error: ConfigError, path: Path) -> str:
    """The message for a config that cannot be used: the file, then one problem a line."""
    if len(error.problems) == 1 and error.problems[0].path.startswith(str(path)):
        return f"consrv: {error.problems[0]}"  # about the file itself: unreadable, bad YAML
    count = len(error.problems)
    lines = [f"consrv: {path}: {count} problem{'s' if count > 1 else ''}"]
    return "\n".join(lines + [f"  {problem}" for problem in error.problems])


def _check(config: Config, path: Path) -> int:
    """check-config's verdict: refusals fail it (status 2), warnings are printed."""
    from consrv import exposure

    for warning in exposure.warnings(config):
        print(f"consrv: warning: {warning}", file=sys.stderr)
    refused = exposure.refusals(config)
    for problem in refused:
        print(f"consrv: {problem}", file=sys.stderr)
    if refused:
        return 2
    print(f"{path}: ok ({len(config.consoles)} console(s), {len(config.users)} user(s))")
    return 0


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    args = _parser(next((w for w in words if not w.startswith("-")), None)).parse_args(words)
    if args.command == "version":
        print(f"consrv {__version__}")
        return 0
    if args.command == "import":
        from consrv.migrate import command as import_command

        return import_command.run(args)
    if args.command == "fleet":
        from consrv.fleet import setup as fleet_setup
        from consrv.ssh.keys import write_new_key

        return fleet_setup.run(args, write_new_key)
    from consrv.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(describe(exc, args.config), file=sys.stderr)
        return 2
    if args.command == "check-config":
        return _check(config, args.config)
    from consrv import daemon  # the server's imports are only needed to serve

    daemon.setup_logging(args.verbose)
    return daemon.run(config, args.config, fd_store=getattr(args, "fd_store", False))
