"""The deployment files in deploy/ are valid for the real tools and match our metric names."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).parents[1] / "deploy"


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is not installed (scripts/install-system-deps.sh installs it)")
    return subprocess.run(
        [promtool, *args], capture_output=True, text=True, timeout=60, check=False, cwd=DEPLOY
    )


@pytest.mark.only_core("native")
def test_prometheus_configuration_is_valid() -> None:
    """Checks files, not library behaviour: once is enough."""
    result = _promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.only_core("native")
def test_alert_rules_fire_on_our_metric_names() -> None:
    """Checks files, not library behaviour: once is enough."""
    result = _promtool("test", "rules", "store-alerts.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
