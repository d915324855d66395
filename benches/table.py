"""Prints the README's comparison table from a pytest-benchmark JSON file.

One row per workload (benchmark group), one column per implementation (median time), and the
ratio of each other implementation's median to the native core's, all from the same run.
"""

from __future__ import annotations

import json
import platform
import sys
from collections import defaultdict
from pathlib import Path

ORDER = ["native", "pure", "prometheus_client", "opentelemetry-sdk", "truthound (existing)"]


def _format_seconds(seconds: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds / 1e-9:.3g} ns"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def render(run: dict[str, object]) -> str:
    medians: dict[str, dict[str, float]] = defaultdict(dict)
    for bench in run["benchmarks"]:  # type: ignore[attr-defined]
        impl = bench["extra_info"].get("impl", bench["name"])
        medians[bench["group"]][impl] = bench["stats"]["median"]
    # Rows measured by one implementation only (the empty-call yardstick) become notes.
    notes = {group: row for group, row in medians.items() if len(row) == 1}
    rows = {group: row for group, row in medians.items() if group not in notes}
    impls = [i for i in ORDER if any(i in row for row in rows.values())]
    impls += sorted({i for row in rows.values() for i in row} - set(impls))
    header = ["workload (median)", *impls]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group in sorted(rows):
        row = rows[group]
        native = row.get("native")
        cells = [group.replace("|", "\\|")]  # a literal | would split the cell
        for impl in impls:
            if impl not in row:
                cells.append("—")
            elif impl == "native" or not native:
                cells.append(_format_seconds(row[impl]))
            else:  # how many times the native core's time
                cells.append(f"{_format_seconds(row[impl])} ({row[impl] / native:.1f}x)")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append("(Nx): that median relative to the native core's, measured in the same run.")
    for group, row in sorted(notes.items()):
        ((_, median),) = row.items()
        lines.append(f"Yardstick: {group.removesuffix(' (yardstick)')}: {_format_seconds(median)}.")
    machine = run.get("machine_info", {})
    lines.append(
        f"Machine: {_cpu_model()}, {machine.get('cpu', {}).get('count', '?')} cores, "  # type: ignore[union-attr]
        f"{machine.get('python_implementation', 'CPython')} {machine.get('python_version', '')}"  # type: ignore[union-attr]
    )
    return "\n".join(lines)


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else ".benchmarks/latest.json")
    print(render(json.loads(path.read_text())))
