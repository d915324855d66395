"""A real gunicorn app with several recycled workers serves the aggregated /metrics, scraped by
a real Prometheus: the counter is exact and never resets across worker recycling."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest

APP = """
from truthound.stores.observability.metrics import PrometheusMetricsBackend, TEXT_CONTENT_TYPE

backend = PrometheusMetricsBackend(prefix="app")  # multiprocess: enabled in gunicorn.conf.py


def app(environ, start_response):
    if environ["PATH_INFO"] == "/metrics":
        body = backend.export().encode()
        start_response("200 OK", [("Content-Type", TEXT_CONTENT_TYPE)])
        return [body]
    backend.increment("requests_total", labels={"path": environ["PATH_INFO"]})
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""

CONFIG = """
from truthound.stores.observability.metrics import multiprocess

multiprocess.enable({directory!r})  # in the master, before the workers fork
bind = "127.0.0.1:{port}"
workers = 4
max_requests = 20  # recycle each worker after ~20 requests
max_requests_jitter = 5
"""

REQUESTS = 300


def query(prometheus_url: str, promql: str) -> list[dict[str, Any]]:
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        payload = json.loads(response.read())
    return list(payload["data"]["result"])


@pytest.mark.timeout(240)
def test_gunicorn_workers_serve_aggregated_metrics_to_a_real_prometheus(
    core: str, tmp_path: Path, prometheus: Any, net: Any
) -> None:
    port = net.free_port()
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    (tmp_path / "gunicorn.conf.py").write_text(
        textwrap.dedent(CONFIG).format(directory=str(tmp_path / "metrics"), port=port)
    )
    env = {**os.environ, "TRUTHOUND_OBSERVABILITY_CORE": core}
    env.pop("TRUTHOUND_METRICS_MULTIPROCESS_DIR", None)
    log = (tmp_path / "gunicorn.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        net.wait_until(lambda: net.http_get(f"{base}/metrics")[0] == 200, 60, "gunicorn")
        url = prometheus(f"127.0.0.1:{port}")
        for i in range(REQUESTS):
            assert net.http_get(f"{base}/work")[0] == 200, i
        net.wait_until(
            lambda: [
                r for r in query(url, 'app_requests_total{path="/work"}') if r["value"][1] == "300"
            ],
            60,
            "Prometheus to scrape the final count",
        )
        # Worker recycling never made the aggregated counter go backwards.
        resets = query(url, 'resets(app_requests_total{path="/work"}[10m])')
        assert [r["value"][1] for r in resets] == ["0"]
        status, _, body = net.http_get(f"{base}/metrics")
        assert status == 200
        assert 'app_requests_total{path="/work"} 300.0' in body.decode()
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
    recycled = (tmp_path / "gunicorn.log").read_text().count("Booting worker")
    assert recycled > 4, "max_requests recycled workers"
