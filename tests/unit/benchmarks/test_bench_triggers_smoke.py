"""The trigger benchmark's core, small: N triggers cost O(zones) requests per refresh and never misfire.

Runs ``benchmarks/bench_triggers.py``'s measurement with 50 real CarbonWindowTriggers over two
zones against its counting loopback server, with a one-second re-plan interval. Behaviour
only: no timing is asserted.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "benchmarks" / "bench_triggers.py"
TRIGGERS = 50
ZONES = 2
INTERVAL = 1.0


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_triggers", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def run(bench):
    with bench.loopback(ZONES, cache_ttl=0.9 * INTERVAL) as (server, zones):
        return bench.measure_carbon(server, TRIGGERS, zones, lead=4.0, slack=5.0, interval=INTERVAL)


def test_every_trigger_fired_between_its_planned_and_latest_start(run):
    assert run.misfires == 0


def test_the_triggers_re_planned_with_fresh_data(run):
    assert run.replans_per_trigger >= 1
    assert run.requests_by_path.get("/v3/carbon-intensity/forecast", 0) >= ZONES


def test_requests_grow_with_zones_and_refreshes_not_with_triggers(run):
    # At most one request per zone at each refresh tick the triggers lived through (plus the
    # first), however many triggers re-planned: the shared cache's single flight at work.
    rounds = max(run.refreshes, math.ceil(run.replans_per_trigger)) + 1
    assert run.requests <= ZONES * rounds
    assert run.requests < TRIGGERS
    assert run.naive_requests >= TRIGGERS * ZONES
