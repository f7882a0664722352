"""`LocalExchange`: the local exchange as a context manager, in a thread or a process.

    with LocalExchange(symbols=["btcusdt", "ethusdt"], rate=200, seed=1) as ex:
        ex.ws_url, ex.http_url            # ws://127.0.0.1:PORT, http://127.0.0.1:PORT
        ...                               # point a capture at it
        ex.stop_market()                  # no more trades
        ex.trade_log("btcusdt")           # every trade printed, exact Decimals (ms times)
        ex.fault_counts                   # {"reset": 1, ...}

By default the server runs in a daemon thread with its own event loop. With
`process=True` it runs in a child process (`cryptolab exchange`), so that it does not
share the GIL with the code under test (benchmarks); the same methods then travel over
a small control API on the same port. Controls are synchronous: when `stop_market()`
returns, no further trade will be printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from array import array
from collections.abc import Callable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ..book.model import BookSnapshot, DepthDiff, Quote
from ..errors import SourceError
from ..model import Trade, now_us
from .faults import FaultPlan, check_fault, parse_faults
from .tradelog import fmt8

if TYPE_CHECKING:
    from .server import ExchangeServer

__all__ = ["LocalExchange"]

T = TypeVar("T")


def _book_args(k: dict[str, Any]) -> list[str]:
    """The `cryptolab exchange` options of the book: --record, --pace, --book-history."""
    cmd = []
    if k["record"]:
        cmd += ["--record", k["record"]]
    if k["pace"]:
        cmd += ["--pace", ",".join(k["pace"]), "--pace-x", str(k["pace_x"])]
    if k.get("book_history") is not None:
        cmd += ["--book-history", str(k["book_history"])]
    return cmd


def _markets(markets: Sequence[str] | str) -> list[str]:
    from ..markets import check_market

    names = markets.split(",") if isinstance(markets, str) else list(markets)
    return list(dict.fromkeys(check_market(m) for m in names if m.strip()))


class LocalExchange:
    """A Binance-compatible exchange on 127.0.0.1 (see the module doc)."""

    def __init__(
        self,
        symbols: Sequence[str] | None = None,
        rate: float = 200.0,
        seed: int | None = None,
        faults: FaultPlan | str | None = None,
        replay: Sequence[str | os.PathLike[str]] | None = None,
        speed: float = 1.0,
        ping_interval: float = 20.0,
        ping_timeout: float = 20.0,
        max_connection_age: float = 86400.0,
        weight_budget: int = 6000,
        max_trades: int | None = None,
        *,
        first_ids: dict[str, int] | None = None,
        first_id: int | None = None,
        shutdown_notice: float | None = None,
        port: int = 0,
        process: bool = False,
        history_days: int = 0,
        history_rate: float = 1.0,
        record: str | os.PathLike[str] | None = None,
        pace: Sequence[str] | str | None = None,
        pace_x: float = 1.0,
        book_history: int | None = None,
        markets: Sequence[str] | str = ("spot",),
    ) -> None:
        self._kwargs: dict[str, Any] = dict(
            symbols=[s.lower() for s in symbols] if symbols else None,
            rate=rate,
            seed=seed,
            faults=faults,
            replay=[str(p) for p in replay] if replay else None,
            speed=speed,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_connection_age=max_connection_age,
            shutdown_notice=shutdown_notice,
            weight_budget=weight_budget,
            max_trades=max_trades,
            first_ids=first_ids,
            first_id=first_id,
            port=port,
            history_days=history_days,
            history_rate=history_rate,
            record=str(record) if record else None,
            pace=[pace.lower()] if isinstance(pace, str) else ([s.lower() for s in pace] if pace else None),
            pace_x=pace_x,
            **({"book_history": book_history} if book_history is not None else {}),
            **({"markets": _markets(markets)} if markets not in (("spot",), "spot") else {}),
        )
        if isinstance(faults, str):
            parse_faults(faults)  # fail early on a bad schedule
        self.process = process
        self.port = 0
        self.fport = 0
        """The futures market's port (markets with "usdm"), else 0."""
        self._server: ExchangeServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._error: BaseException | None = None
        self._remote_logs: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ lifecycle
    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def fws_url(self) -> str:
        """The futures streams' root (routed: `/market/stream?…`, `/public/stream?…`)."""
        if not self.fport:
            raise SourceError(
                "this local exchange has no futures market: start it with markets=['spot', 'usdm']"
            )
        return f"ws://127.0.0.1:{self.fport}"

    @property
    def fhttp_url(self) -> str:
        """The futures REST root (`/fapi/v1/…`)."""
        return self.fws_url.replace("ws://", "http://", 1)

    def usdm_log(self, what: str, symbol: str) -> list[Any]:
        """What the futures market printed or sent: `agg`, `mark`, `liquidation`, `funding`,
        `open_interest` or `depth` rows of a symbol (in-thread exchange only)."""
        srv = self._srv()
        if srv.usdm is None:
            raise SourceError(
                "this local exchange has no futures market: start it with markets=['spot', 'usdm']"
            )
        return self._call(srv.usdm.log_rows, what, symbol)

    def usdm_delist(self, symbol: str, status: str = "SETTLING") -> None:
        """The futures exchangeInfo says this contract no longer trades (in-thread exchange only)."""
        srv = self._srv()
        if srv.usdm is None:
            raise SourceError(
                "this local exchange has no futures market: start it with markets=['spot', 'usdm']"
            )
        self._call(srv.usdm.delist, symbol, status)

    @property
    def synthetic(self) -> bool:
        """True for the synthetic market (made-up trades), False for a replay of real data."""
        return not self._kwargs["replay"]

    def __enter__(self) -> LocalExchange:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> LocalExchange:
        """Start serving; return self once the port is bound."""
        if self._thread or self._proc:
            return self
        if self.process:
            self._start_process()
        else:
            self._start_thread()
        return self

    def _start_thread(self) -> None:
        from .server import ExchangeServer

        ready = threading.Event()
        kwargs = dict(self._kwargs)

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                asyncio.set_event_loop(loop)
                server = self._server = ExchangeServer(**kwargs)
                self.port = loop.run_until_complete(server.start())
                self.fport = server.usdm.port if server.usdm is not None else 0
            except BaseException as exc:  # reported to start()
                self._error = exc
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(server.stop())
                loop.close()

        self._thread = threading.Thread(target=run, name="cryptolab-exchange", daemon=True)
        self._thread.start()
        ready.wait(60)
        if self._error is not None:
            err, self._error = self._error, None
            self._thread.join(5)
            self._thread = None
            if isinstance(err, Exception):
                raise err
            raise SourceError(f"local exchange did not start: {err!r}")

    def _start_process(self) -> None:
        k = self._kwargs
        cmd = [sys.executable, "-m", "cryptolab.cli.main", "exchange", "--port", str(k["port"])]
        if k["seed"] is not None:
            cmd += ["--seed", str(k["seed"])]
        if k["first_id"] is not None:
            cmd += ["--first-id", str(k["first_id"])]
        if k["replay"]:
            cmd += ["--replay", *k["replay"], "--speed", str(k["speed"])]
            if k["symbols"]:
                cmd += ["--symbols", ",".join(k["symbols"])]
        else:
            cmd += ["--symbols", ",".join(k["symbols"] or ["btcusdt", "ethusdt"]), "--rate", str(k["rate"])]
        if k["faults"]:
            if not isinstance(k["faults"], str):
                raise SourceError(
                    "process=True takes faults as a schedule string (see cryptolab.exchange.faults)"
                )
            cmd += ["--faults", k["faults"]]
        for opt, key in (
            ("--ping-interval", "ping_interval"),
            ("--ping-timeout", "ping_timeout"),
            ("--max-connection-age", "max_connection_age"),
            ("--weight-budget", "weight_budget"),
        ):
            cmd += [opt, str(k[key])]
        if k["shutdown_notice"] is not None:
            cmd += ["--shutdown-notice", str(k["shutdown_notice"])]
        if k["max_trades"] is not None:
            cmd += ["--max-trades", str(k["max_trades"])]
        if k["history_days"]:
            cmd += ["--history-days", str(k["history_days"]), "--history-rate", str(k["history_rate"])]
        if k["first_ids"]:
            raise SourceError("first_ids works with the in-thread exchange only (process=False)")
        cmd += _book_args(k)
        if k.get("markets"):
            cmd += ["--markets", ",".join(k["markets"])]
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.startswith("ws="):
            err = self._proc.stderr.read() if self._proc.stderr else ""
            self._proc.wait(5)
            self._proc = None
            raise SourceError(f"local exchange process did not start: {(line + err).strip()[-500:]}")
        self.port = int(line.split()[0].rsplit(":", 1)[1])
        fws = [w for w in line.split() if w.startswith("fws=")]
        self.fport = int(fws[0].rsplit(":", 1)[1]) if fws else 0

    def stop(self) -> None:
        """Stop serving (connections get a going-away close) and wait for the server to end."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGTERM)
                try:
                    self._proc.wait(15)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(5)
            for f in (self._proc.stdout, self._proc.stderr):
                if f:
                    f.close()
            self._proc = None
        if self._thread is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
            self._thread = None

    # ------------------------------------------------------------------ calls
    def _srv(self) -> ExchangeServer:
        if self._server is None:
            raise SourceError("the local exchange is not running: use it as `with LocalExchange(...) as ex:`")
        return self._server

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run fn(*args) in the server's loop and return its result (thread-safe)."""
        if self._loop is None or self._thread is None:
            raise SourceError("the local exchange is not running: use it as `with LocalExchange(...) as ex:`")

        async def call() -> T:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(call(), self._loop).result(30)

    def _control(self, action: str, **body: Any) -> dict[str, Any]:
        req = urllib.request.Request(
            f"{self.http_url}/_cryptolab/control",
            data=json.dumps({"action": action, **body}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                out: dict[str, Any] = json.loads(resp.read())
                return out
        except urllib.error.HTTPError as exc:
            msg = json.loads(exc.read() or b"{}").get("error", str(exc))
            raise SourceError(f"local exchange refused {action}: {msg}") from None

    def _get(self, path: str) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.http_url}{path}", timeout=60) as resp:
            out: dict[str, Any] = json.loads(resp.read())
            return out

    # ------------------------------------------------------------------ controls
    def pause_market(self) -> None:
        """Stop printing trades (streams stay open) until resume_market()."""
        self._control("pause") if self._proc else self._call(self._srv().pause_market)

    def resume_market(self) -> None:
        self._control("resume") if self._proc else self._call(self._srv().resume_market)

    def stop_market(self) -> None:
        """No more trades, ever; trades already printed are still delivered."""
        self._control("stop") if self._proc else self._call(self._srv().stop_market)

    def set_rate(self, rate: float) -> None:
        """Mean total trades/s from now on (synthetic market)."""
        self._control("set_rate", rate=rate) if self._proc else self._call(self._srv().set_rate, rate)

    def inject(self, kind: str, **params: Any) -> int:  # market="usdm": on the futures market
        """Fire one fault on the current connections / next REST calls; see `faults`."""
        market = params.pop("market", "spot")
        check_fault(kind, params)
        if market != "spot":
            params["market"] = market
        if self._proc:
            return int(self._control("inject", kind=kind, params=params)["affected"])
        return self._call(self._srv().inject, kind, **params)

    # ------------------------------------------------------------------ what happened
    def state(self) -> dict[str, Any]:
        """Printed counts, fault counts, connection stats."""
        if self._proc:
            return self._get("/_cryptolab/state")
        return self._call(self._srv().state)

    @property
    def fault_counts(self) -> dict[str, int]:
        return dict(self.state()["fault_counts"])

    @property
    def stats(self) -> dict[str, int]:
        """Connection/REST counters: connections, stale_drops, rate_limit_drops, max_age_closes…"""
        return dict(self.state()["stats"])

    @property
    def symbols(self) -> list[str]:
        if self._proc:
            return list(self.state()["symbols"])
        return list(self._srv().logs)

    def printed(self, symbol: str) -> int:
        """How many trades of a symbol were printed so far."""
        if self._proc:
            return int(self.state()["printed"][symbol.upper()])
        return self._srv().printed(symbol)

    def trade_log(self, symbol: str, time_unit: str = "MILLISECOND") -> list[Trade]:
        """Every trade of a symbol printed so far, in id order, as exact `Trade` rows.

        Times (`trade_time_us`, `event_time_us`) are what a client stores from the
        streams: by default Binance's millisecond `T`/`E` (× 1000); with
        `time_unit="MICROSECOND"` the exchange's full µs (what `timeUnit=MICROSECOND`
        streams and the `X-MBX-TIME-UNIT: MICROSECOND` REST header give).
        """
        ms = time_unit.upper().startswith("MILLI")
        sym = symbol.upper()
        if self._proc:
            return self._remote_trade_log(sym, ms)
        if self._server is None:
            raise SourceError("the local exchange was never started")
        logs = self._server.logs
        log = logs.get(sym)
        if log is None:
            raise SourceError(f"the local exchange does not list {sym} (it lists {', '.join(logs)})")
        n = len(log.makers)  # appended last: every array holds at least n entries
        return log.trades(0, n, ms=ms)

    # ------------------------------------------------------------------ the book
    def _book_call(self, path: str, method: str, symbol: str, arg: int | None) -> dict[str, Any]:
        if self._proc:
            key = "update_id" if path == "book" else "start"
            query = f"symbol={symbol.upper()}" + (f"&{key}={arg}" if arg is not None else "")
            try:
                return self._get(f"/_cryptolab/{path}?{query}")
            except urllib.error.HTTPError as exc:
                msg = json.loads(exc.read() or b"{}").get("error", str(exc))
                raise SourceError(f"local exchange: {msg}") from None
        fn = getattr(self._srv(), method)
        return self._call(fn, symbol, arg) if path == "book" else self._call(fn, symbol, arg or 0)

    def book(self, symbol: str, update_id: int | None = None) -> BookSnapshot:
        """The exchange's own book of a symbol, every level, right after update id `update_id`
        (default: now), as a `BookSnapshot` (exact strings; `last_update_id` the id asked).

        Any id from the book's start (or the oldest kept, ~24 min at BTCUSDT's pace) to now.
        The first call (or a subscription to a book stream, or `GET /api/v3/depth`) starts the
        symbol's book."""
        d = self._book_call("book", "book_json", symbol, update_id)
        levels = [[(p, q) for p, q in d[k]] for k in ("bids", "asks")]
        return BookSnapshot(
            "binance", d["symbol"], d["lastUpdateId"], levels[0], levels[1], now_us(), source="simulator"
        )

    def books(self, symbol: str, update_ids: Sequence[int]) -> list[BookSnapshot]:
        """The exchange's own book at each of `update_ids` (sorted ascending in the answer), in one
        pass: much cheaper than one `book()` per id when a test checks a book at every id."""
        ids = [int(i) for i in update_ids]
        if self._proc:
            req = urllib.request.Request(
                f"{self.http_url}/_cryptolab/books",
                data=json.dumps({"symbol": symbol.upper(), "update_ids": ids}).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(req, timeout=120) as resp:
                    d: dict[str, Any] = json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                raise SourceError(
                    f"local exchange: {json.loads(exc.read() or b'{}').get('error', exc)}"
                ) from None
        else:
            d = self._call(self._srv().books_json, symbol, ids)
        now = now_us()
        return [
            BookSnapshot(
                "binance",
                d["symbol"],
                b["lastUpdateId"],
                [(p, q) for p, q in b["bids"]],
                [(p, q) for p, q in b["asks"]],
                now,
                source="simulator",
            )
            for b in d["books"]
        ]

    def depth_log(self, symbol: str) -> list[DepthDiff]:
        """Every 100 ms diff the exchange published for a symbol (the `@depth@100ms` stream before
        stream faults), oldest first (the last 200,000 are kept)."""
        d = self._book_call("depth_log", "diff_log_json", symbol, 0)
        sym = d["symbol"]
        return [
            DepthDiff(
                "binance", sym, u0, u1, e, [(p, q) for p, q in b], [(p, q) for p, q in a], source="simulator"
            )
            for u0, u1, e, b, a in d["diffs"]
        ]

    def quote_log(self, symbol: str) -> list[Quote]:
        """Every bookTicker the exchange published for a symbol, oldest first (the last 1,000,000)."""
        d = self._book_call("quote_log", "quote_log_json", symbol, 0)
        sym = d["symbol"]
        return [
            Quote("binance", sym, u, bp, bq, ap, aq, 0, source="simulator")
            for u, bp, bq, ap, aq in d["quotes"]
        ]

    def _remote_trade_log(self, sym: str, ms: bool) -> list[Trade]:
        cache = self._remote_logs.setdefault(
            sym,
            {k: array("q") for k in ("ids", "prices", "qtys", "times", "events", "makers")}
            | {"source": "simulator"},
        )
        start = len(cache["ids"])
        data = self._get(f"/_cryptolab/trades?symbol={sym}&start={start}")
        cache["source"] = data["source"]
        for k in ("ids", "prices", "qtys", "times", "events", "makers"):
            cache[k].extend(data[k])
        out = []
        for i in range(len(cache["ids"])):
            t, e = cache["times"][i], cache["events"][i]
            if ms:
                t, e = t // 1000 * 1000, e // 1000 * 1000
            out.append(
                Trade(
                    "binance",
                    sym,
                    cache["ids"][i],
                    Decimal(fmt8(cache["prices"][i])),
                    Decimal(fmt8(cache["qtys"][i])),
                    bool(cache["makers"][i]),
                    t,
                    e,
                    None,
                    cache["source"],
                )
            )
        return out
