"""The `cryptolab` command: one entry point, one subcommand per job.

Each subcommand lives beside the code it drives: a module with `configure(parser)`
and `run(args) -> int`. This file only wires them up and turns a CryptolabError
into one clear line on stderr (exit 2) instead of a traceback; so are usage errors
and OS errors about a file the user named (a subcommand may choose exit 1 for a job
that ran and failed, as `capture` does).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import NoReturn

from ..errors import CryptolabError, one_line

__all__ = ["main", "COMMANDS"]

# name -> (module with configure/run, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "db": ("cryptolab.cli.db", "embedded PostgreSQL and schema: status|start|stop|url|psql|init"),
    "exchange": ("cryptolab.cli.exchange", "run the local Binance-compatible exchange on 127.0.0.1"),
    "load": ("cryptolab.cli.load", "import data.binance.vision dumps / stream recordings into the database"),
    "history": (
        "cryptolab.cli.history",
        "a symbol's past from Binance's dumps + REST, verified, into the database",
    ),
    "capture": ("cryptolab.cli.capture", "capture live trades into PostgreSQL"),
    "replay": ("cryptolab.cli.replay", "serve recorded/dumped trades from the local exchange"),
    "report": ("cryptolab.cli.report", "run the analysis notebooks with papermill into HTML reports"),
    "demo": ("cryptolab.cli.demo", "headless demo: local exchange -> capture -> report"),
    "lab": ("cryptolab.cli.lab", "database up, schema applied, JupyterLab on the live dashboard"),
    "archive": (
        "cryptolab.cli.archive",
        "closed days of raw trades to Parquet (disk or S3), verified; --drop/--keep-days",
    ),
}


class _Parser(argparse.ArgumentParser):
    """An argparse parser whose usage errors are one line (no usage block), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {' '.join(message.split())} (see `{self.prog} --help`)\n")


def _summary(doc: str) -> str:
    """A command's description: its module docstring's first paragraph, on one line."""
    return " ".join(doc.strip().split("\n\n")[0].split())


def _parser(only: str | None = None) -> tuple[argparse.ArgumentParser, dict[str, ModuleType]]:
    parser = _Parser(prog="cryptolab", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules: dict[str, ModuleType] = {}
    for name, (modname, help_) in COMMANDS.items():
        if only is not None and name != only:
            sub.add_parser(name, help=help_, add_help=False)
            continue
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as exc:
            if exc.name != modname:
                raise
            continue  # not built yet
        p = sub.add_parser(name, help=help_, description=_summary(mod.__doc__ or help_))
        mod.configure(p)
        modules[name] = mod
    return parser, modules


def _parse(parser: argparse.ArgumentParser, args: list[str]) -> argparse.Namespace:
    try:
        return parser.parse_args(args)
    except CryptolabError as exc:  # an option's own parser (a duration) refused its value: a usage error
        parser.error(one_line(exc))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `cryptolab` console script."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args_in if not a.startswith("-")), None)
    parser, modules = _parser(first if first in COMMANDS else None)
    if first == "db" and "psql" in args_in:
        # everything after `psql` belongs to psql (-v, -f, -c …), not to us
        cut = args_in.index("psql") + 1
        args = _parse(parser, args_in[:cut])
        args.psql_args = args_in[cut:]
    else:
        args = _parse(parser, args_in)
    if not args.command:
        parser.print_help()
        return 1
    mod = modules.get(args.command)
    if mod is None:
        print(f"cryptolab {args.command}: not available in this build", file=sys.stderr)
        return 2
    try:
        return int(mod.run(args) or 0)
    except CryptolabError as exc:
        print(f"cryptolab {args.command}: {one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or directory the user named cannot be used: say which, no traceback
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"cryptolab {args.command}: {where}{exc.strerror or one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
