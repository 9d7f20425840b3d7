"""Planner: hand-computed cases first, then properties that must hold for any input."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_carbon_provider.core.planner import Candidate, Option, PlanningError, plan
from airflow_carbon_provider.core.signals import IntensitySeries, SignalMixError
from tests.unit.core.helpers import T0, at, hourly

A, B = Candidate("k8s_a", "A"), Candidate("k8s_b", "B")
H = timedelta(hours=1)


def test_joint_choice_of_zone_and_time():
    """Two zones, four hourly intervals, a 2 h job that may start up to 02:00.

    A (home): 100 300 300 100      B: 200 200 50 50
    Means of a 2 h run starting at 00, 01, 02:
      A: (100+300)/2 = 200, (300+300)/2 = 300, (300+100)/2 = 200
      B: (200+200)/2 = 200, (200+50)/2  = 125, (50+50)/2   = 50
    Best: B at 02:00, 50 g/kWh, against the baseline A at 00:00, 200 g/kWh: 75 % lower.
    """
    fc = {"A": hourly("A", [100, 300, 300, 100]), "B": hourly("B", [200, 200, 50, 50])}
    p = plan([A, B], fc, now=at(0), duration=2 * H, latest_start=at(2))
    assert (p.chosen.candidate, p.chosen.start) == (B, at(2))
    assert p.chosen.mean_intensity == pytest.approx(50)
    assert p.baseline.mean_intensity == pytest.approx(200)
    assert p.expected_saving_pct == pytest.approx(75)
    assert p.waits and p.moves
    best = {o.candidate.zone: (o.start, o.mean_intensity) for o in p.best_per_candidate}
    assert best == {"A": (at(0), pytest.approx(200)), "B": (at(2), pytest.approx(50))}
    decision = p.to_dict()
    assert decision["chosen_cluster"] == "k8s_b" and decision["home_cluster"] == "k8s_a"
    assert decision["planned_start"] == "2024-01-01T02:00:00Z"
    assert "k8s_b (B)" in decision["reason"]


def test_integral_across_intervals_from_an_unaligned_now():
    """now = 00:30, 1 h job, latest start 01:30, same series.

    A: start 00:30 covers half of 100 and half of 300 = 200; 01:00 -> 300; 01:30 -> 300.
    B: 00:30 -> 200; 01:00 -> 200; 01:30 -> half 200, half 50 = 125.
    A point sample at the start would rate A at 00:30 as 100; the integral says 200.
    """
    fc = {"A": hourly("A", [100, 300, 300, 100]), "B": hourly("B", [200, 200, 50, 50])}
    p = plan([A, B], fc, now=at(0.5), duration=H, latest_start=at(1.5))
    assert (p.chosen.candidate, p.chosen.start) == (B, at(1.5))
    assert p.chosen.mean_intensity == pytest.approx(125)
    assert p.baseline.mean_intensity == pytest.approx(200)


def test_mixed_resolutions_are_integrated_exactly():
    """A is hourly, B is 15-minute; a 30 min job, latest start 00:45.

    A: 400 for the first hour -> every start scores 400.
    B: 15-min values 400 400 0 400 ... -> the best 30 min run starts at 00:15 or 00:30:
       00:15 -> (400+0)/2 = 200, 00:30 -> (0+400)/2 = 200; the earlier, 00:15, wins the tie.
    """
    fc = {
        "A": hourly("A", [400, 400]),
        "B": hourly("B", [400, 400, 0, 400, 400, 400, 400, 400], step=timedelta(minutes=15)),
    }
    p = plan([A, B], fc, now=at(0), duration=timedelta(minutes=30), latest_start=at(0.75))
    assert (p.chosen.candidate, p.chosen.start) == (B, at(0.25))
    assert p.chosen.mean_intensity == pytest.approx(200)


def test_ties_go_to_the_earlier_start_then_the_declared_order():
    """A: 200 100, B: 200 100; a 1 h job may start at 00:00 or 01:00.

    Both zones score 100 at 01:00 and 200 at 00:00. The tie at 100 is broken by the declared
    order: A, the home, at 01:00. With identical flat series, nothing beats home now.
    """
    fc = {"A": hourly("A", [200, 100]), "B": hourly("B", [200, 100])}
    p = plan([A, B], fc, now=at(0), duration=H, latest_start=at(1))
    assert (p.chosen.candidate, p.chosen.start) == (A, at(1))
    flat = {"A": hourly("A", [100, 100]), "B": hourly("B", [100, 100])}
    p = plan([A, B], flat, now=at(0), duration=H, latest_start=at(1))
    assert (p.chosen.candidate, p.chosen.start) == (A, at(0))
    assert not p.waits and not p.moves


@pytest.mark.parametrize(
    ("min_pct", "min_abs", "waits"),
    [(0, 0, True), (4, 0, True), (10, 0, False), (0, 5, True), (0, 6, False), (4, 6, False)],
)
def test_hysteresis_relative_and_absolute(min_pct, min_abs, waits):
    """A: 100 then 95. Waiting one hour saves 5 g/kWh, 5 %: it waits only if both margins allow."""
    fc = {"A": hourly("A", [100, 95])}
    p = plan([A], fc, now=at(0), duration=H, latest_start=at(1), min_saving_pct=min_pct, min_saving_abs=min_abs)
    assert p.waits is waits
    if not waits:
        assert "kept running now at home" in p.reason


def test_replanning_keeps_the_incumbent_unless_the_gain_beats_hysteresis():
    """An earlier plan chose A at 02:00 (100). The new forecast makes B at 01:00 worth 97.

    3 % better: kept with min_saving 5 %; taken with min_saving 2 %.
    """
    fc = {"A": hourly("A", [300, 300, 100]), "B": hourly("B", [300, 97, 300])}
    first = plan([A], {"A": fc["A"]}, now=at(0), duration=H, latest_start=at(2)).chosen
    assert (first.candidate, first.start) == (A, at(2))
    kept = plan([A, B], fc, now=at(0.5), duration=H, latest_start=at(2), incumbent=first, min_saving_pct=5)
    assert (kept.chosen.candidate, kept.chosen.start) == (A, at(2)) and kept.kept_incumbent
    assert "kept the current plan" in kept.reason
    moved = plan([A, B], fc, now=at(0.5), duration=H, latest_start=at(2), incumbent=first, min_saving_pct=2)
    assert (moved.chosen.candidate, moved.chosen.start) == (B, at(1))


def test_short_horizon_exclude_or_persist():
    """A: 300 300 100 (forecast ends 03:00); 2 h job, latest start 02:00 (needs data to 04:00).

    exclude: starts up to 01:00 are fully covered: 00 -> 300, 01 -> 200; choose 01:00.
    persist: 02:00 scores (100 + 100 held) / 2 = 100; choose 02:00.
    """
    fc = {"A": hourly("A", [300, 300, 100])}
    p = plan([A], fc, now=at(0), duration=2 * H, latest_start=at(2))
    assert p.chosen.start == at(1) and p.chosen.mean_intensity == pytest.approx(200)
    assert p.horizon_limited
    p = plan([A], fc, now=at(0), duration=2 * H, latest_start=at(2), beyond_horizon="persist")
    assert p.chosen.start == at(2) and p.chosen.mean_intensity == pytest.approx(100)


def test_forecast_shorter_than_the_job_still_allows_running_now():
    """A 1 h forecast and a 3 h job: only "now" is possible, scored with the last value held."""
    fc = {"A": hourly("A", [300]), "B": hourly("B", [100])}
    p = plan([A, B], fc, now=at(0), duration=3 * H, latest_start=at(5))
    assert (p.chosen.candidate, p.chosen.start) == (B, at(0))
    assert p.horizon_limited


def test_greenest_now_and_threshold_look_at_current_intensity():
    """A: 300 then 10; B: 200 200; a 2 h job. Current: A 300, B 200.

    greenest-now picks B (200 now) though A's run would average (300+10)/2 = 155.
    carbon-aware, with no slack, picks A at 155.
    """
    fc = {"A": hourly("A", [300, 10]), "B": hourly("B", [200, 200])}
    assert plan([A, B], fc, now=at(0), duration=2 * H, latest_start=at(0), policy="greenest-now").chosen.candidate == B
    assert plan([A, B], fc, now=at(0), duration=2 * H, latest_start=at(0)).chosen.candidate == A


@pytest.mark.parametrize(("home_now", "moves"), [(220, False), (221, True)])
def test_threshold_moves_only_beyond_the_margin(home_now, moves):
    """B is at 200; with a 10 % threshold home must exceed 220 to move."""
    fc = {"A": hourly("A", [home_now]), "B": hourly("B", [200])}
    p = plan([A, B], fc, now=at(0), duration=H, latest_start=at(0), policy="threshold", threshold_pct=10)
    assert p.moves is moves


def test_next_hour_window_considers_only_full_hours_from_the_next_one():
    """now 00:30; A: 100 300 50 50; 1 h job, latest 02:00. Candidates 01:00 (300), 02:00 (50).

    00:30 would score 200 but is not a candidate. With latest start 01:54 only 01:00 is left,
    and next-hour-window takes it (300) though now scores 200; rolling-window may start at any
    time and takes 01:54: 6 min at 300 and 54 min at 50 = 75.
    """
    fc = {"A": hourly("A", [100, 300, 50, 50])}
    p = plan([A], fc, now=at(0.5), duration=H, latest_start=at(2), policy="next-hour-window")
    assert p.chosen.start == at(2)
    p = plan([A], fc, now=at(0.5), duration=H, latest_start=at(1.9), policy="next-hour-window")
    assert p.chosen.start == at(1) and p.chosen.mean_intensity == pytest.approx(300)
    p = plan([A], fc, now=at(0.5), duration=H, latest_start=at(1.9), policy="rolling-window")
    assert p.chosen.start == at(1.9) and p.chosen.mean_intensity == pytest.approx(75)


def test_run_now_and_home_only_policies_ignore_other_zones():
    """run-now and rolling-window stay at home even when B is greener."""
    fc = {"A": hourly("A", [300, 300]), "B": hourly("B", [10, 10])}
    for policy in ("run-now", "rolling-window", "next-hour-window"):
        assert plan([A, B], fc, now=at(0), duration=H, latest_start=at(1), policy=policy).chosen.candidate == A


def test_capacity_skips_starts_when_the_cluster_is_full():
    """Case of the first test, but B holds one job at a time and one runs 03:00-05:00.

    B at 02:00 would overlap it; B at 01:00 (125) ends at 03:00 and fits.
    """
    fc = {"A": hourly("A", [100, 300, 300, 100, 100]), "B": hourly("B", [200, 200, 50, 50, 50])}
    b1 = Candidate("k8s_b", "B", capacity=1)
    p = plan([A, b1], fc, now=at(0), duration=2 * H, latest_start=at(2), busy=[("k8s_b", at(3), at(5))])
    assert (p.chosen.candidate, p.chosen.start) == (b1, at(1))
    assert p.chosen.mean_intensity == pytest.approx(125)


def test_latest_start_in_the_past_means_start_now():
    fc = {"A": hourly("A", [300, 10])}
    p = plan([A], fc, now=at(0.5), duration=H, latest_start=at(0))
    assert p.chosen.start == at(0.5)


def test_average_and_marginal_are_not_compared_silently():
    fc = {"A": hourly("A", [100]), "B": hourly("B", [100], kind="marginal")}
    with pytest.raises(SignalMixError, match="allow_mixed_signals=True"):
        plan([A, B], fc, now=at(0), duration=H, latest_start=at(0))
    assert plan([A, B], fc, now=at(0), duration=H, latest_start=at(0), allow_mixed_signals=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"policy": "greedy"}, "policy 'greedy' is unknown"),
        ({"duration": timedelta(0)}, "duration must be a positive timedelta"),
        ({"min_saving_pct": -1}, "min_saving_pct must be a number >= 0"),
        ({"beyond_horizon": "guess"}, "beyond_horizon 'guess' is unknown"),
        ({"now": at(0).replace(tzinfo=None)}, "is naive"),
        ({"now": at(5)}, "not now"),
        ({"candidates": []}, "no candidates"),
        ({"candidates": [Candidate("k8s_c", "C")]}, "no forecast for zone 'C'"),
    ],
)
def test_bad_inputs_raise_one_clear_error(kwargs, message):
    args = {"candidates": [A], "now": at(0), "duration": H, "latest_start": at(1)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        plan(args.pop("candidates"), {"A": hourly("A", [1, 2])}, **args)


def test_candidate_validation():
    with pytest.raises(PlanningError, match="zone must be a grid zone key"):
        Candidate("k8s", "")
    with pytest.raises(PlanningError, match="capacity must be a positive integer"):
        Candidate("k8s", "DE", capacity=0)


# -- properties ---------------------------------------------------------------------------

values = st.integers(min_value=0, max_value=800)
steps = st.sampled_from([5, 15, 30, 60])


@st.composite
def scenarios(draw):
    """Two or three zones with random resolutions, an integer-minute now, duration and slack."""
    zones = {}
    for name in ["A", "B", "C"][: draw(st.integers(2, 3))]:
        step = draw(steps)
        n = draw(st.integers(min_value=max(1, 180 // step), max_value=max(2, 900 // step)))
        zones[name] = hourly(name, draw(st.lists(values, min_size=n, max_size=n)), step=timedelta(minutes=step))
    span = min(s.end for s in zones.values()) - T0
    span_min = int(span.total_seconds() // 60)
    now = draw(st.integers(0, max(0, span_min // 3)))
    duration = draw(st.integers(1, 240))
    slack = draw(st.integers(0, 600))
    return zones, T0 + timedelta(minutes=now), timedelta(minutes=duration), timedelta(minutes=slack)


def _brute_force(zones, cands, now, duration, latest):
    """Best mean over every whole-minute start; boundaries are whole minutes, so this is exact."""
    best = None
    for cand in cands:
        series = zones[cand.zone]
        t = now
        while t <= latest:
            if t + duration <= series.end or t == now:
                end = min(t + duration, series.end)
                mean = series.mean(t, end) if end > t else series.values[-1]
                held = (t + duration - end).total_seconds()
                total = mean * (end - t).total_seconds() + series.values[-1] * held
                score = total / duration.total_seconds()
                if best is None or score < best - 1e-9:
                    best = score
            t += timedelta(minutes=1)
    return best


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_never_starts_outside_now_and_latest_start(case):
    zones, now, duration, slack = case
    cands = [Candidate(z, z) for z in zones]
    for policy in ("carbon-aware", "rolling-window", "next-hour-window", "greenest-now", "threshold", "run-now"):
        p = plan(cands, zones, now=now, duration=duration, latest_start=now + slack, policy=policy)
        assert now <= p.chosen.start <= now + slack


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_optimal_against_brute_force_and_never_worse_than_run_now(case):
    """With the actuals as forecast, carbon-aware is the exact optimum and beats or equals run-now."""
    zones, now, duration, slack = case
    cands = [Candidate(z, z) for z in zones]
    p = plan(cands, zones, now=now, duration=duration, latest_start=now + slack)
    run_now = plan(cands, zones, now=now, duration=duration, latest_start=now + slack, policy="run-now")
    assert p.chosen.mean_intensity <= run_now.chosen.mean_intensity + 1e-9
    assert p.chosen.mean_intensity == pytest.approx(_brute_force(zones, cands, now, duration, now + slack), abs=1e-6)


def _split(series: IntensitySeries, index: int) -> IntensitySeries:
    b, v = list(series.bounds), list(series.values)
    mid = (b[index] + b[index + 1]) / 2
    return IntensitySeries.from_arrays(series.zone, series.kind, b[: index + 1] + [mid] + b[index + 1 :],
                                       v[: index + 1] + v[index:])


@settings(max_examples=150, deadline=None)
@given(scenarios(), st.data())
def test_splitting_an_interval_in_two_equal_halves_changes_nothing(case, data):
    zones, now, duration, slack = case
    zone = data.draw(st.sampled_from(sorted(zones)))
    index = data.draw(st.integers(0, len(zones[zone]) - 1))
    split = dict(zones)
    split[zone] = _split(zones[zone], index)
    cands = [Candidate(z, z) for z in zones]
    for policy in ("carbon-aware", "rolling-window", "greenest-now"):
        p = plan(cands, zones, now=now, duration=duration, latest_start=now + slack, policy=policy)
        q = plan(cands, split, now=now, duration=duration, latest_start=now + slack, policy=policy)
        assert (q.chosen.candidate, q.chosen.start) == (p.chosen.candidate, p.chosen.start)
        assert q.chosen.mean_intensity == pytest.approx(p.chosen.mean_intensity, rel=1e-9, abs=1e-9)


def test_a_candidate_full_for_the_whole_window_is_not_an_option():
    """B is greener at every start but holds one job at a time and one runs all window long."""
    fc = {"A": hourly("A", [300, 300, 300, 300]), "B": hourly("B", [10, 10, 10, 10])}
    b1 = Candidate("k8s_b", "B", capacity=1)
    busy = [("k8s_b", at(0), at(4))]
    for policy in ("carbon-aware", "greenest-now", "threshold", "next-hour-window"):
        p = plan([A, b1], fc, now=at(0), duration=H, latest_start=at(2), busy=busy, policy=policy)
        assert p.chosen.candidate == A, policy
    only_b = plan([b1], fc, now=at(0), duration=H, latest_start=at(2), busy=busy)
    assert only_b.chosen.start == at(0) and "every candidate is at capacity" in only_b.reason


# -- gaps in a forecast ---------------------------------------------------------------------


def gappy(zone, values, *, start=T0, step=H):
    """Return an hourly forecast where None marks an interval the source did not know."""
    bounds = [(start + i * step).timestamp() for i in range(len(values) + 1)]
    return IntensitySeries.from_arrays(zone, "average", bounds, [math.nan if v is None else v for v in values],
                                       allow_gaps=True, is_forecast=True)


def test_a_forecast_with_a_gap_is_planned_on_every_known_interval():
    """A forecast of 500, 20, 20, (unknown), 300, 300, 300, 300 from now, a 1 h job.

    Before, the parser kept only the longest unbroken run (the 300s) and the start was filled
    with the current value, so the plan started at +4 h at 300. Every known interval counts:
    the best start is +1 h, at 20.
    """
    fc = {"A": gappy("A", [500, 20, 20, None, 300, 300, 300, 300])}
    p = plan([A], fc, now=at(0), duration=H, latest_start=at(7))
    assert p.chosen.start == at(1) and p.chosen.mean_intensity == pytest.approx(20)
    assert p.baseline.mean_intensity == pytest.approx(500)
    two_hours = plan([A], fc, now=at(0), duration=2 * H, latest_start=at(6))
    assert two_hours.chosen.start == at(1) and two_hours.chosen.mean_intensity == pytest.approx(20)


def test_a_window_that_overlaps_a_gap_is_never_chosen():
    """500, 10, (unknown), 400, 400: a 2 h job. Starting at +1 h would cross the gap.

    Holding 10 through the gap would score it 10; it is not plannable at all. Of the runs
    that are (now: 255, +3 h: 400), now is best. Nothing ends or starts inside the gap.
    """
    fc = {"A": gappy("A", [500, 10, None, 400, 400, 400])}
    for policy in ("carbon-aware", "rolling-window", "next-hour-window"):
        p = plan([A], fc, now=at(0), duration=2 * H, latest_start=at(4), policy=policy)
        assert p.chosen.start == at(0) and p.chosen.mean_intensity == pytest.approx(255), policy
        for option in p.best_per_candidate:
            assert option.start in (at(0), at(3), at(4)), policy
    capped = plan([Candidate("k8s_a", "A", capacity=2)], fc, now=at(0), duration=2 * H, latest_start=at(4),
                  busy=[("k8s_a", at(5), at(6))])  # fmt: skip
    assert capped.chosen.start == at(0)


def test_starting_now_stays_possible_when_its_run_crosses_a_gap():
    """100, (unknown), 50, 50: a 2 h job. Now is always allowed (the deadline comes first) and is
    scored holding the last known value through the gap, as beyond the horizon: 100. The
    known run at +2 h scores 50 and wins."""
    fc = {"A": gappy("A", [100, None, 50, 50])}
    p = plan([A], fc, now=at(0), duration=2 * H, latest_start=at(2))
    assert p.baseline.mean_intensity == pytest.approx(100)
    assert p.chosen.start == at(2) and p.chosen.mean_intensity == pytest.approx(50)
    latest_now = plan([A], fc, now=at(0), duration=2 * H, latest_start=at(0))
    assert latest_now.chosen.start == at(0)


def test_an_incumbent_whose_run_now_crosses_a_gap_is_not_kept():
    fc = {"A": gappy("A", [300, 300, None, 280, 280, 280])}
    incumbent = Option(A, at(1), 100.0)
    p = plan([A], fc, now=at(0), duration=2 * H, latest_start=at(4), incumbent=incumbent, min_saving_pct=50)
    assert p.chosen.start != at(1) and not p.kept_incumbent


@st.composite
def gappy_scenarios(draw):
    """Like :func:`scenarios`, with some interior intervals unknown."""
    zones, now, duration, slack = draw(scenarios())
    holed = {}
    for name, series in zones.items():
        values = list(series.values)
        for i in range(1, len(values) - 1):
            if draw(st.integers(0, 5)) == 0:
                values[i] = math.nan
        holed[name] = IntensitySeries.from_arrays(name, "average", series.bounds, values, allow_gaps=True)
    return holed, now, duration, slack


def _brute_force_with_gaps(zones, cands, now, duration, latest):
    """Best mean over every whole-minute start whose run is known (now: gaps held from before)."""
    best = None
    for cand in cands:
        series = zones[cand.zone]
        b, v = series.bounds, list(series.values)
        filled = []
        for x in v:
            filled.append(filled[-1] if x != x else x)
        t = now
        while t <= latest:
            lo, hi = t.timestamp(), (t + duration).timestamp()
            overlaps = any(x != x and b[i] < hi and lo < b[i + 1] for i, x in enumerate(v))
            if (t + duration <= series.end or t == now) and (t == now or not overlaps):
                total = 0.0
                for i, x in enumerate(filled):
                    total += x * max(0.0, min(hi, b[i + 1]) - max(lo, b[i]))
                total += filled[-1] * max(0.0, hi - b[-1])
                score = total / duration.total_seconds()
                if best is None or score < best - 1e-9:
                    best = score
            t += timedelta(minutes=1)
    return best


@settings(max_examples=100, deadline=None)
@given(gappy_scenarios())
def test_optimal_on_known_runs_against_brute_force(case):
    zones, now, duration, slack = case
    cands = [Candidate(z, z) for z in zones]
    p = plan(cands, zones, now=now, duration=duration, latest_start=now + slack)
    assert p.chosen.mean_intensity == pytest.approx(
        _brute_force_with_gaps(zones, cands, now, duration, now + slack), abs=1e-6
    )
    start, end = p.chosen.start.timestamp(), (p.chosen.start + duration).timestamp()
    series = zones[p.chosen.candidate.zone]
    assert p.chosen.start == now or not any(
        lo.timestamp() < end and start < hi.timestamp() for lo, hi in series.gaps
    )
