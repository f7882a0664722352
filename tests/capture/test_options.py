"""CaptureOptions: which knobs are times, so `--option` reads them with the duration grammar."""

from __future__ import annotations

from dataclasses import fields

from cryptolab.capture.options import DURATION_FIELDS, CaptureOptions

NOT_TIMES = {"simulator_rate"}  # the float knobs that are not a time in seconds


def test_every_float_knob_is_either_a_duration_or_named_as_not_a_time() -> None:
    floats = {f.name for f in fields(CaptureOptions) if str(f.type).startswith("float")}
    assert floats >= DURATION_FIELDS
    assert floats - DURATION_FIELDS == NOT_TIMES, "a new float knob: add it to DURATION_FIELDS or NOT_TIMES"
