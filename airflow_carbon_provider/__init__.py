"""Carbon-aware scheduling for Apache Airflow.

Importing this package must stay cheap and must not import Airflow: the ``airflow-carbon``
command line and the pure planning core are used without it.
"""

from __future__ import annotations

__version__ = "0.2.0"
"""This release. ``setup.cfg`` reads it, and it heads the provider info's ``versions``."""

PREVIOUS_VERSIONS: tuple[str, ...] = ("0.1.0",)
"""Earlier releases, newest first. With ``__version__`` they make the provider info's ``versions``
(Airflow's convention: every release, newest first) and match the sections of ``docs/changelog.rst``."""
