from cryptolab.capture.rates import RateMeter


def test_a_first_look_gives_the_mean_since_the_start() -> None:
    assert RateMeter(100.0).rate(104.0, 40) == 10.0


def test_frequent_looks_give_the_rate_over_the_last_span() -> None:
    m = RateMeter(0.0, span=5.0)
    count = 0
    for step in range(1, 41):  # 10/s for 10 s, then 100/s for 10 s, looked at every 0.5 s
        count += 5 if step <= 20 else 50
        got = m.rate(step * 0.5, count)
    assert got == 100.0  # only the last 5 s (all at 100/s), not the 20 s mean of 55/s


def test_the_span_is_measured_from_a_sample_at_least_span_old() -> None:
    m = RateMeter(0.0, span=5.0)
    m.rate(1.0, 10)
    m.rate(3.0, 30)
    assert m.rate(7.0, 70) == 10.0  # from (1.0, 10): the newest look >= 5 s old
    assert m.rate(7.0, 70) == 10.0  # a second look at the same instant changes nothing


def test_no_time_passed_is_no_rate() -> None:
    assert RateMeter(5.0, 3).rate(5.0, 9) == 0.0


def test_memory_is_bounded_whatever_the_looks() -> None:
    m = RateMeter(0.0, span=5.0, keep=8)
    for i in range(1, 1000):
        m.rate(i * 0.001, i)
    assert len(m._samples) <= 8
