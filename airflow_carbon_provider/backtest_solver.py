"""The backtest's offline optimum under capacities: an exact integer program (needs scipy).

Outside :mod:`airflow_carbon_provider.core` on purpose: the core is standard library only, and
only ``airflow-carbon backtest --capacity`` with ``oracle`` needs this. Install with
``pip install 'airflow-carbon-provider[backtest]'``.

The jobs of one arrival are identical, so the variables count jobs rather than name them:
``x[a, z, s]`` is how many of arrival ``a``'s jobs start in zone ``z`` at its ``s``-th allowed
start, an integer in ``[0, jobs]``; ``y[a]`` counts jobs that fit nowhere and run at home at
their arrival. Minimise the total realised emissions (mean intensity per job: every job has
the same length and power) plus a penalty on ``y`` large enough that a job is never pushed
over capacity to save carbon elsewhere, subject to every arrival's jobs being placed and, per
capacity-limited zone and allowed start instant, the runs in progress being at most the
capacity. Runs are equally long and start only at allowed instants, so the number running is
highest at a start: checking those instants checks every instant. HiGHS
(``scipy.optimize.milp``) solves it to optimality.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow_carbon_provider.core.backtest import OracleInstance

__all__ = ["solve_oracle"]


class SolverError(RuntimeError):
    """Raised when HiGHS does not prove an optimum; the message carries its status."""


def solve_oracle(instance: OracleInstance, *, time_limit: float = 600.0) -> list[list[tuple[str, float]]]:
    """Return, per arrival, ``instance.jobs`` pairs ``(zone, start)`` minimising total realised emissions.

    Needs scipy (imported here, so the module itself imports without it).
    """
    try:
        import numpy as np
        from scipy.optimize import Bounds, LinearConstraint, milp
        from scipy.sparse import csr_array
    except ImportError:
        raise SolverError("the oracle under capacities needs scipy; install it with: "
                          "pip install 'airflow-carbon-provider[backtest]'") from None
    zones, k = instance.zones, instance.jobs
    n_zones = len(zones)
    index: list[tuple[int, int, int]] = []  # (arrival, zone, start slot) per x variable
    cost: list[float] = []
    for a, starts in enumerate(instance.starts):
        for z in range(n_zones):
            for s in range(len(starts)):
                index.append((a, z, s))
                cost.append(instance.cost[a][z][s])
    n_x, n_arr = len(index), len(instance.starts)
    worst = max(cost) if cost else 1.0
    penalty = 1000.0 * max(1.0, worst)
    home_now = [instance.cost[a][0][0] + penalty for a in range(n_arr)]
    c = np.array(cost + home_now)
    n_var = n_x + n_arr

    rows, cols = [], []
    for v, (a, _, _) in enumerate(index):
        rows.append(a)
        cols.append(v)
    for a in range(n_arr):
        rows.append(a)
        cols.append(n_x + a)
    place = csr_array((np.ones(len(rows)), (rows, cols)), shape=(n_arr, n_var))
    constraints = [LinearConstraint(place, k, k)]

    instants = sorted({t for starts in instance.starts for t in starts})
    limited = {z: instance.capacities[name] for z, name in enumerate(zones) if name in instance.capacities}
    if limited:
        row_of: dict[tuple[int, int], int] = {}
        rows, cols = [], []
        upper: list[int] = []
        for v, (a, z, s) in enumerate(index):
            if z not in limited:
                continue
            t = instance.starts[a][s]
            for i in range(bisect_left(instants, t), bisect_left(instants, t + instance.duration)):
                r = row_of.get((z, i))
                if r is None:
                    r = row_of[(z, i)] = len(upper)
                    upper.append(limited[z])
                rows.append(r)
                cols.append(v)
        if upper:
            cap = csr_array((np.ones(len(rows)), (rows, cols)), shape=(len(upper), n_var))
            constraints.append(LinearConstraint(cap, -np.inf, np.array(upper, dtype=float)))

    res = milp(c, integrality=np.ones(n_var), bounds=Bounds(0, k), constraints=constraints,
               options={"time_limit": time_limit, "disp": False})
    if res.status != 0 or res.x is None:
        raise SolverError(f"the oracle's integer program was not solved to optimality: {res.message}")
    counts = np.rint(res.x).astype(int)
    placed: list[list[tuple[str, float]]] = [[] for _ in range(n_arr)]
    for v, (a, z, s) in enumerate(index):
        placed[a].extend([(zones[z], instance.starts[a][s])] * int(counts[v]))
    for a in range(n_arr):
        placed[a].extend([(zones[0], instance.starts[a][0])] * int(counts[n_x + a]))
    return placed
