"""The package is an Airflow provider: Airflow discovers it after ``pip install``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import airflow_carbon_provider
from airflow_carbon_provider.get_provider_info import get_provider_info

CHANGELOG = Path(__file__).resolve().parents[2] / "docs" / "changelog.rst"


def test_provider_info_shape():
    info = get_provider_info()
    assert info["package-name"] == "airflow-carbon-provider"
    assert info["versions"][0] == airflow_carbon_provider.__version__
    assert info["name"] and info["description"]


def _changelog_sections() -> list[tuple[str, bool]]:
    """Return ``(version, unreleased)`` for each version section of the changelog, in order."""
    lines = CHANGELOG.read_text(encoding="utf-8").splitlines()
    sections = []
    for title, underline in zip(lines, lines[1:]):
        match = re.fullmatch(r"(\d+\.\d+\.\d+)( \(unreleased\))?", title.strip())
        if match and underline.strip() and set(underline.strip()) == {"-"}:
            sections.append((match.group(1), bool(match.group(2))))
    return sections


def test_versions_agree_with_the_changelog():
    sections = _changelog_sections()
    versions = get_provider_info()["versions"]
    assert [v for v, _ in sections] == versions, f"docs/changelog.rst has sections {sections}; provider info {versions}"
    assert versions == sorted(versions, key=lambda v: tuple(int(p) for p in v.split(".")), reverse=True)
    assert len(set(versions)) == len(versions)
    assert not any(unreleased for _, unreleased in sections[1:]), "only the newest section may be unreleased"


def test_airflow_providers_list_shows_the_provider(tmp_path):
    airflow = Path(sys.executable).with_name("airflow")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path), "AIRFLOW__CORE__LOAD_EXAMPLES": "false"}
    proc = subprocess.run([str(airflow), "providers", "list", "--output", "plain"], capture_output=True,
                          text=True, timeout=180, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("airflow-carbon-provider")), None)
    assert line is not None, proc.stdout[-2000:]
    assert airflow_carbon_provider.__version__ in line
