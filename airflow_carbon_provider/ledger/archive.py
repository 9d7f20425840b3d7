"""``airflow-carbon backtest --forecast archive:ledger``: replay the forecasts the ledger recorded.

The spec is ``archive:ledger[:SOURCE][=URL]``: the forecasts of carbon connection
``SOURCE`` (needed only when several sources recorded forecasts for one zone) from the
ledger at ``URL`` (default: the configured ledger, as ``airflow-carbon report`` finds it).
Only forecasts of the backtest's ``--signal`` kind are read. They become the same
:class:`~airflow_carbon_provider.core.traces.ArchivedForecasts` a forecast archive file
gives, replayed by :class:`~airflow_carbon_provider.core.forecast.ArchiveForecast`.

Without ``--trace``, the actual intensities come from the ledger too: each interval's
lead-0 value (the value of the latest forecast fetched while the interval was in force, as
the skill report uses); where no forecast was fetched during an interval, the shortest-lead
forecast of it stands in. The longest stretch of each zone covered without a hole is used.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from airflow_carbon_provider.core.forecast import ArchiveForecast
from airflow_carbon_provider.core.signals import IntensitySeries
from airflow_carbon_provider.core.traces import ArchivedForecasts
from airflow_carbon_provider.ledger.errors import ReportError

__all__ = ["PREFIX", "LedgerArchive", "is_ledger_spec", "load_ledger_archive", "parse_ledger_spec"]

PREFIX = "archive:ledger"


def is_ledger_spec(spec: str) -> bool:
    """Return whether ``spec`` names the ledger (``archive:ledger``, ``archive:ledger:SRC``, ``...=URL``)."""
    text = spec.strip()
    return text == PREFIX or text.startswith((f"{PREFIX}:", f"{PREFIX}="))


def parse_ledger_spec(spec: str) -> tuple[str | None, str | None]:
    """Return (source, url) of an ``archive:ledger[:SOURCE][=URL]`` spec."""
    rest = spec.strip()[len(PREFIX):]
    source: str | None = None
    url: str | None = None
    if rest.startswith(":"):
        source, sep, url_part = rest[1:].partition("=")
        url = url_part if sep else None
        if not source:
            raise ReportError(f"forecast {spec!r}: the source after 'archive:ledger:' is empty; "
                              "use archive:ledger[:SOURCE][=URL]")
    elif rest.startswith("="):
        url = rest[1:]
    if url is not None and not url:
        raise ReportError(f"forecast {spec!r}: the URL after '=' is empty; use archive:ledger[:SOURCE][=URL]")
    return source, url


@dataclass(frozen=True)
class LedgerArchive:
    """The recorded forecasts per zone, and the actuals derived from them."""

    label: str
    forecasts: dict[str, ArchivedForecasts]
    actuals: dict[str, IntensitySeries]

    def model(self, actuals: Mapping[str, IntensitySeries]) -> ArchiveForecast:
        """Return the forecast model that replays these forecasts (gaps filled from ``actuals``)."""
        return ArchiveForecast(self.forecasts, actuals, label=self.label)


def _pick_source(rows: Sequence[Mapping[str, Any]], source: str | None, spec: str) -> list[Mapping[str, Any]]:
    if source is not None:
        return [r for r in rows if r["source"] == source]
    by_zone: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        by_zone[row["zone"]].add(row["source"])
    for zone, sources in sorted(by_zone.items()):
        if len(sources) > 1:
            raise ReportError(
                f"zone {zone} has forecasts from {', '.join(sorted(sources))} in the ledger; name one: "
                f"--forecast archive:ledger:{sorted(sources)[0]}" + (spec[len(PREFIX):] if "=" in spec else ""))
    return list(rows)


def _actuals(zone: str, kind: str, rows: Sequence[Mapping[str, Any]], label: str) -> IntensitySeries | None:
    """Return the zone's lead-0 series (shortest lead where no lead-0 value exists), longest unbroken stretch."""
    best: dict[float, tuple[tuple[float, float], float, float]] = {}  # start -> (rank, end, value)
    for row in rows:
        issued = row["issued_at"].timestamp()
        start = row["start"].timestamp()
        offsets, values = row["offsets_s"], row["values"]
        for k, value in enumerate(values):
            lo, hi = start + float(offsets[k]), start + float(offsets[k + 1])
            if value is None or hi <= issued:
                continue
            rank = (max(0.0, lo - issued), -issued)  # the shortest lead, then the latest issue, wins
            if lo not in best or rank < best[lo][0]:
                best[lo] = (rank, hi, float(value))
    runs: list[list[tuple[float, float, float]]] = []
    for lo in sorted(best):
        _rank, hi, value = best[lo]
        if runs and runs[-1][-1][1] == lo:
            runs[-1].append((lo, hi, value))
        elif runs and runs[-1][-1][1] > lo:  # overlapping grids (a source changed resolution): keep the first
            continue
        else:
            runs.append([(lo, hi, value)])
    longest = max(runs, key=len, default=[])
    if len(longest) < 2:
        return None
    bounds = [lo for lo, _, _ in longest] + [longest[-1][1]]
    return IntensitySeries.from_arrays(zone, kind, bounds, [v for _, _, v in longest], source=label)


def load_ledger_archive(spec: str, *, kind: str, zones: Sequence[str] | None = None) -> LedgerArchive:
    """Read the forecasts ``spec`` names from the ledger (raises one-line errors)."""
    from sqlalchemy.exc import SQLAlchemyError

    from airflow_carbon_provider.ledger.errors import LedgerUnavailableError
    from airflow_carbon_provider.ledger.forecasts import forecast_series, read_forecasts
    from airflow_carbon_provider.ledger.report import open_for_report

    source, url = parse_ledger_spec(spec)
    ledger = open_for_report(url)
    try:
        rows = read_forecasts(ledger, source=source, signal_kind=kind)
    except (SQLAlchemyError, OSError) as exc:
        raise LedgerUnavailableError(f"cannot read the ledger at {ledger.masked_url}: {type(exc).__name__}",
                                     url=ledger.masked_url) from None
    finally:
        ledger.dispose()
    picked: list[Mapping[str, Any]] = [r for r in rows if not zones or r["zone"] in zones]
    if not picked:
        which = f" from {source}" if source else ""
        raise ReportError(f"the ledger at {ledger.masked_url} holds no {kind} forecasts{which}"
                          + (f" for zone(s) {', '.join(zones)}" if zones else "")
                          + "; forecasts are recorded as the hooks fetch them ([carbon] record_forecasts)")
    picked = _pick_source(picked, source, spec)
    label = PREFIX + (f":{source}" if source else "")
    by_zone: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in picked:
        by_zone[row["zone"]].append(row)
    forecasts = {zone: ArchivedForecasts(zone, tuple(forecast_series(r) for r in part))
                 for zone, part in by_zone.items()}
    actuals = {zone: series for zone, part in by_zone.items()
               if (series := _actuals(zone, kind, part, label)) is not None}
    return LedgerArchive(label, forecasts, actuals)
