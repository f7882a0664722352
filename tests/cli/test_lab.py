"""`cryptolab lab` (what `make lab` runs): the URL JupyterLab prints opens the live dashboard.

A real JupyterLab on 127.0.0.1 (no browser), stopped as soon as it has printed its URLs.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import time
from pathlib import Path

from cryptolab.cli.lab import DASHBOARD, jupyter_command, working_copy

ROOT = Path(__file__).resolve().parents[2]


def test_the_url_jupyterlab_prints_opens_the_dashboard_not_the_launcher(tmp_path: Path) -> None:
    copy = working_copy(ROOT / "notebooks", tmp_path / "home")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "cfg"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
    }
    proc = subprocess.Popen(
        jupyter_command(copy, port, False),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    try:
        end = time.monotonic() + 120
        assert proc.stdout is not None
        while time.monotonic() < end:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "?token=" in line:
                break
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    urls = re.findall(r"http://127\.0\.0\.1:\d+/\S*\?token=\w+", "".join(lines))
    assert urls, "".join(lines)
    assert all(u.startswith(f"http://127.0.0.1:{port}/lab/tree/{DASHBOARD}?token=") for u in urls), urls
