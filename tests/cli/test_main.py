"""The `cryptolab` entry point: each command's --help describes it with its module's summary."""

from __future__ import annotations

import argparse

from cryptolab.cli.main import _parser


def _description(command: str) -> str:
    parser, _ = _parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return str(sub.choices[command].description)


def test_a_command_description_is_its_whole_summary_even_when_wrapped() -> None:
    assert _description("archive") == (
        "Archive closed UTC days of raw trades to Parquet (a directory or s3://bucket/prefix), "
        "verified; optionally drop them."
    )
    assert _description("load") == (
        "`cryptolab load FILE…`: data.binance.vision dumps and stream recordings into the database, "
        "each file all in or all out (see `cryptolab.history.load`)."
    )
