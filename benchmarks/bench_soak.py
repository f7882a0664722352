"""Soak run: ≥ 1M trades through every fault, a database restart and a `kill -9`, checked exactly.

    python benchmarks/bench_soak.py                 # 1,000,000 trades (a few minutes)
    python benchmarks/bench_soak.py --quick         # ~50,000 trades: a smoke run
    python benchmarks/bench_soak.py --trades 2000000 --rate 8000 --max-seconds 3600

Everything runs on 127.0.0.1 in a private CRYPTOLAB_HOME under /tmp (removed at the end
unless --keep): an embedded PostgreSQL, a local exchange in its own process (a synthetic
market that stops after --trades trades), and the capture as a child process — the
`cryptolab capture` command, as a user runs it. While the market prints, this script
injects every fault kind the exchange offers in turn (connection resets and closes, a
stall, duplicated and reordered frames, all six malformed frames, stream gaps, REST 429 /
500 / timeouts), stops the database at 30 % for longer than the capture's lease (--outage-seconds:
the lease runs out, the capture stops streaming and wins its symbols back when the database
returns, filling the hole by id), and at 60 % stops the database, kills the
capture with SIGKILL while rows wait in its journal, starts the database again and starts
a new capture (symbols in the reverse order). Faults stop at 90 % so the end is clean.
After the market stopped and the capture caught up (SIGTERM: it flushes and exits), it prints:

* trades stored vs the exchange's log, exactly: missing, extra, wrong (price / qty / side /
  time, each counted), duplicated ids;
* `bars_1s` vs an independent aggregation of the exchange's log (missing, extra, wrong);
* dead letters vs the malformed frames the exchange sent, per variant;
* what was left behind: journal rows, quarantined records, unrecoverable gaps, run rows.

Exit status: 0 when nothing is missing, extra, wrong or duplicated (trades and bars) and
every malformed frame is a dead letter; 1 otherwise; 2 when the run did not finish
within --max-seconds (everything it started is stopped).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal, localcontext
from pathlib import Path
from typing import Any

import psycopg

# every fault kind, each malformed variant, in turn (exchange.inject(kind, **params))
FAULTS: list[tuple[str, dict[str, Any]]] = [
    ("reset", {}),
    ("malformed", {"variant": "bad_json"}),
    ("duplicate", {"n": 5}),
    ("gap", {"n": 50}),
    ("malformed", {"variant": "missing_field"}),
    ("reorder", {"n": 3}),
    ("rest_429", {"n": 2}),
    ("malformed", {"variant": "wrong_type"}),
    ("close", {}),
    ("rest_500", {"n": 2}),
    ("malformed", {"variant": "huge"}),
    ("stall", {"seconds": 4.0}),
    ("rest_timeout", {"n": 1, "seconds": 12.0}),
    ("malformed", {"variant": "unknown_event"}),
    ("gap", {"n": 200}),
    ("malformed", {"variant": "absurd_value"}),
]
# what the capture's dead letter says for each malformed variant (cryptolab.binance.wire's reasons)
VARIANT_REASON: dict[str, Callable[[str], bool]] = {
    "bad_json": lambda r: r.startswith("invalid JSON"),
    "missing_field": lambda r: r.startswith("missing field"),
    "wrong_type": lambda r: "must be a decimal string" in r,
    "huge": lambda r: "is not a plain decimal" in r or r.startswith("absurd p"),
    "unknown_event": lambda r: r.startswith("unknown event type"),
    "absurd_value": lambda r: r.startswith("absurd q"),
}


class Timeout(Exception):
    pass


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Soak:
    def __init__(self, args: argparse.Namespace, home: Path) -> None:
        self.args = args
        self.home = home
        self.deadline = time.monotonic() + args.max_seconds
        self.symbols = [s.strip().lower() for s in args.symbols.split(",") if s.strip()]
        self.per_symbol = -(-args.trades // len(self.symbols))
        self.capture: subprocess.Popen[bytes] | None = None
        self.captures = 0
        self.events: list[str] = []
        self.injected: Counter[str] = Counter()
        self.dsn = ""
        self.ex: Any = None
        self.unexpected: list[str] = []
        self.final_rc: int | None = None

    # ---------------------------------------------------------------- helpers

    def left(self) -> float:
        return float(self.deadline - time.monotonic())

    def check_time(self, what: str) -> None:
        if self.left() <= 0:
            raise Timeout(f"--max-seconds {self.args.max_seconds:g} reached while {what}")

    def unexpect(self, msg: str) -> None:
        self.unexpected.append(msg)
        self.event(f"UNEXPECTED: {msg}")

    def event(self, msg: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {msg}")
        log(msg)

    def printed(self) -> int:
        return sum(int(v) for v in self.ex.state()["printed"].values())

    def stored(self) -> int:
        try:
            with psycopg.connect(self.dsn, connect_timeout=5) as c:
                row = c.execute("SELECT count(*) FROM trades WHERE symbol = ANY(%s)",
                                ([s.upper() for s in self.symbols],)).fetchone()
                return int(row[0]) if row else 0
        except psycopg.OperationalError:
            return -1

    def start_capture(self, symbols: list[str]) -> None:
        self.captures += 1
        cmd = [sys.executable, "-m", "cryptolab.cli.main", "capture", "--symbols", ",".join(symbols),
               "--source", self.ex.ws_url, "--from-id", "1"]
        with open(self.home / f"capture-{self.captures}.log", "wb") as out:
            self.capture = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                            env={**os.environ, "CRYPTOLAB_DSN": self.dsn})
        self.event(f"capture #{self.captures} started (pid {self.capture.pid}, symbols {','.join(symbols)})")

    def capture_died(self) -> str | None:
        if self.capture is not None and self.capture.poll() is not None:
            tail = (
                (self.home / f"capture-{self.captures}.log")
                .read_text(errors="replace")
                .strip()
                .splitlines()[-5:]
            )
            return f"capture #{self.captures} exited with {self.capture.returncode}: " + " | ".join(tail)
        return None

    def db_stop(self) -> None:
        from cryptolab.storage import embedded

        embedded.stop()
        self.event("database stopped")

    def db_start(self) -> None:
        from cryptolab.storage import embedded

        uri = embedded.start()
        if uri != self.dsn:
            self.event(f"database started at a NEW address {uri} (the capture still has {self.dsn})")
        else:
            self.event("database started")

    # ---------------------------------------------------------------- the run

    def run(self) -> int:
        from cryptolab.exchange import LocalExchange
        from cryptolab.storage import embedded

        a = self.args
        self.dsn = embedded.start()
        log(f"embedded PostgreSQL up ({self.dsn}); CRYPTOLAB_HOME={self.home}")
        self.ex = LocalExchange(
            symbols=self.symbols, rate=a.rate, seed=a.seed, max_trades=self.per_symbol, process=True
        ).start()
        log(
            f"local exchange {self.ex.ws_url}: {len(self.symbols)} symbols × {self.per_symbol:,} trades "
            f"at {a.rate:g}/s"
        )
        t0 = time.monotonic()
        try:
            self.start_capture(self.symbols)
            self.drive()
            self.finish()
        finally:
            if self.capture is not None and self.capture.poll() is None:
                self.capture.kill()
                self.capture.wait(10)
        elapsed = time.monotonic() - t0
        return self.report(elapsed)

    def drive(self) -> None:
        """While the market prints: faults in turn, a database restart, a kill -9."""
        a = self.args
        total = self.per_symbol * len(self.symbols)
        fault_i = 0
        next_fault = time.monotonic() + a.fault_every
        next_note = time.monotonic() + 10
        restarted = killed = False
        while True:
            self.check_time("the market was printing")
            died = self.capture_died()
            if died:
                self.unexpect(died)
                self.ex.stop_market()
                return
            printed = self.printed()
            progress = printed / total
            if printed >= total:
                self.event(f"market finished: {printed:,} trades printed")
                return
            now = time.monotonic()
            if progress < 0.9 and now >= next_fault:
                kind, params = FAULTS[fault_i % len(FAULTS)]
                fault_i += 1
                n = self.ex.inject(kind, **params)
                self.injected[kind if kind != "malformed" else f"malformed_{params['variant']}"] += 1
                if n == 0 and kind in ("reset", "close", "stall", "duplicate", "reorder", "malformed"):
                    log(f"fault {kind} hit no connection (capture reconnecting)")
                next_fault = now + a.fault_every
            if not restarted and progress >= 0.3:
                restarted = True
                self.event(
                    f"database outage of {a.outage_seconds:g} s (longer than the lease) at {progress:.0%}"
                )
                self.db_stop()
                time.sleep(a.outage_seconds)
                self.db_start()
            if not killed and progress >= 0.6:
                killed = True
                self.event(f"database down, then kill -9 of the capture at {progress:.0%}")
                self.db_stop()
                time.sleep(a.db_down_seconds)  # the capture spills to its journal meanwhile
                jrows = journal_rows(self.home)
                assert self.capture is not None
                self.capture.send_signal(signal.SIGKILL)
                self.capture.wait(10)
                self.event(f"capture #{self.captures} killed (-9) with {jrows:,} rows in journal files")
                time.sleep(1.0)  # the market goes on while nobody listens
                self.db_start()
                self.start_capture(list(reversed(self.symbols)))
            if now >= next_note:
                log(
                    f"{printed:,} / {total:,} printed ({progress:.0%}), {self.stored():,} stored, "
                    f"{sum(self.injected.values())} faults injected"
                )
                next_note = now + 10
            time.sleep(0.25)

    def finish(self) -> None:
        """Wait until every printed trade is stored (or no progress for --settle-seconds), then SIGTERM."""
        a = self.args
        total = self.printed()
        last, last_change = -2, time.monotonic()
        while True:
            self.check_time("waiting for the capture to catch up")
            died = self.capture_died()
            if died:
                if not self.unexpected:
                    self.unexpect(died)
                break
            n = self.stored()
            if n >= total:
                self.event(f"capture caught up: {n:,} stored")
                break
            if n != last:
                last, last_change = n, time.monotonic()
            elif time.monotonic() - last_change > a.settle_seconds:
                self.event(
                    f"no progress for {a.settle_seconds:g} s at {n:,} stored of {total:,}: stopping anyway"
                )
                break
            time.sleep(1.0)
        assert self.capture is not None
        if self.capture.poll() is None:
            self.capture.send_signal(signal.SIGTERM)
            try:
                self.capture.wait(min(120.0, max(5.0, self.left())))
            except subprocess.TimeoutExpired:
                self.unexpect("the capture did not stop within 120 s of SIGTERM: killed")
                self.capture.kill()
                self.capture.wait(10)
        logf = self.home / f"capture-{self.captures}.log"
        summary = [x for x in logf.read_text(errors="replace").splitlines() if x.strip()][-3:]
        self.event(f"capture #{self.captures} exited {self.capture.returncode}: {' | '.join(summary)}")
        self.final_rc = self.capture.returncode
        if self.final_rc != 0 and not self.unexpected:
            self.unexpect(f"the last capture exited {self.final_rc} after SIGTERM")

    # ---------------------------------------------------------------- the verdict

    def report(self, elapsed: float) -> int:
        ex = self.ex
        state = ex.state()
        faults = dict(state["fault_counts"])
        bad = len(self.unexpected)
        print()
        print(f"== soak: {len(self.symbols)} symbols, {elapsed:.0f} s, {self.captures} capture processes")
        print("events:")
        for e in self.events:
            print(f"  {e}")
        print("faults the exchange counted: " + ", ".join(f"{k} {v}" for k, v in sorted(faults.items())))
        missing_kinds = [k for k, _ in FAULTS if faults.get(k, 0) == 0]
        if missing_kinds:
            print(f"  (kinds that never fired: {', '.join(sorted(set(missing_kinds)))})")
        with psycopg.connect(self.dsn) as c, localcontext() as ctx:
            ctx.prec = 80
            c.execute("SET TIME ZONE 'UTC'")
            exchanges = c.execute(
                "SELECT exchange, source, count(*) FROM trades GROUP BY 1, 2 ORDER BY 1, 2"
            ).fetchall()
            print("stored as: " + ", ".join(f"exchange={e} source={s}: {n:,}" for e, s, n in exchanges))
            tot = Counter[str]()
            for sym in self.symbols:
                r = compare_symbol(c, ex, sym.upper())
                tot.update(r)
                print(
                    f"{sym.upper()}: printed {r['printed']:,}, stored {r['stored']:,} (distinct ids "
                    f"{r['stored_ids']:,}); missing {r['missing']}, extra {r['extra']}, duplicated "
                    f"{r['duplicated']}, wrong {r['wrong']} (price {r['wrong_price']}, qty {r['wrong_qty']}, "
                    f"side {r['wrong_side']}, time {r['wrong_time']}); times stored in ms {r['time_ms']:,}, "
                    f"µs {r['time_us']:,}"
                )
                print(
                    f"  bars_1s: expected {r['bars_expected']:,}, stored {r['bars_stored']:,}; missing "
                    f"{r['bars_missing']}, extra {r['bars_extra']}, wrong {r['bars_wrong']}"
                )
                for ex_line in r.examples:
                    print(f"    e.g. {ex_line}")
            bad += tot["missing"] + tot["extra"] + tot["duplicated"] + tot["wrong"]
            bad += tot["bars_missing"] + tot["bars_extra"] + tot["bars_wrong"]
            print(
                f"TOTAL: printed {tot['printed']:,}, stored {tot['stored']:,}; missing {tot['missing']}, "
                f"extra {tot['extra']}, duplicated {tot['duplicated']}, wrong {tot['wrong']}; bars_1s "
                f"missing {tot['bars_missing']}, extra {tot['bars_extra']}, wrong {tot['bars_wrong']}"
            )
            # dead letters vs malformed frames sent
            reasons = [r[0] for r in c.execute("SELECT reason FROM dead_letters ORDER BY id")]
            got: Counter[str] = Counter()
            other: Counter[str] = Counter()
            for reason in reasons:
                for v, match in VARIANT_REASON.items():
                    if match(reason):
                        got[v] += 1
                        break
                else:
                    other[reason[:60]] += 1
            sent_total = faults.get("malformed", 0)
            print(f"dead letters: {len(reasons):,} stored; malformed frames sent {sent_total:,}")
            dl_short = 0
            for v in VARIANT_REASON:
                sent = faults.get(f"malformed_{v}", 0)
                mark = "" if got[v] == sent else "   <-- differs"
                dl_short += max(0, sent - got[v])
                print(f"  {v:14s} sent {sent:5d}  dead letters {got[v]:5d}{mark}")
            for reason, n in other.most_common(8):
                print(f"  other reason: {n:5d}  {reason}")
            if dl_short:
                bad += dl_short
            gaps = c.execute(
                "SELECT symbol, status, count(*), coalesce(sum(missing), 0) FROM capture_gaps "
                "GROUP BY 1, 2 ORDER BY 1, 2"
            ).fetchall()
            print(
                "capture_gaps: " + (", ".join(f"{s} {st}: {n} ({m} ids)" for s, st, n, m in gaps) or "none")
            )
            runs = c.execute(
                "SELECT run_id, status, trades_stored FROM capture_runs ORDER BY run_id"
            ).fetchall()
            print(
                "capture_runs: "
                + ", ".join(f"#{i} {st} ({n:,} stored)" for i, st, n in runs)
                + "  (the first was killed with -9)"
            )
        print(
            f"left behind: {journal_rows(self.home):,} journal rows, {quarantine_rows(self.home):,} "
            f"quarantined records; last capture exit status {self.final_rc}"
        )
        for u in self.unexpected:
            print(f"UNEXPECTED: {u}")
        verdict = (
            "OK: every trade exactly once, bars and dead letters exact"
            if not bad
            else f"FAILED: {bad} differences"
        )
        print(verdict)
        return 0 if not bad else 1


class Result(Counter[str]):
    examples: list[str]


def compare_symbol(c: psycopg.Connection, ex: Any, sym: str) -> Result:
    """Stored trades and bars_1s of one symbol vs the exchange's log (a merge on trade id)."""
    r = Result()
    r.examples = []
    ms_log = ex.trade_log(sym, "MILLISECOND")
    us_times = [t.trade_time_us for t in ex.trade_log(sym, "MICROSECOND")]
    want = {t.trade_id: (t, us) for t, us in zip(ms_log, us_times)}
    r["printed"] = len(want)
    seen: Counter[int] = Counter()
    with c.cursor(name=f"soak_{sym}") as cur:
        cur.itersize = 50_000
        cur.execute(
            "SELECT trade_id, price, qty, is_buyer_maker, (extract(epoch FROM trade_time) * 1000000)::bigint "
            "FROM trades WHERE symbol = %s ORDER BY trade_id",
            (sym,),
        )
        for tid, price, qty, maker, t_us in cur:
            r["stored"] += 1
            seen[tid] += 1
            if seen[tid] > 1:
                continue
            w = want.get(tid)
            if w is None:
                r["extra"] += 1
                if len(r.examples) < 5:
                    r.examples.append(f"extra id {tid}")
                continue
            t, us = w
            wrong = False
            for field, ok in (
                ("price", price == t.price),
                ("qty", qty == t.qty),
                ("side", maker == t.is_buyer_maker),
                ("time", t_us in (t.trade_time_us, us)),
            ):
                if not ok:
                    r[f"wrong_{field}"] += 1
                    wrong = True
            if wrong:
                r["wrong"] += 1
                if len(r.examples) < 5:
                    r.examples.append(
                        f"id {tid}: stored {price} {qty} {maker} {t_us}, printed {t.price} {t.qty} "
                        f"{t.is_buyer_maker} {t.trade_time_us}/{us}"
                    )
            r["time_ms" if t_us == t.trade_time_us else "time_us"] += 1
    r["stored_ids"] = len(seen)
    r["duplicated"] = sum(1 for n in seen.values() if n > 1)
    missing = [tid for tid in want if tid not in seen]
    r["missing"] = len(missing)
    if missing:
        r.examples.append(f"missing ids {ranges(missing)[:300]}")
    # bars_1s against an independent aggregation of the log (id order within each second)
    bars: dict[int, list[Any]] = defaultdict(list)
    for t in sorted(ms_log, key=lambda x: x.trade_id):
        bars[t.trade_time_us // 1_000_000].append(t)
    expect = {}
    for sec, ts in bars.items():
        expect[sec] = (
            ts[0].price,
            max(t.price for t in ts),
            min(t.price for t in ts),
            ts[-1].price,
            sum(t.qty for t in ts),
            sum(t.price * t.qty for t in ts),
            sum((t.qty for t in ts if not t.is_buyer_maker), Decimal(0)),
            len(ts),
            ts[0].trade_id,
            ts[-1].trade_id,
        )
    got = {
        int(row[0]): tuple(row[1:])
        for row in c.execute(
            "SELECT extract(epoch FROM ts)::bigint, open, high, low, close, volume, quote_volume, "
            "taker_buy_volume, trade_count, first_trade_id, last_trade_id FROM bars_1s WHERE symbol = %s",
            (sym,),
        )
    }
    r["bars_expected"], r["bars_stored"] = len(expect), len(got)
    r["bars_missing"] = sum(1 for s in expect if s not in got)
    r["bars_extra"] = sum(1 for s in got if s not in expect)
    wrong_bars = [s for s in expect if s in got and got[s] != expect[s]]
    r["bars_wrong"] = len(wrong_bars)
    for s in wrong_bars[:2]:
        r.examples.append(f"bar {s}: stored {got[s]}, expected {expect[s]}")
    return r


def ranges(ids: list[int]) -> str:
    ids = sorted(ids)
    out, start, prev = [], ids[0], ids[0]
    for i in [*ids[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        out.append(f"{start}" if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(out)


def journal_rows(home: Path) -> int:
    n = 0
    for p in (home / "journal").rglob("seg-*.jsonl"):
        try:
            n += p.read_bytes().count(b"\n")
        except OSError:
            pass
    return n


def quarantine_rows(home: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in (home / "journal").rglob("quarantine/*.jsonl"))


@contextmanager
def private_home(keep: bool) -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="cl-soak-", dir="/tmp"))
    os.environ["CRYPTOLAB_HOME"] = str(home)
    os.environ["CRYPTOLAB_ENV_FILE"] = str(home / "no.env")
    os.environ.pop("CRYPTOLAB_DSN", None)
    try:
        yield home
    finally:
        from cryptolab.storage import embedded

        try:
            embedded.stop()
        except Exception as exc:  # report, keep cleaning
            log(f"stopping the embedded server: {exc}")
        if keep:
            log(f"kept {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--trades", type=int, default=1_000_000, help="trades the market prints in all (default 1,000,000)"
    )
    ap.add_argument("--quick", action="store_true", help="a smoke run: 50,000 trades at 2,500/s")
    ap.add_argument(
        "--rate", type=float, default=None, help="trades/s of the market (default 5000; --quick 2500)"
    )
    ap.add_argument("--symbols", default="btcusdt,ethusdt,solusdt")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument(
        "--fault-every",
        type=float,
        default=None,
        help="seconds between faults (default: every kind about twice before 90 %%, at most 2 s apart)",
    )
    ap.add_argument(
        "--db-down-seconds", type=float, default=3.0, help="the database's down time before the kill -9"
    )
    ap.add_argument(
        "--outage-seconds",
        type=float,
        default=12.0,
        help="the database outage at 30 %%: longer than the capture's 5 s lease (default 12)",
    )
    ap.add_argument(
        "--settle-seconds",
        type=float,
        default=90.0,
        help="give up waiting for the capture to catch up after this long without progress",
    )
    ap.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="hard bound on the whole run (default 3600; --quick 600)",
    )
    ap.add_argument(
        "--keep", action="store_true", help="keep the private CRYPTOLAB_HOME (logs, journal, data)"
    )
    args = ap.parse_args()
    if args.quick and args.trades == 1_000_000:
        args.trades = 50_000
    args.rate = args.rate or (2500.0 if args.quick else 5000.0)
    args.fault_every = args.fault_every or min(
        2.0, max(0.25, args.trades / args.rate * 0.6 / (2 * len(FAULTS)))
    )
    args.max_seconds = args.max_seconds or (600.0 if args.quick else 3600.0)
    if args.trades < 1000 or not args.rate > 0 or not args.max_seconds > 0:
        ap.error("--trades must be >= 1000, --rate and --max-seconds > 0")
    with private_home(args.keep) as home:
        soak = Soak(args, home)
        try:
            return soak.run()
        except Timeout as exc:
            log(f"ABORTED: {exc}")
            return 2
        finally:
            if soak.ex is not None:
                soak.ex.stop()


if __name__ == "__main__":
    sys.exit(main())
