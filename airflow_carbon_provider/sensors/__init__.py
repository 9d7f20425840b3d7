"""Sensors of the carbon-aware provider."""

from __future__ import annotations
