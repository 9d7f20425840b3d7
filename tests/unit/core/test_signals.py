"""Signal model: validation, units, windows and means."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from airflow_carbon_provider.core.signals import (
    IntensitySeries,
    Interval,
    SignalError,
    SignalKind,
    SignalMixError,
    Unit,
    check_same_kind,
    to_g_per_kwh,
)
from tests.unit.core.helpers import T0, at, hourly

H = timedelta(hours=1)


def test_watttime_pounds_per_mwh_convert_to_grams_per_kwh():
    # 937 lbs/MWh is 425.016... g/kWh: the CAISO_NORTH trace's own conversion.
    assert to_g_per_kwh(937, Unit.LBS_PER_MWH) == pytest.approx(425.01605069)
    assert to_g_per_kwh(937, "lbs/MWh") == pytest.approx(425.01605069)
    assert to_g_per_kwh(250, Unit.KG_PER_MWH) == 250
    assert to_g_per_kwh(250_000, Unit.G_PER_MWH) == 250
    with pytest.raises(SignalError, match="unknown intensity unit 'tons'"):
        to_g_per_kwh(1, "tons")


def test_from_points_converts_units():
    s = IntensitySeries.from_points("CAISO_NORTH", "marginal", [(T0, 1000)], resolution=timedelta(minutes=5),
                                    unit=Unit.LBS_PER_MWH)
    assert s.values == [pytest.approx(453.59237)]
    assert s.kind is SignalKind.MARGINAL


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Interval(datetime(2024, 1, 1), datetime(2024, 1, 1, 1), 1), "is naive"),
        (lambda: Interval(at(1), at(0), 1), "must end after it starts"),
        (lambda: Interval(at(0), at(1), -1), "negative intensity"),
        (lambda: Interval(at(0), at(1), math.nan), "has value nan"),
        (lambda: Interval(at(0), at(1), "12"), "non-numeric"),
        (lambda: IntensitySeries("A", "average", [Interval(at(1), at(2), 1), Interval(at(0), at(1), 1)]),
         "not sorted"),
        (lambda: IntensitySeries("A", "average", [Interval(at(0), at(2), 1), Interval(at(1), at(3), 1)]),
         "overlap"),
        (lambda: IntensitySeries("A", "average", [Interval(at(0), at(1), 1), Interval(at(2), at(3), 1)]), "gap"),
        (lambda: IntensitySeries("A", "average", []), "no intervals"),
        (lambda: IntensitySeries("A", "co2", [Interval(at(0), at(1), 1)]), "signal kind 'co2' is unknown"),
        (lambda: IntensitySeries("", "average", [Interval(at(0), at(1), 1)]), "non-empty string"),
        (lambda: IntensitySeries.from_arrays("A", "average", [0, 10, 5], [1, 2]), "not increasing"),
        (lambda: IntensitySeries.from_arrays("A", "average", [0, 10], [1, 2]), "need 3 boundaries"),
        (lambda: IntensitySeries.from_arrays("A", "average", [0, 10], [math.inf]), "has value inf"),
    ],
)
def test_invalid_series_are_refused_with_a_clear_message(build, message):
    with pytest.raises(SignalError, match=message):
        build()


def test_resolution_check():
    hourly("A", [1, 2]).check_resolution()
    with pytest.raises(SignalError, match="from 5 minutes to 1 hour"):
        hourly("A", [1, 2], step=timedelta(hours=2)).check_resolution()


def test_mean_is_time_weighted_across_intervals():
    s = hourly("A", [100, 300, 50])
    assert s.mean(at(0.5), at(1.5)) == pytest.approx(200)
    assert s.mean(at(0), at(3)) == pytest.approx(150)
    assert s.value_at(at(1.2)) == 300
    with pytest.raises(SignalError, match="not covered"):
        s.mean(at(2), at(4))
    with pytest.raises(SignalError, match="outside the series"):
        s.value_at(at(3))


def test_window_clips_edges_and_keeps_metadata():
    s = IntensitySeries("A", "average", hourly("A", [100, 300, 50]).intervals, source="x", is_forecast=True)
    w = s.window(at(0.5), at(2.25))
    assert [(iv.start, iv.end, iv.value) for iv in w.intervals] == [
        (at(0.5), at(1), 100), (at(1), at(2), 300), (at(2), at(2.25), 50)]
    assert (w.source, w.is_forecast, w.kind) == ("x", True, SignalKind.AVERAGE)
    with pytest.raises(SignalError, match="no data between"):
        s.window(at(5), at(6))


def test_estimated_flags_survive_the_columnar_round_trip():
    s = IntensitySeries("A", "average", [Interval(at(0), at(1), 1, estimated=True), Interval(at(1), at(2), 2)])
    assert [iv.estimated for iv in s.intervals] == [True, False]
    assert [iv.estimated for iv in s.window(at(0.5), at(2)).intervals] == [True, False]


def test_equality_and_repr():
    assert hourly("A", [1, 2]) == hourly("A", [1, 2])
    assert hourly("A", [1, 2]) != hourly("A", [1, 3])
    assert "2 intervals" in repr(hourly("A", [1, 2]))


def test_mixing_kinds_needs_explicit_consent():
    avg, marg = hourly("A", [1]), hourly("B", [1], kind="marginal")
    assert check_same_kind([avg, avg]) is SignalKind.AVERAGE
    with pytest.raises(SignalMixError, match="A=average, B=marginal"):
        check_same_kind([avg, marg])
    check_same_kind([avg, marg], allow_mixed=True)


# -- gaps -----------------------------------------------------------------------------------

NAN = math.nan


def gappy(values, *, start=T0, step=H):
    """Return an hourly series where None marks an unknown interval."""
    bounds = [(start + i * step).timestamp() for i in range(len(values) + 1)]
    return IntensitySeries.from_arrays("A", "average", bounds, [NAN if v is None else v for v in values],
                                       allow_gaps=True)


def test_a_series_with_gaps_keeps_every_known_interval_and_names_the_gaps():
    s = gappy([500, 20, 20, None, None, 300, 310])
    assert s.has_gaps and len(s) == 7
    assert [iv.value for iv in s.intervals] == [500, 20, 20, 300, 310]
    assert s.gaps == ((at(3), at(5)),)
    assert (s.start, s.end) == (at(0), at(7))
    assert s == gappy([500, 20, 20, None, None, 300, 310]) and s != gappy([500, 20, 20, None, 1, 300, 310])
    assert "1 gaps" in repr(s)


def test_nothing_is_read_from_a_gap():
    s = gappy([500, 20, 20, None, 300])
    assert s.value_at(at(2.5)) == 20 and s.mean(at(1), at(3)) == 20
    with pytest.raises(SignalError, match="falls in a gap"):
        s.value_at(at(3.5))
    with pytest.raises(SignalError, match="crosses a gap"):
        s.mean(at(2), at(4.5))
    with pytest.raises(SignalError, match="crosses a gap"):
        s.integral_ts(at(3.5).timestamp(), at(3.75).timestamp())


def test_a_window_starts_and_ends_on_known_data():
    s = gappy([500, 20, None, None, 300, 310])
    w = s.window(at(1.5), at(3))
    assert (w.start, w.end, w.values, w.has_gaps) == (at(1.5), at(2), [20], False)
    w = s.window(at(2.5), at(5.5))
    assert (w.start, w.end, w.values, w.has_gaps) == (at(4), at(5.5), [300, 310], False)
    w = s.window(at(1), at(5))
    assert w.has_gaps and w.gaps == ((at(2), at(4)),)
    with pytest.raises(SignalError, match="falls in a gap"):
        s.window(at(2.2), at(3.8))


def test_gaps_are_opt_in_and_never_at_the_edges():
    bounds = [at(i).timestamp() for i in range(4)]
    with pytest.raises(SignalError, match="has value nan"):
        IntensitySeries.from_arrays("A", "average", bounds, [1, NAN, 2])
    for values in ([NAN, 1, 2], [1, 2, NAN]):
        with pytest.raises(SignalError, match="interval is unknown"):
            IntensitySeries.from_arrays("A", "average", bounds, values, allow_gaps=True)
    built = IntensitySeries("A", "average", [Interval(at(0), at(1), 1), Interval(at(3), at(4), 2, True)],
                            allow_gaps=True)
    assert built.gaps == ((at(1), at(3)),) and len(built) == 3 and built.estimated_flags == (False, False, True)
    built.check_resolution()  # a gap may last longer than an hour
