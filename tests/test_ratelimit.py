"""Token buckets for users' messages: pure, time passed in."""

from __future__ import annotations

import pytest

from consrv.ratelimit import MessageBudgets, TokenBucket


def test_a_bucket_gives_its_burst_then_its_rate() -> None:
    bucket = TokenBucket(3, 0.5, now=0.0)
    assert [bucket.take(0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(0.0) == pytest.approx(2.0)  # one token every 2 s
    assert bucket.take(1.0) == pytest.approx(1.0)
    assert bucket.take(2.0) == 0.0
    assert bucket.take(2.0) == pytest.approx(2.0)


def test_a_bucket_never_holds_more_than_its_burst() -> None:
    bucket = TokenBucket(2, 1.0, now=0.0)
    assert [bucket.take(1000.0) for _ in range(3)][2] > 0


def test_each_user_has_a_budget_of_their_own_shared_by_their_sessions() -> None:
    budgets = MessageBudgets(burst=2, per_minute=6)
    assert [budgets.take("olga", 0.0) for _ in range(3)][:2] == [0.0, 0.0]
    assert budgets.take("olga", 1.0) == pytest.approx(9.0)
    assert budgets.take("alice", 1.0) == 0.0
    assert budgets.take("olga", 10.0) == 0.0


def test_a_new_limit_applies_at_once() -> None:
    budgets = MessageBudgets(burst=1, per_minute=1)
    assert budgets.take("olga", 0.0) == 0.0
    assert budgets.take("olga", 0.0) > 0
    budgets.burst = 5
    assert budgets.take("olga", 0.0) == 0.0
