"""`cryptolab demo`'s options say what they mean."""

from __future__ import annotations


def test_demo_help_says_the_simulator_rate_is_the_total() -> None:
    import argparse

    from cryptolab.cli import demo

    p = argparse.ArgumentParser()
    demo.configure(p)
    rate = next(a for a in p._actions if a.dest == "rate")
    assert rate.help is not None and "in total" in rate.help and "per symbol" not in rate.help
