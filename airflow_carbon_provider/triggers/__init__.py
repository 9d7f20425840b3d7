"""Triggers of the carbon-aware provider (run in Airflow's triggerer)."""

from __future__ import annotations
