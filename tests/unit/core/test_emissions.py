"""Energy and emissions accounting."""

from __future__ import annotations

from datetime import timedelta

import pytest

from airflow_carbon_provider.core.emissions import (
    PowerModel,
    ResourceError,
    emissions_g,
    energy_kwh,
    parse_cpu,
    parse_memory_gib,
)


@pytest.mark.parametrize(("q", "cores"), [("500m", 0.5), ("2", 2.0), ("1.5", 1.5), (4, 4.0), ("0", 0.0)])
def test_cpu_quantities(q, cores):
    assert parse_cpu(q) == cores


@pytest.mark.parametrize(("q", "gib"), [("512Mi", 0.5), ("4Gi", 4.0), ("1G", 1e9 / 2**30), ("1073741824", 1.0)])
def test_memory_quantities(q, gib):
    assert parse_memory_gib(q) == pytest.approx(gib)


@pytest.mark.parametrize("q", ["lots", "-1", "2 cores", "1.5.2"])
def test_bad_cpu(q):
    with pytest.raises(ResourceError, match="cpu quantity"):
        parse_cpu(q)


@pytest.mark.parametrize("q", ["much", "4GB", "-1Gi"])
def test_bad_memory(q):
    with pytest.raises(ResourceError, match="memory quantity"):
        parse_memory_gib(q)


def test_power_model_worked_example():
    """4 cores x 2.12 W + 16 GiB x 0.392 W + 1 GPU x 250 W = 264.752 W; PUE 1.2 -> 317.7024 W."""
    assert PowerModel().watts("4", "16Gi", 1) == pytest.approx(264.752)
    assert PowerModel(pue=1.2).watts("4000m", "16Gi", 1) == pytest.approx(317.7024)


def test_power_model_validation():
    with pytest.raises(ResourceError, match="pue must be a number >= 1.0"):
        PowerModel(pue=0.5)
    with pytest.raises(ResourceError, match="watts_per_gpu must be"):
        PowerModel(watts_per_gpu=-1)
    with pytest.raises(ResourceError, match="gpu count"):
        PowerModel().watts(gpus=-2)


def test_energy_and_emissions():
    """300 W for 4 h is 1.2 kWh; at 250 g/kWh that is 300 g."""
    assert energy_kwh(300, timedelta(hours=4)) == pytest.approx(1.2)
    assert emissions_g(300, timedelta(hours=4), 250) == pytest.approx(300)
    with pytest.raises(ResourceError, match="power_watts"):
        energy_kwh(-1, timedelta(hours=1))
    with pytest.raises(ResourceError, match="mean intensity"):
        emissions_g(1, timedelta(hours=1), float("nan"))
