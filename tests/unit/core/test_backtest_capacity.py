"""The backtest under capacities: coordination, the exact oracle, overflows charged honestly."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta

import pytest

from airflow_carbon_provider.core.backtest import BacktestError, OracleInstance, run_backtest
from airflow_carbon_provider.core.forecast import PerfectForecast
from airflow_carbon_provider.core.traces import bundled_trace_path, read_trace
from tests.conftest import utc

TRACE = read_trace(bundled_trace_path())
H = timedelta(hours=1)
ZONES = ["DE", "GB", "US-CAL-CISO", "CA-ON"]


def _run(**kw):
    args = {"zones": ZONES, "home_zone": "DE", "job_duration": 4 * H, "max_delay": 12 * H, "arrival_every": 2 * H,
            "forecast": PerfectForecast(TRACE), "end": utc(2023, 3, 11)}
    args.update(kw)
    return run_backtest(TRACE, **args)


def test_uncoordinated_exceeds_capacity_while_coordinated_never_does():
    caps = {"CA-ON": 2, "US-CAL-CISO": 2}
    result = _run(capacities=caps, jobs_per_arrival=4)
    s = result.summaries
    assert s["carbon-aware-uncoordinated"].peak_load["CA-ON"] > 2
    assert s["carbon-aware-uncoordinated"].capacity_overflows > 0
    for policy in ("carbon-aware", "oracle", "greenest-now", "threshold", "rolling-window", "next-hour-window"):
        assert all(s[policy].peak_load.get(z, 0) <= n for z, n in caps.items()), policy
        assert s[policy].capacity_overflows == 0, policy
    for policy, summary in s.items():
        assert summary.deadline_misses == 0, policy
    # Coordination is worth something, and the capacity-respecting oracle bounds every policy that respects it.
    assert s["carbon-aware"].mean_intensity < s["carbon-aware-uncoordinated"].mean_intensity
    assert s["oracle"].mean_intensity <= s["carbon-aware"].mean_intensity + 1e-9
    # An overflowing job is charged at home over the same run.
    over = next(o for o in result.outcomes["carbon-aware-uncoordinated"] if o.overflow)
    assert over.zone == "DE" and over.planned_zone == "CA-ON"
    assert over.intensity == pytest.approx(TRACE["DE"].mean(over.start, over.start + 4 * H))
    assert result.to_dict()["capacities"] == caps and result.to_dict()["jobs"] == 4 * len(result.arrivals)


def test_without_capacities_k_jobs_are_k_copies_and_the_oracle_is_unchanged():
    one = _run()
    many = _run(jobs_per_arrival=3)
    for policy in one.summaries:
        assert many.summaries[policy].mean_intensity == pytest.approx(one.summaries[policy].mean_intensity), policy
    assert many.summaries["carbon-aware"].mean_intensity == pytest.approx(one.summaries["oracle"].mean_intensity)
    assert "carbon-aware-uncoordinated" not in one.summaries
    assert one.summaries["run-now"].capacity_overflows is None


def test_slack_capacities_change_nothing():
    free = _run(policies=["carbon-aware"])
    roomy = _run(policies=["carbon-aware"], capacities={"CA-ON": 100})
    for policy in ("oracle", "carbon-aware"):
        assert roomy.summaries[policy].mean_intensity == pytest.approx(free.summaries[policy].mean_intensity)


@pytest.mark.parametrize(("kw", "message"), [
    ({"capacities": {"FR": 2}}, "--capacity FR=2: FR is not one of --zones"),
    ({"capacities": {"GB": 0}}, "a capacity is a whole number of jobs >= 1"),
    ({"jobs_per_arrival": 0}, "--jobs-per-arrival must be a whole number of jobs >= 1"),
])
def test_bad_capacity_inputs(kw, message):
    with pytest.raises(BacktestError, match=message):
        _run(**kw)


def _brute_force(instance: OracleInstance) -> float:
    options = [(a, z, s) for a in range(len(instance.starts)) for z in range(len(instance.zones))
               for s in range(len(instance.starts[a]))]
    best = float("inf")
    per_arrival = [[o for o in options if o[0] == a] for a in range(len(instance.starts))]
    for combo in itertools.product(*[list(itertools.combinations_with_replacement(opts, instance.jobs))
                                     for opts in per_arrival]):
        placed = [o for group in combo for o in group]
        ok = True
        for z, name in enumerate(instance.zones):
            cap = instance.capacities.get(name)
            if cap is None:
                continue
            runs = [instance.starts[a][s] for a, zz, s in placed if zz == z]
            if any(sum(1 for r in runs if r <= t < r + instance.duration) > cap for t in runs):
                ok = False
                break
        if ok:
            best = min(best, sum(instance.cost[a][z][s] for a, z, s in placed))
    return best


@pytest.mark.parametrize("seed", range(4))
def test_the_oracle_under_capacity_equals_brute_force(seed):
    pytest.importorskip("scipy")
    from airflow_carbon_provider.backtest_solver import solve_oracle

    rng = random.Random(seed)
    starts = [[0.0, 1.0, 2.0], [1.0, 2.0, 3.0]]
    cost = [[[rng.uniform(10, 500) for _ in range(3)] for _ in range(2)] for _ in starts]
    instance = OracleInstance(["HOME", "GREEN"], 2, 2.0, starts, cost, {"GREEN": 1, "HOME": 2})
    placed = solve_oracle(instance)
    assert [len(p) for p in placed] == [2, 2]
    total = sum(cost[a][instance.zones.index(z)][starts[a].index(t)] for a, p in enumerate(placed) for z, t in p)
    assert total == pytest.approx(_brute_force(instance))
