"""Connection extras are bounded: an absurd number is a one-line CarbonConfigError naming the key.

Before, ``1e20`` or ``"inf"`` in ``max_staleness``, ``cache_ttl``, ``max_retries`` or
``horizon_hours`` escaped as ``OverflowError``: not a ``CarbonDataError``, so fail-open
upstream was skipped and the task failed.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_carbon_provider.exceptions import CarbonConfigError
from airflow_carbon_provider.hooks.carbontrace import CarbonTraceHook
from airflow_carbon_provider.hooks.electricitymaps import ElectricityMapsHook
from airflow_carbon_provider.hooks.watttime import WattTimeHook

HUGE_INT = 10**400


class Huge(int):
    """10**400, with a short repr for test ids."""

    def __repr__(self) -> str:
        return "10**400"


HUGE = Huge(HUGE_INT)


def _em(add_connection, **extra):
    add_connection("em_bounds", "electricitymaps", password="em-bounds-key", extra=extra)
    return ElectricityMapsHook("em_bounds", cache=None)


BAD = [
    ("timeout", 1e20), ("timeout", "inf"), ("timeout", "nan"), ("timeout", HUGE), ("timeout", 0),
    ("timeout", 601), ("timeout", True),
    ("max_retries", "inf"), ("max_retries", 1e20), ("max_retries", HUGE), ("max_retries", -1),
    ("max_retries", 11), ("max_retries", 2.5),
    ("max_staleness", 1e20), ("max_staleness", "inf"), ("max_staleness", "99999999999999999999d"),
    ("max_staleness", HUGE), ("max_staleness", "31d"),
    ("cache_ttl", 1e20), ("cache_ttl", "inf"), ("cache_ttl", "99999999999999999999d"), ("cache_ttl", "2d"),
    ("horizon_hours", "inf"), ("horizon_hours", 1e20), ("horizon_hours", 0), ("horizon_hours", 73),
]  # fmt: skip


@pytest.mark.parametrize(("key", "value"), BAD)
def test_an_out_of_range_extra_is_a_one_line_config_error_naming_the_key(add_connection, key, value):
    with pytest.raises(CarbonConfigError) as info:
        _em(add_connection, **{key: value}).get_config()
    message = str(info.value)
    assert f"extra {key!r}" in message and "\n" not in message and len(message) < 300
    assert "from" in message  # the accepted range, i.e. the fix


@pytest.mark.parametrize("hook", ["sync", "async"])
async def test_an_out_of_range_extra_fails_typed_on_the_protocol_methods(add_connection, hook):
    em = _em(add_connection, max_staleness=1e20)
    with pytest.raises(CarbonConfigError, match="max_staleness"):
        if hook == "sync":
            em.get_forecast("DE")
        else:
            await em.aget_forecast("DE")


def test_in_range_extras_are_read(add_connection):
    config = _em(
        add_connection, timeout="600", max_retries=10, max_staleness="30d", cache_ttl=86400, horizon_hours=72
    ).get_config()
    assert config.policy.timeout == 600 and config.policy.max_attempts == 11
    assert config.max_staleness == timedelta(days=30) and config.ttl["forecast"] == 86400
    assert config.options["horizon_hours"] == 72


def test_watttime_horizon_is_bounded(add_connection):
    add_connection("wt_bounds", "watttime", login="someone", password="pw-123456", extra={"horizon_hours": 1e20})
    with pytest.raises(CarbonConfigError, match="horizon_hours"):
        WattTimeHook("wt_bounds", cache=None).get_config()


@pytest.mark.parametrize("value", [1e20, "99999999999999999999d", "31d"])
def test_trace_horizon_is_bounded(add_connection, value):
    add_connection("trace_bounds", "carbontrace", extra={"horizon": value})
    with pytest.raises(CarbonConfigError, match="horizon"):
        CarbonTraceHook("trace_bounds", cache=None).get_config()


numbers = (
    st.integers(min_value=-(10**500), max_value=10**500)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.none()
    | st.sampled_from(["inf", "-inf", "nan", "1e400", "1e20", "99999999999999999999d", "30m", "5", "-3h", ""])
    | st.text(max_size=12)
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["timeout", "max_retries", "max_staleness", "cache_ttl", "horizon_hours"]), value=numbers)
def test_any_extra_value_gives_a_sane_config_or_a_config_error(add_connection, key, value):
    try:
        config = _em(add_connection, **{key: value}).get_config()
    except CarbonConfigError as exc:
        assert key in str(exc)
        return
    assert 0 < config.policy.timeout <= 600 and 1 <= config.policy.max_attempts <= 11
    assert config.max_staleness is None or timedelta(0) <= config.max_staleness <= timedelta(days=30)
    assert all(0 <= ttl <= 86400 for ttl in config.ttl.values())
