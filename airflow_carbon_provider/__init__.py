"""Carbon-aware scheduling for Apache Airflow.

Importing this package must stay cheap and must not import Airflow: the ``airflow-carbon``
command line and the pure planning core are used without it.
"""

from __future__ import annotations

__version__ = "0.1.0"
