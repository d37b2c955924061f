"""The limits' bookkeeping on its own (consrv/ssh/limits.py, consrv/revocation.py).

The attacks themselves are made for real in the other test_ssh_* modules; these
pin the rules they rely on, with plain values (a clock and a descriptor count
passed in, no I/O): sources are counted per IPv4 address and per IPv6 /64, a
place is given back exactly once, descriptors are kept in reserve, OpenSSH's
``none`` probe is free, refusals are logged at most once per interval.
"""

from __future__ import annotations

import logging

import pytest

from consrv.revocation import parse_revoked
from consrv.ssh.limits import Admission, AuthTries, RefusalLog, source_of


@pytest.mark.parametrize(
    ("host", "source"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("fe80::1%eth0", "fe80::/64"),
        ("not-an-address", "not-an-address"),
    ],
)
def test_sources_are_addresses_and_ipv6_slash_64s(host: str, source: str) -> None:
    assert source_of(host) == source


def admission(per_source: int = 2, total: int = 3, used: int = 10, limit: int = 1000) -> Admission:
    return Admission(total, per_source, descriptors=lambda: used, limit=lambda: limit)


def test_caps_per_source_then_in_total_and_places_come_back() -> None:
    gate = admission()
    assert gate.admit("192.0.2.1") is None
    assert gate.admit("192.0.2.1") is None
    assert gate.admit("192.0.2.1") == "per_source"
    assert gate.admit("192.0.2.2") is None
    assert gate.admit("192.0.2.3") == "startups"
    gate.authenticated("192.0.2.1")  # logged in: no longer counted
    gate.closed("192.0.2.1", authenticated=True)  # ...and not given back twice
    assert gate.startups == 2
    assert gate.admit("192.0.2.3") is None
    gate.closed("192.0.2.2", authenticated=False)
    gate.closed("192.0.2.3", authenticated=False)
    gate.closed("192.0.2.1", authenticated=False)
    assert gate.startups == 0
    assert dict(gate.unauthenticated) == {}


def test_descriptors_are_kept_in_reserve() -> None:
    assert admission(used=1000 - 65).admit("192.0.2.1") is None
    assert admission(used=1000 - 64).admit("192.0.2.1") == "descriptors"
    assert admission(used=95, limit=128).admit("192.0.2.1") is None  # a quarter of a low limit
    assert admission(used=96, limit=128).admit("192.0.2.1") == "descriptors"


def test_no_descriptor_left_to_count_them_is_a_refusal() -> None:
    def none_left() -> int:
        raise OSError(24, "Too many open files")

    gate = Admission(10, 10, descriptors=none_left, limit=lambda: 128)
    assert gate.admit("192.0.2.1") == "descriptors"
    assert gate.startups == 0


def test_the_first_unsupported_method_is_free_and_the_limit_counts_the_rest() -> None:
    tries = AuthTries(3)
    assert tries.refused(supported_method=False) is False  # OpenSSH's "none"
    assert tries.refused(supported_method=True) is True
    assert tries.refused(supported_method=False) is True  # a password, say
    assert not tries.exceeded
    assert tries.refused(supported_method=True) is True
    assert tries.exceeded
    assert tries.count == 3


def test_refusals_are_logged_once_per_interval_with_counts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    log = RefusalLog(interval=10, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="consrv.ssh.limits"):
        log.note("per_source", "192.0.2.1")
        for _ in range(50):
            log.note("per_source", "192.0.2.1")
        log.note("startups", "192.0.2.9")
        now[0] += 10
        log.note("startups", "192.0.2.9")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "ssh: refusing new connections (latest from 192.0.2.1): 1 per_source",
        "ssh: refusing new connections (latest from 192.0.2.9): 50 per_source, 2 startups",
    ]


def test_the_revocation_file_reads_keys_serials_and_ids() -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHXIo8uvZNhC2+AX0xdOtcR/fhu8YU5IeK0S7D9ve7IJ a@b"
    revoked, problems = parse_revoked(
        f"# comment\n\n{key}\nserial: 7\nserial: 10-12\nid: alice-laptop\nserial: 5-1\nbogus\n"
    )
    assert problems == [
        (7, "serials are 0 to 2**64-1, the first of a range not above the last"),
        (8, "expected an OpenSSH public key, serial: N or id: KEY_ID"),
    ]
    assert len(revoked.keys) == 1
    assert revoked.serials == ((7, 7), (10, 12))
    assert revoked.ids == frozenset({"alice-laptop"})
    assert not parse_revoked("# nothing\n")[0]
