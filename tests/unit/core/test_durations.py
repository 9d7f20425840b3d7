from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_carbon_provider.core.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30s", timedelta(seconds=30)), ("90m", timedelta(minutes=90)), ("4h", timedelta(hours=4)),
     ("1.5d", timedelta(hours=36)), (" 2 h ", timedelta(hours=2))],
)
def test_parse(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["4", "h", "4 hours", "", "4w"])
def test_parse_refuses_with_the_fix(text):
    with pytest.raises(DurationError, match="write a number and a unit s, m, h or d"):
        parse_duration(text, "--job-duration")


def test_format_round_trips():
    for text in ("4h", "90m", "2d", "45s"):
        assert format_duration(parse_duration(text)) == text


def test_negative_durations_say_so():
    with pytest.raises(DurationError, match="'-1h' is negative"):
        parse_duration("-1h", "--max-delay")
