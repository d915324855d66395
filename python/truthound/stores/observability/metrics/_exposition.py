"""Content negotiation, compression, and the JSON / StatsD renderings of a registry."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

from .. import _core

__all__ = [
    "OPENMETRICS_CONTENT_TYPE",
    "TEXT_CONTENT_TYPE",
    "accepts_gzip",
    "prefers_openmetrics",
    "render_json",
    "render_statsd",
]

#: Content type of the Prometheus text format 0.0.4.
TEXT_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Content type of OpenMetrics 1.0.
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def _media_ranges(header: str) -> list[tuple[str, dict[str, str], float]]:
    ranges = []
    for part in header.split(","):
        pieces = [p.strip() for p in part.split(";")]
        if not pieces[0]:
            continue
        params: dict[str, str] = {}
        quality = 1.0
        for piece in pieces[1:]:
            key, _, value = piece.partition("=")
            key, value = key.strip().lower(), value.strip().strip('"')
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
                if not 0.0 <= quality <= 1.0:
                    quality = 0.0
            else:
                params[key] = value
        ranges.append((pieces[0].lower(), params, quality))
    return ranges


def _quality(ranges: list[tuple[str, dict[str, str], float]], media: str) -> float:
    """The q-value the most specific matching range gives `media` (RFC 9110 §12.5.1)."""
    kind = media.split("/", 1)[0]
    best_specificity, best_quality = -1, 0.0
    for range_, _params, quality in ranges:
        if range_ == media:
            specificity = 2
        elif range_ == f"{kind}/*":
            specificity = 1
        elif range_ == "*/*":
            specificity = 0
        else:
            continue
        if specificity > best_specificity or (
            specificity == best_specificity and quality > best_quality
        ):
            best_specificity, best_quality = specificity, quality
    return best_quality


def prefers_openmetrics(accept: str | None) -> bool:
    """Whether an ``Accept`` header asks for OpenMetrics over the text format.

    OpenMetrics wins only with a strictly higher q-value than ``text/plain`` (ties, an absent
    header or a header accepting neither give the text format, which every scraper reads).
    """
    if not accept:
        return False
    ranges = _media_ranges(accept)
    openmetrics = _quality(ranges, "application/openmetrics-text")
    text = _quality(ranges, "text/plain")
    return openmetrics > 0.0 and openmetrics > text


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an ``Accept-Encoding`` header accepts gzip (with a non-zero q-value)."""
    if not accept_encoding:
        return False
    for coding, _params, quality in _media_ranges(accept_encoding):
        if coding in ("gzip", "x-gzip", "*") and quality > 0.0:
            return True
    return False


def _number(value: float) -> float | str:
    return value if math.isfinite(value) else _core.core.format_float(value)


def render_json(collected: list[Any], include_timestamps: bool) -> str:
    """A JSON document of every family and series (non-finite numbers as ``"+Inf"``...)."""
    families = []
    for kind, name, documentation, series_list in collected:
        samples = []
        for labels, value, total, pairs, created, _exemplars in series_list:
            sample: dict[str, Any] = {"labels": dict(labels)}
            if kind in ("counter", "gauge"):
                sample["value"] = _number(value)
            else:
                sample["count"] = int(value)
                sample["sum"] = _number(total)
                key = "buckets" if kind == "histogram" else "quantiles"
                sample[key] = {_core.core.format_float(k): _number(v) for k, v in pairs}
            if include_timestamps and kind != "gauge":
                sample["created"] = created
            samples.append(sample)
        exposed = f"{name}_total" if kind == "counter" else name
        families.append({"name": exposed, "type": kind, "help": documentation, "samples": samples})
    document: dict[str, Any] = {"metrics": families}
    if include_timestamps:
        document["timestamp"] = datetime.now(UTC).isoformat()
    return json.dumps(document, separators=(",", ":"))


# Characters that end a DogStatsD line, field or tag: a label value holding them would inject
# lines or tags, so each becomes "_".
_STATSD_UNSAFE = str.maketrans(dict.fromkeys("\n\r|,#", "_"))


def _statsd_tags(labels: list[tuple[str, str]]) -> str:
    if not labels:
        return ""
    return "|#" + ",".join(f"{k}:{v.translate(_STATSD_UNSAFE)}" for k, v in labels)


def render_statsd(collected: list[Any]) -> str:
    """One StatsD gauge line per sample (DogStatsD tags carry the labels; in a label value each
    of ``\\n \\r | , #``, which would end the line, the field or the tag, becomes ``_``).

    A snapshot of cumulative state, so counters are exported as gauges of their total too:
    StatsD counters are per-flush deltas, which a snapshot cannot produce without losing counts.
    """
    lines = []
    fmt = _core.core.format_float
    for kind, name, _doc, series_list in collected:
        for labels, value, total, pairs, _created, _exemplars in series_list:
            if kind in ("counter", "gauge"):
                exposed = f"{name}_total" if kind == "counter" else name
                lines.append(f"{exposed}:{fmt(value)}|g{_statsd_tags(labels)}")
                continue
            lines.append(f"{name}_count:{fmt(value)}|g{_statsd_tags(labels)}")
            lines.append(f"{name}_sum:{fmt(total)}|g{_statsd_tags(labels)}")
            tag = "le" if kind == "histogram" else "quantile"
            suffix = "_bucket" if kind == "histogram" else ""
            for key, sample in pairs:
                tags = _statsd_tags([*labels, (tag, fmt(key))])
                lines.append(f"{name}{suffix}:{fmt(sample)}|g{tags}")
    return "".join(line + "\n" for line in lines)
