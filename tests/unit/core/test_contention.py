"""The contention price: a partly booked candidate ranks higher the fuller and the further ahead it is."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from airflow_carbon_provider.core.contention import Fill
from airflow_carbon_provider.core.planner import Candidate, plan
from airflow_carbon_provider.core.resources import Booking
from airflow_carbon_provider.core.windows import Load
from tests.unit.core.helpers import at, hourly

H = timedelta(hours=1)
HOME = Candidate("k8s_a", "A")
GREEN = Candidate("k8s_b", "B", capacity=10)
# B is greenest at 20:00 (50 g/kWh) and nearly as green at 10:00 (52 g/kWh); home is dirty.
FC = {"A": hourly("A", [300] * 30), "B": hourly("B", [100] * 10 + [52] + [100] * 9 + [50] + [100] * 9)}


def ts(hours: float) -> float:
    return at(hours).timestamp()


def _plan(busy, **kw):
    return plan([HOME, GREEN], FC, now=at(0), duration=H, latest_start=at(20), busy=busy, **kw)


def _booked(hour: float, pods: int) -> list[Booking]:
    return [Booking("k8s_b", ts(hour), ts(hour + 1))] * pods


def test_a_nearly_full_greenest_slot_far_ahead_sends_the_job_to_a_nearly_as_green_free_one():
    """The green evening is filling: 19:00 is full, 20:00 has one pod of ten left. The job has
    room at 20:00, but later arrivals will want that last pod more than it does: it takes 10:00,
    2 g/kWh dirtier (raise at 20:00: 50 % x 0.9 full x lead 1 = 45 %, well above 4 %)."""
    busy = _booked(19, 10) + _booked(20, 9)
    spread = _plan(busy)
    assert (spread.chosen.candidate, spread.chosen.start) == (GREEN, at(10))
    greedy = _plan(busy, contention_pct=0)
    assert (greedy.chosen.candidate, greedy.chosen.start) == (GREEN, at(20))
    # The price ranks only: what the plan publishes is the forecast mean of what it chose.
    assert spread.chosen.mean_intensity == pytest.approx(52.0)
    assert spread.to_dict()["expected_intensity"] == pytest.approx(52.0)
    assert spread.chosen.contention == 0.0  # nobody booked 10:00
    # A weaker price does not outweigh a 4 % difference: 20:00 is then still chosen.
    assert _plan(busy, contention_pct=4).chosen.start == at(20)


def test_without_bookings_or_with_slack_ones_the_price_is_the_forecast():
    """No reservations: the plan is the forecast's, whatever contention_pct. Bookings that never
    bind (the capacity is not reached anywhere in the window) change nothing either."""
    alone = _plan([])
    assert (alone.chosen.candidate, alone.chosen.start) == (GREEN, at(20))
    assert alone.to_dict() == _plan([], contention_pct=0).to_dict() == _plan([], contention_pct=100).to_dict()
    slack = _booked(20, 8) + _booked(19, 8)  # 8 of 10: a ninth fits everywhere
    assert _plan(slack).to_dict() == alone.to_dict()
    again = _plan(slack, incumbent=alone.chosen)  # a re-plan holding 20:00 is not priced out of it
    assert again.kept_incumbent and again.chosen.start == at(20) and again.chosen.contention == 0.0


def test_a_start_now_is_never_raised():
    """Now is 20:00's eve: a start now has lead 0, so even a nearly full candidate is its forecast."""
    busy = _booked(0, 9) + _booked(1, 10)
    fc = {"A": hourly("A", [300] * 4), "B": hourly("B", [10, 80, 80, 80])}
    p = plan([HOME, GREEN], fc, now=at(0), duration=H, latest_start=at(2), busy=busy)
    assert (p.chosen.candidate, p.chosen.start, p.chosen.contention) == (GREEN, at(0), 0.0)


def test_an_incumbent_on_a_filling_slot_moves_once_the_raise_outweighs_the_gain():
    """Re-planning: the incumbent at 20:00 is now nearly full beside a full 19:00; 10:00 is free."""
    first = _plan([])
    moved = _plan(_booked(19, 10) + _booked(20, 9), incumbent=first.chosen)
    assert moved.chosen.start == at(10) and not moved.kept_incumbent
    kept = _plan(_booked(19, 10) + _booked(20, 9), incumbent=first.chosen, contention_pct=0)
    assert kept.chosen.start == at(20) and kept.kept_incumbent


def test_fill_peaks_match_a_direct_count():
    """The sliding-window peak of the booked fraction equals the peak counted step by step."""
    rng = random.Random(7)
    for _ in range(30):
        books = []
        for _ in range(rng.randrange(1, 40)):
            start = rng.choice([rng.uniform(0, 30), float(rng.randrange(30))])
            books.append(Booking("c", start, start + rng.choice([0.5, 1.0, 2.0, rng.uniform(0.1, 5)]),
                                 {"pods": 1.0, "cpu": rng.choice([0.0, 1.0, 2.5])}))
        cap = {"pods": 12.0, "cpu": rng.choice([4.0, 30.0])}
        fill = Fill.of(cap, {"pods": 1.0, "cpu": 1.0}, books)
        starts = sorted({rng.uniform(-2, 32) for _ in range(40)} | {bk.start for bk in books})
        dur = rng.choice([0.5, 1.0, 3.0])
        for s, got in zip(starts, fill.peaks(starts, dur)):
            marks = sorted({s} | {t for bk in books for t in (bk.start, bk.end) if s < t < s + dur})
            want = max(
                min(1.0, max(sum(bk.demand.get(r, 0.0) for bk in books if bk.start <= t < bk.end) / cap[r]
                             for r in cap))
                for t in marks)
            assert got == pytest.approx(want), (s, dur)
            assert fill.peak(s, dur) == pytest.approx(want)
        # One resource: the fill comes from the capacity sweep's own steps, and agrees with a fresh one.
        pods = Load("c", {"pods": 12.0}, {"pods": 1.0}, books, 1.0).fill
        again = Fill.of({"pods": 12.0}, {"pods": 1.0}, books)
        assert (pods.times, pods.fracs) == (again.times, pytest.approx(again.fracs))
