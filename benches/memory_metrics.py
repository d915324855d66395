"""Memory per series (resident set growth), native vs pure vs prometheus_client.

Run: python benches/memory_metrics.py  (each measurement in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SERIES = 100_000

SETUP = {
    "native": (
        "from truthound.stores.observability import _core; _core.core = _core._select('native')"
    ),
    "pure": "from truthound.stores.observability import _core; _core.core = _core._import_pure()",
}

OURS = """
from truthound.stores.observability.metrics import InMemoryMetricsBackend
b = InMemoryMetricsBackend(prefix="", max_series_per_metric=N + 10)
record = b.increment if KIND == "counter" else b.histogram
"""
THEIRS = """
import prometheus_client as pc
r = pc.CollectorRegistry()
m = (pc.Counter("requests", "r", ["path"], registry=r) if KIND == "counter"
     else pc.Histogram("latency", "l", ["path"], registry=r))
def record(name, value, labels):
    child = m.labels(**labels)
    child.inc(value) if KIND == "counter" else child.observe(value)
"""
MEASURE = """
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096
record("warmup", 1.0, {"path": "warm"})
before = rss()
for i in range(N):
    record("requests_total" if KIND == "counter" else "latency", 1.0, {"path": f"/item/{i:06d}"})
print((rss() - before) / N)
"""


def measure(impl: str, kind: str) -> float:
    body = SETUP.get(impl, "") + "\n" + (THEIRS if impl == "prometheus_client" else OURS)
    code = f"KIND = {kind!r}\nN = {SERIES}\n" + textwrap.dedent(body) + MEASURE
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    return float(out.stdout.strip())


if __name__ == "__main__":
    print("| series type | native | pure | prometheus_client |")
    print("|---|---|---|---|")
    for kind in ("counter", "histogram"):
        cells = [f"{measure(impl, kind):.0f} B" for impl in ("native", "pure", "prometheus_client")]
        print(f"| {kind} (label `path` of 11 chars) | " + " | ".join(cells) + " |")
