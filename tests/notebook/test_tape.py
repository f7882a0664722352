"""The trade tape: newest first, as wide as its widest row."""

from __future__ import annotations

from cryptolab.notebook.tape import Tape


def test_the_tape_is_as_wide_as_its_widest_row() -> None:
    tape = Tape(rows=2)
    layout = tape.widget.layout
    assert layout.width == "max-content" and layout.flex == "0 0 auto"  # never cut to a fixed width
