"""The report's index page: key figures shown for people, and no pointer to what is not there."""

from __future__ import annotations

from pathlib import Path

from cryptolab.report import runner as report


def test_the_index_shows_an_empty_list_as_none_and_points_at_nothing_that_is_not_there(
    tmp_path: Path,
) -> None:
    from datetime import datetime, timezone

    run = report.NotebookRun(
        name="03_quality_check",
        source=tmp_path / "a.ipynb",
        output=tmp_path / "a.ipynb",
        ok=True,
        records={"failed_checks": [], "sources": ["live", "backfill"]},
    )
    page = report._index_html([run], {}, datetime.now(timezone.utc), 1.0)
    assert 'failed_checks</td><td class="num">none</td>' in page  # not an empty cell
    volume = (Path(__file__).resolve().parents[2] / "notebooks" / "04_volume.ipynb").read_text()
    assert "see above" not in volume  # the index has no "above": the key figure says why itself
