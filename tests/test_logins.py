"""One-time login tokens: single use, expiry, a bounded count."""

from __future__ import annotations

import pytest

from consrv.logins import LoginTokens


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_token_is_good_once() -> None:
    tokens = LoginTokens(clock=Clock())
    token = tokens.mint("alice")
    assert len(token) >= 43
    assert tokens.redeem(token) == "alice"
    assert tokens.redeem(token) is None
    assert (tokens.minted, tokens.redeemed, tokens.refused) == (1, 1, 1)


def test_a_token_expires() -> None:
    clock = Clock()
    tokens = LoginTokens(ttl=60, clock=clock)
    early, late = tokens.mint("alice"), tokens.mint("bob")
    clock.now += 59.9
    assert tokens.redeem(early) == "alice"
    clock.now += 0.1
    assert tokens.redeem(late) is None


def test_tokens_differ_and_unknown_ones_are_refused() -> None:
    tokens = LoginTokens(clock=Clock())
    minted = {tokens.mint("alice") for _ in range(50)}
    assert len(minted) == 50
    assert tokens.redeem("x" * 43) is None
    assert tokens.redeem("") is None


def test_the_count_is_bounded_and_the_oldest_goes_first() -> None:
    clock = Clock()
    tokens = LoginTokens(capacity=3, clock=clock)
    first = tokens.mint("a")
    rest = [tokens.mint(u) for u in ("b", "c", "d")]
    assert len(tokens) == 3
    assert tokens.redeem(first) is None
    assert [tokens.redeem(t) for t in rest] == ["b", "c", "d"]


def test_expired_tokens_are_dropped_when_minting() -> None:
    clock = Clock()
    tokens = LoginTokens(ttl=1, capacity=10, clock=clock)
    for _ in range(5):
        tokens.mint("a")
    clock.now += 2
    tokens.mint("b")
    assert len(tokens) == 1


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="ttl"):
        LoginTokens(ttl=0)
