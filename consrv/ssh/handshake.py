"""Why an SSH handshake failed: the reason for the metrics and the line for the log.

A handshake is what comes before the client's first authentication request:
the version exchange, key exchange and the service request. A connection that
ends before that request has failed its handshake; one that ends after it
without logging in has failed authentication (counted elsewhere). asyncssh ends
a failed handshake by calling the server's ``connection_lost`` with the error;
`describe_failure` turns that error into a fixed reason and one line in sshd's
words ("Unable to negotiate with 10.0.0.5 port 50312: no matching key exchange
method found. Their offer: ..."). Pure: no I/O, no logging.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncssh

# asyncssh's words: "No matching {kind} algorithm found, sent {ours} and received {theirs}".
_NO_MATCH = re.compile(
    r"No matching (?P<kind>.+?) algorithm found, sent .* and received (?P<offer>.*)"
)
# (reason, sshd's words) for each kind of algorithm asyncssh names.
_KINDS = {
    "key exchange": ("no_matching_kex", "no matching key exchange method found"),
    "encryption": ("no_matching_cipher", "no matching cipher found"),
    "MAC": ("no_matching_mac", "no matching MAC found"),
    "compression": ("no_matching_compression", "no matching compression method found"),
}
MAX_TEXT = 300  # of the peer's words (its offer, its disconnect reason) in one log line
# What an operator can do about an error whose words alone do not say.
_HINTS = {
    "Key exchange not in progress": "the client sent a second key exchange packet: it judged"
    " its guessed first packet wrong where consrv kept it (Dropbear; see docs/usage.md)",
}


@dataclass(frozen=True)
class HandshakeFailure:
    reason: str  # one of consrv.ssh.stats.HANDSHAKE_FAILURE_REASONS
    message: str  # one log line, without the connection prefix

    @property
    def routine(self) -> bool:
        """A client that went away or was too slow (port scanners, ssh-keyscan,
        load balancer probes), not a client that could not talk to consrv."""
        return self.reason in ("closed", "timeout")


def describe_failure(peer: tuple[str, int], exc: Exception | None) -> HandshakeFailure:
    """The reason and the log line for a connection from ``peer`` that ended before
    its first authentication request, with ``exc`` (None: closed without error)."""
    host, port = peer
    where = f"{host} port {port}"
    if isinstance(exc, asyncssh.KeyExchangeFailed):
        match = _NO_MATCH.fullmatch(exc.reason)
        if match and match["kind"] in _KINDS:
            reason, words = _KINDS[match["kind"]]
            offer = _printable(match["offer"])
            return HandshakeFailure(
                reason, f"Unable to negotiate with {where}: {words}. Their offer: {offer}"
            )
        if "host key" in exc.reason:
            return HandshakeFailure(
                "no_matching_host_key",
                f"Unable to negotiate with {where}: no matching host key type found "
                f"(consrv's host key is of a type the client does not accept)",
            )
        return _failed("kex_failed", where, exc)
    if isinstance(exc, asyncssh.ProtocolNotSupported):
        return _failed("bad_version", where, exc)
    if isinstance(exc, asyncssh.ProtocolError):
        return _failed("protocol_error", where, exc)
    if isinstance(exc, asyncssh.ConnectionLost) and "timeout" in exc.reason.lower():
        return _failed("timeout", where, exc)
    if exc is None or isinstance(exc, asyncssh.ConnectionLost | ConnectionError):
        return HandshakeFailure("closed", f"Connection closed by {where} before authentication")
    return _failed("other", where, exc)  # e.g. the client's own disconnect, with its words


def _failed(reason: str, where: str, exc: Exception) -> HandshakeFailure:
    text = (
        exc.reason if isinstance(exc, asyncssh.DisconnectError) else f"{type(exc).__name__}: {exc}"
    )
    hint = next((f" ({hint})" for words, hint in _HINTS.items() if text == words), "")
    return HandshakeFailure(
        reason, f"SSH handshake with {where} failed ({reason}): {_printable(text)}{hint}"
    )


def _printable(text: str) -> str:
    """The peer's words, safe for one log line: printable ASCII, bounded."""
    clean = "".join(c if " " <= c <= "~" else "?" for c in text)
    return clean if len(clean) <= MAX_TEXT else clean[:MAX_TEXT] + "..."
