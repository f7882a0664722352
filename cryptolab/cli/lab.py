"""Open the workbench: database up, schema applied, JupyterLab on the live dashboard.

JupyterLab opens a *working copy* of the notebooks under `$CRYPTOLAB_HOME/notebooks`
(default `~/.cryptolab/notebooks`), never the tracked `notebooks/` of the checkout:
autosave, outputs and parameter edits stay in the copy, so using the lab never dirties
the repository (and never breaks the test that checks the committed notebooks). A
notebook is copied when the working copy lacks it; `--refresh` replaces the copies with
the tracked versions (edits in them are lost), `--tracked` opens the tracked notebooks
themselves (to change what is committed).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from ..config import settings
from ..errors import ConfigError
from ..report.runner import DASHBOARD, notebooks_dir
from ..storage import db, embedded


def working_copy(source: Path, home: Path, *, refresh: bool = False) -> Path:
    """`home/notebooks` holding a copy of every notebook of `source` (missing ones copied;
    all of them with `refresh`); returns its path."""
    target = home / "notebooks"
    target.mkdir(parents=True, exist_ok=True)
    for nb in sorted(source.glob("*.ipynb")):
        dest = target / nb.name
        if refresh or not dest.exists():
            shutil.copy2(nb, dest)
    return target


DASHBOARD_PATH = f"/lab/tree/{DASHBOARD}"
"""Where the dashboard opens in JupyterLab (the URLs JupyterLab prints point here, not at the Launcher)."""


def jupyter_command(nbdir: Path, port: int, open_browser: bool) -> list[str]:
    """The `jupyter lab` command line: loopback only; --allow-root when run as root; the URLs it
    prints (and `/`) lead to the live dashboard."""
    jupyter = shutil.which("jupyter", path=os.path.dirname(sys.executable)) or shutil.which("jupyter")
    if jupyter is None:
        raise ConfigError("jupyter is not installed in this environment: run `make lab` (it installs it)")
    cmd = [jupyter, "lab", f"--ServerApp.root_dir={nbdir}", "--ip=127.0.0.1", f"--port={port}",
           f"--LabApp.default_url={DASHBOARD_PATH}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # JupyterLab refuses root without it
    if not open_browser:
        cmd.append("--no-browser")
    cmd.append(str(nbdir / DASHBOARD))
    return cmd


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--port", type=int, default=8888, help="JupyterLab port on 127.0.0.1 (default 8888)")
    p.add_argument("--no-browser", action="store_true", help="do not try to open a web browser")
    p.add_argument(
        "--refresh",
        action="store_true",
        help="replace the working copies under $CRYPTOLAB_HOME/notebooks with the tracked notebooks",
    )
    p.add_argument(
        "--tracked",
        action="store_true",
        help="open the tracked notebooks/ of the checkout (outputs and edits will dirty git)",
    )


def run(args: argparse.Namespace) -> int:  # execv: returns only by raising
    cfg = settings()
    with db.connect() as conn:
        version = db.apply_schema(conn)
    if cfg.embedded:
        print(embedded.status(cfg).describe())
    else:
        print("database: CRYPTOLAB_DSN")
    print(f"schema version {version}")
    tracked = notebooks_dir()
    if getattr(args, "tracked", False):
        nbdir = tracked
        print(f"notebooks: {nbdir} (tracked: outputs and edits show in git)")
    else:
        nbdir = working_copy(tracked, cfg.home, refresh=getattr(args, "refresh", False))
        print(
            f"notebooks: working copy in {nbdir} (the tracked ones in {tracked} stay clean; "
            "`cryptolab lab --refresh` takes their newest version)"
        )
    cmd = jupyter_command(nbdir, args.port, not args.no_browser)
    print("starting:", " ".join(cmd))
    print(
        f"the live dashboard: http://127.0.0.1:{args.port}{DASHBOARD_PATH} "
        "(JupyterLab prints it with its token below; open that URL)",
        flush=True,
    )
    os.execv(cmd[0], cmd)
