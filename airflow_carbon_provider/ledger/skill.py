"""Forecast skill from the recorded forecasts: error by lead time, per source, zone and signal kind.

What a forecast is compared with ("realised"): the **lead-0 value of a later forecast** from
the same source, zone and signal kind. A forecast issued at ``t`` whose interval
``[s, e)`` contains ``t`` is the source's own now-cast of that interval; the latest such
value recorded for ``[s, e)`` stands for what happened. So the skill needs no history call
and no other data source, it measures each source against itself (the error a planner using
that source sees), and a zone with forecasts fetched at least once per interval has a truth
for every interval. An interval nobody fetched a forecast during has no truth, and the
forecasts of it are left out (counted as ``unmatched``). Average and marginal forecasts are
never compared with each other: the key includes the signal kind.

Per (source, zone, signal kind, lead bucket): ``n`` compared intervals, ``mape_pct`` (mean
of ``|f - r| / r``, intervals with ``r = 0`` skipped), ``bias_pct`` (mean of ``(f - r) / r``:
positive means the forecast was too high), ``mae_g`` (mean ``|f - r|`` in g/kWh) and how
many forecasts contributed. The lead of an interval is its start minus the issue time (0
for the interval in force at the issue).
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from airflow_carbon_provider.ledger.errors import LedgerUnavailableError, ReportError

__all__ = ["BUCKETS", "REALISED_FROM", "SKILL_FIELDS", "forecast_skill", "format_skill_csv", "format_skill_table",
           "realised_intervals", "recorded_error", "run_forecast_skill"]

UTC = timezone.utc
BUCKETS: tuple[tuple[str, float, float], ...] = (
    ("0-1h", 0, 1), ("1-3h", 1, 3), ("3-6h", 3, 6), ("6-12h", 6, 12), ("12-24h", 12, 24), ("24-48h", 24, 48),
    ("48h+", 48, float("inf")),
)
"""Lead-time buckets, hours: [low, high)."""
REALISED_FROM = "lead-0 values of later forecasts (same source, zone and signal kind)"
SKILL_FIELDS = ("source", "zone", "signal_kind", "lead", "n", "forecasts", "mape_pct", "bias_pct", "mae_g")


def _bucket(lead_h: float) -> str:
    for label, low, high in BUCKETS:
        if low <= lead_h < high:
            return label
    return BUCKETS[-1][0]


@dataclass
class _Acc:
    n: int = 0
    ape: float = 0.0
    pe: float = 0.0
    ae: float = 0.0
    forecasts: set[Any] = field(default_factory=set)


def _intervals(row: Mapping[str, Any]) -> Iterable[tuple[float, float, float | None]]:
    start = row["start"].timestamp()
    offsets, values = row["offsets_s"], row["values"]
    for k, value in enumerate(values):
        yield start + float(offsets[k]), start + float(offsets[k + 1]), value


def _truth(rows: Sequence[Mapping[str, Any]]) -> dict[float, tuple[float, float]]:
    """Return interval start -> (lead-0 value, issue time) from the latest forecast issued inside it."""
    return {lo: (value, issued) for lo, (_hi, value, issued) in _lead0(rows).items()}


def _lead0(rows: Iterable[Mapping[str, Any]]) -> dict[float, tuple[float, float, float]]:
    truth: dict[float, tuple[float, float, float]] = {}
    for row in rows:
        issued = row["issued_at"].timestamp()
        for lo, hi, value in _intervals(row):
            if lo <= issued < hi and value is not None:
                if lo not in truth or truth[lo][2] <= issued:
                    truth[lo] = (hi, float(value), issued)
                break
    return truth


def realised_intervals(rows: Iterable[Mapping[str, Any]]) -> list[tuple[datetime, datetime, float]]:
    """Return the realised values the recorded forecasts hold: ``(start, end, g/kWh)`` per interval, in order.

    "Realised" as the skill means it (:data:`REALISED_FROM`): the lead-0 value of the latest
    forecast issued inside each interval. Pass the rows of one source, zone and signal kind.
    """
    truth = _lead0(rows)
    return [(datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi, UTC), value)
            for lo, (hi, value, _issued) in sorted(truth.items())]


def forecast_skill(rows: Iterable[Mapping[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Return the skill rows (see the module doc) and counts (forecasts, compared, unmatched intervals)."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["source"], row["zone"], row["signal_kind"])].append(row)
    out: list[dict[str, Any]] = []
    counts = {"forecasts": 0, "compared": 0, "unmatched": 0}
    for (source, zone, kind), part in sorted(groups.items()):
        counts["forecasts"] += len(part)
        truth = _truth(part)
        accs: dict[str, _Acc] = defaultdict(_Acc)
        for row in part:
            issued = row["issued_at"].timestamp()
            for lo, hi, value in _intervals(row):
                if hi <= issued or value is None:  # already over when issued, or a gap
                    continue
                real = truth.get(lo)
                if real is None:
                    counts["unmatched"] += 1
                    continue
                if real[1] == issued or real[0] <= 0:  # the truth itself, or no percentage possible
                    continue
                acc = accs[_bucket(max(0.0, lo - issued) / 3600)]
                acc.n += 1
                acc.ape += abs(value - real[0]) / real[0]
                acc.pe += (value - real[0]) / real[0]
                acc.ae += abs(value - real[0])
                acc.forecasts.add(issued)
        for label, _lo, _hi in BUCKETS:
            got = accs.get(label)
            if got is None or not got.n:
                continue
            counts["compared"] += got.n
            out.append({"source": source, "zone": zone, "signal_kind": kind, "lead": label, "n": got.n,
                        "forecasts": len(got.forecasts), "mape_pct": round(100 * got.ape / got.n, 2),
                        "bias_pct": round(100 * got.pe / got.n, 2), "mae_g": round(got.ae / got.n, 2)})
    return out, counts


def recorded_error(source: str, zone: str, signal_kind: str, *, since: datetime,
                   url: str | None = None) -> dict[tuple[float, float], tuple[float, int]]:
    """Return one source's recorded error for one zone: lead bucket (hours) -> (MAPE %, intervals compared).

    What planning conditions forecasts with
    (:func:`~airflow_carbon_provider.core.conditioning.sigma_from_skill`). Reads the forecasts
    issued since ``since`` from the ledger at ``url`` (default: as configured); raises what the
    ledger raises, and the caller falls back to the calibrated default.
    """
    from airflow_carbon_provider.ledger.forecasts import read_forecasts
    from airflow_carbon_provider.ledger.store import Ledger

    ledger = Ledger(url)
    try:
        rows = read_forecasts(ledger, source=source, zone=zone, signal_kind=signal_kind, since=since)
    finally:
        ledger.dispose()
    skill, _ = forecast_skill(rows)
    bounds = {label: (low, high) for label, low, high in BUCKETS}
    return {bounds[r["lead"]]: (float(r["mape_pct"]), int(r["n"])) for r in skill if r["mape_pct"] is not None}


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def run_forecast_skill(*, ledger_url: str | None, zone: str | None = None, source: str | None = None,
                       since: datetime | None = None, until: datetime | None = None) -> dict[str, Any]:
    """Open the ledger, read the recorded forecasts (issued in ``[since, until)``) and build the skill report."""
    from sqlalchemy.exc import SQLAlchemyError

    from airflow_carbon_provider.ledger.forecasts import read_forecasts, retention
    from airflow_carbon_provider.ledger.report import open_for_report

    if since and until and since >= until:
        raise ReportError(f"--since {_iso(since)} is not before --until {_iso(until)}")
    ledger = open_for_report(ledger_url)
    try:
        rows = read_forecasts(ledger, zone=zone, source=source, since=since, until=until)
    except (SQLAlchemyError, OSError, ImportError) as exc:
        from airflow_carbon_provider.ledger.config import redact_url_secrets

        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LedgerUnavailableError(
            f"cannot read the ledger at {ledger.masked_url}: {type(exc).__name__}: "
            f"{redact_url_secrets(first, ledger.url)[:200]}", url=ledger.masked_url,
        ) from None
    finally:
        ledger.dispose()
    skill, counts = forecast_skill(rows)
    return {
        "ledger": ledger.masked_url,
        "filters": {k: v for k, v in {"zone": zone, "source": source, "since": _iso(since),
                                      "until": _iso(until)}.items() if v is not None},
        "realised_from": REALISED_FROM,
        "retention_days": round(retention().total_seconds() / 86400, 3),
        **counts,
        "rows": skill,
    }


def _num(value: Any, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def format_skill_table(report: Mapping[str, Any]) -> str:
    """Render the skill report as aligned text, one line per (source, zone, kind, lead bucket)."""
    from airflow_carbon_provider.ledger.report import _table

    lines = [f"Forecast skill from the ledger {report.get('ledger') or ''}: {report['forecasts']} recorded "
             f"forecasts, {report['compared']} intervals compared, {report['unmatched']} without a realised value "
             f"(retention {report['retention_days']:g} days)",
             f"Realised = {report['realised_from']}; average and marginal are never compared.", ""]
    if not report["rows"]:
        lines.append("No forecast could be compared yet: forecasts are recorded as the hooks fetch them, and an "
                     "interval has a realised value once a forecast was fetched while it was in force.")
        return "\n".join(lines)
    columns = ["source", "zone", "signal", "lead", "intervals", "forecasts", "MAPE %", "bias %", "MAE g/kWh"]
    rows = [[r["source"], r["zone"], r["signal_kind"], r["lead"], str(r["n"]), str(r["forecasts"]),
             _num(r["mape_pct"]), _num(r["bias_pct"], "{:+.1f}"), _num(r["mae_g"])] for r in report["rows"]]
    lines += _table(columns, rows)
    return "\n".join(lines)


def format_skill_csv(report: Mapping[str, Any]) -> str:
    """Render the skill rows as CSV."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(SKILL_FIELDS), lineterminator="\n")
    writer.writeheader()
    for row in report["rows"]:
        writer.writerow({k: row.get(k) for k in SKILL_FIELDS})
    return buffer.getvalue()
