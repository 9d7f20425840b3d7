"""The pure planning core: signals, the planner and its policies, forecast models, emissions, the backtest.

Standard library only: nothing here imports Airflow, requests, aiohttp or SQLAlchemy
(``tests/unit/core/test_purity.py`` checks). Import the modules themselves, e.g.
``from airflow_carbon_provider.core.planner import plan``; this file exists so that the
package is found and shipped in the wheel.
"""

from __future__ import annotations
