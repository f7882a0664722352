"""`cryptolab load` on bad input (junk, truncated or corrupt archives, a bad row late in a file, odd
symbols): one line on stderr, a non-zero exit, and nothing half-written."""

from __future__ import annotations

import gzip
import os
import zipfile
from pathlib import Path
from typing import Any

import psycopg
import pytest

from cryptolab.cli import main as cli
from tests.cli._helpers import _one_line


def _count(dsn: str) -> tuple[int, int]:
    with psycopg.connect(dsn) as c:
        row = c.execute("SELECT (SELECT count(*) FROM trades), (SELECT count(*) FROM bars_1s)").fetchone()
        assert row is not None
        return int(row[0]), int(row[1])


def _load(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    rc = cli.main(["load", *args, "--no-progress"])
    return rc, capsys.readouterr().err


# ---------------------------------------------------------------- load: damaged files are all out


def test_load_binary_junk(dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "BTCUSDT-trades-2025-01-01.csv"
    junk.write_bytes(bytes(range(256)) * 64)
    rc, err = _load(capsys, str(junk))
    assert rc == 2 and "not text" in _one_line(err)
    nul = tmp_path / "BTCUSDT-trades-2025-01-02.csv"
    nul.write_bytes(b"1,2,3\x00\x00\x00" * 100)
    rc, err = _load(capsys, str(nul))
    assert rc == 2 and str(nul.name) in _one_line(err)
    gz_junk = tmp_path / "rec.gz"
    gz_junk.write_bytes(b"\x1f\x8b" + os.urandom(4000))
    rc, err = _load(capsys, str(gz_junk))
    assert rc == 2 and "rec.gz" in _one_line(err)
    assert _count(dsn) == (0, 0)


def test_truncated_gz_stores_nothing_of_it(dsn: str, make_dumps: Any, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    files, _ = make_dumps(n=3000)
    text = gzip.decompress(files["stream_gz"].read_bytes())
    whole = tmp_path / "rec.gz"
    whole.write_bytes(gzip.compress(text, compresslevel=1))
    cut = tmp_path / "cut.gz"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    rc, err = _load(capsys, str(cut), "--batch", "200")  # many batches would have committed before
    line = _one_line(err)
    assert rc == 2 and "truncated" in line and "nothing of this file was stored" in line
    assert _count(dsn) == (0, 0)


def test_truncated_or_corrupt_zip_stores_nothing_of_it(dsn: str, make_dumps: Any, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    files, trades = make_dumps(n=3000)
    raw = files["trades_us_zip"].read_bytes()
    cut = tmp_path / "BTCUSDT-trades-2025-01-01.zip"
    cut.write_bytes(raw[: len(raw) // 2])
    rc, err = _load(capsys, str(cut), "--batch", "200")
    assert rc == 2 and "zip" in _one_line(err)
    # intact directory, damaged data half-way through the member: fails mid-file, all rolled back
    text = files["trades_us_csv"].read_text()
    stored = tmp_path / "stored" / "BTCUSDT-trades-2025-01-01.zip"
    stored.parent.mkdir()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("BTCUSDT-trades-2025-01-01.csv", text)
    data = bytearray(stored.read_bytes())
    mid = len(data) * 2 // 3
    data[mid : mid + 40] = b"\xff" * 40
    stored.write_bytes(bytes(data))
    rc, err = _load(capsys, str(stored), "--batch", "200")
    line = _one_line(err)
    assert rc == 2 and "nothing of this file was stored" in line
    assert _count(dsn) == (0, 0)


def test_a_bad_row_late_in_a_file_rolls_back_the_whole_file(dsn: str, make_dumps: Any, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    files, trades = make_dumps(n=1000)
    good = files["trades_us_zip"]
    lines = files["trades_ms_csv"].read_text().splitlines()
    lines[900] = "this,is,not,a,trade,row,x"
    bad = tmp_path / "ETHUSDT-trades-2024-12-31.csv"
    bad.write_text("\n".join(lines) + "\n")
    rc, err = _load(capsys, str(good), str(bad), "--batch", "100")
    line = _one_line(err)
    assert rc == 2 and "line 901" in line and "nothing of this file was stored" in line
    assert "1 file(s) before it were loaded" in line
    with psycopg.connect(dsn) as c:
        by_symbol = dict(c.execute("SELECT symbol, count(*) FROM trades GROUP BY 1").fetchall())
    assert by_symbol == {"BTCUSDT": len(trades)}  # the good file in full, none of the bad one


def test_load_symbol_with_characters_no_exchange_uses(dsn: str, make_dumps: Any,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    files, _ = make_dumps(n=10)
    for sym in ("BTC$USDT", "btc usdt", "x", "'; DROP TABLE trades; --", "ÄBC"):
        rc, err = _load(capsys, str(files["trades_us_csv"]), "--symbol", sym)
        assert rc == 2 and "is not a symbol" in _one_line(err)
    assert _count(dsn) == (0, 0)
