"""The capture journal: append-only, replayed in order, exactly once; damaged records set
aside, never stored."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import zlib
from decimal import Decimal
from pathlib import Path

import orjson
import psycopg
import pytest

from cryptolab.errors import ConfigError, CryptolabError
from cryptolab.model import DeadLetter, Trade
from cryptolab.storage.journal import Journal, JournalBusyError, JournalFullError, default_max_bytes
from cryptolab.storage.journal_format import Segment, read_segment
from cryptolab.storage.writer import TradeWriter

T0 = 1_735_689_600_000_000


def trades(a: int, b: int) -> list[Trade]:
    return [
        Trade(
            "binance",
            "BTCUSDT",
            i,
            Decimal("95000.12345678"),
            Decimal("0.00000001") * i,
            i % 2 == 0,
            T0 + i * 1000,
            T0 + i * 1000 + 1,
            T0 + i * 1000 + 2,
            "live",
        )
        for i in range(a, b)
    ]


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def reseal(row: list[object]) -> bytes:
    """A record with a valid checksum: what a buggy writer (not a damaged disk) would leave."""
    payload = orjson.dumps(row)
    return b"J2 %08x %s" % (zlib.crc32(payload), payload)


def rewrite_line(path: Path, index: int, new: bytes) -> None:
    lines = lines_of(path)
    lines[index] = new
    path.write_bytes(b"\n".join(lines) + b"\n")


def replay_all(j: Journal) -> tuple[list[Segment], tuple[int, int]]:
    got: list[Segment] = []
    res = j.replay(got.append)
    return got, (res.rows, res.bad)


def quarantined(j: Journal) -> list[dict[str, object]]:
    if not j.quarantine_file.exists():
        return []
    return [orjson.loads(x) for x in lines_of(j.quarantine_file)]


# ---------------------------------------------------------------- the happy path


def test_round_trip_in_order(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.append(trades(1, 5), [DeadLetter("bad json", b"\xff{", "live", "binance", None, T0)])
    j.append(trades(5, 9))
    assert len(j) == 9
    seen, res = replay_all(j)
    assert res == (9, 0)
    assert [t.trade_id for s in seen for t in s.trades] == list(range(1, 9))
    assert seen[0].trades[0] == trades(1, 2)[0]  # exact Decimals and times survive
    assert seen[0].dead_letters[0].payload == b"\xff{"
    assert j.segments() == [] and len(j) == 0 and j.bytes == 0


def test_records_are_checksummed_plain_decimals(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.append(trades(1, 2))
    (line,) = lines_of(j.segments()[0])
    assert line.startswith(b"J2 ")
    crc, payload = line[3:11], line[12:]
    assert int(crc, 16) == zlib.crc32(payload)
    # 1E-8 as str(Decimal) would be: written as a plain decimal string instead
    assert orjson.loads(payload)[5] == "0.00000001"


def test_failed_store_keeps_segment(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.append(trades(1, 3))

    def boom(seg: Segment) -> None:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError, match="database down"):
        j.replay(boom)
    assert len(j.segments()) == 1 and len(j) == 2
    j.close()
    # a new Journal on the same directory (the next capture) still sees it
    assert len(Journal(tmp_path)) == 2


def test_replay_twice_into_database_stores_once(tmp_path: Path, conn: psycopg.Connection) -> None:
    w = TradeWriter(conn)
    j = Journal(tmp_path)
    j.append(trades(1, 101))
    # crash after commit, before the segment was deleted: the next run replays it again
    seg_path = j.segments()[0]
    saved = seg_path.read_bytes()
    j.replay(lambda s: w.write(s.trades, s.dead_letters))
    j.close()
    seg_path.write_bytes(saved)
    Journal(tmp_path).replay(lambda s: w.write(s.trades, s.dead_letters))
    assert conn.execute("SELECT count(*), sum(qty) FROM trades").fetchone() == (
        100,
        Decimal("0.00000001") * 5050,
    )


# ---------------------------------------------------------------- corruption


def test_flipped_digit_in_price_is_quarantined_by_checksum(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.append(trades(1, 4))
    seg = j.segments()[0]
    lines = lines_of(seg)
    assert b'"95000.12345678"' in lines[1]
    rewrite_line(seg, 1, lines[1].replace(b'"95000.12345678"', b'"95001.12345678"'))
    got, res = replay_all(j)
    assert res == (2, 1)
    assert [t.trade_id for s in got for t in s.trades] == [1, 3]  # the good rows of the segment still replay
    assert all(t.price == Decimal("95000.12345678") for s in got for t in s.trades)
    (q,) = quarantined(j)
    assert "checksum" in str(q["reason"])
    assert q["segment"] == seg.name and q["line_no"] == 2
    assert b"95001.12345678" in str(q["raw"]).encode()
    assert j.quarantined == 1 and j.segments() == [] and len(j) == 0


def test_letter_in_price_is_quarantined(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.append(trades(1, 4))
    seg = j.segments()[0]
    lines = lines_of(seg)
    # damaged on disk: the checksum catches it
    rewrite_line(seg, 0, lines[0].replace(b'"95000.12345678"', b'"95000.1234x678"'))
    # written wrong with a valid checksum: validation catches it
    row = orjson.loads(lines[2][12:])
    row[4] = "95000.1234x678"
    rewrite_line(seg, 2, reseal(row))
    parsed = read_segment(seg)
    assert [t.trade_id for t in parsed.trades] == [2]
    reasons = [b.reason for b in parsed.bad]
    assert "checksum" in reasons[0]
    assert "price is not a plain decimal" in reasons[1]
    got, res = replay_all(j)
    assert res == (1, 2) and [t.trade_id for s in got for t in s.trades] == [2]
    assert [q["line_no"] for q in quarantined(j)] == [1, 3]


@pytest.mark.parametrize(
    ("index", "value", "reason"),
    [
        (10, "bogus", "unknown source 'bogus'"),
        (3, -1, "bad trade_id"),
        (3, True, "bad trade_id"),
        (4, "-95000", "price is not a plain decimal"),
        (4, "NaN", "price is not a plain decimal"),
        (5, "0", "qty must be > 0"),
        (5, "1e-8", "qty is not a plain decimal"),
        (4, 95000.5, "price is not a plain decimal"),
        (6, 1, "is_buyer_maker must be a boolean"),
        (7, 12345, "absurd trade_time_us"),
        (7, "1735689600000000", "absurd trade_time_us"),
        (8, 4_000_000_000_000_000, "absurd event_time_us"),
        (1, "bin ance", "bad exchange"),
        (2, "", "bad symbol"),
    ],
)
def test_invalid_fields_are_quarantined_with_reason(
    tmp_path: Path, index: int, value: object, reason: str
) -> None:
    j = Journal(tmp_path)
    j.append(trades(1, 3))
    seg = j.segments()[0]
    row = orjson.loads(lines_of(seg)[0][12:])
    row[index] = value
    rewrite_line(seg, 0, reseal(row))
    got, res = replay_all(j)
    assert res == (1, 1) and [t.trade_id for s in got for t in s.trades] == [2]
    (q,) = quarantined(j)
    assert reason in str(q["reason"])


def test_invalid_source_never_reaches_store_and_is_not_retried(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.append([trades(1, 2)[0]._replace(source="bogus")])  # a writer bug: the database would refuse it
    j.append(trades(2, 3))
    calls: list[Segment] = []
    res = j.replay(calls.append)
    assert (res.rows, res.bad) == (1, 1)
    assert len(calls) == 1 and calls[0].trades[0].trade_id == 2  # a segment of only bad rows is not stored
    assert "unknown source" in str(quarantined(j)[0]["reason"])
    j.close()
    j2 = Journal(tmp_path)
    assert len(j2) == 0 and j2.replay(calls.append) == (0, 0)  # never retried
    assert len(quarantined(j2)) == 1


def test_torn_last_line_is_quarantined_and_counted(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.append(trades(1, 4))
    j.close()
    seg = j.segments()[0]
    with open(seg, "ab") as fh:
        fh.write(b'J2 0badc0de ["T","binance","BTCUSDT",4,"95000.1')  # kill -9 mid-write
    j2 = Journal(tmp_path)
    assert len(j2) == 4
    got, res = replay_all(j2)
    assert res == (3, 1)
    assert got[0].bad_count == 1 and "torn" in got[0].bad[0].reason
    (q,) = quarantined(j2)
    assert "torn" in str(q["reason"]) and q["line_no"] == 4 and str(q["raw"]).endswith("95000.1")


def test_store_that_raises_leaves_segment_and_quarantines_nothing(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.append(trades(1, 4))
    j.close()  # the next append starts a second segment
    j.append(trades(4, 6))
    first = j.segments()[0]
    rewrite_line(first, 0, b"garbage")

    def down(seg: Segment) -> None:
        assert seg.bad_count == 1 and len(seg.trades) == 2  # only valid rows, bad ones listed apart
        raise psycopg.OperationalError("connection refused")

    with pytest.raises(psycopg.OperationalError):
        j.replay(down)
    assert j.segments()[0] == first and len(j.segments()) == 2
    assert quarantined(j) == [] and len(j) == 5
    got, res = replay_all(j)  # the database is back
    assert res == (4, 1) and len(quarantined(j)) == 1


def test_set_aside_quarantines_a_whole_segment(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.append(trades(1, 3))
    j.close()
    j.append(trades(3, 4))
    seg = read_segment(j.segments()[0])
    assert j.set_aside(seg, "database refused the rows as data: check violation") == 2
    got, res = replay_all(j)
    assert res == (1, 0) and got[0].trades[0].trade_id == 3
    assert [q["reason"] for q in quarantined(j)] == ["database refused the rows as data: check violation"] * 2


def test_store_may_set_a_segment_aside_itself(tmp_path: Path) -> None:
    j = Journal(tmp_path)
    j.append(trades(1, 3))
    j.close()
    j.append(trades(3, 4))

    def store(seg: Segment) -> None:
        if seg.trades[0].trade_id == 1:
            j.set_aside(seg, "refused as data")

    assert j.replay(store) == (1, 0)
    assert len(j) == 0 and j.segments() == [] and len(quarantined(j)) == 2


def test_old_unchecked_format_is_still_read_and_validated(tmp_path: Path) -> None:
    d = tmp_path / "j"
    d.mkdir()
    good = orjson.dumps(["T", "binance", "BTCUSDT", 7, "95000.5", "1E-8", False, T0, None, T0, "live"])
    bad = orjson.dumps(["T", "binance", "BTCUSDT", 8, "95000.5", "1", False, T0, None, T0, "nope"])
    (d / "seg-000000001.jsonl").write_bytes(good + b"\n" + bad + b"\n")
    got, res = replay_all(Journal(d))
    assert res == (1, 1)
    assert got[0].trades[0].qty == Decimal("0.00000001") and got[0].trades[0].event_time_us is None


# ---------------------------------------------------------------- files, cap, ownership


def test_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    outer = tmp_path / "home"
    outer.mkdir()
    outer.chmod(0o755)
    old = os.umask(0)
    try:
        d = outer / "journal" / "db" / "abc"
        j = Journal(d)
        j.append(trades(1, 2))
        j.append([trades(2, 3)[0]._replace(source="bogus")])
        j.replay(lambda s: None)
        j.append(trades(3, 4))
    finally:
        os.umask(old)
    assert stat.S_IMODE(outer.stat().st_mode) == 0o755  # directories it did not create keep their mode
    for p in (d, d.parent, d.parent.parent, d / "quarantine"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o700, p
    files = [*j.segments(), j.quarantine_file, d / ".lock"]
    assert len(files) == 3
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_cap_reached_raises_and_writes_nothing(tmp_path: Path) -> None:
    probe = Journal(tmp_path / "probe")
    probe.append(trades(1, 2))
    one = probe.bytes
    j = Journal(tmp_path / "j", max_bytes=int(one * 3.5))
    j.append(trades(1, 3))
    before = [p.read_bytes() for p in j.segments()]
    with pytest.raises(JournalFullError) as err:
        j.append(trades(3, 5))
    assert isinstance(err.value, CryptolabError)
    msg = str(err.value)
    assert str(j.dir) in msg and f"{j.max_bytes:,}" in msg
    assert "CRYPTOLAB_JOURNAL_MAX_MB" in msg and "database" in msg
    assert [p.read_bytes() for p in j.segments()] == before and len(j) == 2
    assert j.append(trades(3, 4)) == 1  # what fits still goes in
    got, res = replay_all(j)
    assert res == (3, 0)
    assert j.append(trades(4, 6)) == 2  # replay frees the room


def test_cap_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CRYPTOLAB_JOURNAL_MAX_MB", "2")
    assert default_max_bytes() == 2 * 1024 * 1024
    monkeypatch.setenv("CRYPTOLAB_JOURNAL_MAX_MB", "lots")
    with pytest.raises(ConfigError, match="CRYPTOLAB_JOURNAL_MAX_MB"):
        default_max_bytes()


def test_all_under_finds_journals_whatever_named_them(tmp_path: Path) -> None:
    root = tmp_path / "journal"
    a = Journal(root / "db1" / "btc,eth")
    a.append(trades(1, 3))
    a.close()
    b = Journal(root / "db1" / "eth,btc")
    b.append(trades(3, 4))
    b.close()
    Journal(root / "db1" / "empty").close()
    mine = Journal(root / "db1" / "mine")  # open in this process: not handed out
    mine.append(trades(9, 10))
    found = Journal.all_under(root / "db1")
    assert [j.dir.name for j in found] == ["btc,eth", "eth,btc"]
    ids = []
    for j in found:
        j.replay(lambda s: ids.extend(t.trade_id for t in s.trades))
        j.close()
    assert sorted(ids) == [1, 2, 3]
    assert Journal.all_under(root / "db1") == []
    assert Journal.all_under(tmp_path / "nowhere") == []


def test_a_journal_in_use_by_another_process_is_left_alone(tmp_path: Path) -> None:
    d = tmp_path / "j"
    j = Journal(d)
    j.append(trades(1, 2))
    j.close()
    code = (
        "import sys, time; from cryptolab.storage.journal import Journal; j = Journal(sys.argv[1]); "
        "print('ready', flush=True); time.sleep(30)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(d)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert Journal.all_under(tmp_path) == []
        with pytest.raises(JournalBusyError, match=f"pid {proc.pid}"):
            Journal(d)
    finally:
        proc.kill()
        proc.wait(10)
    # the holder died (kill -9): its lock went with it
    (again,) = Journal.all_under(tmp_path)
    assert len(again) == 1
    again.close()


def test_book_rows_round_trip_exactly_and_bad_ones_are_set_aside(tmp_path: Path) -> None:
    from cryptolab.book import BookGap, BookSnapshot, BookTop, DepthDiff, Quote

    t = 1_723_161_255_208_000
    rows = [
        DepthDiff(
            "binance",
            "BTCUSDT",
            5,
            9,
            t,
            [("61737.63000000", "0.00000000")],
            [("61837.64", "1.5")],
            t + 3,
            None,
        ),
        DepthDiff("binance-usdm", "BTCUSDT", 12, 15, t, [], [("1.0", "2")], t + 3, 9, "replay"),
        Quote("binance", "BTCUSDT", 9, "61837.63", "3.78826000", "61837.64", "0.1", t + 4, None),
        BookSnapshot("binance", "BTCUSDT", 7, [("1.5", "2")], [("1.6", "3")], t + 1),
        BookGap("binance", "BTCUSDT", "gap", 9, 12, t + 5, 20, t + 6),
        BookTop("binance", "BTCUSDT", 9, t, "61837.63", "3.78826000", "61837.64", "0.1"),
        BookTop("binance-usdm", "BTCUSDT", 15, t, None, None, "1.0", "2", "replay"),  # an empty side
    ]
    with Journal(tmp_path / "j") as j:
        assert j.append([], [], rows) == 7
        [path] = j.segments()
        seg = read_segment(path)
        assert seg.book == rows and seg.rows == 7 and not seg.bad
        good = path.read_bytes()
        # a level that is not a plain decimal, and a gap with an unknown reason: each a bad record
        bad_level = orjson.dumps(["B", "binance", "BTCUSDT", 1, 2, None, t, t, [["1e5", "1"]], [], "live"])
        bad_gap = orjson.dumps(["G", "binance", "BTCUSDT", "oops", 1, 2, t, None, None])
        half_top = orjson.dumps(["P", "binance", "BTCUSDT", 9, t, "1.0", None, None, None, "live"])
        extra = b"".join(b"J2 %08x %s\n" % (zlib.crc32(p), p) for p in (bad_level, bad_gap, half_top))
        path.write_bytes(good + extra)
        seg = read_segment(path)
        assert seg.book == rows
        assert [b.reason for b in seg.bad] == [
            "bids price is not a plain decimal string > 0: '1e5'",
            "unknown gap reason 'oops'",
            "bid qty is not a plain decimal string: 'None'",
        ]
