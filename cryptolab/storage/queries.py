"""Named queries from the `sql/` modules, with psql variables turned into bind parameters.

The files under `sql/` are plain psql scripts: `psql -v symbol=BTCUSDT -f sql/x.sql`
runs every query in a file as is. cryptolab loads the same text:

* a query starts at a `-- name: ohlcv` header and runs to the next header; the
  comment lines right after the header are its description;
* psql meta-command lines (`\\if`, `\\set`, `\\echo`, …) are skipped, and so is
  everything before the first header (the file's psql defaults);
* `:'var'` and `:var` become real bind parameters (`%(var)s`), never text pasted in
  the SQL; `:"var"` becomes a quoted identifier (`psycopg.sql.Identifier`);
* variables are not substituted inside string literals, quoted identifiers,
  dollar quotes or comments, and `::type` casts are left alone — as psql does.

Parsed files are cached, and re-read when a file changes on disk.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg import sql as pgsql

from ..errors import DataError
from .db import SQL_DIR

__all__ = ["Query", "parse", "load", "get", "names", "modules"]

_HEADER = re.compile(r"^\s*--\s*name:\s*([A-Za-z_][A-Za-z0-9_]*)\s*$")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


@dataclass(frozen=True)
class Query:
    """One named query: its text for psycopg and the variables it needs."""

    module: str
    name: str
    source: str
    """The query as written in the file (psql syntax, meta-commands removed)."""
    text: str
    """The query for psycopg: variables as `%(name)s` placeholders, `%` escaped
    (identifier variables show as `{name}`; use `bind()`)."""
    params: tuple[str, ...]
    """Value variables (`:'x'`, `:x`), in order of first use."""
    identifiers: tuple[str, ...] = ()
    """Identifier variables (`:"x"`), in order of first use."""
    doc: str = ""
    _parts: tuple[tuple[str, str], ...] = field(default=(), repr=False, compare=False)

    def bind(self, values: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Query and parameters for `cursor.execute`; picks the variables it needs from `values`.

        Raises DataError naming the variables that are missing.
        """
        missing = [n for n in (*self.params, *self.identifiers) if n not in values]
        if missing:
            raise DataError(
                f"query {self.module}.{self.name} needs {', '.join(missing)}: pass them as arguments"
            )
        params = {n: values[n] for n in self.params}
        if not self.identifiers:
            return self.text, params
        pieces: list[pgsql.Composable] = []
        for kind, piece in self._parts:
            if kind == "sql":
                pieces.append(pgsql.SQL(piece))  # the file's own text
            else:
                pieces.append(pgsql.Identifier(str(values[piece])))
        return pgsql.Composed(pieces), params


def _after_word(body: str, i: int) -> bool:
    """True when position i follows a letter, digit or underscore (inside a word)."""
    return i > 0 and (body[i - 1].isalnum() or body[i - 1] == "_")


def _line_comment(body: str, i: int) -> int | None:
    if not body.startswith("--", i):
        return None
    j = body.find("\n", i)
    return len(body) if j < 0 else j


def _block_comment(body: str, i: int) -> int | None:
    """A /* … */ comment; PostgreSQL nests them."""
    if not body.startswith("/*", i):
        return None
    depth, j, n = 1, i + 2, len(body)
    while j < n and depth:
        if body.startswith("/*", j):
            depth, j = depth + 1, j + 2
        elif body.startswith("*/", j):
            depth, j = depth - 1, j + 2
        else:
            j += 1
    return j


def _string(body: str, i: int) -> int | None:
    """A '…' string ('' inside), or an E'…' string with backslash escapes."""
    escapes = body[i] in "eE" and body.startswith("'", i + 1) and not _after_word(body, i)
    if body[i] != "'" and not escapes:
        return None
    j, n = i + (2 if escapes else 1), len(body)
    while j < n:
        if escapes and body[j] == "\\":
            j += 2
        elif body[j] != "'":
            j += 1
        elif body.startswith("''", j):
            j += 2
        else:
            return j + 1
    return j


def _quoted_identifier(body: str, i: int) -> int | None:
    if body[i] != '"':
        return None
    j = body.find('"', i + 1)
    while j >= 0 and body.startswith('""', j):
        j = body.find('"', j + 2)
    return len(body) if j < 0 else j + 1


def _dollar_quoted(body: str, i: int) -> int | None:
    m = _DOLLAR.match(body, i) if body[i] == "$" and not _after_word(body, i) else None
    if m is None:
        return None
    j = body.find(m.group(0), m.end())
    return len(body) if j < 0 else j + len(m.group(0))


_LITERALS = (_line_comment, _block_comment, _string, _quoted_identifier, _dollar_quoted)
"""Tokens copied as they are (no variable is replaced inside them), one scanner each."""


def _literal_end(body: str, i: int) -> int | None:
    for scan in _LITERALS:
        j = scan(body, i)
        if j is not None:
            return j
    return None


class _Scan:
    """The state of one body's rewrite: text so far, identifier parts, parameter names."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.parts: list[tuple[str, str]] = []
        self.params: list[str] = []
        self.idents: list[str] = []

    def copy(self, text: str) -> None:
        self.out.append(text.replace("%", "%%"))

    def param(self, name: str) -> None:
        if name not in self.params:
            self.params.append(name)
        self.out.append(f"%({name})s")

    def ident(self, name: str) -> None:
        if name not in self.idents:
            self.idents.append(name)
        self.parts.append(("sql", "".join(self.out)))
        self.parts.append(("ident", name))
        self.out.clear()

    def variable(self, body: str, i: int) -> int | None:
        """A psql variable at i (`:'name'`, `:"name"`, `:name`): bound, returns its end."""
        quote = body[i + 1 : i + 2]
        if quote in ("'", '"'):
            close = body.find(quote, i + 2)
            name = body[i + 2 : close] if close > 0 else ""
            if not _IDENT.fullmatch(name):
                raise DataError(
                    f"bad psql variable near {body[i : i + 20]!r}: use :'name', :\"name\" or :name"
                )
            self.param(name) if quote == "'" else self.ident(name)
            return close + 1
        m = _IDENT.match(body, i + 1)
        if m is None:
            return None
        self.param(m.group(0))
        return m.end()


def _scan(body: str) -> tuple[str, tuple[tuple[str, str], ...], tuple[str, ...], tuple[str, ...]]:
    """Rewrite psql variables in one query body; returns (text, parts, params, identifiers)."""
    st = _Scan()
    i, n = 0, len(body)
    while i < n:
        j = _literal_end(body, i)
        if j is not None:
            st.copy(body[i:j])
        elif body.startswith("::", i):  # a ::cast
            st.out.append("::")
            j = i + 2
        elif body[i] == ":" and (j := st.variable(body, i)) is not None:
            pass
        else:
            j = i + 1
            while j < n and body[j] not in "-/'\"$:eE%":
                j += 1
            st.copy(body[i:j])
        i = j
    st.parts.append(("sql", "".join(st.out)))
    # Identifier variables show as {name} in `text`; bind() composes the real query.
    text = "".join(p if k == "sql" else "{" + p + "}" for k, p in st.parts)
    return text, tuple(st.parts), tuple(st.params), tuple(st.idents)


def parse(text: str, module: str = "<text>") -> dict[str, Query]:
    """Parse a psql script into its named queries (see the module docstring)."""
    queries: dict[str, Query] = {}
    name: str | None = None
    lines: list[str] = []
    doc: list[str] = []
    in_doc = False

    def finish() -> None:
        if name is None:
            return
        body = "\n".join(lines).strip()
        body = body.rstrip()
        while body.endswith(";"):
            body = body[:-1].rstrip()
        if not body or all(not ln.strip() or ln.strip().startswith("--") for ln in body.splitlines()):
            raise DataError(f"{module}: query {name!r} is empty")
        text, parts, params, idents = _scan(body)
        queries[name] = Query(module, name, body, text, params, idents, "\n".join(doc).strip(), parts)

    for line in text.splitlines():
        m = _HEADER.match(line)
        if m:
            finish()
            name = m.group(1)
            if name in queries:
                raise DataError(f"{module}: query {name!r} is defined twice")
            lines, doc, in_doc = [], [], True
            continue
        if name is None:
            continue  # the file's psql preamble (defaults)
        stripped = line.strip()
        if stripped.startswith("\\"):
            continue  # psql meta-command
        if in_doc:
            if stripped.startswith("--"):
                doc.append(stripped[2:].strip())
                continue
            in_doc = False
        lines.append(line)
    finish()
    return queries


_cache: dict[Path, tuple[int, dict[str, Query]]] = {}
_lock = threading.Lock()


def _path(module: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9_]+", module):
        raise DataError(f"bad SQL module name {module!r}: use a file name from {SQL_DIR} without .sql")
    return SQL_DIR / f"{module}.sql"


def load(module: str) -> dict[str, Query]:
    """All named queries of `sql/<module>.sql` (cached; re-read when the file changes)."""
    path = _path(module)
    try:
        mtime = path.stat().st_mtime_ns
    except FileNotFoundError:
        raise DataError(
            f"no SQL module {module!r}: expected {path} (modules: {', '.join(modules())})"
        ) from None
    with _lock:
        hit = _cache.get(path)
        if hit and hit[0] == mtime:
            return hit[1]
    parsed = parse(path.read_text(encoding="utf-8"), module)
    with _lock:
        _cache[path] = (mtime, parsed)
    return parsed


def get(module: str, name: str) -> Query:
    """One named query; DataError listing the file's queries when it is not there."""
    queries = load(module)
    try:
        return queries[name]
    except KeyError:
        raise DataError(f"no query {name!r} in sql/{module}.sql (it has: {', '.join(queries)})") from None


def names(module: str) -> list[str]:
    """Names of the queries in `sql/<module>.sql`, in file order."""
    return list(load(module))


def modules() -> list[str]:
    """The SQL modules shipped in `sql/`."""
    return sorted(p.stem for p in SQL_DIR.glob("*.sql"))
