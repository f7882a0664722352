"""Readers for Binance historical data files → normalized `Trade` rows.

Three kinds, zip / gzip / plain, recognized by name and content:

* **trades** dumps of data.binance.vision (`BTCUSDT-trades-2025-01-01.zip`): no header,
  `id,price,qty,quote_qty,time,is_buyer_maker,is_best_match`;
* **aggTrades** dumps (`BTCUSDT-aggTrades-…`): `agg_id,price,qty,first_id,last_id,time,
  is_buyer_maker,is_best_match`. One aggregate becomes one `Trade` whose `trade_id` is
  the aggregate's *first* trade id and whose qty is the aggregate's total (the dump does
  not hold the single fills);
* **stream** recordings: one message per line, `<local receive time, ns> <raw JSON>`
  (raw or combined-stream JSON; only `"e":"trade"` events are read, other lines skipped).

Times: spot dumps switched from milliseconds to microseconds on 2025-01-01, and a
recording may hold either (`timeUnit=MICROSECOND`). The unit is detected for every value
(≥ 1e14 is µs, ≥ 1e17 ns, else ms) — never assumed from a date. Prices and quantities
stay exact `Decimal`s of the text. Dump files hold no symbol: it comes from the file
name (`BTCUSDT-trades-…`) or the `symbol=` argument.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import re
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any, Literal

from ..errors import DataError
from ..model import Trade, to_us

__all__ = [
    "DumpReader",
    "read_dump_trades",
    "open_text",
    "detect_kind",
    "symbol_from_name",
    "time_to_us",
    "check_symbol",
    "Kind",
]

Kind = Literal["trades", "aggTrades", "stream"]
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")
# What a damaged, truncated or non-text file raises while it is decompressed and decoded.
_DAMAGE = (UnicodeDecodeError, EOFError, zipfile.BadZipFile, zlib.error, gzip.BadGzipFile, csv.Error, OSError)
_NAME_RE = re.compile(r"^(?P<symbol>[A-Z0-9]{2,20})-(?P<kind>trades|aggTrades)-", re.IGNORECASE)
_TRUE = {"true", "True", "TRUE", "1"}
_FALSE = {"false", "False", "FALSE", "0"}


def time_to_us(value: int) -> int:
    """An epoch time in ms, µs or ns (detected from its size) → µs."""
    return value // 1000 if value >= 10**17 else to_us(value)


def check_symbol(symbol: str) -> str:
    """`symbol` upper-cased; a DataError when it has characters no exchange symbol has."""
    sym = symbol.strip().upper()
    if not _SYMBOL_RE.match(sym):
        raise DataError(f"symbol {symbol[:40]!r} is not a symbol (2-20 letters and digits, e.g. BTCUSDT)")
    return sym


@contextlib.contextmanager
def _readable(path: Path) -> Iterator[None]:
    """Turn a damaged file's decoding/decompression error into one DataError line."""
    try:
        yield
    except DataError:
        raise
    except _DAMAGE as exc:
        if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile) and exc.filename:
            raise DataError(f"{exc.filename}: {exc.strerror or exc}") from None
        what = {
            UnicodeDecodeError: "is not text (binary data where CSV/JSON lines were expected)",
            EOFError: "is truncated (the compressed data ends early)",
            zipfile.BadZipFile: "is a damaged or truncated zip archive",
            zlib.error: "is damaged (its compressed data does not decompress)",
            gzip.BadGzipFile: "is a damaged gzip file",
            csv.Error: "is not a CSV file",
        }.get(type(exc), "cannot be read")
        detail = " ".join(str(exc).split())[:120]
        raise DataError(f"{path}: {what} ({detail})") from None


def symbol_from_name(path: str | Path) -> str | None:
    """`BTCUSDT-trades-2025-01-01.zip` → `BTCUSDT` (None when the name does not say)."""
    m = _NAME_RE.match(Path(path).name)
    return m.group("symbol").upper() if m else None


class _Counted(io.RawIOBase):
    """A binary file that counts the bytes read from it (progress of a compressed file)."""

    def __init__(self, fh: io.BufferedReader) -> None:
        self._fh = fh
        self.count = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._fh.seekable()

    def seek(self, offset: int, whence: int = 0) -> int:
        pos = self._fh.seek(offset, whence)
        self.count = pos
        return pos

    def tell(self) -> int:
        return self._fh.tell()

    def readinto(self, b: Any) -> int:
        n = self._fh.readinto(b)
        self.count = self._fh.tell()
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def _open_counted(path: Path) -> tuple[IO[str], _Counted]:
    """The file's text — the (first) CSV member of a zip, a gunzipped file, or the file —
    and a counter of the bytes read from disk so far."""
    if not path.is_file():
        raise DataError(f"{path}: no such file — give the path of a dump (.zip/.csv) or a recording (.gz)")
    raw = _Counted(path.open("rb"))
    magic = raw.read(4)
    raw.seek(0)
    if magic[:4] == b"PK\x03\x04":
        try:
            zf = zipfile.ZipFile(raw)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
            raw.close()
            raise DataError(
                f"{path}: is a damaged or truncated zip archive ({' '.join(str(exc).split())[:120]})"
            ) from None
        members = [n for n in zf.namelist() if not n.endswith("/")]
        csvs = [n for n in members if n.lower().endswith(".csv")] or members
        if not csvs:
            raise DataError(f"{path}: empty zip archive")
        return io.TextIOWrapper(zf.open(csvs[0]), encoding="utf-8", newline=""), raw
    if magic[:2] == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.GzipFile(fileobj=raw, mode="rb"), encoding="utf-8", newline=""), raw
    return io.TextIOWrapper(io.BufferedReader(raw), encoding="utf-8", newline=""), raw


def open_text(path: str | Path) -> IO[str]:
    """The text of a dump or recording: the first CSV member of a zip, gunzipped, or plain."""
    fh, raw = _open_counted(Path(path))
    fh_close = fh.close

    def close() -> None:
        fh_close()
        raw.close()

    fh.close = close  # type: ignore[method-assign]
    return fh


def _head_line(path: Path) -> str:
    with _readable(path), open_text(path) as fh:
        for line in fh:
            if "\x00" in line:
                raise DataError(f"{path}: is not text (NUL bytes where CSV/JSON lines were expected)")
            if line.strip():
                return line.strip()
    return ""


def detect_kind(path: str | Path) -> Kind:
    """Which kind of file this is (by name, then by its first line)."""
    p = Path(path)
    m = _NAME_RE.match(p.name)
    if m:
        return "aggTrades" if m.group("kind").lower() == "aggtrades" else "trades"
    line = _head_line(p)
    if not line:
        raise DataError(f"{p}: empty file")
    head, _, rest = line.partition(" ")
    if line.startswith("{") or (head.isdigit() and rest.lstrip().startswith("{")):
        return "stream"
    cols = [c.strip().lower() for c in line.split(",")]
    if "agg_trade_id" in cols or "first_trade_id" in cols:
        return "aggTrades"
    if cols and cols[0] == "id":
        return "trades"
    if len(cols) == 8:
        return "aggTrades"
    if len(cols) in (6, 7):
        # 7 columns: spot trades (quote_qty is a decimal) or futures aggTrades (ids)
        if len(cols) == 7 and "." not in cols[3] and "." not in cols[4]:
            return "aggTrades"
        return "trades"
    raise DataError(
        f"{p}: not a Binance trades/aggTrades dump nor a stream recording (first line: {line[:80]!r})"
    )


def _bool(text: str, where: str) -> bool:
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise DataError(f"{where}: is_buyer_maker {text!r} is not true/false")


def _dec(text: str, what: str, where: str) -> Decimal:
    try:
        d = Decimal(text)
    except InvalidOperation:
        raise DataError(f"{where}: {what} {text!r} is not a decimal number") from None
    if not d.is_finite() or d <= 0:
        raise DataError(f"{where}: {what} {text!r} is not a positive number")
    return d


@dataclass
class DumpReader:
    """Iterate one file as `Trade` rows; `kind`, `symbol`, and after reading `rows`/`skipped`."""

    path: Path
    symbol: str | None = None
    source: str = "replay"
    exchange: str = "binance"
    kind: Kind = field(init=False)
    rows: int = field(default=0, init=False)
    skipped: int = field(default=0, init=False)
    _raw: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        if not self.path.is_file():
            raise DataError(
                f"{self.path}: no such file — give the path of a dump (.zip/.csv) or a recording (.gz)"
            )
        if self.symbol:
            self.symbol = check_symbol(self.symbol)
        self.kind = detect_kind(self.path)
        if not self.symbol and self.kind != "stream":
            self.symbol = symbol_from_name(self.path)
            if not self.symbol:
                raise DataError(
                    f"{self.path}: the file name does not say the symbol (expected like "
                    "BTCUSDT-trades-2025-01-01.zip): pass the symbol explicitly"
                )

    @property
    def size(self) -> int:
        """Bytes of the file on disk."""
        return self.path.stat().st_size

    @property
    def bytes_read(self) -> int:
        """Bytes of the file on disk read so far (for a progress bar)."""
        return self._raw.count if self._raw is not None else 0

    def _open(self) -> IO[str]:
        fh, self._raw = _open_counted(self.path)
        fh_close, raw = fh.close, self._raw

        def close() -> None:
            fh_close()
            raw.close()

        fh.close = close  # type: ignore[method-assign]
        return fh

    def __iter__(self) -> Iterator[Trade]:
        rows = self._stream() if self.kind == "stream" else self._csv()
        with _readable(self.path):
            yield from rows

    def _csv(self) -> Iterator[Trade]:
        assert self.symbol is not None
        agg = self.kind == "aggTrades"
        sym, src, exch = self.symbol, self.source, self.exchange
        with self._open() as fh:
            for n, row in enumerate(csv.reader(fh), 1):
                if not row or not row[0].strip():
                    continue
                if n == 1 and not row[0].strip().lstrip("-").isdigit():
                    continue  # header
                where = f"{self.path.name} line {n}"
                try:
                    if agg:
                        tid = int(row[3])
                        t = int(row[5])
                        m = row[6]
                    else:
                        tid = int(row[0])
                        t = int(row[4])
                        m = row[5]
                    price = _dec(row[1], "price", where)
                    qty = _dec(row[2], "qty", where)
                except (IndexError, ValueError):
                    raise DataError(f"{where}: malformed row {','.join(row)[:120]!r}") from None
                us = time_to_us(t)
                self.rows += 1
                yield Trade(exch, sym, tid, price, qty, _bool(m.strip(), where), us, None, None, src)

    def _stream(self) -> Iterator[Trade]:
        want = self.symbol
        src, exch = self.source, self.exchange
        with self._open() as fh:
            for n, line in enumerate(fh, 1):
                if '"trade"' not in line:
                    if line.strip():
                        self.skipped += 1
                    continue
                head, _, rest = line.partition(" ")
                received = None
                if head.isdigit():
                    received = time_to_us(int(head))
                    text = rest
                else:
                    text = line
                try:
                    msg = json.loads(text)
                except ValueError:
                    self.skipped += 1  # e.g. a line cut short when the recorder was killed
                    continue
                data = msg.get("data", msg) if isinstance(msg, dict) else None
                if not isinstance(data, dict) or data.get("e") != "trade":
                    self.skipped += 1
                    continue
                where = f"{self.path.name} line {n}"
                try:
                    sym = str(data["s"]).upper()
                    if want and sym != want:
                        continue
                    tid = int(data["t"])
                    t = time_to_us(int(data["T"]))
                    e = time_to_us(int(data["E"])) if "E" in data else None
                    price = _dec(str(data["p"]), "price", where)
                    qty = _dec(str(data["q"]), "qty", where)
                    m = data["m"]
                except (KeyError, TypeError, ValueError):
                    raise DataError(f"{where}: malformed trade event {text.strip()[:160]!r}") from None
                if not isinstance(m, bool):
                    raise DataError(f"{where}: field m is not a boolean")
                self.rows += 1
                yield Trade(exch, sym, tid, price, qty, m, t, e, received, src)


def read_dump_trades(
    path: str | Path, *, symbol: str | None = None, source: str = "replay"
) -> Iterator[Trade]:
    """All trades of one dump or recording, in file order (see the module doc)."""
    return iter(DumpReader(Path(path), symbol=symbol, source=source))
