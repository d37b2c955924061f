"""Every place consrv reaches into asyncssh's or trio-asyncio's private parts, checked at start.

Owns the hooks, each listed in `HOOKS` with what it patches, why, and the upstream
change that would retire it (the upstream bug reports are drafted in
docs/upstream.md). Must not know sessions, consoles or the config.

Each hook changes one object (a connection, a channel, the loop, a registry
entry), never a class, so nothing else in the process that uses asyncssh (a test's
client, a fleet link) changes. pyproject.toml caps asyncssh and trio-asyncio below
their next minor release; `check` runs at every start (`consrv serve`) against what
is installed: a *security* hook that cannot be installed stops consrv (exit 1,
naming it), a *performance* or *function* hook logs one warning and consrv runs
without it (the installers below then leave asyncssh's own behaviour alone).
tests/test_compat.py proves each hook active on the locked versions, on a live
connection.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any, Literal, cast

import asyncssh
import asyncssh.mac
import trio
import trio_asyncio
from asyncssh.channel import SSHChannel
from asyncssh.constants import MSG_IGNORE
from asyncssh.forward import SSHForwarder
from asyncssh.kex import get_default_kex_algs
from asyncssh.packet import String

from consrv.ssh import umac

logger = logging.getLogger("consrv.ssh")

Kind = Literal["security", "performance", "function"]


@dataclass(frozen=True)
class Hook:
    """One reach into a library's internals."""

    name: str
    kind: Kind
    patches: str
    why: str
    retire: str
    probe: Callable[[], str | None]  # None: installable here; else why not


class CompatError(RuntimeError):
    """A security hook cannot be installed on the asyncssh / trio-asyncio installed."""


def versions() -> str:
    return f"asyncssh {version('asyncssh')}, trio-asyncio {version('trio-asyncio')}"


# -- probes: does the installed library still have what a hook patches? ---------------
def _method(cls: type, name: str, *, coroutine: bool = False) -> str | None:
    attr = getattr(cls, name, None)
    if not callable(attr):
        return f"{cls.__name__}.{name} is gone"
    if coroutine and not inspect.iscoroutinefunction(attr):
        return f"{cls.__name__}.{name} is no longer a coroutine"
    return None


def _probe_auth_failure() -> str | None:
    cls = asyncssh.SSHServerConnection
    if not isinstance(getattr(cls, "auth", None), property):
        return "SSHServerConnection.auth is gone"
    return _method(cls, "send_userauth_failure") or _method(cls, "disconnect")


def _probe_env() -> str | None:
    if not callable(getattr(asyncssh.SSHServerChannel, "_process_env_request", None)):
        return "SSHServerChannel._process_env_request is gone"
    dispatch = getattr(SSHChannel, "_service_next_request", None)
    if dispatch is None or "'_process_'" not in inspect.getsource(dispatch):
        return "channel requests are no longer dispatched by handler name"
    return None


def _probe_certificate() -> str | None:
    key = asyncssh.generate_private_key("ssh-ed25519")
    cert = key.generate_user_certificate(key, "probe", serial=7)
    if getattr(cert, "_serial", None) != 7 or getattr(cert, "_key_id", None) != "probe":
        return "SSHCertificate keeps no _serial / _key_id"
    return None


def _probe_loop() -> str | None:
    base = trio_asyncio.TrioEventLoop.__mro__
    if not any("_main_loop_one" in vars(cls) for cls in base):
        return "TrioEventLoop._main_loop_one is gone"
    return None


def _probe_keepalive() -> str | None:
    cls = asyncssh.SSHClientConnection
    for name in ("_reset_keepalive_timer", "_set_keepalive_timer", "_keepalive_timer_callback"):
        if not callable(getattr(cls, name, None)):
            return f"SSHConnection.{name} is gone"
    if "_reset_keepalive_timer()" not in inspect.getsource(cls._recv_data):
        return "SSHConnection._recv_data no longer resets the keep-alive timer"
    return None


def _probe_umac() -> str | None:
    handlers = getattr(asyncssh.mac, "_mac_handler", None)
    if not isinstance(handlers, dict) or not set(umac.ALGORITHMS) <= set(handlers):
        return "asyncssh.mac._mac_handler has no UMAC entries"
    return None if umac.available() else "libnettle is not loadable"


def _probe_forwarder() -> str | None:
    side = SSHForwarder()
    if not all(hasattr(side, a) for a in ("_inpbuf", "_transport", "_peer")):
        return "SSHForwarder keeps no _inpbuf / _transport / _peer"
    return None


HOOKS: tuple[Hook, ...] = (
    Hook(
        "auth-failures",
        "security",
        "SSHServerConnection.send_userauth_failure, on each connection",
        "counts refused authentication requests and cuts the connection at "
        "ssh.max_auth_tries, as sshd's MaxAuthTries (asyncssh has no such limit or hook)",
        "an auth-failure callback or a max_auth_tries option in asyncssh",
        _probe_auth_failure,
    ),
    Hook(
        "revoked-keys",
        "security",
        "SSHServerConnection.validate_public_key, on each connection",
        "asks ssh.revoked_keys before any key or certificate is accepted (asyncssh asks "
        "the server object about plain keys only, never about a CA-signed certificate)",
        "a validate hook that sees certificates, or RevokedKeys support in asyncssh",
        lambda: _method(asyncssh.SSHServerConnection, "validate_public_key", coroutine=True),
    ),
    Hook(
        "env-requests",
        "security",
        "SSHServerChannel._process_env_request, on each channel",
        "drops every env request unread (asyncssh keeps each one, without limit)",
        "a limit on env requests (or an accept-env list) in asyncssh",
        _probe_env,
    ),
    Hook(
        "certificate-facts",
        "security",
        "SSHCertificate._serial and ._key_id (read only)",
        "revocation by serial and key id, and the fleet's per-hop 'via' in the audit",
        "public serial / key_id properties on SSHCertificate",
        _probe_certificate,
    ),
    Hook(
        "no-config-reload",
        "performance",
        "SSHServerConnection.reload_config, on each connection",
        "asyncssh rebuilds every option in a worker thread at the first auth request, for "
        "sshd-config Match blocks consrv never has: a tenth of a login's CPU",
        "skip the rebuild when no config file was given",
        lambda: _method(asyncssh.SSHServerConnection, "reload_config", coroutine=True),
    ),
    Hook(
        "one-packet-per-write",
        "performance",
        "SSHServerConnection.send_packet, on each connection",
        "drops the empty SSH_MSG_IGNORE asyncssh sends before every packet (a CBC "
        "countermeasure; consrv offers no CBC cipher): half the packets per write (the "
        "SSH front's connections, and a fleet gateway's to its peers)",
        "send the ignore packet only under a CBC cipher",
        lambda: _method(asyncssh.SSHServerConnection, "send_packet"),
    ),
    Hook(
        "callbacks-in-passes",
        "performance",
        "TrioEventLoop._main_loop_one, on the running loop",
        "runs the asyncio callbacks queued at once in one trio round, as asyncio does, "
        "not one scheduler round each",
        "the same batching in trio-asyncio's main loop",
        _probe_loop,
    ),
    Hook(
        "lazy-keepalive",
        "performance",
        "SSHConnection._reset_keepalive_timer and _keepalive_timer_callback, on each "
        "connection with keep-alives",
        "asyncssh cancels and re-arms its keep-alive timer for every chunk read (a new "
        "asyncio timer, a round of trio-asyncio's loop, a heap entry kept until it "
        "would have fired: 60 s for a user, 2 s for a gateway's hop); now the read is "
        "noted, and the one timer, when it fires, waits on for what is left",
        "re-arm the keep-alive timer lazily in asyncssh",
        _probe_keepalive,
    ),
    Hook(
        "keyed-umac",
        "performance",
        "asyncssh.mac._mac_handler's four UMAC entries",
        "UMAC with nettle's key set once per direction; asyncssh re-keys per packet",
        "a keyed UMAC context per direction in asyncssh.crypto.umac",
        _probe_umac,
    ),
    Hook(
        "tunnel-first-bytes",
        "function",
        "SSHForwarder's _inpbuf, _transport and _peer, for ssh -J tunnels",
        "keeps the destination's first bytes (an SSH server's banner) until the channel "
        "is open; asyncssh drops them",
        "open the channel before reading the destination in asyncssh's forwarding",
        _probe_forwarder,
    ),
    Hook(
        "kex-order",
        "function",
        "asyncssh.kex.get_default_kex_algs (a module-level function, not exported)",
        "puts curve25519-sha256 first so Dropbear's guessed first kex packet is judged as "
        "RFC 4253 7.1 says",
        "follow RFC 4253's rule for first_kex_packet_follows",
        lambda: None if callable(get_default_kex_algs) else "get_default_kex_algs is gone",
    ),
)

_by_name = {hook.name: hook for hook in HOOKS}
# Hooks that `check` found installable; every hook is until `check` says otherwise.
active: set[str] = set(_by_name)


def check() -> dict[str, str]:
    """Probe every hook against the installed libraries: {name: why not} for those that fail."""
    failed: dict[str, str] = {}
    for hook in HOOKS:
        try:
            problem = hook.probe()
        except Exception as exc:  # noqa: BLE001 - a probe that breaks is a failed probe
            problem = f"{type(exc).__name__}: {exc}"
        if problem is not None:
            failed[hook.name] = problem
    return failed


def require() -> None:
    """At start: raise `CompatError` for a security hook that cannot be installed; log one
    warning for each other one, and leave it out."""
    failed = check()
    active.clear()
    active.update(name for name in _by_name if name not in failed)
    fatal = [name for name in failed if _by_name[name].kind == "security"]
    if fatal:
        named = "; ".join(f"{name} ({failed[name]})" for name in fatal)
        raise CompatError(
            f"security hook(s) cannot be installed on {versions()}: {named}. "
            "Install the locked versions (requirements/runtime.txt)."
        )
    for name, why in failed.items():
        logger.warning(
            "%s hook %s not installed on %s (%s): running without it",
            _by_name[name].kind,
            name,
            versions(),
            why,
        )


# -- the hooks --------------------------------------------------------------------------
TOO_MANY = "Too many authentication failures"


def count_auth_failures(
    conn: asyncssh.SSHServerConnection, refused: Callable[[bool], bool]
) -> None:
    """Call ``refused(supported_method)`` for every authentication failure ``conn`` sends;
    when it returns True the failure is not sent: the connection is cut with sshd's words
    (SSH_DISCONNECT_NO_MORE_AUTH_METHODS_AVAILABLE)."""
    send_failure = conn.send_userauth_failure

    def counted(partial_success: bool) -> None:
        # A supported method's handler is the connection's current auth while it
        # answers; an unsupported method is refused before any handler exists.
        if refused(conn.auth is not None):
            conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, TOO_MANY)
            return
        send_failure(partial_success)

    conn.send_userauth_failure = counted  # type: ignore[method-assign]


def check_keys(conn: asyncssh.SSHServerConnection, refused: Callable[[bytes], bool]) -> None:
    """Ask ``refused(key_data)`` (the key or certificate as offered) before ``conn``
    accepts any key or certificate."""
    validate = conn.validate_public_key

    async def checked(username: str, key_data: bytes, msg: bytes, signature: bytes) -> bool:
        if refused(key_data):
            return False
        return await validate(username, key_data, msg, signature)

    conn.validate_public_key = checked  # type: ignore[method-assign]


def screen_keys(
    conn: asyncssh.SSHServerConnection, screen: Callable[[bytes], Awaitable[bool]]
) -> None:
    """Await ``screen(key_data)`` before ``conn`` accepts any key or certificate (False
    refuses it): the directory's questions about a certificate's principal (the same
    hook as `check_keys`, which is put in front of it)."""
    validate = conn.validate_public_key

    async def screened(username: str, key_data: bytes, msg: bytes, signature: bytes) -> bool:
        if not await screen(key_data):
            return False
        return await validate(username, key_data, msg, signature)

    conn.validate_public_key = screened  # type: ignore[method-assign]


def refuse_env(chan: asyncssh.SSHServerChannel[bytes]) -> None:
    """Refuse every ``env`` request on ``chan``; the packet is dropped unread."""

    def refused(packet: Any) -> bool:
        return False

    chan._process_env_request = refused  # type: ignore[method-assign]


def certificate_serial(cert: asyncssh.SSHCertificate) -> int:
    return cast(int, cast(Any, cert)._serial)


def certificate_key_id(cert: asyncssh.SSHCertificate) -> str:
    return cast(str, cast(Any, cert)._key_id)


def skip_config_reload(conn: asyncssh.SSHServerConnection) -> None:
    """Keep ``conn``'s options at its first authentication request."""
    if "no-config-reload" not in active:
        return

    async def unchanged() -> None:
        return None

    conn.reload_config = unchanged  # type: ignore[method-assign]


_EMPTY_IGNORE = (String(b""),)


def one_packet_per_write(conn: asyncssh.SSHServerConnection | asyncssh.SSHClientConnection) -> None:
    """Stop ``conn`` sending asyncssh's empty ignore packet before each real one (consrv
    never sends an ignore packet of its own, so an empty one is always asyncssh's). A
    client connection too: a fleet gateway's to its peers (a keystroke through the
    gateway was two packets on the second hop)."""
    if "one-packet-per-write" not in active:
        return
    send_packet = conn.send_packet

    def send_packet_without_padding(pkttype: int, *args: bytes, **kwargs: Any) -> None:
        if pkttype == MSG_IGNORE and args == _EMPTY_IGNORE:
            return
        send_packet(pkttype, *args, **kwargs)

    conn.send_packet = send_packet_without_padding  # type: ignore[method-assign]


def lazy_keepalive(conn: asyncssh.SSHServerConnection | asyncssh.SSHClientConnection) -> None:
    """Keep ``conn``'s keep-alive timer armed once, not re-armed for every chunk read: a
    read notes the time; the timer, when it fires, waits on for what is left of the
    interval since the last read, and only then does what asyncssh's does (count, ask,
    or give up). The same keep-alives, sent at the same moments."""
    if "lazy-keepalive" not in active:
        return
    hooked = cast(Any, conn)
    reset, fire = hooked._reset_keepalive_timer, hooked._keepalive_timer_callback
    loop: asyncio.AbstractEventLoop = hooked._loop  # the connection's (trio-asyncio's)
    last = [loop.time()]

    def noted() -> None:
        if hooked._keepalive_timer is None or not hooked._keepalive_interval:
            reset()  # no timer yet, or keep-alives off: asyncssh's own way
        last[0] = loop.time()

    def due() -> None:
        left = last[0] + hooked._keepalive_interval - loop.time()
        if left > 0:
            hooked._keepalive_timer = loop.call_later(left, due)
        else:
            fire()  # re-arms through _set_keepalive_timer, which finds `due`

    hooked._reset_keepalive_timer = noted
    hooked._keepalive_timer_callback = due


def tune_client(conn: asyncssh.SSHClientConnection) -> None:
    """The per-connection performance hooks, on a connection consrv makes (a fleet
    gateway's to its peers)."""
    one_packet_per_write(conn)
    lazy_keepalive(conn)


def run_ready_callbacks_together(loop: Any) -> bool:
    """Make trio-asyncio ``loop`` run its queued callbacks in passes, as asyncio does.

    After the callback it waited for, the loop runs the ones queued behind it by
    then, in order, without yielding to trio in between; callbacks queued while
    those run wait for the next pass, so a pass is bounded and a callback that keeps
    rescheduling itself cannot starve trio's tasks (tests/test_ssh_tuning.py).
    False (nothing changed) where the loop has no such parts.
    """
    one: Callable[..., Awaitable[None]] | None = getattr(loop, "_main_loop_one", None)
    queue: trio.MemoryReceiveChannel[Any] | None = getattr(loop, "_q_recv", None)
    if "callbacks-in-passes" not in active or one is None:
        return False
    if not isinstance(queue, trio.MemoryReceiveChannel):
        return False

    async def one_pass(no_wait: bool = False) -> None:
        await one(no_wait)
        if no_wait:  # the loop is being drained at exit: one at a time, as before
            return
        for _ in range(queue.statistics().current_buffer_used):
            try:
                await one(True)
            except trio.WouldBlock:  # a due timer ran instead of a queued callback
                return

    loop._main_loop_one = one_pass
    return True


def install_keyed_umac() -> bool:
    """Put `umac.KeyedUMAC` in asyncssh's MAC registry for its four UMAC algorithms."""
    handlers: dict[bytes, tuple[Any, int, tuple[Any, ...]]] | None = getattr(
        asyncssh.mac, "_mac_handler", None
    )
    if "keyed-umac" not in active or handlers is None or not umac.available():
        return False
    keyed = umac.KeyedUMAC
    for name, bits in umac.ALGORITHMS.items():
        if name in handlers:
            _handler, hash_size, _args = handlers[name]
            handlers[name] = (keyed, hash_size, (bits,))
    return True


def umac_handler(name: bytes) -> Any:
    """What asyncssh's registry holds for MAC ``name`` (for the tests)."""
    return cast(dict[bytes, Any], asyncssh.mac._mac_handler)[name][0]


class _ChannelSide(SSHForwarder):
    """The channel's end of a tunnel: holds the destination's first bytes until open."""

    def __init__(self, peer: SSHForwarder) -> None:
        super().__init__(peer)
        self._early = peer._inpbuf  # read before this end existed (asyncssh keeps, never sends)
        peer._inpbuf = b""
        peer.pause_reading()  # nothing more until the channel is open

    def write(self, data: bytes) -> None:
        if self._transport is None:
            self._early += data
        else:
            super().write(data)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        early, self._early = self._early, b""
        if early:
            super().write(early)
        if self._peer is not None:
            self._peer.resume_reading()


async def open_tunnel(host: str, port: int) -> asyncssh.SSHTCPSession[bytes]:
    """Connect to ``host:port`` for a direct-tcpip channel (asyncssh awaits this).

    Without the tunnel-first-bytes hook, asyncssh's own forwarder (which may drop a
    banner that comes before the channel is open)."""
    loop = asyncio.get_running_loop()
    try:
        _, peer = await loop.create_connection(SSHForwarder, host, port)
    except OSError as exc:
        raise asyncssh.ChannelOpenError(asyncssh.OPEN_CONNECT_FAILED, str(exc)) from None
    side = _ChannelSide(peer) if "tunnel-first-bytes" in active else SSHForwarder(peer)
    # What asyncssh's own forward_connection returns, typed as it casts it.
    return cast("asyncssh.SSHTCPSession[bytes]", side)


# What a client that guesses its first key exchange packet guesses: the first of its
# list. Dropbear's dbclient 2022.83 (Debian 12) puts curve25519-sha256 first.
GUESSED_KEX = "curve25519-sha256"


def kex_algs() -> tuple[str, ...]:
    """asyncssh's default key exchange list with `GUESSED_KEX` first (docs/upstream.md,
    "Guessed key exchange": why the front matters for Dropbear, and why it weakens
    nothing: the client's preference still decides). GSS-API is left out."""
    others = [
        name
        for alg in get_default_kex_algs()
        if not (name := alg.decode("ascii")).startswith("gss-") and name != GUESSED_KEX
    ]
    return (GUESSED_KEX, *others)


def hooks_on(conn: asyncssh.SSHServerConnection | asyncssh.SSHClientConnection) -> set[str]:
    """The per-connection hooks in place on ``conn`` (tests prove them active with it)."""
    found = set()
    for attr, name in (
        ("send_userauth_failure", "auth-failures"),
        ("validate_public_key", "revoked-keys"),
        ("reload_config", "no-config-reload"),
        ("send_packet", "one-packet-per-write"),
        ("_keepalive_timer_callback", "lazy-keepalive"),
    ):
        if attr in vars(conn):
            found.add(name)
    return found
