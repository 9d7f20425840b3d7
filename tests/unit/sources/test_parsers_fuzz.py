"""Arbitrary JSON into every parser: the only exceptions that may come out are typed ones."""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_carbon_provider.core.signals import MAX_INTENSITY, IntensitySeries
from airflow_carbon_provider.exceptions import CarbonDataError
from airflow_carbon_provider.sources import electricitymaps as em
from airflow_carbon_provider.sources import ukcarbonintensity as uk
from airflow_carbon_provider.sources import watttime as wt
from tests.unit.sources.conftest import sample

NOW = datetime(2024, 1, 1, tzinfo=timezone.utc)

PARSERS = {
    "em.latest": lambda body: em.parse_latest(body, "DE", em.EMOptions()),
    "em.forecast": lambda body: em.parse_forecast(body, "DE", em.EMOptions()),
    "em.history": lambda body: em.parse_history(body, "DE"),
    "em.past_range": lambda body: em.parse_past_range(body, "DE", em.EMOptions(granularity="15_minutes")),
    "wt.forecast": lambda body: wt.parse_forecast(body, "CAISO_NORTH"),
    "wt.historical": lambda body: wt.parse_historical(body, "CAISO_NORTH", "co2_aoer"),
    "wt.signal_index": lambda body: wt.parse_signal_index(body, "PSCO"),
    "wt.region": wt.parse_region_from_loc,
    "wt.access": wt.parse_my_access,
    "wt.login": wt.parse_login,
    "uk.actual": lambda body: uk.parse_national(body, "GB", field="actual"),
    "uk.forecast": lambda body: uk.parse_national(body, "GB", field="forecast", issued_at=NOW),
    "uk.regional": lambda body: uk.parse_regional(body, "GB-1"),
    "uk.current": lambda body: uk.parse_current(body, "GB", now=NOW),
}

# Real bodies each parser accepts, to mutate: reaching deep fields that random JSON never hits.
SEEDS = {
    "em.latest": sample("electricitymaps", "carbon-intensity_latest.docs-example.json"),
    "em.forecast": sample("electricitymaps", "carbon-intensity_forecast.reconstructed-24h.DE.json"),
    "em.history": sample("electricitymaps", "carbon-intensity_history.real.DE.2024-03-06.json"),
    "em.past_range": sample("electricitymaps", "carbon-intensity_past-range.docs-example.json"),
    "wt.forecast": sample("watttime", "forecast_historical.client-fixture.json")["data"][0]["forecast"],
    "wt.historical": sample("watttime", "historical.docs-example.json"),
    "wt.signal_index": sample("watttime", "signal-index.client-fixture.PSCO.2024-06-18.json"),
    "wt.region": sample("watttime", "region-from-loc.client-fixture.PSCO.json"),
    "wt.access": sample("watttime", "my-access.docs-example.json"),
    "wt.login": sample("watttime", "login.docs-example.json"),
    "uk.actual": sample("ukcarbonintensity", "intensity_pt24h_2023-03-16T1201Z.json"),
    "uk.forecast": sample("ukcarbonintensity", "intensity_fw48h_2023-03-14T1201Z.json"),
    "uk.regional": sample(
        "ukcarbonintensity", "regional_intensity_fw48h_regionid-1_2023-03-13T0131Z.real-truncated.json"
    ),
    "uk.current": sample("ukcarbonintensity", "intensity.real-compact.2020-09-19.json"),
}
SEEDS["wt.historical"]["meta"]["signal_type"] = "co2_aoer"
SEEDS["wt.forecast"] = {
    "data": SEEDS["wt.forecast"],
    "meta": sample("watttime", "forecast.docs-example.json")["meta"],
}

timestamps = st.datetimes(timezones=st.just(timezone.utc)).map(lambda d: d.isoformat().replace("+00:00", "Z"))
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.integers(min_value=-(10**500), max_value=10**500)  # beyond a float: OverflowError in float()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([1e308, -1e308, 1.7976931348623157e308, 5e-324, 5000.0, 5000.000001, 10**400])
    | st.text(max_size=30)
    | timestamps
    | st.sampled_from(["", "Z", "2023-03-14T12:00Z", "lbs_co2_per_mwh", "percentile", "co2_moer", "DE"])
)
keys = st.sampled_from(
    ["data", "forecast", "history", "zone", "datetime", "carbonIntensity", "isEstimated", "meta", "from", "to",
     "intensity", "actual", "point_time", "value", "units", "token", "region", "signal_types", "regions",
     "endpoints", "endpoint", "signal_type", "regionid", "updatedAt", "generated_at", "emissionFactorType",
     "data_point_period_seconds", "imputed_data_used"]
) | st.text(max_size=8)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=6),
    max_leaves=30,
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(value, dict):
        for key, child in value.items():
            found.extend(_paths(child, (*prefix, key)))
    elif isinstance(value, list):
        for index, child in enumerate(value[:4]):
            found.extend(_paths(child, (*prefix, index)))
    return found


@st.composite
def mutated(draw, name: str) -> Any:
    body = copy.deepcopy(SEEDS[name])
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(body)
        path = draw(st.sampled_from(paths))
        if not path:
            return draw(json_values)
        parent = body
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            parent.pop(path[-1], None)
        else:
            parent[path[-1]] = draw(json_values)
    return body


def _check(name: str, body: Any) -> None:
    try:
        result = PARSERS[name](body)
    except CarbonDataError as exc:
        assert str(exc)  # typed, with a message; anything else propagates and fails the test
    else:
        if isinstance(result, IntensitySeries):
            known = [iv.value for iv in result.intervals]
            assert known and all(0 <= v <= MAX_INTENSITY for v in known)
            assert result.values[0] == known[0] and result.values[-1] == known[-1]  # edges are known
            assert result.has_gaps == (len(known) < len(result.values))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(PARSERS)), body=json_values)
def test_arbitrary_json_raises_only_typed_errors(name, body):
    _check(name, body)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(sorted(PARSERS)))
def test_mutated_real_bodies_raise_only_typed_errors(data, name):
    _check(name, data.draw(mutated(name)))


def test_every_seed_parses():
    for name in PARSERS:
        PARSERS[name](SEEDS[name])


def _number_paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [prefix]
    children = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    return [path for key, child in children for path in _number_paths(child, (*prefix, key))]


def test_every_number_of_every_seed_replaced_by_a_huge_one_raises_only_typed_errors():
    for name, seed in SEEDS.items():
        for path in _number_paths(seed)[:60]:
            for huge in (10**400, -(10**400), 1e308, float("inf")):
                body = copy.deepcopy(seed)
                parent = body
                for step in path[:-1]:
                    parent = parent[step]
                parent[path[-1]] = huge
                _check(name, body)
