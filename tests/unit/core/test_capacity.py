"""Capacities in resource units: a start fits when the peak booked load plus the demand fits."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_carbon_provider.core.planner import Candidate, PlanningError, plan
from airflow_carbon_provider.core.resources import Booking
from tests.unit.core.helpers import at, hourly

H = timedelta(hours=1)
GPU = "nvidia.com/gpu"


def ts(hours: float) -> float:
    return at(hours).timestamp()


def test_bookings_that_overlap_the_run_but_not_each_other_leave_room():
    """B holds two pods; one booked 00:00-01:00, one 02:00-03:00. A 3 h run from 00:00 meets
    both, but never more than one at a time: the peak is 1, so one more pod fits. Counting
    overlapping bookings (2) called B full."""
    fc = {"A": hourly("A", [300, 300, 300, 300]), "B": hourly("B", [10, 10, 10, 300])}
    b2 = Candidate("k8s_b", "B", capacity=2)
    busy = [Booking("k8s_b", ts(0), ts(1)), Booking("k8s_b", ts(2), ts(3))]
    p = plan([Candidate("k8s_a", "A"), b2], fc, now=at(0), duration=3 * H, latest_start=at(0), busy=busy)
    assert (p.chosen.candidate, p.chosen.start) == (b2, at(0))
    assert p.capacity_limited == ()


def test_capacity_in_resource_units_gpus_bind_pods_do_not():
    """B has room for 10 pods but 2 GPUs, and a booking holds both GPUs 00:00-04:00."""
    fc = {"A": hourly("A", [300] * 6), "B": hourly("B", [10] * 6)}
    a, b = Candidate("k8s_a", "A"), Candidate("k8s_b", "B", capacity={"pods": 10, GPU: 2})
    busy = [Booking("k8s_b", ts(0), ts(4), {"pods": 1, GPU: 2})]
    gpu_job = plan([a, b], fc, now=at(0), duration=H, latest_start=at(2), busy=busy, demand={GPU: 1})
    assert gpu_job.chosen.candidate == a
    assert gpu_job.capacity_limited == (("k8s_b", GPU),)
    assert f"k8s_b was full ({GPU} 2 of 2 reserved 00:00-04:00); took k8s_a" in gpu_job.reason
    cpu_job = plan([a, b], fc, now=at(0), duration=H, latest_start=at(2), busy=busy, demand={"cpu": 4})
    assert cpu_job.chosen.candidate == b and cpu_job.capacity_limited == ()


def test_candidate_capacity_is_normalised_once_and_candidates_stay_hashable():
    assert Candidate("k8s", "DE", capacity=3).capacity == {"pods": 3.0}
    assert Candidate("k8s", "DE", capacity={"cpu": "500m", "memory": "1Gi"}).capacity == {"cpu": 0.5,
                                                                                         "memory": 2.0**30}
    assert Candidate("k8s", "DE").capacity is None
    assert Candidate("k8s", "DE", capacity=2) == Candidate("k8s", "DE", capacity={"pods": 2})
    assert len({Candidate("k8s", "DE", capacity=2), Candidate("k8s", "DE", capacity=3)}) == 2
    with pytest.raises(PlanningError, match="candidate k8s: capacity"):
        Candidate("k8s", "DE", capacity={"cpu": "lots"})


def test_three_jobs_coordinated_take_the_three_best_distinct_options():
    """Three candidates hold one job each. Each job sees the bookings of those planned before it."""
    fc = {"A": hourly("A", [300] * 4), "B": hourly("B", [100] * 4), "C": hourly("C", [200] * 4),
          "D": hourly("D", [50] * 4)}
    cands = [Candidate(f"k8s_{z.lower()}", z, capacity=1) for z in "ABCD"]
    busy: list[Booking] = []
    chosen = []
    for _ in range(3):
        p = plan(cands, fc, now=at(0), duration=2 * H, latest_start=at(0), busy=busy)
        chosen.append(p.chosen.candidate.zone)
        busy.append(Booking(p.chosen.candidate.cluster_id, ts(0), ts(2)))
    assert chosen == ["D", "B", "C"]
    assert p.capacity_limited == (("k8s_d", "pods"), ("k8s_b", "pods"))


def test_full_everywhere_starts_now_at_home_and_names_the_resource():
    fc = {"A": hourly("A", [300] * 6), "B": hourly("B", [10] * 6)}
    a, b = Candidate("k8s_a", "A", capacity=2), Candidate("k8s_b", "B", capacity={"pods": 5, GPU: 1})
    busy = [Booking("k8s_a", ts(0), ts(6)), Booking("k8s_a", ts(0), ts(6)),
            Booking("k8s_b", ts(0), ts(6), {GPU: 1})]
    for policy in ("carbon-aware", "rolling-window", "next-hour-window", "greenest-now", "threshold"):
        p = plan([a, b], fc, now=at(0), duration=H, latest_start=at(3), busy=busy, policy=policy,
                 demand={GPU: 1})
        assert (p.chosen.candidate, p.chosen.start) == (a, at(0)), policy
        assert "every candidate is at capacity" in p.reason, policy
        assert "k8s_a: pods 2 of 2" in p.reason, policy
        if policy not in ("rolling-window", "next-hour-window"):
            assert f"k8s_b: {GPU} 1 of 1" in p.reason, policy
            assert p.capacity_limited == (("k8s_a", "pods"), ("k8s_b", GPU)), policy


def test_every_policy_respects_capacities():
    """B is greener but full from 00:00 to 03:00 (one pod of one)."""
    fc = {"A": hourly("A", [300, 300, 300, 300, 300]), "B": hourly("B", [10, 10, 10, 10, 10])}
    a, b = Candidate("k8s_a", "A"), Candidate("k8s_b", "B", capacity=1)
    busy = [Booking("k8s_b", ts(0), ts(3))]
    for policy in ("carbon-aware", "greenest-now", "threshold"):
        p = plan([a, b], fc, now=at(0), duration=H, latest_start=at(0), busy=busy, policy=policy)
        assert p.chosen.candidate == a, policy
        assert p.capacity_limited == (("k8s_b", "pods"),), policy
    waits = plan([a, b], fc, now=at(0), duration=H, latest_start=at(4), busy=busy)
    assert (waits.chosen.candidate, waits.chosen.start) == (b, at(3))
    home_fc = {"A": hourly("A", [10, 300, 10, 10, 10])}
    home = Candidate("k8s_a", "A", capacity=1)
    home_busy = [Booking("k8s_a", ts(2), ts(5))]
    for policy in ("rolling-window", "next-hour-window"):
        p = plan([home], home_fc, now=at(0.5), duration=H, latest_start=at(4), busy=home_busy, policy=policy)
        assert p.chosen.start >= at(5) or p.chosen.start <= at(1), policy


def test_an_incumbent_that_no_longer_fits_is_not_kept():
    fc = {"A": hourly("A", [300] * 6), "B": hourly("B", [100] * 6), "C": hourly("C", [105] * 6)}
    a, b, c = Candidate("k8s_a", "A"), Candidate("k8s_b", "B", capacity=1), Candidate("k8s_c", "C")
    first = plan([a, b, c], fc, now=at(0), duration=H, latest_start=at(2), busy=[])
    assert first.chosen.candidate == b
    later = plan([a, b, c], fc, now=at(0.5), duration=H, latest_start=at(2), incumbent=first.chosen,
                 min_saving_pct=50, busy=[Booking("k8s_b", ts(0), ts(6))])
    assert later.chosen.candidate == c and not later.kept_incumbent


def test_old_busy_triples_mean_one_pod():
    fc = {"A": hourly("A", [300] * 4), "B": hourly("B", [10] * 4)}
    a, b = Candidate("k8s_a", "A"), Candidate("k8s_b", "B", capacity=1)
    p = plan([a, b], fc, now=at(0), duration=H, latest_start=at(0), busy=[("k8s_b", at(0), at(2))])
    assert p.chosen.candidate == a and p.capacity_limited == (("k8s_b", "pods"),)
    assert p.to_dict()["capacity_limited"] == [["k8s_b", "pods"]]


@pytest.mark.parametrize(("cap", "demand"), [({"pods": 3.0, GPU: 4.0}, {"pods": 1.0, GPU: 2.0}),
                                             ({"pods": 3.0}, {"pods": 1.0}), ({GPU: 3.0}, {"pods": 1.0, GPU: 2.0})])
def test_fits_agrees_with_the_peak_load_computed_by_brute_force(cap, demand):
    """Random bookings of pods and GPUs: a start fits iff at every instant of the run the booked
    load plus the demand is within the capacity (checked at every booking edge in the run)."""
    import random

    from airflow_carbon_provider.core.windows import Load

    rng = random.Random(7)
    dur = 5.0
    for _ in range(200):
        bookings = []
        for _ in range(rng.randint(0, 8)):
            s = rng.randint(0, 30)
            bookings.append(Booking("c", s, s + rng.randint(1, 8), {"pods": 1.0, GPU: float(rng.randint(0, 2))}))
        load = Load("c", cap, demand, bookings, dur)
        for start in range(-6, 40):
            instants = {start} | {t for bk in bookings for t in (bk.start, bk.end) if start <= t < start + dur}

            expected = all(sum(bk.demand.get(r, 0.0) for bk in bookings if bk.start <= t < bk.end) + demand[r] <= cap[r]
                           for t in instants for r in cap)
            assert load.fits(start) == expected, (bookings, start)
            free = load.free(-6, 40)
            assert any(lo <= start <= hi for lo, hi in free) == expected, (bookings, start, free)
