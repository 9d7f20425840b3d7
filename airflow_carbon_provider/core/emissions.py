"""Energy and emissions accounting for a job: power model in, grams of CO2eq out.

A job draws constant power for its duration, so its energy is ``power x duration`` and its
emissions are ``energy x mean intensity over the run``. Power comes either from the user
(``power_watts``) or from the container's resource requests through :class:`PowerModel`.
The default coefficients follow the Cloud Carbon Footprint methodology (average of its min
and max watts per vCPU for AWS, 0.74 and 3.5 W; 0.392 W per GB of memory) plus an explicit
per-GPU figure; they are estimates, and the ledger records which model produced each number.
Savings are differences between two emissions computed with the *same* power, so an error in
the power model scales the saving but cannot change its sign.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta

__all__ = [
    "PowerModel",
    "ResourceError",
    "emissions_g",
    "energy_kwh",
    "parse_cpu",
    "parse_memory_gib",
]


class ResourceError(ValueError):
    """Raised for a resource quantity or power figure that cannot be used."""


_CPU = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m?)\s*$")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|Pi|k|K|M|G|T|P|E|Ei)?\s*$")
_MEMORY_FACTORS = {
    None: 1,
    "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}


def parse_cpu(quantity: str | float | int) -> float:
    """Return CPU cores from a Kubernetes quantity (``"500m"`` -> 0.5, ``"2"`` -> 2.0)."""
    if isinstance(quantity, (int, float)) and not isinstance(quantity, bool):
        value = float(quantity)
    else:
        match = _CPU.match(str(quantity))
        if not match:
            raise ResourceError(f"cpu quantity {quantity!r} is not valid; write cores like '2' or millicores like '500m'")
        value = float(match.group(1)) / (1000 if match.group(2) else 1)
    if not math.isfinite(value) or value < 0:
        raise ResourceError(f"cpu quantity {quantity!r} must be a finite number >= 0")
    return value


def parse_memory_gib(quantity: str | float | int) -> float:
    """Return GiB from a Kubernetes memory quantity (``"512Mi"`` -> 0.5, ``"4G"`` -> 3.73)."""
    if isinstance(quantity, (int, float)) and not isinstance(quantity, bool):
        value = float(quantity)
    else:
        match = _MEMORY.match(str(quantity))
        if not match:
            raise ResourceError(
                f"memory quantity {quantity!r} is not valid; write bytes with a suffix like '512Mi' or '4Gi'"
            )
        value = float(match.group(1)) * _MEMORY_FACTORS[match.group(2)]
    if not math.isfinite(value) or value < 0:
        raise ResourceError(f"memory quantity {quantity!r} must be a finite number >= 0")
    return value / 2**30


@dataclass(frozen=True)
class PowerModel:
    """Estimate a container's average power draw from its resource requests.

    :param watts_per_vcpu: average draw per requested core (default 2.12 W: CCF's AWS
        midpoint of 0.74 W idle and 3.5 W at full load).
    :param watts_per_gib: draw per GiB of requested memory (default 0.392 W, CCF).
    :param watts_per_gpu: draw per requested GPU (default 250 W, a mid-range datacentre
        GPU under load; set your own for your hardware).
    :param pue: power usage effectiveness of the data centre (default 1.0: IT power only).
    """

    watts_per_vcpu: float = 2.12
    watts_per_gib: float = 0.392
    watts_per_gpu: float = 250.0
    pue: float = 1.0

    def __post_init__(self) -> None:
        for name in ("watts_per_vcpu", "watts_per_gib", "watts_per_gpu"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ResourceError(f"{name} must be a finite number >= 0, got {value!r}")
        if not isinstance(self.pue, (int, float)) or not math.isfinite(self.pue) or self.pue < 1:
            raise ResourceError(f"pue must be a number >= 1.0 (1.0 means IT power only), got {self.pue!r}")

    def watts(self, cpu: str | float = 0, memory: str | float = 0, gpus: int | float = 0) -> float:
        """Return the estimated average power in watts for the given requests."""
        if not isinstance(gpus, (int, float)) or isinstance(gpus, bool) or gpus < 0:
            raise ResourceError(f"gpu count {gpus!r} must be a number >= 0")
        it_power = (
            parse_cpu(cpu) * self.watts_per_vcpu
            + parse_memory_gib(memory) * self.watts_per_gib
            + float(gpus) * self.watts_per_gpu
        )
        return it_power * self.pue


def energy_kwh(power_watts: float, duration: timedelta) -> float:
    """Return the energy in kWh of ``power_watts`` drawn for ``duration``."""
    if not isinstance(power_watts, (int, float)) or not math.isfinite(power_watts) or power_watts < 0:
        raise ResourceError(f"power_watts must be a finite number >= 0, got {power_watts!r}")
    if duration < timedelta(0):
        raise ResourceError(f"duration must not be negative, got {duration}")
    return power_watts * duration.total_seconds() / 3600.0 / 1000.0


def emissions_g(power_watts: float, duration: timedelta, mean_intensity: float) -> float:
    """Return grams of CO2eq: energy over ``duration`` times the mean intensity (g/kWh)."""
    if not math.isfinite(mean_intensity) or mean_intensity < 0:
        raise ResourceError(f"mean intensity must be a finite number >= 0, got {mean_intensity!r}")
    return energy_kwh(power_watts, duration) * mean_intensity
