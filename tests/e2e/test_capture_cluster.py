"""Capture across processes (as if on several hosts): one database, symbols shared out,
no gap when a capturer dies, no double ownership when one is cut off. Real processes,
a real local exchange over 127.0.0.1, a real PostgreSQL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

from cryptolab.capture import Capture
from tests.e2e.test_capture import FAST, assert_exact, printed_total, stored_count, wait_until

SIX = ["btcusdt", "ethusdt", "solusdt", "bnbusdt", "xrpusdt", "adausdt"]
QUICK = ["--option", "lease_seconds=3", "--option", "takeover_grace=1", "--option", "gap_grace=0.3",
         "--option", "stall_timeout=3", "--option", "backoff_max=0.5",
         "--option", "lease_renew_seconds=1"]


def owners(dsn: str) -> dict[str, str]:
    with psycopg.connect(dsn) as c:
        rows = c.execute(
            "SELECT symbol, owner FROM capture_leases WHERE expires_at > clock_timestamp()"
        ).fetchall()
    return {s: o for s, o in rows}


def start_capturer(
    dsn: str, home: Path, source: str, symbols: list[str], *extra: str
) -> subprocess.Popen[bytes]:
    home.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CRYPTOLAB_DSN": dsn,
        "CRYPTOLAB_HOME": str(home),
        "CRYPTOLAB_ENV_FILE": str(home / "no.env"),
    }
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cryptolab",
            "capture",
            "--symbols",
            ",".join(symbols),
            "--source",
            source,
            "--from-id",
            "1",
            "--quiet",
            *QUICK,
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def test_three_capturers_share_six_symbols_and_survive_a_kill_9(dsn: str, exchange, tmp_path: Path) -> None:
    ex = exchange(symbols=SIX, rate=240, seed=11)
    procs = [start_capturer(dsn, tmp_path / f"host{i}", ex.ws_url, SIX) for i in range(3)]
    try:

        def running() -> list[tuple[str, int]]:
            with psycopg.connect(dsn) as c:
                return c.execute(
                    "SELECT member_id, pid FROM capture_members WHERE state = 'running'"
                ).fetchall()

        wait_until(
            lambda: len(running()) == 3 and len(owners(dsn)) == 6, 60, "three capturers, every symbol owned"
        )
        members = running()
        time.sleep(7)  # hand-backs settle: each symbol with its preferred capturer
        own = owners(dsn)
        assert len(own) == 6 and len(set(own)) >= 2  # shared out, each symbol once
        pid_of = {mid: pid for mid, pid in members}
        counts: dict[str, int] = {}
        for o in own.values():
            counts[o] = counts.get(o, 0) + 1
        victim = max(counts, key=lambda k: counts[k])
        victim_syms = {s for s, o in own.items() if o == victim}
        ex.inject("reset")
        ex.inject("duplicate", n=20)
        ex.inject("gap", n=40)
        killed_at = time.monotonic()
        os.kill(pid_of[victim], signal.SIGKILL)
        wait_until(
            lambda: victim_syms <= {s for s, o in owners(dsn).items() if o != victim},
            15,
            "the killed capturer's symbols to be taken over",
        )
        takeover = time.monotonic() - killed_at
        assert takeover <= 10.0, f"takeover took {takeover:.1f} s"
        time.sleep(2)
        ex.stop_market()
        total = printed_total(ex, SIX)
        wait_until(lambda: stored_count(dsn, SIX) >= total, 60, f"{total} trades stored")
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
    assert_exact(dsn, ex, SIX)
    assert owners(dsn) == {}  # stopped capturers hand their leases back


class Cutter:
    """A byte pipe between a client and PostgreSQL (unix socket or TCP on 127.0.0.1) that can be cut."""

    def __init__(self, dsn: str, workdir: Path) -> None:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
        host, port = str(info.get("host") or "/tmp"), int(info.get("port") or 5432)
        self.unix = host.startswith("/")
        self.target: str | tuple[str, int] = f"{host}/.s.PGSQL.{port}" if self.unix else (host, port)
        if self.unix:
            workdir.mkdir(parents=True, exist_ok=True)
            self.server = socket.socket(socket.AF_UNIX)
            self.server.bind(str(workdir / f".s.PGSQL.{port}"))
            self.dsn = psycopg.conninfo.make_conninfo(dsn, host=str(workdir))
        else:
            self.server = socket.socket()
            self.server.bind(("127.0.0.1", 0))
            self.dsn = psycopg.conninfo.make_conninfo(
                dsn, host="127.0.0.1", port=str(self.server.getsockname()[1])
            )
        self.server.listen(64)
        self.cut = False
        self.closed = False
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.server.settimeout(0.2)
        while not self.closed:
            try:
                client, _ = self.server.accept()
            except OSError:
                continue
            if self.cut:
                client.close()
                continue
            upstream = socket.socket(socket.AF_UNIX if self.unix else socket.AF_INET)
            upstream.connect(self.target)
            self.pairs.append((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def sever(self) -> None:
        """Drop every connection through the pipe and refuse new ones."""
        self.cut = True
        for a, b in self.pairs:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
        self.pairs.clear()

    def restore(self) -> None:
        self.cut = False

    def close(self) -> None:
        self.closed = True
        self.sever()
        self.server.close()


CLUSTER = dict(FAST, lease_seconds=3.0, lease_renew_seconds=1.0, takeover_grace=1.0, handoff_settle=3.0)


def test_a_capturer_cut_off_for_30_s_stops_claiming_and_rejoins_without_loss(
    dsn: str, exchange, tmp_path: Path
) -> None:
    syms = ["btcusdt", "ethusdt", "solusdt"]
    ex = exchange(symbols=syms, rate=150, seed=5)
    pipe = Cutter(dsn, tmp_path / "pipe")
    ids = {s.upper(): 1 for s in syms}
    a = Capture(syms, source=ex.ws_url, dsn=pipe.dsn, from_ids=ids, **CLUSTER).start()
    b = Capture(syms, source=ex.ws_url, dsn=dsn, from_ids=ids, **CLUSTER).start()
    try:
        everything = {s.upper() for s in syms}

        def split() -> bool:
            sa, sb = set(a.status().symbols), set(b.status().symbols)
            return not (sa & sb) and sa | sb == everything

        time.sleep(5)  # past the hand-back settle time: each symbol goes to its preferred capturer
        wait_until(lambda: len(owners(dsn)) == 3 and split(), 20, "every symbol owned once")
        a_member = a.status().member_id
        pipe.sever()
        cut_at = time.monotonic()
        # within its lease a cut-off capturer stops; the other takes everything over
        wait_until(lambda: a.status().symbols == (), 10, "the cut-off capturer to stop claiming")
        wait_until(lambda: set(b.status().symbols) == {s.upper() for s in syms}, 10, "the other to own all")
        overlap_seen = False
        while time.monotonic() - cut_at < 30:
            overlap_seen |= bool(set(a.status().symbols) & set(b.status().symbols))
            time.sleep(0.2)
        assert not overlap_seen
        assert a_member not in owners(dsn).values()
        pipe.restore()
        wait_until(
            lambda: a.status().database_up and a.status().journal_rows == 0,
            30,
            "the cut-off capturer to rejoin",
        )
        # hand-backs, if any, are make-before-break: the two stream a symbol together for up to a
        # renewal (longer on a loaded machine), then one of them drops it
        time.sleep(5)
        wait_until(
            lambda: not (set(a.status().symbols) & set(b.status().symbols)), 15, "each symbol owned once"
        )
        ex.stop_market()
        total = printed_total(ex, syms)
        wait_until(lambda: stored_count(dsn, syms) >= total, 60, f"{total} trades stored")
    finally:
        a.stop()
        b.stop()
        pipe.close()
    assert_exact(dsn, ex, syms)


def test_a_standby_owns_nothing_then_takes_over_when_the_last_owner_stops(dsn: str, exchange) -> None:
    syms = ["btcusdt", "ethusdt"]
    ex = exchange(symbols=syms, rate=150, seed=9)
    ids = {s.upper(): 1 for s in syms}
    owner = Capture(syms, source=ex.ws_url, from_ids=ids, **CLUSTER).start()
    standby = Capture(syms, source=ex.ws_url, from_ids=ids, standby=True, **CLUSTER).start()
    try:
        assert standby.status().symbols == () and standby.status().standby
        assert set(standby.status().skipped_symbols) == {"BTCUSDT", "ETHUSDT"}
        time.sleep(2)
        assert standby.status().symbols == ()
        stopped_at = time.monotonic()
        owner.stop()
        wait_until(
            lambda: set(standby.status().symbols) == {"BTCUSDT", "ETHUSDT"}, 10, "the standby to take over"
        )
        assert time.monotonic() - stopped_at < 10
        with psycopg.connect(dsn) as c:
            rows = c.execute("SELECT standby, symbols FROM capture_status WHERE state = 'running'").fetchall()
        assert rows == [(True, ["BTCUSDT", "ETHUSDT"])]
        time.sleep(1.5)
        ex.stop_market()
        total = printed_total(ex, syms)
        wait_until(lambda: stored_count(dsn, syms) >= total, 30, f"{total} trades stored")
    finally:
        owner.stop()
        standby.stop()
    assert_exact(dsn, ex, syms)


def test_cli_workers_and_status(dsn: str, exchange, tmp_path: Path) -> None:
    syms = ["btcusdt", "ethusdt", "solusdt"]
    ex = exchange(symbols=syms, rate=150, seed=4)
    env = {**os.environ, "CRYPTOLAB_DSN": dsn}
    parent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cryptolab",
            "capture",
            "--symbols",
            ",".join(syms),
            "--source",
            ex.ws_url,
            "--from-id",
            "1",
            "--workers",
            "2",
            *QUICK,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until(lambda: len(owners(dsn)) == 3, 30, "every symbol owned")
        st = subprocess.run(
            [sys.executable, "-m", "cryptolab", "capture", "status"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert st.returncode == 0
        lines = [ln for ln in st.stdout.splitlines()[1:] if "running" in ln]
        assert len(lines) == 2  # two worker processes, each listed with its symbols
        ex.stop_market()
        total = printed_total(ex, syms)
        wait_until(lambda: stored_count(dsn, syms) >= total, 60, f"{total} trades stored")
    finally:
        parent.send_signal(signal.SIGTERM)
        out, _ = parent.communicate(timeout=60)
    assert parent.returncode == 0, out
    assert "2 workers" in out and f"stored {total:,} trades" in out
    assert_exact(dsn, ex, syms)
    with psycopg.connect(dsn) as c:
        pids = {p for (p,) in c.execute("SELECT DISTINCT pid FROM capture_members").fetchall()}
    assert len(pids) == 2 and parent.pid not in pids


@pytest.mark.parametrize("bad", ["0", "x", "999"])
def test_cli_workers_refuses_nonsense(bad: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "cryptolab", "capture", "--symbols", "btcusdt", "--workers", bad],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "--workers" in r.stderr and "Traceback" not in r.stderr


def test_a_database_outage_longer_than_the_lease_loses_nothing_and_capture_goes_on(
    dsn: str, exchange, tmp_path: Path
) -> None:
    """One capture, default cluster rules: the lease runs out during the outage, the symbols are
    won back when the database returns, the hole is filled by id, and capture goes on after it."""
    syms = ["btcusdt", "ethusdt"]
    ex = exchange(symbols=syms, rate=200, seed=11)
    pipe = Cutter(dsn, tmp_path / "pipe")
    cap = Capture(
        syms, source=ex.ws_url, dsn=pipe.dsn, from_ids={s.upper(): 1 for s in syms}, **CLUSTER
    ).start()
    try:
        wait_until(lambda: stored_count(dsn, syms) > 100, 20, "the first trades stored")
        pipe.sever()
        wait_until(lambda: cap.status().symbols == (), 10, "the lease to run out locally")
        time.sleep(4)  # well past the lease: the server's lease has expired too
        pipe.restore()
        wait_until(lambda: set(cap.status().symbols) == {s.upper() for s in syms}, 20, "the symbols won back")
        after = stored_count(dsn, syms)
        wait_until(lambda: stored_count(dsn, syms) > after + 200, 20, "capture to go on after the outage")
        ex.stop_market()
        total = printed_total(ex, syms)
        wait_until(lambda: stored_count(dsn, syms) >= total, 60, f"{total} trades stored")
    finally:
        st = cap.stop()
        pipe.close()
    assert not st.failed, st.error
    assert_exact(dsn, ex, syms)


def test_two_capturers_through_one_outage_both_capture_again_no_zombie_leases(
    dsn: str, exchange, tmp_path: Path
) -> None:
    """After an outage longer than the lease for both, every valid lease belongs to a capturer
    that captures its symbol (no fresh heartbeat over nothing stored)."""
    syms = ["btcusdt", "ethusdt", "solusdt"]
    ex = exchange(symbols=syms, rate=150, seed=12)
    pipe = Cutter(dsn, tmp_path / "pipe")
    ids = {s.upper(): 1 for s in syms}
    a = Capture(syms, source=ex.ws_url, dsn=pipe.dsn, from_ids=ids, **CLUSTER).start()
    b = Capture(syms, source=ex.ws_url, dsn=pipe.dsn, from_ids=ids, **CLUSTER).start()
    try:
        everything = {s.upper() for s in syms}
        wait_until(
            lambda: set(a.status().symbols) | set(b.status().symbols) == everything, 20, "every symbol owned"
        )
        pipe.sever()
        wait_until(
            lambda: a.status().symbols == () and b.status().symbols == (), 10, "both leases to run out"
        )
        time.sleep(4)
        pipe.restore()

        def captured_by_lease_holder() -> bool:
            held = owners(dsn)
            by_member = {
                a.status().member_id: set(a.status().symbols),
                b.status().member_id: set(b.status().symbols),
            }
            return set(held) == everything and all(
                s.upper() in by_member.get(o, set()) for s, o in held.items()
            )

        wait_until(captured_by_lease_holder, 20, "every lease held by a capturer that captures its symbol")
        ex.stop_market()
        total = printed_total(ex, syms)
        wait_until(lambda: stored_count(dsn, syms) >= total, 60, f"{total} trades stored")
    finally:
        a.stop()
        b.stop()
        pipe.close()
    assert_exact(dsn, ex, syms)


def test_a_capture_stopped_while_its_symbols_are_lost_fails_loudly(
    dsn: str, exchange, tmp_path: Path
) -> None:
    syms = ["btcusdt"]
    ex = exchange(symbols=syms, rate=100, seed=13)
    pipe = Cutter(dsn, tmp_path / "pipe")
    cap = Capture(syms, source=ex.ws_url, dsn=pipe.dsn, **CLUSTER).start()
    try:
        wait_until(lambda: cap.status().symbols == ("BTCUSDT",), 20, "the symbol captured")
        pipe.sever()
        wait_until(lambda: cap.status().symbols == (), 10, "the lease to run out locally")
        st = cap.stop()
    finally:
        pipe.close()
    assert st.failed
    assert st.error is not None and "stopped capturing BTCUSDT" in st.error
