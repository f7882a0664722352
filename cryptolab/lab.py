"""Open the workbench: database up, schema applied, JupyterLab on the live dashboard."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from . import db, embedded
from .config import settings
from .errors import ConfigError

DASHBOARD = "00_live_dashboard.ipynb"


def notebooks_dir() -> Path:
    """The project's notebooks/ (next to the package in a checkout, else ./notebooks)."""
    for cand in (Path(__file__).resolve().parent.parent / "notebooks", Path.cwd() / "notebooks"):
        if (cand / DASHBOARD).exists():
            return cand
    raise ConfigError("cannot find notebooks/00_live_dashboard.ipynb: run from the cryptolab checkout")


def jupyter_command(nbdir: Path, port: int, open_browser: bool) -> list[str]:
    """The `jupyter lab` command line: loopback only; --allow-root when run as root."""
    jupyter = shutil.which("jupyter", path=os.path.dirname(sys.executable)) or shutil.which("jupyter")
    if jupyter is None:
        raise ConfigError("jupyter is not installed in this environment: run `make lab` (it installs it)")
    cmd = [jupyter, "lab", f"--ServerApp.root_dir={nbdir}", "--ip=127.0.0.1", f"--port={port}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # JupyterLab refuses root without it
    if not open_browser:
        cmd.append("--no-browser")
    cmd.append(str(nbdir / DASHBOARD))
    return cmd


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=8888, help="JupyterLab port on 127.0.0.1 (default 8888)")
    p.add_argument("--no-browser", action="store_true", help="do not try to open a web browser")


def run(args: argparse.Namespace) -> int:
    cfg = settings()
    with db.connect() as conn:
        version = db.apply_schema(conn)
    if cfg.embedded:
        print(embedded.status(cfg).describe())
    else:
        print("database: CRYPTOLAB_DSN")
    print(f"schema version {version}")
    nbdir = notebooks_dir()
    cmd = jupyter_command(nbdir, args.port, not args.no_browser)
    print("starting:", " ".join(cmd), flush=True)
    os.execv(cmd[0], cmd)
    return 0  # pragma: no cover - execv does not return
