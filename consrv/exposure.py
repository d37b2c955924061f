"""Settings that expose consrv more than they should: what check-config and serve say about them.

Owns two lists over a loaded config: `refusals` (consrv will not run with these:
a host key, or a fleet gateway's key or CA key, other users may read, as sshd's
StrictModes refuses an "UNPROTECTED PRIVATE KEY FILE"; a keys command others may
change, as sshd refuses an "Unsafe AuthorizedKeysCommand") and `warnings` (allowed,
but said on every start and by check-config: ``/metrics`` listening beyond
loopback, which docs/security.md asks to keep on a management network; the web
view beyond loopback without TLS).
"""

from __future__ import annotations

import ipaddress

from consrv.config import Config, Endpoint
from consrv.identity.command import program_problem
from consrv.ssh.keys import host_certificate_problem, key_file_problem


def refusals(config: Config) -> list[str]:
    """Why consrv must not serve with ``config`` (empty: it may)."""
    problem = key_file_problem(config.ssh.host_key)
    cert = host_certificate_problem(config.ssh.host_key, config.ssh.host_certificate)
    return (
        ([f"ssh.host_key: {problem}"] if problem is not None else [])
        + ([f"ssh.host_certificate: {cert}"] if cert is not None else [])
        + fleet_refusals(config)
        + identity_refusals(config)
    )


def identity_refusals(config: Config) -> list[str]:
    """A keys command sshd would refuse to run (its safe_path): whoever can change the
    program, or a directory above it, makes users."""
    identity = config.identity
    if identity is None:
        return []
    found = []
    for key, command in (
        ("ssh.authorized_keys_command", identity.command),
        ("identity.key_owner_command", identity.owner_command),
    ):
        problem = program_problem(command[0]) if command else None
        if problem is not None:
            found.append(f"{key}: unsafe program: {problem} (as sshd, consrv refuses it)")
    return found


def fleet_refusals(config: Config) -> list[str]:
    """A fleet gateway's key or CA key that others may read (the CA key signs for anyone)."""
    fleet = config.fleet
    if fleet is None or not fleet.gateway:
        return []
    keys = (("fleet.key", fleet.key), ("fleet.ca_key", fleet.ca_key))
    found = [(name, key_file_problem(path)) for name, path in keys if path is not None]
    return [f"{name}: {problem}" for name, problem in found if problem is not None]


def warnings(config: Config) -> list[str]:
    """What is allowed but exposed."""
    found = []
    if config.metrics_listen is not None and not is_loopback(config.metrics_listen):
        found.append(
            f"metrics.listen: {config.metrics_listen} is not a loopback address: anyone who "
            "can reach it reads console names, users' logins and IOC health; keep it on "
            "127.0.0.1 or a management network"
        )
    web = config.web
    if web is not None and web.tls is None and not is_loopback(web.listen):
        found.append(
            f"web.listen: {web.listen} is not a loopback address and web.tls is not set: "
            "browsers would send their session cookie in clear (and refuse it: it is "
            "Secure); set web.tls, or keep web.listen on loopback behind a TLS proxy"
        )
    found.extend(pva_warnings(config))
    return found


def pva_warnings(config: Config) -> list[str]:
    """PVs served beyond loopback: every reader on that network learns them."""
    pva = config.pva
    if pva is None:
        return []
    wide = [a for a in pva.interfaces if not ipaddress.ip_address(a).is_loopback]
    if not wide:
        return []
    return [
        f"pva.interfaces: {', '.join(wide)} is not a loopback address: anyone who can reach "
        "it reads console names, IOC states and pids, restart counts and who writes to "
        "which console (docs/pva.md); keep it on the controls network"
    ]


def is_loopback(endpoint: Endpoint) -> bool:
    if endpoint.host == "localhost":
        return True
    try:
        return ipaddress.ip_address(endpoint.host).is_loopback
    except ValueError:  # a host name: where it points is not known here
        return False
