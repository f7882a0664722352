"""The error kernel: what an error line quotes of another library's exception."""

from __future__ import annotations

import pytest

from cryptolab.errors import first_line, one_line


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (ValueError("connection refused\nIs the server running on that host?"), "connection refused"),
        (ValueError("  \n  padded first line  \nsecond"), "padded first line"),
        (ValueError(""), "ValueError"),
        (OSError(), "OSError"),
    ],
)
def test_first_line_quotes_the_first_line_or_the_class_name(exc: BaseException, line: str) -> None:
    assert first_line(exc) == line


def test_one_line_folds_a_message_whose_detail_is_on_a_later_line() -> None:
    exc = OSError("When getting information for bucket 'b':\n  AWS Error NO_SUCH_BUCKET\tduring HeadBucket")
    assert (
        one_line(exc) == "When getting information for bucket 'b': AWS Error NO_SUCH_BUCKET during HeadBucket"
    )
    assert one_line(KeyError()) == "KeyError"
