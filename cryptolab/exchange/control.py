"""The local exchange's control API under `/_cryptolab/` (not Binance's).

`LocalExchange` uses it when the exchange runs in another process: `GET state` (what it
serves, what it printed, fault counts), `GET trades?symbol=&start=` (the printed trades,
columnar, for exact checks) and `POST control` (pause, resume, stop, set_rate, inject).
The book (see `bookfeed`): `GET book?symbol=&update_id=` (every level at an update id, default
now), `POST books {"symbol", "update_ids"}` (the same at many ids, one pass), `GET
depth_log?symbol=&start=` (the 100 ms diffs published) and `GET quote_log?symbol=&start=` (the
bookTickers published); in-thread `LocalExchange` calls the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from aiohttp import web

from .rest_api import json_response
from .tradelog import SymbolLog

__all__ = ["ControlApi", "Controlled"]


class Controlled(Protocol):
    """What the control API drives (the exchange server)."""

    logs: dict[str, SymbolLog]

    def state(self) -> dict[str, Any]: ...
    def inject(self, kind: str, **params: Any) -> int: ...
    def set_rate(self, rate: float) -> None: ...
    def pause_market(self) -> None: ...
    def resume_market(self) -> None: ...
    def stop_market(self) -> None: ...
    def book_json(self, symbol: str, update_id: int | None = None) -> dict[str, Any]: ...
    def books_json(self, symbol: str, update_ids: list[int]) -> dict[str, Any]: ...
    def diff_log_json(self, symbol: str, start: int = 0) -> dict[str, Any]: ...
    def quote_log_json(self, symbol: str, start: int = 0) -> dict[str, Any]: ...


class ControlApi:
    """The admin routes of one `ExchangeServer`."""

    def __init__(self, server: Controlled) -> None:
        self.server = server

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/_cryptolab/state", self.state)
        app.router.add_get("/_cryptolab/trades", self.trades)
        app.router.add_post("/_cryptolab/control", self.control)
        app.router.add_get("/_cryptolab/book", self.book)
        app.router.add_get("/_cryptolab/depth_log", self.depth_log)
        app.router.add_post("/_cryptolab/books", self.books)
        app.router.add_get("/_cryptolab/quote_log", self.quote_log)

    async def book(self, request: web.Request) -> web.Response:
        q = request.query
        uid = q.get("update_id")
        return self._answer(lambda: self.server.book_json(q.get("symbol", ""), int(uid) if uid else None))

    async def books(self, request: web.Request) -> web.Response:
        body = await request.json()
        return self._answer(
            lambda: self.server.books_json(
                str(body.get("symbol", "")), [int(i) for i in body.get("update_ids", [])]
            )
        )

    async def depth_log(self, request: web.Request) -> web.Response:
        q = request.query
        return self._answer(lambda: self.server.diff_log_json(q.get("symbol", ""), int(q.get("start", "0"))))

    async def quote_log(self, request: web.Request) -> web.Response:
        q = request.query
        return self._answer(lambda: self.server.quote_log_json(q.get("symbol", ""), int(q.get("start", "0"))))

    @staticmethod
    def _answer(fn: Callable[[], dict[str, Any]]) -> web.Response:
        try:
            return json_response(fn())
        except Exception as exc:  # reported to the controlling process
            return json_response({"error": f"{type(exc).__name__}: {exc}"}, 400)

    async def state(self, request: web.Request) -> web.Response:
        return json_response(self.server.state())

    async def trades(self, request: web.Request) -> web.Response:
        sym = request.query.get("symbol", "").upper()
        log = self.server.logs.get(sym)
        if log is None:
            return json_response({"error": f"unknown symbol {sym}"}, 404)
        start = int(request.query.get("start", "0"))
        n = len(log.makers)
        return json_response(
            {
                "symbol": sym,
                "source": log.source,
                "start": start,
                "ids": list(log.ids[start:n]),
                "prices": list(log.prices[start:n]),
                "qtys": list(log.qtys[start:n]),
                "times": list(log.times[start:n]),
                "events": list(log.events[start:n]),
                "makers": list(log.makers[start:n]),
            }
        )

    async def control(self, request: web.Request) -> web.Response:
        body = await request.json()
        action = body.get("action")
        srv = self.server
        try:
            if action == "inject":
                n = srv.inject(body["kind"], **body.get("params", {}))
                return json_response({"ok": True, "affected": n})
            if action == "set_rate":
                srv.set_rate(float(body["rate"]))
            elif action in ("pause", "resume", "stop"):
                {"pause": srv.pause_market, "resume": srv.resume_market, "stop": srv.stop_market}[action]()
            else:
                return json_response({"error": f"unknown action {action!r}"}, 400)
        except Exception as exc:  # reported to the controlling process
            return json_response({"error": f"{type(exc).__name__}: {exc}"}, 400)
        return json_response({"ok": True})
