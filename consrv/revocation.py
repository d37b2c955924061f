"""Revoked keys and certificates (``ssh.revoked_keys``): sshd's RevokedKeys, as text.

Owns reading the revocation file and answering "is this key, or this
certificate, revoked?". The file has one entry a line (blank lines and ``#``
comments ignored), in the words of ``ssh-keygen -k``'s key revocation list
specification:

- an OpenSSH public key (``ssh-ed25519 AAAA... comment``): that key may not log
  in, nor may any certificate for it; a CA's public key here revokes every
  certificate that CA signed;
- ``serial: N`` (or ``serial: N-M``): certificates with these serial numbers, from
  any trusted CA;
- ``id: KEY_ID``: certificates with this key id (``ssh-keygen -I``).

Binary KRL files (``ssh-keygen -k`` output) are not read: list the keys and
serials as text instead. Must not know users, connections or the config's shape;
what a certificate blob says is read in `consrv.ssh.certs`.
"""

from __future__ import annotations

import dataclasses

import asyncssh

__all__ = ["Revoked", "parse_revoked"]

KRL_MAGIC = b"SSHKRL\n"
MAX_SERIAL = (1 << 64) - 1


@dataclasses.dataclass(frozen=True)
class Revoked:
    """What may no longer log in. Empty: nothing is revoked."""

    keys: frozenset[bytes] = frozenset()  # public_data of revoked keys (users' or CAs')
    serials: tuple[tuple[int, int], ...] = ()  # inclusive ranges of certificate serials
    ids: frozenset[str] = frozenset()  # certificate key ids

    def __bool__(self) -> bool:
        return bool(self.keys or self.serials or self.ids)

    def key(self, public_data: bytes) -> bool:
        return public_data in self.keys

    def serial(self, serial: int) -> bool:
        return any(low <= serial <= high for low, high in self.serials)

    def key_id(self, key_id: str) -> bool:
        return key_id in self.ids


def parse_revoked(text: str) -> tuple[Revoked, list[tuple[int, str]]]:
    """The revocation file's entries, and (line number, problem) for each bad line."""
    keys: set[bytes] = set()
    serials: list[tuple[int, int]] = []
    ids: set[str] = set()
    problems: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(":")
        try:
            if word.strip() == "serial":
                serials.append(_serials(rest.strip()))
            elif word.strip() == "id":
                ids.add(_key_id(rest.strip()))
            else:
                keys.add(_public_key(line))
        except ValueError as exc:
            problems.append((number, str(exc)))
    return Revoked(frozenset(keys), tuple(serials), frozenset(ids)), problems


def _serials(text: str) -> tuple[int, int]:
    low, dash, high = text.partition("-")
    try:
        first, last = int(low), int(high) if dash else int(low)
    except ValueError:
        raise ValueError("expected serial: N or serial: N-M") from None
    if not 0 <= first <= last <= MAX_SERIAL:
        raise ValueError("serials are 0 to 2**64-1, the first of a range not above the last")
    return first, last


def _key_id(text: str) -> str:
    if not text:
        raise ValueError("expected id: KEY_ID")
    return text


def _public_key(line: str) -> bytes:
    try:
        key = asyncssh.import_public_key(line)
    except (asyncssh.KeyImportError, ValueError):
        try:  # a certificate line: revoke the certificate's own key
            cert = asyncssh.import_certificate(line)
        except (asyncssh.KeyImportError, ValueError):
            raise ValueError("expected an OpenSSH public key, serial: N or id: KEY_ID") from None
        return bytes(cert.key.public_data)
    return bytes(key.public_data)


def is_binary_krl(data: bytes) -> bool:
    return data.startswith(KRL_MAGIC)
