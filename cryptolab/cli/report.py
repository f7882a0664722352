"""`cryptolab report [--out DIR] [-p name value …] [--notebooks 01 03 …]`: the analysis
notebooks run with papermill into HTML reports and an index page.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from typing import Any

from cryptolab.durations import parse_seconds
from cryptolab.report.runner import ReportFailed, declared_parameters, find_notebooks, run_reports

__all__ = ["configure", "run"]


# ---------------------------------------------------------------------- CLI
def _coerce(text: str) -> Any:
    """A -p value as papermill's CLI reads it: int, float, bool, None, JSON list/object, else text."""
    low = text.strip()
    if low in ("True", "true"):
        return True
    if low in ("False", "false"):
        return False
    if low in ("None", "null"):
        return None
    for conv in (int, float):
        try:
            return conv(low)
        except ValueError:
            pass
    if low[:1] in "[{":
        try:
            return json.loads(low)
        except ValueError:
            pass
    return text


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="DIR", default=None, help="report directory (default reports/<UTC time>)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"), default=[],
                   help="notebook parameter, e.g. -p symbol BTCUSDT -p start 2024-03-05T00:00Z (repeatable)")
    p.add_argument(
        "--notebooks",
        nargs="+",
        metavar="NB",
        default=None,
        help="which notebooks: names, number prefixes (01 03) or paths (default: all analysis notebooks)",
    )
    p.add_argument("--jobs", type=int, default=2, help="notebooks run at once (default 2)")
    p.add_argument(
        "--cell-timeout",
        type=partial(parse_seconds, name="--cell-timeout"),
        default=900,
        help="how long one cell may run: seconds or a duration like 15m (default 900)",
    )
    p.add_argument("--no-html", action="store_true", help="executed notebooks only, no HTML")
    p.add_argument("--list", action="store_true", help="list the notebooks and their parameters, run nothing")


def run(args: argparse.Namespace) -> int:
    params = {name: _coerce(value) for name, value in args.parameter}
    if args.list:
        for path in find_notebooks(args.notebooks):
            decl = declared_parameters(path)
            print(f"{path.name}: " + ", ".join(f"{k}={v.get('default')}" for k, v in decl.items()))
        return 0
    try:
        run_reports(
            args.out,
            params,
            args.notebooks,
            jobs=args.jobs,
            cell_timeout=args.cell_timeout,
            to_html=not args.no_html,
            progress=lambda s: print(s, flush=True),
        )
    except ReportFailed as exc:
        for r in exc.runs:
            if not r.ok:
                print(f"cryptolab report: {r.name}.ipynb failed at {r.error}", file=sys.stderr)
        print(f"cryptolab report: see {exc.index}", file=sys.stderr)
        return 1
    return 0
