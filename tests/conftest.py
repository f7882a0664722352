"""The test suite's root: its command-line option and the fixture plugins.

The fixtures live in `tests/fixtures/`, one plugin module per concern (psycopg's layout):
`db` (a real PostgreSQL: `cryptolab_home`, `server_dsn`, `template_db`, `dsn`, `conn`),
`exchange` (the local exchange factory), `dumps` (Binance data files), `clock` (`not_at_midnight`).
`--test-dsn` (or `CRYPTOLAB_TEST_DSN`) points the `db` fixtures at any server; without it the
embedded server runs in a private CRYPTOLAB_HOME for the session.
"""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "tests.fixtures.db",
    "tests.fixtures.exchange",
    "tests.fixtures.dumps",
    "tests.fixtures.clock",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--test-dsn",
        default=os.environ.get("CRYPTOLAB_TEST_DSN"),
        help="DSN of a PostgreSQL server for tests (default: env CRYPTOLAB_TEST_DSN, else embedded)",
    )
