"""What ``setup.cfg`` ships is the whole package: no folder or data file is left out of the wheel.

An editable install imports straight from the source tree and hides a missing package: in
0.1.0 ``airflow_carbon_provider/core`` had no ``__init__.py``, so ``packages = find:``
skipped it and the wheel failed with ``No module named 'airflow_carbon_provider.core'``.
These checks are fast; ``tests/integration/packaging/test_wheel.py`` builds and installs the
wheel itself.
"""

from __future__ import annotations

import configparser
import fnmatch
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "airflow_carbon_provider"


def _setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    return cfg


def _listed(value: str) -> list[str]:
    return [item.strip() for item in value.replace("\n", ",").split(",") if item.strip()]


def _source_dirs() -> list[Path]:
    """Return every folder of the package that holds Python source."""
    return sorted(
        d for d in [PACKAGE, *PACKAGE.rglob("*")]
        if d.is_dir() and "__pycache__" not in d.parts and any(d.glob("*.py"))
    )


def _dotted(folder: Path) -> str:
    return ".".join(folder.relative_to(ROOT).parts)


def test_every_source_folder_is_a_regular_package():
    missing = [str(d.relative_to(ROOT)) for d in _source_dirs() if not (d / "__init__.py").is_file()]
    assert not missing, f"add an __init__.py to {missing}: setuptools' find: skips folders without one"


def test_find_packages_finds_every_source_folder():
    setuptools = pytest.importorskip("setuptools", reason="setuptools is in the tests extra")
    include = _listed(_setup_cfg()["options.packages.find"]["include"])
    found = set(setuptools.find_packages(where=str(ROOT), include=include))
    expected = {_dotted(d) for d in _source_dirs()}
    assert expected - found == set(), "the wheel would leave these packages out"
    assert found - expected == set(), "find: picks up packages outside airflow_carbon_provider"


def test_package_data_covers_every_data_file():
    patterns = _listed(_setup_cfg()["options.package_data"]["airflow_carbon_provider"])
    data_files = sorted(
        p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*")
        if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts
    )
    assert data_files, "the package lost its data files (the bundled trace, the migration template)"
    unshipped = [f for f in data_files if not any(fnmatch.fnmatch(f, pattern) for pattern in patterns)]
    assert not unshipped, f"add these to [options.package_data] in setup.cfg: {unshipped}"
