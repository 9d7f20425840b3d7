"""The wheel a user installs from a package index works on its own, without the source tree.

An editable install imports from the checkout and hides packaging bugs (0.1.0's wheel had no
``airflow_carbon_provider.core``). This module builds the sdist and, from it, the wheel with
``python -m build`` from a clean copy of the source tree, checks both with ``twine check``,
installs the wheel alone (with ``constraints.txt``) into a fresh virtual environment, and,
from a folder outside the repository, checks that every module, migration and data file is
there, that the UI plugin's entry point loads, that Airflow lists the provider, and that
``airflow-carbon demo`` succeeds. Uses uv when it is available, else pip (about two minutes
more; the tests extra installs uv). Takes about two minutes on two cores, half of it the
demo; about four with pip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "airflow_carbon_provider"
CONSTRAINTS = ROOT / "constraints.txt"
NOT_SOURCE = (".git", ".venv", ".tox", "*.egg-info", "build", "dist", "__pycache__", "*.pyc", ".*_cache",
              ".hypothesis", "_build", "test-artifacts")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _find_uv() -> str | None:
    """Return uv: on PATH, or installed by the tests extra next to this Python (its bin may not be on PATH)."""
    beside = Path(sys.executable).with_name("uv")
    return shutil.which("uv") or (str(beside) if beside.is_file() else None)


UV = _find_uv()

# Run inside the fresh environment with -I (no cwd, no PYTHONPATH on sys.path), so only the
# installed package can answer.
INSPECT = r"""
import importlib, importlib.metadata as md, json, pkgutil, sys
from importlib.resources import files
import airflow_carbon_provider as pkg
from alembic.script import ScriptDirectory

root = files("airflow_carbon_provider")
modules = sorted([pkg.__name__, *(m.name for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."))])
failed = {}
for name in modules:
    if name.endswith(".migrations.env"):  # alembic's script, run only inside alembic's context
        continue
    try:
        importlib.import_module(name)
    except Exception as exc:  # report every module that does not import, not just the first
        failed[name] = f"{type(exc).__name__}: {exc}"
migrations = root / "ledger" / "migrations"
plugins = {ep.name: ep for ep in md.entry_points(group="airflow.plugins")}
providers = {ep.value: ep for ep in md.entry_points(group="apache_airflow_provider")}
info = providers["airflow_carbon_provider.get_provider_info:get_provider_info"].load()()
print(json.dumps({
    "package_file": pkg.__file__,
    "version": md.version("airflow-carbon-provider"),
    "provider_versions": info["versions"],
    "modules": modules,
    "import_failures": failed,
    "migration_files": sorted(p.name for p in (migrations / "versions").iterdir() if p.name.endswith(".py")),
    "migration_heads": list(ScriptDirectory(str(migrations)).get_heads()),
    "script_mako": (migrations / "script.py.mako").is_file(),
    "trace_header": (root / "data" / "bundled_trace.csv").read_text(encoding="utf-8").splitlines()[0],
    "trace_readme": (root / "data" / "README.md").is_file(),
    "plugin": plugins["carbon"].value if "carbon" in plugins else None,
    "plugin_class": plugins["carbon"].load().__name__ if "carbon" in plugins else None,
}))
"""


def _source_files() -> tuple[list[str], list[str]]:
    """Return the package's Python modules (dotted) and data files (relative paths) in the source tree."""
    files = [p for p in PACKAGE.rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
    modules = sorted(
        ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for p in files if p.suffix == ".py"
    )
    data = sorted(p.relative_to(ROOT).as_posix() for p in files if p.suffix != ".py")
    return modules, data


def _source_migration_heads() -> list[str]:
    from alembic.script import ScriptDirectory

    return list(ScriptDirectory(str(PACKAGE / "ledger" / "migrations")).get_heads())


def _run(argv: list[str], *, timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, argv))} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Build the sdist and, from it, the wheel, as ``python -m build`` does; return both."""
    if importlib.util.find_spec("build") is None:
        reason = "cannot build the wheel: the build module is missing (pip install -e '.[tests]')"
        if IN_CI:
            pytest.fail(reason + "; under CI this is a failure, not a skip")
        pytest.skip(reason)
    # Build from a clean copy: setuptools reads an existing *.egg-info/SOURCES.txt and would ship
    # files it lists (0.1.0's core/ among them) as package data, hiding the very bug this catches.
    source = tmp_path_factory.mktemp("source") / "airflow-carbon-provider"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    out = tmp_path_factory.mktemp("dist")
    installer = ["--installer", "uv"] if UV else []
    env = {**os.environ, "UV": UV} if UV else None  # where build looks for uv when it cannot import it
    _run([sys.executable, "-m", "build", *installer, "--outdir", str(out), str(source)], timeout=600, cwd=source,
         env=env)
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


@pytest.fixture(scope="module")
def venv(dists: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return a fresh virtual environment holding the built wheel alone (and its dependencies)."""
    where = tmp_path_factory.mktemp("wheel_venv") / "venv"
    python = where / "bin" / "python"
    if UV:
        _run([UV, "venv", "-q", "--python", sys.executable, str(where)], timeout=120)
        _run([UV, "pip", "install", "-q", "--python", str(python), "-c", str(CONSTRAINTS), str(dists["wheel"])],
             timeout=900)
    else:
        _run([sys.executable, "-m", "venv", str(where)], timeout=300)
        _run([str(python), "-m", "pip", "install", "-q", "-c", str(CONSTRAINTS), str(dists["wheel"])], timeout=900)
    return where


@pytest.fixture(scope="module")
def outside(tmp_path_factory: pytest.TempPathFactory, venv: Path) -> tuple[Path, dict[str, str]]:
    """Return a working folder outside the repository and an environment that sees only the venv."""
    home = tmp_path_factory.mktemp("wheel_home")
    dropped = ("AIRFLOW", "PYTHON", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update({
        "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(venv),
        "HOME": str(home),  # the demo's ledger is ~/airflow/carbon_demo_ledger.db without AIRFLOW_HOME
        "AIRFLOW_HOME": str(home / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
    })
    assert ROOT not in home.parents and home != ROOT
    return home, env


def test_sdist_and_wheel_pass_twine_check(dists: dict[str, Path]) -> None:
    if importlib.util.find_spec("twine") is None:
        pytest.fail("twine is missing; it is in the tests extra: pip install -e '.[tests]'")
    proc = _run([sys.executable, "-m", "twine", "check", "--strict", str(dists["sdist"]), str(dists["wheel"])],
                timeout=120)
    assert proc.stdout.count("PASSED") == 2, proc.stdout


def test_wheel_holds_every_module_and_data_file(dists: dict[str, Path]) -> None:
    modules, data = _source_files()
    names = set(zipfile.ZipFile(dists["wheel"]).namelist())
    expected = {m.replace(".", "/") + ("/__init__.py" if (ROOT / m.replace(".", "/")).is_dir() else ".py")
                for m in modules} | set(data)
    assert sorted(expected - names) == []
    dist_info = {n.split("/", 1)[1] for n in names if n.split("/", 1)[0].endswith(".dist-info")}
    assert "entry_points.txt" in dist_info


def test_installed_wheel_has_modules_migrations_data_and_plugin(venv: Path, outside) -> None:
    home, env = outside
    proc = _run([str(venv / "bin" / "python"), "-I", "-c", INSPECT], timeout=300, cwd=home, env=env)
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    site = Path(found["package_file"]).resolve()
    assert venv.resolve() in site.parents, f"imported from {site}, not from the fresh environment"

    modules, _ = _source_files()
    assert sorted(set(modules) - set(found["modules"])) == [], "modules missing from the installed wheel"
    assert found["import_failures"] == {}
    source_migrations = sorted(p.name for p in (PACKAGE / "ledger" / "migrations" / "versions").glob("*.py"))
    assert found["migration_files"] == source_migrations
    assert len(found["migration_heads"]) == 1 and found["script_mako"]
    assert found["trace_header"] == "timestamp_utc,zone,gco2_per_kwh" and found["trace_readme"]
    assert (found["plugin"], found["plugin_class"]) == ("airflow_carbon_provider.plugins:CarbonPlugin", "CarbonPlugin")
    assert found["migration_heads"] == _source_migration_heads()
    assert found["provider_versions"][0] == found["version"]


def test_airflow_providers_list_shows_the_installed_provider(venv: Path, outside) -> None:
    home, env = outside
    proc = _run([str(venv / "bin" / "airflow"), "providers", "list", "--output", "plain"], timeout=300,
                cwd=home, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("airflow-carbon-provider")), None)
    assert line is not None, proc.stdout[-3000:]


def test_demo_succeeds_from_the_installed_wheel(venv: Path, outside) -> None:
    home, env = outside
    proc = _run([str(venv / "bin" / "airflow-carbon"), "demo", "--format", "json"], timeout=600, cwd=home, env=env)
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["state"] == "success", proc.stderr[-5000:]
    assert [t["state"] for t in report["tasks"]] == ["success"]
    assert report["tasks"][0]["carbon_decision"]["chosen_cluster"] == "k8s_gb"
    # the demo's ledger was created by the migrations shipped in the wheel, up to the newest
    with sqlite3.connect(home / "airflow" / "carbon_demo_ledger.db") as db:
        (version,) = db.execute("SELECT version_num FROM carbon_ledger_alembic_version").fetchone()
    assert [version] == _source_migration_heads()
