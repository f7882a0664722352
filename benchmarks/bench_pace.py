"""A real market's pace: CPU per market-hour of a capture, commits/s, receive→commit latency.

    python benchmarks/bench_pace.py [--seconds 300 | --quick] [--rates 31,310] [--windows 0.2,0]
                                    [--peer cryptofeed|none] [--mix trades|book] [--baseline REV]

BTCUSDT's spot trade rate in the team's recording is ~31 trades/s; the run is at that pace and
at 10× it, each for --seconds. For each commit window (0.2 s, the default; 0 = commit as soon
as anything arrived, the behaviour before group commit: the baseline of this same run) a
capture runs in a child process against a local exchange in its own process, and prints:

* CPU seconds per market-hour of the capture process and of its PostgreSQL backends (from
  /proc: every backend connected to the run's database), and their sum;
* transactions committed per second in that database (pg_stat_database.xact_commit: data,
  leases, heartbeats) and the capture's own data commits per second;
* receive → commit p50 / p99.

In the same run, alongside the first window of each rate and from the same exchange process
(so the same trades), a peer client receives the stream in memory: cryptofeed's Binance feed
with a callback that only counts (`peer_cryptofeed.py`), every URL pointed at 127.0.0.1, taking
trades from `@aggTrade` as it does from Binance (its column "stored/s" is aggregates/s). It
runs with the Python of its own venv (`$CRYPTOLAB_BENCH_PEERS/cryptofeed-pyX.Y`, default under
`~/.cache/cryptolab/bench-peers/`), created with `python -m venv` and `pip install cryptofeed`
when missing (with python3.13+ when there is one: cryptofeed 3 needs it). Its CPU is measured the
same way (the process's user + system time over the same length of run after the same warm-up), and the line
`cryptolab ÷ cryptofeed` is the capture's total (process + PostgreSQL backends) over it.

`--mix book`: the exchange serves BTCUSDT's real mix (`cryptolab exchange --pace`: ~31 trades/s,
~112 bookTicker/s, 10 depth diffs/s carrying ~460 level updates/s; `--rates` are then trades/s
too, 31 being 1× the real pace), the capture stores trades, depth diffs and bookTickers
(`streams=trade,depth,bookTicker`) and cryptofeed receives the same three streams (trades, its L2
book from the REST snapshot and the 100 ms diffs, tickers from bookTicker) into memory.

`--baseline REV`: every cell also runs the capture code of git revision REV (its tree extracted
to a temporary directory, the same exchange settings, one after the other), for a before/after in
one run. The scratch database gets `sql/schema/append_trades.sql` (the one-call append) when
schema.sql does not carry it yet; a baseline that predates it does not use it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
from _common import scratch_database
from bench_capture import _cpu_backends, _cpu_self, extract, start_exchange, stop_exchange

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
WARMUP = 3.0


def peer_python() -> Path:
    """cryptofeed's own venv's Python; the venv is created and cryptofeed installed when missing.

    cryptofeed 3 needs Python >= 3.13: the venv is made with `$CRYPTOLAB_BENCH_PEER_PYTHON`, else
    the newest of python3.14 / python3.13 on PATH, else this Python (which gets cryptofeed 2)."""
    base = os.environ.get("CRYPTOLAB_BENCH_PEER_PYTHON") or next(
        (w for w in (shutil.which(n) for n in ("python3.14", "python3.13")) if w and _runs(w)), sys.executable
    )
    if base == sys.executable:
        print(
            "no python3.13+ found (set CRYPTOLAB_BENCH_PEER_PYTHON): the peer is cryptofeed 2, not 3",
            flush=True,
        )
    tag = subprocess.run(
        [base, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    home = Path(os.environ.get("CRYPTOLAB_BENCH_PEERS", Path.home() / ".cache" / "cryptolab" / "bench-peers"))
    venv = home / f"cryptofeed-py{tag}"
    py = venv / "bin" / "python"
    if not (venv / ".installed").exists():
        print(f"installing cryptofeed into {venv} (once)", flush=True)
        home.mkdir(parents=True, exist_ok=True)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "cryptofeed"], check=True)
        (venv / ".installed").touch()
    return py


def _runs(python: str) -> bool:
    return subprocess.run([python, "-c", "pass"], capture_output=True).returncode == 0


def peer_version(py: Path) -> str:
    out = subprocess.run(
        [str(py), "-c", "import importlib.metadata as m; print(m.version('cryptofeed'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _xact(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def _child(args: str) -> None:
    from cryptolab.capture import Capture

    dsn, ws, seconds, window, mix = json.loads(args)
    dbname = str(psycopg.conninfo.conninfo_to_dict(dsn)["dbname"])
    streams = {"streams": ("trade", "depth", "bookTicker")} if mix == "book" else {}
    cap = Capture(["btcusdt"], source=ws, dsn=dsn, commit_window=window, **streams).start()
    time.sleep(WARMUP)
    st0, t0, c0, pg0, x0 = cap.status(), time.monotonic(), _cpu_self(), _cpu_backends(dbname), _xact(dsn)
    cap.reset_latencies()
    time.sleep(seconds)
    st1, t1, c1, pg1, x1 = cap.status(), time.monotonic(), _cpu_self(), _cpu_backends(dbname), _xact(dsn)
    lat = sorted(cap.latencies_us())
    cap.stop()
    wall = t1 - t0

    def q(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] / 1000 if lat else float("nan")

    pg = sum(pg1[pid] - pg0.get(pid, 0.0) for pid in pg1)
    hour = 3600 / wall
    print(
        json.dumps(
            {
                "trades_per_s": (st1.rows_stored - st0.rows_stored) / wall,
                "cpu_capture_h": (c1 - c0 - 0.0) * hour,
                "cpu_pg_h": pg * hour,
                "xact_per_s": (x1 - x0) / wall,
                "data_commits_per_s": (st1.commits - st0.commits) / wall,
                "p50": q(0.5),
                "p99": q(0.99),
                "messages_per_s": (st1.messages - st0.messages) / wall,
            }
        )
    )


def start_pace_exchange(rate: float) -> tuple[subprocess.Popen[str], str]:
    """The local exchange serving BTCUSDT's real mix at rate/31 times its pace."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # always this tree's exchange
    proc = subprocess.Popen(
        [sys.executable, "-m", "cryptolab.cli.main", "exchange", "--pace", "btcusdt"]
        + ["--pace-x", str(rate / 31.0), "--seed", "1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline().split()
    return proc, dict(p.split("=", 1) for p in first)["ws"]


def install_append_function(dsn: str) -> bool:
    """sql/schema/append_trades.sql into the scratch database when schema.sql did not bring it."""
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute("SELECT to_regproc('cryptolab_append_trades') IS NOT NULL").fetchone()
        if row is not None and row[0]:
            return False
        c.execute((ROOT / "sql" / "schema" / "append_trades.sql").read_text())  # type: ignore[arg-type]
    return True


def run(
    dsn: str,
    rate: float,
    seconds: float,
    window: float,
    peer: Path | None = None,
    mix: str = "trades",
    code: str | None = None,
) -> tuple[dict[str, float], dict[str, float] | None]:
    """One capture (and, given `peer`, cryptofeed at the same time) on one exchange's stream;
    `code`: another tree's capture code (a baseline)."""
    with psycopg.connect(dsn) as conn:
        conn.execute("TRUNCATE trades, bars_1s, capture_gaps")
        if mix == "book":
            conn.execute("TRUNCATE book_diffs, quotes, book_snapshots, book_tops")
    proc, ws = start_pace_exchange(rate) if mix == "book" else start_exchange(rate)
    rest = "http://" + ws.removeprefix("ws://")
    env_child = dict(os.environ)
    if code is not None:
        env_child["PYTHONPATH"] = code
    try:
        side = None
        if peer is not None:
            # cryptofeed 3 caches the exchange's symbols under XDG_CACHE_HOME: the local exchange's
            # must not land in the user's cache as Binance's
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            env["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="cryptolab-bench-peer-")
            side = subprocess.Popen(
                [str(peer), str(HERE / "peer_cryptofeed.py"), ws, rest, "btcusdt", str(seconds), str(WARMUP)]
                + [mix],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=HERE,
            )
        out = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps([dsn, ws, seconds, window, mix])],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env_child,
        )
        peer_out = side.communicate(timeout=seconds + 60) if side is not None else None
    finally:
        stop_exchange(proc)
        if peer is not None:
            shutil.rmtree(env["XDG_CACHE_HOME"], ignore_errors=True)
    if out.returncode:
        raise SystemExit(f"the capture run failed:\n{out.stderr}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    if side is None or peer_out is None:
        return result, None
    if side.returncode:
        raise SystemExit(f"cryptofeed's run failed:\n{peer_out[1]}")
    peer_result: dict[str, float] = json.loads(peer_out[0].strip().splitlines()[-1])
    return result, peer_result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--seconds", type=float, default=300.0, help="length of each measured cell (the issue: 5 min)"
    )
    ap.add_argument("--quick", action="store_true", help="20 s cells, for a quick look")
    ap.add_argument("--peer", choices=("cryptofeed", "none"), default="cryptofeed")
    ap.add_argument("--rates", default="31,310", help="trades/s (BTCUSDT's pace and 10x)")
    ap.add_argument(
        "--windows", default="0.2,0", help="commit windows to compare (0 = the pre-group-commit way)"
    )
    ap.add_argument(
        "--mix", choices=("trades", "book"), default="trades", help="trades only, or BTCUSDT's real mix"
    )
    ap.add_argument("--baseline", metavar="REV", help="also run the capture code of this git revision")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        _child(a.child)
        return
    seconds = 20.0 if a.quick else a.seconds
    peer = peer_python() if a.peer == "cryptofeed" else None
    if peer is not None:
        print(f"peer: cryptofeed {peer_version(peer)} ({peer})")
    variants: list[tuple[str, str | None]] = [("this tree", None)]
    if a.baseline:
        variants.append((a.baseline, extract(a.baseline)))
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"load average at start: {load}; mix: {a.mix}", flush=True)
    with scratch_database("pace") as dsn:
        if install_append_function(dsn):
            print("applied sql/schema/append_trades.sql (schema.sql does not carry it yet)")
        print(
            f"{'rate':>6} {'window':>7} {'code':>10} {'stored/s':>9} {'cpu cap s/h':>12} {'cpu pg s/h':>11} "
            f"{'total s/h':>10} {'xact/s':>7} {'data commits/s':>15} {'p50 ms':>7} {'p99 ms':>7} "
            f"{'msgs/s':>7} {'load':>5}"
        )
        for rate in (float(x) for x in a.rates.split(",")):
            totals: dict[tuple[float, str], float] = {}
            for i, window in enumerate(float(x) for x in a.windows.split(",")):
                for name, code in variants:
                    r, p = run(dsn, rate, seconds, window, peer if i == 0 else None, a.mix, code)
                    total = r["cpu_capture_h"] + r["cpu_pg_h"]
                    totals[(window, name)] = total
                    print(
                        f"{rate:>6.0f} {window:>7.2f} {name[:10]:>10} {r['trades_per_s']:>9.1f} "
                        f"{r['cpu_capture_h']:>12.1f} {r['cpu_pg_h']:>11.1f} {total:>10.1f} "
                        f"{r['xact_per_s']:>7.1f} "
                        f"{r['data_commits_per_s']:>15.1f} {r['p50']:>7.1f} {r['p99']:>7.1f} "
                        f"{r.get('messages_per_s', float('nan')):>7.1f} {os.getloadavg()[0]:>5.2f}",
                        flush=True,
                    )
                    if p is not None:
                        ratio = total / p["cpu_h"] if p["cpu_h"] > 0 else float("inf")
                        print(
                            f"{rate:>6.0f} {'peer':>7} {'cryptofeed':>10} {p['trades_per_s']:>9.1f} "
                            f"{p['cpu_h']:>12.1f} "
                            f"{'':>11} {p['cpu_h']:>10.1f}   same stream, same time (aggTrades/s; "
                            f"{p.get('book_updates_per_s', 0.0):.0f} book updates/s); cryptolab ({name}) ÷ "
                            f"cryptofeed = {ratio:.2f}x",
                            flush=True,
                        )
            windows = sorted({w for w, _ in totals}, reverse=True)
            if len(windows) == 2:
                w0, w1 = windows
                t0, t1 = totals[(w0, "this tree")], totals[(w1, "this tree")]
                print(
                    f"       at {rate:.0f}/s: window {w0:g} s costs {t0 / t1:.2f}x the CPU of window {w1:g} s"
                )


if __name__ == "__main__":
    main()
