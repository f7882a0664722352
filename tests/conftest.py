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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
def cryptolab_home() -> Iterator[Path]:
    """A private CRYPTOLAB_HOME for the whole session (the embedded server lives here).

    Made with mkdtemp rather than pytest's tmp_path_factory: pytest prunes old
    basetemp folders, and a concurrent pytest run would delete a live data directory.
    """
    import shutil
    import tempfile

    home = Path(tempfile.mkdtemp(prefix="cryptolab-test-home-"))
    os.environ["CRYPTOLAB_HOME"] = str(home)
    os.environ.pop("CRYPTOLAB_DSN", None)
    os.environ["CRYPTOLAB_ENV_FILE"] = str(home / "no.env")
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def server_dsn(request: pytest.FixtureRequest, cryptolab_home: Path) -> Iterator[str]:
    """DSN of the server's maintenance database (any server, or the embedded one)."""
    given = request.config.getoption("--test-dsn")
    if given:
        yield given
        return
    from cryptolab.storage import embedded

    uri = embedded.start()
    yield uri
    embedded.stop()


def _with_dbname(dsn: str, name: str) -> str:
    return psycopg.conninfo.make_conninfo(dsn, dbname=name)


@pytest.fixture(scope="session")
def template_db(server_dsn: str) -> str:
    """A database with the schema applied, to clone per test."""
    from cryptolab.storage import db

    name = f"cl_template_{os.getpid()}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    with db.connect(_with_dbname(server_dsn, name)) as conn:
        db.apply_schema(conn)
    return name


@pytest.fixture
def dsn(
    server_dsn: str, template_db: str, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[str]:
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
    from cryptolab.storage import db

    c = db.connect(dsn)
    yield c
    c.close()


@pytest.fixture
def not_at_midnight() -> None:
    """Keep clear of a UTC midnight: tests that plan by UTC day need the local exchange's
    'today' and the planner's to agree (use with `pytest.mark.usefixtures`)."""
    import time
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    left = 86400 - (now.hour * 3600 + now.minute * 60 + now.second)
    if left < 60:
        time.sleep(left + 2)


@pytest.fixture
def exchange() -> Iterator[Any]:
    """Factory of local exchanges (threads on 127.0.0.1), all stopped after the test.

    `exchange(**kw)` starts `LocalExchange(symbols=["btcusdt", "ethusdt"], rate=200, seed=1, **kw)`.
    """
    from cryptolab.exchange import LocalExchange

    made: list[Any] = []

    def make(**kw: Any) -> Any:
        ex = LocalExchange(**{"symbols": ["btcusdt", "ethusdt"], "rate": 200.0, "seed": 1, **kw}).start()
        made.append(ex)
        return ex

    yield make
    for ex in made:
        ex.stop()


@pytest.fixture
def make_dumps(tmp_path: Path) -> Any:
    """Factory of small Binance data files holding the same trades in every format.

    `make_dumps(n=200, symbol="BTCUSDT", seed=3)` returns `(files, trades)`: `trades` are
    the exact rows (µs times), `files` maps a name to a path: `trades_us_zip`,
    `trades_us_csv` (2025+ dumps, µs), `trades_ms_zip`, `trades_ms_csv` (older dumps, ms),
    `agg_ms_csv` (aggTrades dump), `stream_gz` (combined-stream recording, µs, with
    non-trade lines, a duplicated line and a cut last line), `stream_ms_txt` (raw stream
    recording, ms).
    """
    import gzip
    import json as _json
    import random
    import zipfile
    from decimal import Decimal

    from cryptolab.model import Trade

    def make(n: int = 200, symbol: str = "BTCUSDT", seed: int = 3) -> tuple[dict[str, Path], list[Any]]:
        rng = random.Random(seed)
        t = 1_735_689_600_010_866  # 2025-01-01 00:00:00.010866 UTC
        price = 9_357_600  # cents
        trades = []
        tid = 4_359_935_386
        while len(trades) < n:
            t += rng.choice([0, 0, 1, 7, 350, 1200, 20_000, 150_000])
            m = rng.random() < 0.5
            for _ in range(rng.choice([1, 1, 1, 2, 4])):
                price += rng.choice([0, 0, 1, -1, 5]) * (-1 if m else 1)
                q = rng.choice([9, 136, 212, 1000, 52_000, 700_000])
                trades.append(
                    Trade(
                        "binance",
                        symbol,
                        tid,
                        Decimal(price).scaleb(-2).quantize(Decimal("1E-8")),
                        Decimal(q).scaleb(-8).quantize(Decimal("1E-8")),
                        m,
                        t,
                        t + 1500,
                        None,
                        "replay",
                    )
                )
                tid += 1
        trades = trades[:n]
        d = tmp_path / f"dumps_{symbol}_{seed}"
        d.mkdir()

        def csv_lines(ms: bool) -> str:
            out = []
            for x in trades:
                tt = x.trade_time_us // 1000 if ms else x.trade_time_us
                out.append(
                    f"{x.trade_id},{x.price:f},{x.qty:f},{(x.price * x.qty).quantize(Decimal('1E-8')):f},{tt},"
                    f"{x.is_buyer_maker},True"
                )
            return "\n".join(out) + "\n"

        files: dict[str, Path] = {}
        for unit in ("us", "ms"):
            name = f"{symbol}-trades-{'2025-01-01' if unit == 'us' else '2024-12-31'}"
            text = csv_lines(unit == "ms")
            (d / f"{name}.csv").write_text(text)
            files[f"trades_{unit}_csv"] = d / f"{name}.csv"
            with zipfile.ZipFile(d / f"{name}.zip", "w", zipfile.ZIP_DEFLATED) as zf:
                zf.writestr(f"{name}.csv", text)
            files[f"trades_{unit}_zip"] = d / f"{name}.zip"
        aggs: list[list[Any]] = []
        for x in trades:
            if (
                aggs
                and aggs[-1][5] == x.trade_time_us // 1000
                and aggs[-1][1] == x.price
                and aggs[-1][6] == x.is_buyer_maker
            ):
                aggs[-1][2] += x.qty
                aggs[-1][4] = x.trade_id
            else:
                aggs.append(
                    [
                        len(aggs) + 100,
                        x.price,
                        x.qty,
                        x.trade_id,
                        x.trade_id,
                        x.trade_time_us // 1000,
                        x.is_buyer_maker,
                    ]
                )
        agg = d / f"{symbol}-aggTrades-2024-12-31.csv"
        agg.write_text("".join(f"{a[0]},{a[1]:f},{a[2]:f},{a[3]},{a[4]},{a[5]},{a[6]},True\n" for a in aggs))
        files["agg_ms_csv"] = agg

        def event(x: Any, us: bool) -> dict[str, Any]:
            k = 1 if us else 1000
            return {
                "e": "trade",
                "E": x.event_time_us // k,
                "s": symbol,
                "t": x.trade_id,
                "p": f"{x.price:f}",
                "q": f"{x.qty:f}",
                "T": x.trade_time_us // k,
                "m": x.is_buyer_maker,
                "M": True,
            }

        lines = ['1735689600000000000 {"lastUpdateId":1,"bids":[],"asks":[]}']
        for i, x in enumerate(trades):
            ns = x.event_time_us * 1000 + 250_000
            if i % 7 == 0:
                lines.append(
                    f'{ns} {{"stream":"{symbol.lower()}@bookTicker","data":{{"u":1,"s":"{symbol}","b":"1.0"}}}}'
                )
            lines.append(
                f"{ns} "
                + _json.dumps(
                    {"stream": f"{symbol.lower()}@trade", "data": event(x, True)}, separators=(",", ":")
                )
            )
            if i == 3:
                lines.append(lines[-1])  # a recorder wrote the same message twice
        lines.append(lines[-1][: len(lines[-1]) // 2])  # cut short when the recorder died
        with gzip.open(d / "recording.gz", "wt") as fh:
            fh.write("\n".join(lines) + "\n")
        files["stream_gz"] = d / "recording.gz"
        raw = [
            f"{x.event_time_us * 1000} " + _json.dumps(event(x, False), separators=(",", ":")) for x in trades
        ]
        (d / "recording_ms.txt").write_text("\n".join(raw) + "\n")
        files["stream_ms_txt"] = d / "recording_ms.txt"
        return files, trades

    return make
