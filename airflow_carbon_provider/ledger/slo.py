"""Sustainability objectives (SLOs) and their evaluation over ledger rows (standard library only).

Three objectives, each optional:

* ``on_time_pct``: at least this share of runs started by their latest start (default 100);
* ``reduction_pct``: emissions at least this much below the baseline, summed over runs;
* ``low_carbon_pct`` with ``low_carbon_below``: at least this share of compute-hours ran at
  a mean intensity below this many g/kWh (a run counts wholly on one side, by its mean).

The reduction and low-carbon objectives are evaluated on one group of runs only: those whose
figures are of the named ``signal_kind`` (default ``average``) and ``basis`` (default
``realised``). Average and marginal rates, and forecast and realised figures, are different
quantities: summing them into one reduction would be a "Green Mirage" (arXiv 2402.03550).
Each verdict names its group; on-time is about starts, not figures, and counts every run.

Configure them in Airflow's ``[carbon]`` section (``slo_on_time_pct``, ``slo_reduction_pct``,
``slo_low_carbon_pct``, ``slo_low_carbon_below``, ``slo_signal_kind``, ``slo_basis``; or
``AIRFLOW__CARBON__SLO_...`` variables) or with the ``airflow-carbon report`` flags, which win.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from airflow_carbon_provider.ledger.errors import ReportError

__all__ = ["Objectives", "evaluate"]

_KEYS = {
    "on_time_pct": "slo_on_time_pct",
    "reduction_pct": "slo_reduction_pct",
    "low_carbon_pct": "slo_low_carbon_pct",
    "low_carbon_below": "slo_low_carbon_below",
}
_GROUP_KEYS = {"signal_kind": "slo_signal_kind", "basis": "slo_basis"}
SIGNAL_KINDS = ("average", "marginal")
BASES = ("realised", "forecast")


def _number(name: str, value: Any, *, pct: bool) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ReportError(f"objective {name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0 or (pct and number > 100):
        raise ReportError(f"objective {name} must be {'between 0 and 100' if pct else 'a number >= 0'}, got {value!r}")
    return number


@dataclass(frozen=True)
class Objectives:
    """The objectives to evaluate; None switches one off."""

    on_time_pct: float | None = 100.0
    reduction_pct: float | None = None
    low_carbon_pct: float | None = None
    low_carbon_below: float | None = None
    signal_kind: str = "average"
    """The signal kind of the runs the reduction and low-carbon objectives are evaluated on."""
    basis: str = "realised"
    """The basis (``realised`` or ``forecast``) of the runs those objectives are evaluated on."""

    def __post_init__(self) -> None:
        if self.signal_kind not in SIGNAL_KINDS:
            raise ReportError(f"objective signal_kind must be one of {', '.join(SIGNAL_KINDS)}, got {self.signal_kind!r}")
        if self.basis not in BASES:
            raise ReportError(f"objective basis must be one of {', '.join(BASES)}, got {self.basis!r}")
        for name in ("on_time_pct", "reduction_pct", "low_carbon_pct"):
            value = getattr(self, name)
            if value is not None:
                _number(name, value, pct=True)
        if self.low_carbon_below is not None:
            _number("low_carbon_below", self.low_carbon_below, pct=False)
        if (self.low_carbon_pct is None) != (self.low_carbon_below is None):
            raise ReportError("the low-carbon objective needs both a share (low_carbon_pct) and a threshold "
                              "in g/kWh (low_carbon_below)")

    @classmethod
    def from_config(cls, get: Callable[[str], str | None] | None = None, **overrides: Any) -> Objectives:
        """Return the configured objectives with ``overrides`` (not None) applied.

        :param get: reads a ``[carbon]`` key (default: Airflow config, then environment).
        """
        if get is None:
            from airflow_carbon_provider.ledger.config import conf_get

            get = conf_get
        values: dict[str, Any] = {}
        for field, key in _KEYS.items():
            raw = get(key)
            if raw is not None:
                values[field] = None if raw.lower() in ("off", "none") else _number(key, raw, pct=field != "low_carbon_below")
        for field, key in _GROUP_KEYS.items():
            raw = get(key)
            if raw is not None and raw.strip():
                values[field] = raw.strip().lower()
        objectives = cls(**values)
        return replace(objectives, **{k: v for k, v in overrides.items() if v is not None})


def _pct(part: float, whole: float) -> float | None:
    return None if whole <= 0 else 100.0 * part / whole


def evaluate(rows: Iterable[Mapping[str, Any]], objectives: Objectives) -> list[dict[str, Any]]:
    """Return one verdict per active objective: name, description, target, actual, met, runs.

    ``met`` is None when no run carries the data the objective needs. The reduction and
    low-carbon verdicts also carry ``signal_kind`` and ``basis``: the one group of runs they
    were evaluated on (rows without those keys count as ``unknown``, so in no group).
    """
    rows = list(rows)
    verdicts: list[dict[str, Any]] = []
    kind, basis = objectives.signal_kind, objectives.basis
    scope = f" ({kind}, {basis} runs only)"
    same = [r for r in rows if r.get("signal_kind") == kind and r.get("basis") == basis]

    def verdict(name: str, description: str, target: float, actual: float | None, runs: int,
                grouped: bool = False) -> None:
        met = None if actual is None else actual >= target - 1e-9
        verdicts.append({"name": name, "description": description + (scope if grouped else ""), "target": target,
                         "actual": None if actual is None else round(actual, 2), "runs": runs, "met": met,
                         **({"signal_kind": kind, "basis": basis} if grouped else {})})

    if objectives.on_time_pct is not None:
        known = [r for r in rows if r.get("started_by_latest_start") is not None]
        on_time = sum(1 for r in known if r["started_by_latest_start"])
        verdict("on_time", f"at least {objectives.on_time_pct:g} % of runs started by their latest start",
                objectives.on_time_pct, _pct(on_time, len(known)), len(known))
    if objectives.reduction_pct is not None:
        both = [r for r in same if r.get("emissions_g") is not None and r.get("baseline_emissions_g") is not None]
        base = sum(float(r["baseline_emissions_g"]) for r in both)
        actual = sum(float(r["emissions_g"]) for r in both)
        verdict("reduction", f"emissions at least {objectives.reduction_pct:g} % below the baseline",
                objectives.reduction_pct, _pct(base - actual, base), len(both), grouped=True)
    if objectives.low_carbon_pct is not None and objectives.low_carbon_below is not None:
        timed = [r for r in same if r.get("realised_intensity") is not None and r.get("duration_s")]
        hours = sum(float(r["duration_s"]) for r in timed) / 3600.0
        low = sum(float(r["duration_s"]) for r in timed
                  if float(r["realised_intensity"]) < objectives.low_carbon_below) / 3600.0
        verdict("low_carbon",
                f"at least {objectives.low_carbon_pct:g} % of compute-hours below {objectives.low_carbon_below:g} g/kWh",
                objectives.low_carbon_pct, _pct(low, hours), len(timed), grouped=True)
    return verdicts
