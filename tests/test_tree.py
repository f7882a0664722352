"""The house rule: tests mirror the tree (docs/development.md, "Tests").

A module's unit tests are found by its path: `cryptolab/<pkg>/<x>.py` is tested in
`tests/<pkg>/test_<x>.py`, and an aspect of it big enough for a file of its own in
`tests/<pkg>/test_<x>_<aspect>.py` (listed right after it). End-to-end tests live in
tests/e2e/, fixtures in tests/fixtures/ (plugins). A test file that exercises several
modules at once — a behaviour across them — is named after the behaviour and listed in
BEHAVIOUR below with a one-line reason; nothing else may sit beside the mirror.
"""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
PKG = TESTS.parent / "cryptolab"
OWN = {"e2e", "fixtures"}  # end-to-end tests and the fixture plugins: folders of their own

BEHAVIOUR = {
    "test_layers.py": "imports point one way, across every package",
    "test_tree.py": "this file: the tests' layout",
    "analysis/test_aggtrades.py": "every analysis answered from aggregate trades as from raw trades",
    "analysis/test_data.py": "the shared market data set (market_dsn, mconn) other tests import, checked",
    "analysis/test_edges.py": "answers at the edges of a range, across analyses and their psql modules",
    "analysis/test_newcomer.py": "what a newcomer meets first, across analyses: defaults from the data",
    "archive/test_engines.py": "the archive read by Spark, DuckDB, polars and pyarrow, to the digit",
    "archive/test_integrity.py": "the archive checks itself: manifest, checksums, damage named",
    "archive/test_s3.py": "the archive on S3 (moto's server): export, attach, detach, drops",
    "history/test_join_live.py": "history joined to a live capture, every trade once (history + capture)",
    "storage/test_sql_psql.py": "every sql/*.sql module runs in psql as is and agrees with the API",
    "storage/test_trade_ids.py": "one truth per trade id across load, writer, history and the archive",
}


def _modules(folder: Path) -> set[str]:
    return {p.stem for p in folder.glob("*.py") if not p.stem.startswith("__")}


def _misplaced(tests: Path = TESTS, pkg: Path = PKG) -> list[str]:
    """Test files that neither mirror a module (or an aspect of one) nor are listed behaviours."""
    out = []
    for test in sorted(tests.rglob("test_*.py")):
        rel = test.relative_to(tests)
        if rel.parts[0] in OWN or rel.as_posix() in BEHAVIOUR:
            continue
        name = test.stem.removeprefix("test_")
        folder = pkg.joinpath(*rel.parts[:-1])
        modules = _modules(folder) | ({"init"} if (folder / "__init__.py").exists() else set())
        if name in modules or any(name.startswith(f"{m}_") for m in modules):
            continue
        out.append(rel.as_posix())
    return out


def test_every_test_file_mirrors_a_module_or_is_a_listed_behaviour() -> None:
    assert _misplaced() == [], (
        "name a test file after the module it tests (tests/<pkg>/test_<module>.py, or "
        "test_<module>_<aspect>.py), or list it in BEHAVIOUR with the reason it spans modules"
    )


def test_every_test_folder_mirrors_a_package() -> None:
    folders = {p.parent.relative_to(TESTS) for p in TESTS.rglob("test_*.py")} - {Path(".")}
    strays = sorted(
        f.as_posix() for f in folders if f.parts[0] not in OWN and not PKG.joinpath(*f.parts).is_dir()
    )
    assert strays == [], "a tests/ folder mirrors a cryptolab/ package, or is e2e/ or fixtures/"


def test_the_behaviour_list_names_only_files_that_exist_and_do_not_mirror() -> None:
    stale = [f for f in BEHAVIOUR if not (TESTS / f).exists()]
    assert stale == [], "drop these from BEHAVIOUR: the files are gone or renamed"
    for f in BEHAVIOUR:
        rel = Path(f)
        name = rel.stem.removeprefix("test_")
        folder = PKG.joinpath(*rel.parts[:-1])
        assert not (folder / f"{name}.py").exists(), f"{f} mirrors a module: it needs no entry"


def test_the_rule_catches_a_test_file_named_after_nothing(tmp_path: Path) -> None:
    (tmp_path / "tests" / "capture").mkdir(parents=True)
    (tmp_path / "cryptolab" / "capture").mkdir(parents=True)
    (tmp_path / "cryptolab" / "capture" / "sink.py").write_text("")
    for name in ("test_sink.py", "test_sink_replay.py", "test_units.py", "test_issue_13.py"):
        (tmp_path / "tests" / "capture" / name).write_text("")
    got = _misplaced(tmp_path / "tests", tmp_path / "cryptolab")
    assert got == ["capture/test_issue_13.py", "capture/test_units.py"]
