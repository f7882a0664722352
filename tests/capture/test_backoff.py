"""The reconnect backoff and connect budget: pure, fed a clock and a random source."""

from __future__ import annotations

import itertools

from cryptolab.capture.backoff import ConnectBudget, backoff


def test_backoff_grows_within_its_cap_and_never_below_a_quarter_base() -> None:
    top = list(itertools.islice(backoff(0.25, 4.0, rand=lambda: 1.0), 8))
    assert top == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0]
    low = list(itertools.islice(backoff(0.25, 4.0, rand=lambda: 0.0), 3))
    assert low == [0.0625] * 3


def test_connect_budget_refuses_past_its_limit_until_the_window_moves() -> None:
    now = [0.0]
    budget = ConnectBudget(3, window=300, clock=lambda: now[0])
    assert [budget.take() for _ in range(4)] == [True, True, True, False]
    assert 299 < budget.wait_time() <= 300.01
    now[0] = 300.5
    assert budget.wait_time() == 0 and budget.take()
