"""Resource quantities and capacities: the units inventory, reservations and the planner share."""

from __future__ import annotations

import pytest

from airflow_carbon_provider.core.resources import (
    POD,
    Booking,
    ResourceError,
    format_resources,
    parse_quantity,
    parse_resources,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [("500m", 0.5), ("4", 4.0), (2, 2.0), ("16Gi", 16 * 2**30), ("1G", 1e9), ("1.5", 1.5), ("1e3", 1000.0),
     ("128974848", 128974848.0), ("129e6", 129e6), ("123Mi", 123 * 2**20)],
)
def test_kubernetes_quantities_are_read_in_base_units(text, value):
    assert parse_quantity(text) == pytest.approx(value)


@pytest.mark.parametrize("bad", ["-1", "abc", "4 cores", True, None, float("nan"), float("inf"), "1Zi"])
def test_a_bad_quantity_names_itself(bad):
    with pytest.raises(ResourceError, match="capacity\\['cpu'\\]"):
        parse_quantity(bad, name="capacity['cpu']")


def test_an_integer_capacity_means_that_many_pods_and_none_means_unlimited():
    assert parse_resources(50) == {"pods": 50.0}
    assert parse_resources(None) is None
    assert parse_resources({"cpu": "64", "memory": "256Gi", "nvidia.com/gpu": 8}) == {
        "cpu": 64.0, "memory": 256.0 * 2**30, "nvidia.com/gpu": 8.0}


@pytest.mark.parametrize(
    ("spec", "message"),
    [(0, "positive integer"), (-3, "positive integer"), (2.5, "positive integer"), (True, "positive integer"),
     ("50", "dict such as"), ({}, "empty dict"), ({"bad name": 1}, "resource name 'bad name'"),
     ({"cpu": "lots"}, r"gb.capacity\['cpu'\]")],
)
def test_a_bad_capacity_is_refused_in_one_line_naming_the_parameter(spec, message):
    with pytest.raises(ResourceError, match=message) as info:
        parse_resources(spec, where="gb.capacity")
    assert "\n" not in str(info.value)


def test_amounts_format_for_people():
    assert format_resources({"memory": 3 * 2**30, "pods": 2, "nvidia.com/gpu": 1}) == "pods 2, memory 3Gi, nvidia.com/gpu 1"
    assert format_resources(None) == "unlimited"


def test_a_booking_asks_for_one_pod_unless_told():
    assert Booking("gb", 0.0, 60.0).demand == POD
