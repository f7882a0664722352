"""Test fixtures: a real PostgreSQL for every storage test.

Server choice follows psycopg's pattern: `--test-dsn` (or `CRYPTOLAB_TEST_DSN`) points
at any server; without it, the embedded server starts in a private CRYPTOLAB_HOME for
this test session and is stopped at its end. Each test that asks for `dsn` gets a
fresh database cloned from a template that already holds the schema.
"""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path
from typing import Iterator

import psycopg
import pytest

_counter = itertools.count()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--test-dsn",
        default=os.environ.get("CRYPTOLAB_TEST_DSN"),
        help="DSN of a PostgreSQL server for tests (default: env CRYPTOLAB_TEST_DSN, else embedded)",
    )


@pytest.fixture(scope="session")
def cryptolab_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private CRYPTOLAB_HOME for the whole session (the embedded server lives here)."""
    home = tmp_path_factory.mktemp("cryptolab_home")
    os.environ["CRYPTOLAB_HOME"] = str(home)
    os.environ.pop("CRYPTOLAB_DSN", None)
    os.environ["CRYPTOLAB_ENV_FILE"] = str(home / "no.env")
    return home


@pytest.fixture(scope="session")
def server_dsn(request: pytest.FixtureRequest, cryptolab_home: Path) -> Iterator[str]:
    """DSN of the server's maintenance database (any server, or the embedded one)."""
    given = request.config.getoption("--test-dsn")
    if given:
        yield given
        return
    from cryptolab import embedded

    uri = embedded.start()
    yield uri
    embedded.stop()


def _with_dbname(dsn: str, name: str) -> str:
    return psycopg.conninfo.make_conninfo(dsn, dbname=name)


@pytest.fixture(scope="session")
def template_db(server_dsn: str) -> str:
    """A database with the schema applied, to clone per test."""
    from cryptolab import db

    name = f"cl_template_{os.getpid()}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    with db.connect(_with_dbname(server_dsn, name)) as conn:
        db.apply_schema(conn)
    return name


@pytest.fixture
def dsn(server_dsn: str, template_db: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database holding the schema; also exported as CRYPTOLAB_DSN for the test."""
    slug = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:30]
    name = f"cl_t{next(_counter)}_{os.getpid()}_{slug}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    url = _with_dbname(server_dsn, name)
    monkeypatch.setenv("CRYPTOLAB_DSN", url)
    yield url
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection]:
    """A connection to the test's fresh database (UTC, schema applied)."""
    from cryptolab import db

    c = db.connect(dsn)
    yield c
    c.close()
