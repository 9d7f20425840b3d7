"""The real-cluster harness says why it does not run: skipped with the reason, failed under CI."""

from __future__ import annotations

import pytest

from tests.realk8s import conftest as realk8s


@pytest.fixture
def nothing_built(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CARBON_K8S_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(realk8s.shutil, "which", lambda name: None)


def test_without_binaries_or_go_the_tests_skip_saying_how_to_build(nothing_built, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        realk8s._binaries_or_skip()
    message = str(skipped.value)
    assert "real Kubernetes v1.36.3 binaries not built" in message
    assert "etcd, kube-apiserver, kube-scheduler, kwok missing" in message
    assert "no `go` on PATH" in message and "build.sh" in message


def test_under_ci_missing_binaries_fail_instead(nothing_built, monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="under CI .ci/run builds them first"):
        realk8s._binaries_or_skip()


def test_the_automatic_build_can_be_turned_off(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CARBON_K8S_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("AIRFLOW_CARBON_K8S_BUILD", "0")
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(realk8s.shutil, "which", lambda name: "/usr/bin/go")
    with pytest.raises(pytest.skip.Exception, match="AIRFLOW_CARBON_K8S_BUILD=0"):
        realk8s._binaries_or_skip()
