"""``consrv fleet init``: a gateway's key and CA, and the exact config lines for both sides.

Owns the one-step setup: creates (or reuses, so a second run prints the same
lines) the gateway's own key pair and its user CA in a directory, then prints
the gateway's ``fleet:`` section and the lines every peer's config needs: the
gateway user with the gateway's key, ``fleet.gateway_users``, and the CA in
``ssh.trusted_user_ca_keys`` limited to the gateways' addresses (``from=``).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import asyncssh

KEY_NAME, CA_NAME = "gateway_key", "gateway_ca"
GATEWAY_USER = "gateway"

MakeKey = Callable[[Path, str], asyncssh.SSHKey]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``consrv fleet``'s arguments (cli.py makes the subcommand)."""
    actions = parser.add_subparsers(dest="fleet_command", required=True)
    init = actions.add_parser(
        "init",
        help="create the gateway's key and CA; print the config lines for gateway and peers",
    )
    init.add_argument("--dir", type=Path, required=True, help="where the keys go (0700)")
    init.add_argument(
        "--gateway-address", action="append", required=True, metavar="ADDRESS",
        help="an address the peers see this gateway connect from (repeat for every gateway)",
    )  # fmt: skip
    init.add_argument("--name", default=socket.gethostname(), help="this gateway's name")


def _key(path: Path, comment: str, make: MakeKey) -> tuple[asyncssh.SSHKey, bool]:
    if path.exists():
        return asyncssh.read_private_key(path), False
    return make(path, comment), True


def run(args: argparse.Namespace, make_key: MakeKey) -> int:
    directory: Path = args.dir.absolute()
    try:
        key, new_key = _key(directory / KEY_NAME, f"consrv fleet gateway {args.name}", make_key)
        ca, new_ca = _key(directory / CA_NAME, f"consrv fleet CA {args.name}", make_key)
    except (OSError, asyncssh.KeyImportError) as exc:
        print(f"consrv: fleet init: {exc}", file=sys.stderr)
        return 1
    for made, path in ((new_key, KEY_NAME), (new_ca, CA_NAME)):
        print(f"# {'created' if made else 'kept'} {directory / path} (.pub beside it)")
    print(gateway_lines(args.name, directory))
    print(peer_lines(key, ca, args.gateway_address))
    return 0


def gateway_lines(name: str, directory: Path) -> str:
    return f"""\
# --- the gateway's config (every gateway: copy {directory} to each) ---
fleet:
  name: {name}
  peers_file: {directory / "peers"}      # one HOST:PORT a line (or peers: [HOST:PORT, ...])
  known_hosts: {directory / "known_hosts"}  # the peers' host keys (@cert-authority allowed)
  key: {directory / KEY_NAME}
  ca_key: {directory / CA_NAME}
"""


def peer_lines(key: asyncssh.SSHKey, ca: asyncssh.SSHKey, addresses: list[str]) -> str:
    public = key.export_public_key().decode().strip()
    ca_public = " ".join(ca.export_public_key().decode().split()[:2])
    sources = ",".join(addresses)
    return f"""\
# --- every peer's config (merge into its sections) ---
users:
  {GATEWAY_USER}:
    keys: [{json.dumps(public)}]
fleet:
  gateway_users: [{GATEWAY_USER}]
ssh:
  trusted_user_ca_keys:
    - {json.dumps(f'from="{sources}" {ca_public}')}
# Each user who reaches a peer through the gateway must be a user of the peer: in its
# users: (no key needed), or, with no per-user lines at all, a user of the facility's
# directory that the peer's NSS knows (docs/identity.md):
# identity:
#   nss: true
"""
