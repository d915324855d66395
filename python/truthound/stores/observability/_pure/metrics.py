"""Pure-Python mirror of the native metrics core (``rust/metrics/``, ``rust/py/metrics.rs``).

Same classes, signatures, errors and behaviour as the native module; the exposition text is
byte-identical (same ordering, escaping and float formatting, and a summary sketch that performs
the same floating-point operations in the same order). Thread safety comes from one lock per
series (values) and per family/registry (creation); see the native core for the lock-free design.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Any

from ..errors import (
    InvalidArgumentError,
    InvalidArgumentTypeError,
    InvalidLabelError,
    InvalidMetricNameError,
    InvalidMetricValueError,
    MetricConflictError,
    MultiprocessError,
)
from . import _multiprocess as mp

__all__ = [
    "CounterSeries",
    "GaugeSeries",
    "HistogramSeries",
    "MetricSet",
    "OperationRecorder",
    "SummarySeries",
    "compact_directory",
    "encode_directory",
    "format_float",
]

#: The one lock of the pure core. Every critical section is short and never calls out, and a
#: fork waits for it (``os.register_at_fork``), so a child starts with it free and every
#: structure consistent, whatever other threads were doing (the native core's fork gate).
_LOCK = threading.RLock()


def _after_fork_in_child() -> None:
    _LOCK.release()
    mp.after_fork_in_child()


os.register_at_fork(
    before=_LOCK.acquire, after_in_parent=_LOCK.release, after_in_child=_after_fork_in_child
)

OVERFLOW_VALUE = "__overflow__"
_I32_MAX = 2**31 - 1
_I32_MIN = -(2**31)
EXEMPLAR_MAX_CODE_POINTS = 128
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_OWNED_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": (),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("_count", "_sum", "_created"),
}
_KINDS = ("counter", "gauge", "histogram", "summary")
_DEFAULT_BUCKETS: tuple[float, ...] = (
    *(0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75),
    *(1.0, 2.5, 5.0, 7.5, 10.0),
)
_DEFAULT_QUANTILES = (0.5, 0.9, 0.95, 0.99)

LabelPairs = list[tuple[str, str]]


def format_float(value: float) -> str:
    """Canonical exposition text: ``repr()`` for finite values, ``+Inf``, ``-Inf``, ``NaN``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def format_label_float(value: float) -> str:
    """The text of an ``le`` or ``quantile`` label value: ``format_float``, except that a
    positive value of 1e6 or more in fixed notation switches to an exponent as Go and
    prometheus_client do (``1e+06``, ``2.5e+07``); mirror of ``rust/float.rs``."""
    text = format_float(value)
    dot = text.find(".")
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


# ---- errors (messages formatted like the native core's `{item:?}: {reason}`) ----------------

_DEBUG_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}


def _debug(item: str) -> str:
    return '"' + "".join(_DEBUG_ESCAPES.get(c, c) for c in item) + '"'


def _error(cls: type[Exception], item: str, reason: str) -> Exception:
    return cls(f"{_debug(item)}: {reason}")


def _render_floats(values: Iterable[float]) -> str:
    return "[" + ", ".join(format_float(v) for v in values) + "]"


# ---- argument conversion (as PyO3 extracts `f64`, `usize`, `&str`) ---------------------------


def _f64(value: Any) -> float:
    if type(value) is float:
        return value
    if isinstance(value, (str, bytes, bytearray)):
        raise TypeError(f"must be real number, not {type(value).__name__}")
    return float(value)


def _value(value: Any) -> float:
    """A recorded value (as ``_f64``); a number too large for a float (``10**400``) is an
    ``InvalidMetricValueError`` naming it, not a bare ``OverflowError``."""
    if type(value) is float:
        return value
    try:
        return _f64(value)
    except OverflowError:
        raise _too_large(value) from None


def _too_large(value: Any) -> Exception:
    try:
        shown = repr(value)
    except Exception:
        shown = "?"
    if len(shown) > 40:
        shown = f"{shown[:20]}...{shown[-8:]} ({len(shown)} characters)"
    return _error(
        InvalidMetricValueError,
        shown,
        "the value is too large for a float (metric values are 64-bit floats)",
    )


_OVERFLOWING = {
    "counter": "the increment would make the counter infinite (it is left unchanged)",
    "histogram": "the observation would make the histogram's _sum infinite (it is left unchanged)",
    "summary": "the observation would make the summary's _sum infinite (it is left unchanged)",
}


def _overflowing(kind: str, metric: str, value: float) -> Exception:
    reason = f"{_OVERFLOWING[kind]} (got {format_float(value)})"
    return _error(InvalidMetricValueError, metric, reason)


def _usize(value: Any) -> int:
    import operator

    number = operator.index(value)
    if number < 0:
        raise OverflowError("can't convert negative int to unsigned")
    return number


def _str(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be str, not {type(value).__name__}")
    return str.__str__(value)


def _value_str(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str.__str__(value)
    return str(value)


def _is_unicode(text: str) -> bool:
    """Whether ``text`` is valid Unicode (no lone surrogate, as ``os.fsdecode`` leaves for
    undecodable bytes): the exposition is UTF-8, so such text could never be exported."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _shown(text: str) -> str:
    """``text`` with lone surrogates written as ``\\udcff`` (for error messages)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _not_unicode(cls: type[Exception], item: str, what: str, metric: str) -> Exception:
    return _error(
        cls,
        _shown(item),
        f"{what} is not valid Unicode (it contains a lone surrogate) "
        f"(metric {_debug(_shown(metric))})",
    )


def _check_label_name(key: str, metric: str) -> str:
    if not _is_unicode(key):
        raise _not_unicode(InvalidLabelError, key, "label name", metric)
    return key


def _check_label_values(labels: Any, what: str) -> None:
    """Rejects a label name or value that is not valid Unicode, before any state is created."""
    if labels is None:
        return
    for key, value in _items(labels, what):
        if not isinstance(key, str):
            raise _label_name_error(key)
        _check_label_name(str.__str__(key), what)
        text = _value_str(value)
        if not _is_unicode(text):
            raise _not_unicode(InvalidLabelError, str.__str__(key), "label value", what)


def _check_values(names: Sequence[str], values: Sequence[str], what: str) -> None:
    """Rejects, before a series is created, a label value that is not valid Unicode or is the
    overflow marker (reserved: the overflow series must never collide with a user series)."""
    for label, value in zip(names, values, strict=True):
        if not _is_unicode(value):
            raise _not_unicode(InvalidLabelError, label, "label value", what)
        if value == OVERFLOW_VALUE:
            raise _reserved_value(label, what)


def _reserved_value(label: str, what: str) -> Exception:
    return _error(
        InvalidLabelError,
        label,
        f"label value {_debug(OVERFLOW_VALUE)} is reserved for the series that collects label "
        f"sets beyond max_series_per_metric (metric {_debug(_shown(what))})",
    )


def _label_name_error(key: Any) -> Exception:
    try:
        shown = repr(key)
    except Exception:
        shown = "?"
    return _error(InvalidLabelError, shown, "label names must be strings")


def _items(labels: Any, what: str) -> Iterable[tuple[Any, Any]]:
    """The (name, value) pairs of a dict or any mapping; anything else names ``what``."""
    if isinstance(labels, dict):
        return list(labels.items())
    if not hasattr(labels, "items"):
        raise _error(
            InvalidArgumentTypeError,
            what,
            "labels must be a mapping of label names to values (a dict), "
            f"not {type(labels).__name__}",
        )
    return [tuple(item) for item in labels.items()]


# ---- names ----------------------------------------------------------------------------------


def _validate_metric_name(name: str) -> None:
    if not _METRIC_NAME.fullmatch(name):
        raise _error(
            InvalidMetricNameError,
            _shown(name),
            "metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*",
        )


def _validate_label_name(metric: str, kind: str, label: str) -> None:
    if not _LABEL_NAME.fullmatch(label):
        reason = "label name must match [a-zA-Z_][a-zA-Z0-9_]*"
    elif label.startswith("__"):
        reason = "label names starting with '__' are reserved for Prometheus"
    elif kind == "histogram" and label == "le":
        reason = "'le' is reserved for histogram buckets"
    elif kind == "summary" and label == "quantile":
        reason = "'quantile' is reserved for summary quantiles"
    else:
        return
    raise _error(InvalidLabelError, label, f"{reason} (metric {_debug(metric)})")


def _join_prefix(prefix: str, name: str) -> str:
    # One trailing "_" of the prefix is dropped: "app" and "app_" both give "app_name".
    prefix = prefix.removesuffix("_")
    return f"{prefix}_{name}" if prefix else name


def _family_name(kind: str, full_name: str) -> str:
    if kind == "counter" and full_name.endswith("_total") and len(full_name) > len("_total"):
        return full_name[: -len("_total")]
    return full_name


def _generated_help(kind: str, caller_name: str) -> str:
    return f"{kind.capitalize()} {caller_name}"


def _validate_buckets(metric: str, buckets: Sequence[float]) -> list[float]:
    bounds = list(buckets)
    if bounds and bounds[-1] == math.inf:
        bounds.pop()

    def bad(reason: str) -> Exception:
        return _error(
            InvalidArgumentError, metric, f"histogram buckets {_render_floats(buckets)}: {reason}"
        )

    if any(math.isnan(b) or math.isinf(b) for b in bounds):
        raise bad("bucket bounds must be finite numbers (+Inf is implied)")
    if any(a >= b for a, b in pairwise(bounds)):
        raise bad("bucket bounds must be strictly increasing")
    return bounds


def _validate_quantiles(metric: str, quantiles: Sequence[float]) -> list[float]:
    def bad(reason: str) -> Exception:
        return _error(
            InvalidArgumentError,
            metric,
            f"summary quantiles {_render_floats(quantiles)}: {reason}",
        )

    if any(not (0.0 <= q <= 1.0) for q in quantiles):
        raise bad("quantiles must be between 0 and 1")
    if any(a >= b for a, b in pairwise(quantiles)):
        raise bad("quantiles must be strictly increasing")
    return list(quantiles)


def _escape_label_value(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _escape_help(text: str, openmetrics: bool) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if openmetrics else text


def _exemplar_labels(trace_id: str, span_id: str) -> LabelPairs | None:
    trace = len("trace_id") + len(trace_id)
    span = len("span_id") + len(span_id)
    if not trace_id or trace > EXEMPLAR_MAX_CODE_POINTS:
        return None
    labels = [("trace_id", trace_id)]
    if span_id and trace + span <= EXEMPLAR_MAX_CODE_POINTS:
        labels.append(("span_id", span_id))
    return labels


# ---- summary sketch (mirror of rust/metrics/sketch.rs) --------------------------------------


class _SketchParams:
    __slots__ = ("gamma", "max_bins", "multiplier", "relative_accuracy")

    def __init__(self, relative_accuracy: float, max_bins: int) -> None:
        if not (relative_accuracy > 0.0 and relative_accuracy < 1.0):
            raise _error(
                InvalidArgumentError,
                format_float(relative_accuracy),
                "summary relative accuracy must be strictly between 0 and 1",
            )
        if max_bins < 1:
            raise _error(InvalidArgumentError, str(max_bins), "summary max_bins must be at least 1")
        self.relative_accuracy = relative_accuracy
        self.max_bins = max_bins
        self.gamma = (1.0 + relative_accuracy) / (1.0 - relative_accuracy)
        self.multiplier = 1.0 / math.log(self.gamma)

    def key(self, value: float) -> int:
        # The native core's `as i32`: saturating (+inf, of a +inf value, to i32::MAX).
        scaled = math.log(value) * self.multiplier
        if math.isnan(scaled):
            return 0
        if math.isinf(scaled):
            return _I32_MAX if scaled > 0 else _I32_MIN
        return min(max(math.ceil(scaled), _I32_MIN), _I32_MAX)

    def value(self, key: int) -> float:
        try:
            power = math.pow(self.gamma, float(key))
        except OverflowError:  # f64::powf: +inf
            power = math.inf
        return 2.0 * power / (self.gamma + 1.0)


class _Sketch:
    __slots__ = ("bins", "count", "max", "min", "zero")

    def __init__(self) -> None:
        self.bins: dict[int, int] = {}
        self.zero = 0
        self.count = 0
        self.min = 0.0
        self.max = 0.0

    def _track(self, low: float, high: float, was_empty: bool) -> None:
        if was_empty:
            self.min, self.max = low, high
        else:
            self.min = min(self.min, low)
            self.max = max(self.max, high)

    def add(self, params: _SketchParams, value: float) -> None:
        self._track(value, value, self.count == 0)
        self.count += 1
        if value > 0.0:
            key = params.key(value)
            self.bins[key] = self.bins.get(key, 0) + 1
            self._collapse(params)
        else:
            self.zero += 1

    def merge(self, params: _SketchParams, other: _Sketch) -> None:
        if other.count == 0:
            return
        self._track(other.min, other.max, self.count == 0)
        self.count += other.count
        self.zero += other.zero
        bins = self.bins
        for key, count in other.bins.items():
            bins[key] = bins.get(key, 0) + count
        self._collapse(params)

    def _collapse(self, params: _SketchParams) -> None:
        bins = self.bins
        while len(bins) > params.max_bins:
            lowest = bins.pop(min(bins))
            bins[min(bins)] += lowest

    def quantile(self, params: _SketchParams, q: float) -> float:
        if self.count == 0:
            return math.nan
        rank = q * (self.count - 1)
        if rank < 1.0:
            return self.min
        if rank >= self.count - 1:
            return self.max
        seen = self.zero
        estimate = 0.0 if seen > rank else None
        if estimate is None:
            for key in sorted(self.bins):
                seen += self.bins[key]
                if seen > rank:
                    estimate = params.value(key)
                    break
        if estimate is None:
            estimate = self.max
        return min(max(estimate, self.min), self.max)


class _Window:
    __slots__ = ("count", "head", "head_expires", "slots", "sum", "width")

    def __init__(self, max_age: float, age_buckets: int, now: float) -> None:
        self.width = max_age / age_buckets
        self.slots = [_Sketch() for _ in range(age_buckets)]
        self.head = 0
        self.head_expires = now + self.width
        self.count = 0
        self.sum = 0.0

    def _rotate(self, now: float) -> None:
        if now < self.head_expires:
            return
        steps = float(math.floor((now - self.head_expires) / self.width)) + 1.0
        slots = len(self.slots)
        clear = slots if steps >= slots else int(steps)
        for _ in range(clear):
            self.head = (self.head + 1) % slots
            self.slots[self.head] = _Sketch()
        self.head_expires += steps * self.width

    def observe(self, params: _SketchParams, value: float, now: float) -> None:
        self._rotate(now)
        self.slots[self.head].add(params, value)
        self.count += 1
        self.sum += value

    def window(self, params: _SketchParams, now: float) -> _Sketch:
        self._rotate(now)
        merged = _Sketch()
        for slot in self.slots:
            merged.merge(params, slot)
        return merged


# ---- families and series --------------------------------------------------------------------


class _Counters:
    __slots__ = ("dropped_exemplars", "lock", "series_overflows")

    def __init__(self) -> None:
        self.series_overflows = 0
        self.dropped_exemplars = 0
        self.lock = _LOCK

    def overflowed(self) -> None:
        with self.lock:
            self.series_overflows += 1

    def dropped(self) -> None:
        with self.lock:
            self.dropped_exemplars += 1


class _Layout:
    __slots__ = (
        "age_buckets",
        "bounds",
        "counters",
        "kind",
        "max_age",
        "mode",
        "quantiles",
        "shared",
        "sketch",
        "stamps",
    )

    def __init__(  # noqa: PLR0917 - internal constructor
        self,
        kind: str,
        bounds: list[float],
        quantiles: list[float],
        sketch: _SketchParams,
        max_age: float,
        age_buckets: int,
        counters: _Counters,
    ) -> None:
        self.kind = kind
        self.bounds = bounds
        self.quantiles = quantiles
        self.sketch = sketch
        self.max_age = max_age
        self.age_buckets = age_buckets
        self.counters = counters
        self.mode = "livesum"
        self.shared = False
        self.stamps = False

    def allows_negative(self) -> bool:
        return self.kind == "histogram" and bool(self.bounds) and self.bounds[0] < 0.0

    def check(self, value: float, metric: str) -> None:
        """Rejects a forbidden value (see the native ``check_value`` for the rules)."""
        kind = self.kind
        finite = math.isfinite(value)
        if kind == "counter":
            if finite and value >= 0.0:
                return
            reason = (
                "a counter only goes up by finite amounts: the increment must be finite and >= 0"
            )
        elif kind == "summary":
            # The quantile sketch has no bin for infinity (nor a finite sum to report).
            if finite and value >= 0.0:
                return
            reason = "a summary observation must be finite and >= 0"
        elif kind == "histogram":
            if not finite:
                reason = (
                    "a histogram observation must be finite "
                    "(an infinite one would leave _sum infinite)"
                )
            elif value < 0.0 and not self.allows_negative():
                reason = (
                    "a histogram observation must be >= 0, so that _sum stays a counter as "
                    "OpenMetrics requires; to observe negative values, declare a negative bucket "
                    f'bound, e.g. register({_debug(metric)}, "histogram", '
                    "buckets=[-10.0, 0.0, 10.0])"
                )
            else:
                return
        else:
            return
        raise _error(InvalidMetricValueError, metric, f"{reason} (got {format_float(value)})")


class _Series:
    __slots__ = (
        "buckets",
        "created",
        "detached",
        "exemplars",
        "layout",
        "lock",
        "overflow",
        "rendered",
        "sum",
        "value",
        "values",
        "window",
    )

    def __init__(
        self, values: tuple[str, ...], rendered: str, overflow: bool, layout: _Layout, now: float
    ) -> None:
        self.values = values
        self.rendered = rendered
        self.detached = False
        self.overflow = overflow
        self.layout = layout
        self.lock = _LOCK
        self.value = 0.0
        self.created = now
        self.buckets = [0] * (len(layout.bounds) + 1) if layout.kind == "histogram" else []
        self.sum = 0.0
        self.window = (
            _Window(layout.max_age, layout.age_buckets, now) if layout.kind == "summary" else None
        )
        self.exemplars: list[tuple[LabelPairs, float, float] | None] | None = None

    def counter_add(self, metric: str, value: float) -> None:
        self.layout.check(value, metric)
        with self.lock:
            total = self.value + value
            if not math.isfinite(total):
                raise _overflowing("counter", metric, value)
            self.value = total
        if self.overflow:
            self.layout.counters.overflowed()

    def gauge_set(self, value: float) -> None:
        if self.overflow:
            self.layout.counters.overflowed()
        self.value = value

    def gauge_add(self, value: float) -> None:
        if self.overflow:
            self.layout.counters.overflowed()
        with self.lock:
            self.value += value

    def histogram_observe(
        self, metric: str, value: float, exemplar: tuple[LabelPairs, float] | None
    ) -> None:
        self.layout.check(value, metric)
        index = bisect_left(self.layout.bounds, value)
        with self.lock:
            total = self.sum + value
            if not math.isfinite(total):
                raise _overflowing("histogram", metric, value)
            self.buckets[index] += 1
            self.sum = total
            if exemplar is not None:
                if self.exemplars is None:
                    self.exemplars = [None] * len(self.buckets)
                self.exemplars[index] = (exemplar[0], value, exemplar[1])
        if self.overflow:
            self.layout.counters.overflowed()

    def summary_observe(self, metric: str, value: float, now: float) -> None:
        self.layout.check(value, metric)
        window = self.window
        if window is not None:
            with self.lock:
                if not math.isfinite(window.sum + value):
                    raise _overflowing("summary", metric, value)
                window.observe(self.layout.sketch, value, now)
        if self.overflow:
            self.layout.counters.overflowed()

    def histogram_snapshot(self) -> tuple[list[int], float]:
        with self.lock:
            counts = list(self.buckets)
            total_sum = self.sum
        cumulative = []
        total = 0
        for count in counts:
            total += count
            cumulative.append(total)
        return cumulative, total_sum

    def exemplar_list(self) -> list[tuple[LabelPairs, float, float] | None]:
        with self.lock:
            return list(self.exemplars) if self.exemplars is not None else []

    def summary_snapshot(self, now: float) -> tuple[int, float, list[float]]:
        window = self.window
        if window is None:
            return 0, 0.0, []
        params = self.layout.sketch
        with self.lock:
            sketch = window.window(params, now)
            count, total = window.count, window.sum
        return count, total, [sketch.quantile(params, q) for q in self.layout.quantiles]

    def window_sketch(self, now: float) -> tuple[int, float, _Sketch] | None:
        window = self.window
        if window is None:
            return None
        with self.lock:
            return window.count, window.sum, window.window(self.layout.sketch, now)


class _Frozen:
    """An aggregated summary: count, sum and the merged sketch of the window."""

    __slots__ = ("count", "sketch", "sum")

    def __init__(self, count: int, total: float, sketch: _Sketch) -> None:
        self.count = count
        self.sum = total
        self.sketch = sketch

    def window(self, _params: _SketchParams, _now: float) -> _Sketch:
        return self.sketch


class _SharedSeries(_Series):
    """A series whose values are written through to the multiprocess file: cell ``i`` is word
    ``at + i`` of its chunk, stored with one aligned 8-byte write (see ``mp.Chunk``)."""

    __slots__ = ("at", "d", "q", "record")
    q: memoryview[int]
    d: memoryview[float]
    at: int
    record: int

    def counter_add(self, metric: str, value: float) -> None:
        self.layout.check(value, metric)
        with self.lock:
            total = self.value + value
            if not math.isfinite(total):
                raise _overflowing("counter", metric, value)
            self.value = total
            self.d[self.at] = self.value
        if self.overflow:
            self.layout.counters.overflowed()

    def gauge_set(self, value: float) -> None:
        if self.overflow:
            self.layout.counters.overflowed()
        with self.lock:
            self.value = value
            self.d[self.at] = value
            if self.layout.stamps:
                self.d[self.at + 1] = time.time()

    def gauge_add(self, value: float) -> None:
        if self.overflow:
            self.layout.counters.overflowed()
        with self.lock:
            self.value += value
            self.d[self.at] = self.value
            if self.layout.stamps:
                self.d[self.at + 1] = time.time()

    def histogram_observe(
        self, metric: str, value: float, exemplar: tuple[LabelPairs, float] | None
    ) -> None:
        self.layout.check(value, metric)
        index = bisect_left(self.layout.bounds, value)
        with self.lock:
            total = self.sum + value
            if not math.isfinite(total):
                raise _overflowing("histogram", metric, value)
            buckets = self.buckets
            buckets[index] += 1
            self.q[self.at + index] = buckets[index]
            self.sum = total
            self.d[self.at + len(buckets)] = self.sum
            if exemplar is not None:
                if self.exemplars is None:
                    self.exemplars = [None] * len(buckets)
                self.exemplars[index] = (exemplar[0], value, exemplar[1])
        if self.overflow:
            self.layout.counters.overflowed()

    def summary_observe(self, metric: str, value: float, now: float) -> None:
        layout = self.layout
        layout.check(value, metric)
        key = layout.sketch.key(value) if value > 0.0 else None
        with self.lock:
            cells = mp.Cells(self.q, self.d, self.at)
            if not math.isfinite(cells.f(1) + value):
                raise _overflowing("summary", metric, value)
            mp.shared_observe(
                cells,
                value,
                now,
                layout.max_age,
                layout.age_buckets,
                layout.sketch.max_bins,
                key,
            )
        if self.overflow:
            layout.counters.overflowed()

    def moved(self, chunk: mp.Chunk) -> None:
        """In a forked child: the values now live (zeroed) in the child's own file."""
        self.q = chunk.q
        self.d = chunk.d
        self.value = 0.0
        self.sum = 0.0
        self.buckets = [0] * len(self.buckets)


class _Family:
    def __init__(  # noqa: PLR0917 - internal, mirrors the core's steps
        self,
        name: str,
        caller_name: str,
        documentation: str,
        label_names: tuple[str, ...],
        plan: list[tuple[str, str | None, int]],
        layout: _Layout,
        max_series: int,
    ) -> None:
        self.name = name
        self.caller_name = caller_name
        self.documentation = documentation
        self.label_names = label_names
        self.label_positions = {n: i for i, n in enumerate(label_names)}
        self.plan = plan
        self.layout = layout
        self.kind = layout.kind
        self.le_text = [format_label_float(b) for b in layout.bounds] + ["+Inf"]
        self.quantile_text = [format_label_float(q) for q in layout.quantiles]
        self.map: dict[tuple[str, ...], _Series] = {}
        self.ordered: list[_Series] = []
        self.max_series = max_series
        self.overflow: _Series | None = None
        self.lock = _LOCK
        #: (slab, definition, default labels, counters) in multiprocess mode.
        self.shared: tuple[mp.Slab, mp.FamilyDef, list[tuple[str, str]], mp.Counters] | None = None

    def schema_error(self, given: Sequence[str]) -> Exception:
        expected = list(self.label_names)
        offending = next((g for g in given if g not in expected), None)
        if offending is None:
            offending = next((e for e in expected if e not in given), "")
        return _error(
            MetricConflictError,
            offending,
            f"metric {_debug(self.caller_name)} has label names [{', '.join(expected)}], "
            f"got [{', '.join(given)}]",
        )

    def series(self, values: tuple[str, ...], clock: Callable[[], float]) -> _Series:
        found = self.map.get(values)
        if found is not None:
            return found
        now = clock()  # read before locking: a critical section never calls out
        with self.lock:
            found = self.map.get(values)
            if found is not None:
                return found
            if len(self.ordered) >= self.max_series:
                return self._overflow_series(now)
            series = self._new_series(values, overflow=False, now=now)
            self.map[values] = series
            self.ordered.append(series)
            return series

    def _overflow_series(self, now: float) -> _Series:
        if self.overflow is None:
            values = (OVERFLOW_VALUE,) * len(self.label_names)
            self.overflow = self._new_series(values, overflow=True, now=now)
        return self.overflow

    def _new_series(self, values: tuple[str, ...], overflow: bool, now: float) -> _Series:
        parts = []
        for name, escaped, index in self.plan:
            value = escaped if escaped is not None else _escape_label_value(values[index])
            parts.append(f'{name}="{value}"')
        rendered = ",".join(parts)
        shared = self.shared
        if shared is None:
            return _Series(values, rendered, overflow, self.layout, now)
        slab, definition, defaults, counters = shared
        full = [
            next((v for n, v in defaults if n == name), "") if index < 0 else values[index]
            for name, _escaped, index in self.plan
        ]
        layout = self.layout
        n_cells = mp.cell_count(
            layout.kind, len(layout.bounds), layout.age_buckets, layout.sketch.max_bins
        )
        placed = slab.series(
            definition.id, full, n_cells, mp.created_index(layout.kind, n_cells), now
        )
        if placed is None:
            counters.unshared_series += 1
            return _Series(values, rendered, overflow, layout, now)
        series = _SharedSeries(values, rendered, overflow, layout, now)
        index, series.at, series.record = placed
        chunk = slab.chunks[index]
        series.q, series.d = chunk.q, chunk.d
        slab.series_list.append((series, index))
        return series

    def all_series(self) -> list[_Series]:
        with self.lock:
            series = list(self.ordered)
            if self.overflow is not None:
                series.append(self.overflow)
        return series

    def series_labels(self, series: _Series, defaults: list[tuple[str, str]]) -> LabelPairs:
        pairs = []
        for name, escaped, index in self.plan:
            if escaped is not None:
                value = next((v for n, v in defaults if n == name), "")
                pairs.append((name, value))
            else:
                pairs.append((name, series.values[index]))
        return pairs

    def series_for(self, labels: Any, clock: Callable[[], float], what: str) -> _Series:
        names = self.label_names
        if labels is None:
            if not names:
                return self.series((), clock)
            raise self._schema_error_for(None, what)
        if type(labels) is dict and len(labels) == len(names):
            try:
                key = tuple([labels[n] for n in names])
            except KeyError:
                pass
            else:
                found = self.map.get(key)
                if found is not None:
                    return found
        slots: list[str | None] = [None] * len(names)
        mismatch = False
        count = 0
        for key, value in _items(labels, what):
            count += 1
            if not isinstance(key, str):
                raise _label_name_error(key)
            index = self.label_positions.get(str.__str__(key))
            if index is None:
                mismatch = True
            else:
                slots[index] = _value_str(value)
        if mismatch or count != len(names) or any(s is None for s in slots):
            raise self._schema_error_for(labels, what)
        values: tuple[str, ...] = tuple(slots)  # type: ignore[arg-type]
        if values not in self.map:
            _check_values(names, values, what)
        return self.series(values, clock)

    def _schema_error_for(self, labels: Any, what: str) -> Exception:
        return self.schema_error(_given_names(labels, what))

    def detach_all(self) -> None:
        for series in self.all_series():
            series.detached = True
            if self.shared is not None and isinstance(series, _SharedSeries):
                self.shared[0].remove(series.record)


def _given_names(labels: Any, what: str) -> list[str]:
    names = []
    if labels is not None:
        for key, _ in _items(labels, what):
            if not isinstance(key, str):
                raise _label_name_error(key)
            names.append(_check_label_name(str.__str__(key), what))
    return names


def _pairs(labels: Any, what: str) -> list[tuple[str, str]]:
    pairs = []
    if labels is not None:
        for key, value in _items(labels, what):
            if not isinstance(key, str):
                raise _label_name_error(key)
            pairs.append((_check_label_name(str.__str__(key), what), _value_str(value)))
    return pairs


class MetricSet:
    """All metrics of one backend (pure-Python core of the metrics backends)."""

    def __init__(  # noqa: PLR0917 - mirrors the native signature
        self,
        prefix: str = "",
        default_labels: Mapping[str, Any] | None = None,
        buckets: Sequence[float] | None = None,
        quantiles: Sequence[float] | None = None,
        max_series_per_metric: int = 10_000,
        summary_max_age_seconds: float = 600.0,
        summary_age_buckets: int = 5,
        summary_relative_accuracy: float = 0.01,
        summary_max_bins: int = 2048,
        span_var: Any = None,
        clock: Callable[[], float] | None = None,
        multiprocess_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        prefix = _str(prefix, "prefix")
        directory = None if multiprocess_dir is None else os.fspath(multiprocess_dir)
        defaults = _pairs(default_labels, "default_labels")
        for key, value in defaults:
            if not _is_unicode(value):
                raise _not_unicode(InvalidLabelError, key, "label value", "default_labels")
        bucket_list = [_f64(b) for b in buckets] if buckets is not None else list(_DEFAULT_BUCKETS)
        quantile_list = (
            [_f64(q) for q in quantiles] if quantiles is not None else list(_DEFAULT_QUANTILES)
        )
        max_series = _usize(max_series_per_metric)
        max_age = _f64(summary_max_age_seconds)
        age_buckets = _usize(summary_age_buckets)
        accuracy = _f64(summary_relative_accuracy)
        max_bins = _usize(summary_max_bins)
        if prefix and (not _METRIC_NAME.fullmatch(prefix) or prefix == "_"):
            raise _error(
                InvalidMetricNameError,
                prefix,
                "prefix must be empty or match [a-zA-Z_:][a-zA-Z0-9_:]* (and not be '_' alone)",
            )
        defaults.sort()
        for name, _ in defaults:
            _validate_label_name("default_labels", "gauge", name)
            if name in ("le", "quantile"):
                raise _error(
                    InvalidLabelError,
                    name,
                    "'le' and 'quantile' are reserved for histograms and summaries "
                    "(default_labels)",
                )
        self._bounds = _validate_buckets("default buckets", bucket_list)
        self._quantiles = _validate_quantiles("default quantiles", quantile_list)
        self._sketch = _SketchParams(accuracy, max_bins)
        if not (max_age > 0.0 and math.isfinite(max_age)) or age_buckets == 0:
            raise _error(
                InvalidArgumentError,
                format_float(max_age),
                "summary max age must be a positive number of seconds split into >= 1 age buckets",
            )
        if max_series == 0:
            raise _error(InvalidArgumentError, "0", "max_series_per_metric must be at least 1")
        if age_buckets > 1024:
            raise _error(
                InvalidArgumentError, str(age_buckets), "summary age buckets must be at most 1024"
            )
        self._mp_counters = mp.Counters()
        self._slab = None if directory is None else mp.Slab(directory, self._mp_counters)
        self._config = (bucket_list, quantile_list, max_age, age_buckets, accuracy, max_bins)
        self._prefix = prefix
        self._defaults = defaults
        self._max_series = max_series
        self._max_age = max_age
        self._age_buckets = age_buckets
        self._span_var = span_var
        self._clock: Callable[[], float] = clock if clock is not None else time.time
        self._aliases: dict[str, _Family] = {}
        self._families: list[_Family] = []
        self._owned: dict[str, _Family] = {}
        self._lock = _LOCK
        self._counters = _Counters()

    # ---- families ---------------------------------------------------------------------------

    def _now(self) -> float:
        return float(self._clock())

    def _family(self, name: Any, kind: str, labels: Any) -> _Family:
        family = self._aliases.get(name) if type(name) is str else None
        if family is not None and family.kind == kind:
            return family
        name = _str(name, "name")
        _check_label_values(labels, name)
        return self._register(
            name, kind, None, _given_names(labels, name), None, None, explicit=False
        )

    def _register(  # noqa: PLR0917 - internal, mirrors the core's steps
        self,
        name: str,
        kind: str,
        documentation: str | None,
        label_names: Sequence[str] | None,
        buckets: Sequence[float] | None,
        quantiles: Sequence[float] | None,
        explicit: bool,
        mode: str | None = None,
    ) -> _Family:
        _validate_metric_name(name)
        full = _join_prefix(self._prefix, name)
        _validate_metric_name(full)
        family_name = _family_name(kind, full)
        labels = sorted(label_names or ())
        for label in labels:
            _validate_label_name(name, kind, label)
        for a, b in pairwise(labels):
            if a == b:
                raise _error(InvalidLabelError, a, f"label name repeated (metric {_debug(name)})")
        with self._lock:
            existing = self._owned.get(family_name)
            if existing is not None and existing.name != family_name:
                # One of the samples of another metric ("foo_created", "h_sum", "h_bucket"):
                # a conflict whichever was first (prometheus_client: duplicated timeseries).
                raise _error(
                    MetricConflictError,
                    name,
                    f"a {kind} would expose {_debug(family_name)}, which {existing.kind} "
                    f"{_debug(existing.caller_name)} already exposes",
                )
            if existing is not None:
                self._check_existing(
                    existing, name, kind, labels, label_names, documentation, buckets, quantiles
                )
                if mode is not None and kind == "gauge" and existing.layout.mode != mode:
                    raise _error(
                        MetricConflictError,
                        name,
                        "already registered with multiprocess_mode "
                        f"{existing.layout.mode}, not {mode}",
                    )
                self._aliases.setdefault(name, existing)
                return existing
            owned = [family_name] + [family_name + s for s in _OWNED_SUFFIXES[kind]]
            for exposed in owned:
                other = self._owned.get(exposed)
                if other is not None:
                    raise _error(
                        MetricConflictError,
                        name,
                        f"a {kind} would expose {_debug(exposed)}, which {other.kind} "
                        f"{_debug(other.caller_name)} already exposes",
                    )
            family = self._new_family(
                name, kind, family_name, labels, documentation, buckets, quantiles, mode
            )
            for exposed in owned:
                self._owned[exposed] = family
            self._families.append(family)
            self._aliases.setdefault(name, family)
        if explicit and not labels:
            family.series((), self._now)
        return family

    def _check_existing(  # noqa: PLR0917 - internal, mirrors the core's steps
        self,
        existing: _Family,
        name: str,
        kind: str,
        labels: list[str],
        label_names: Sequence[str] | None,
        documentation: str | None,
        buckets: Sequence[float] | None,
        quantiles: Sequence[float] | None,
    ) -> None:
        if existing.kind != kind:
            raise _error(
                MetricConflictError,
                name,
                f"already registered as a {existing.kind}, cannot be used as a {kind}",
            )
        if label_names is not None and list(existing.label_names) != labels:
            raise existing.schema_error(labels)
        if buckets is not None:
            bounds = _validate_buckets(name, buckets)
            if existing.layout.bounds != bounds:
                raise _error(
                    MetricConflictError,
                    name,
                    f"already registered with buckets {_render_floats(existing.layout.bounds)}, "
                    f"not {_render_floats(bounds)}",
                )
        if quantiles is not None:
            checked = _validate_quantiles(name, quantiles)
            if existing.layout.quantiles != checked:
                raise _error(
                    MetricConflictError,
                    name,
                    "already registered with quantiles "
                    f"{_render_floats(existing.layout.quantiles)}, not {_render_floats(checked)}",
                )
        if documentation:
            current = existing.documentation
            if current != _generated_help(kind, existing.caller_name) and current != documentation:
                raise _error(
                    MetricConflictError,
                    name,
                    f"already registered with help {_debug(current)}, not {_debug(documentation)}",
                )
            if current != documentation and existing.shared is not None:
                slab, definition = existing.shared[0], existing.shared[1]
                definition.help = documentation
                slab.define(definition, False)
            existing.documentation = documentation

    def _new_family(  # noqa: PLR0917 - internal, mirrors the core's steps
        self,
        name: str,
        kind: str,
        family_name: str,
        labels: list[str],
        documentation: str | None,
        buckets: Sequence[float] | None,
        quantiles: Sequence[float] | None,
        mode: str | None = None,
    ) -> _Family:
        bounds = (
            _validate_buckets(name, buckets)
            if buckets is not None and kind == "histogram"
            else list(self._bounds)
        )
        quantile_list = (
            _validate_quantiles(name, quantiles)
            if quantiles is not None and kind == "summary"
            else list(self._quantiles)
        )
        plan: list[tuple[str, str | None, int]] = [
            (n, _escape_label_value(v), -1) for n, v in self._defaults if n not in labels
        ]
        plan.extend((n, None, i) for i, n in enumerate(labels))
        plan.sort(key=lambda slot: slot[0])
        layout = _Layout(
            kind,
            bounds,
            quantile_list,
            self._sketch,
            self._max_age,
            self._age_buckets,
            self._counters,
        )
        layout.mode = mode or "livesum"
        help_text = documentation or _generated_help(kind, name)
        family = _Family(
            family_name,
            name,
            help_text,
            tuple(labels),
            plan,
            layout,
            self._max_series,
        )
        slab = self._slab
        if slab is not None:
            layout.shared = True
            layout.stamps = layout.mode not in mp.SUM_MODES
            definition = mp.FamilyDef(
                0,
                kind,
                layout.mode,
                family_name,
                help_text,
                sorted([n for n, _ in self._defaults if n not in labels] + list(labels)),
                list(bounds),
                list(quantile_list),
                self._age_buckets,
                self._max_age,
                self._sketch.relative_accuracy,
                self._sketch.max_bins,
            )
            slab.define(definition, True)
            family.shared = (slab, definition, self._defaults, self._mp_counters)
        return family

    def _find(self, name: str) -> _Family | None:
        found = self._aliases.get(name)
        if found is not None:
            return found
        if not _METRIC_NAME.fullmatch(name):
            return None
        full = _join_prefix(self._prefix, name)
        with self._lock:
            family = self._owned.get(full)
            if family is not None and family.name == full:
                return family
            base = _family_name("counter", full)
            family = self._owned.get(base)
            if family is not None and family.kind == "counter" and family.name == base:
                return family
        return None

    def _exemplar(self) -> tuple[LabelPairs, float] | None:  # noqa: PLR0911 - one per missing piece
        var = self._span_var
        if var is None:
            return None
        try:
            span = var.get()
        except Exception:
            return None
        if span is None:
            return None
        try:
            if not span.is_sampled:
                return None
            trace_id = str(span.trace_id)
            span_id = str(span.span_id)
        except Exception:
            self._counters.dropped()
            return None
        labels = _exemplar_labels(trace_id, span_id)
        if labels is None:
            self._counters.dropped()
            return None
        return labels, self._now()

    # ---- recording (the hot path) -----------------------------------------------------------

    def increment(
        self, name: str, value: float = 1.0, labels: Mapping[str, Any] | None = None
    ) -> None:
        """Adds ``value`` (default 1) to a counter; ``_total`` in ``name`` is optional."""
        value = _value(value)
        family = self._family(name, "counter", labels)
        family.layout.check(value, name)
        family.series_for(labels, self._now, name).counter_add(name, value)

    def gauge(self, name: str, value: float, labels: Mapping[str, Any] | None = None) -> None:
        """Sets a gauge to ``value``."""
        value = _value(value)
        family = self._family(name, "gauge", labels)
        family.series_for(labels, self._now, name).gauge_set(value)

    def gauge_add(self, name: str, value: float, labels: Mapping[str, Any] | None = None) -> None:
        """Adds ``value`` (may be negative) to a gauge."""
        value = _value(value)
        family = self._family(name, "gauge", labels)
        family.series_for(labels, self._now, name).gauge_add(value)

    def histogram(self, name: str, value: float, labels: Mapping[str, Any] | None = None) -> None:
        """Observes ``value``; inside a sampled span it becomes the bucket's exemplar."""
        value = _value(value)
        family = self._family(name, "histogram", labels)
        family.layout.check(value, name)
        series = family.series_for(labels, self._now, name)
        series.histogram_observe(name, value, self._exemplar())

    def summary(self, name: str, value: float, labels: Mapping[str, Any] | None = None) -> None:
        """Observes ``value`` into a summary (quantiles over the sliding window)."""
        value = _value(value)
        family = self._family(name, "summary", labels)
        family.layout.check(value, name)
        series = family.series_for(labels, self._now, name)
        series.summary_observe(name, value, self._now())

    def register(  # noqa: PLR0917 - mirrors the native signature
        self,
        kind: str,
        name: str,
        documentation: str | None = None,
        label_names: Sequence[str] | None = None,
        buckets: Sequence[float] | None = None,
        quantiles: Sequence[float] | None = None,
        multiprocess_mode: str | None = None,
    ) -> None:
        """Declares a metric with its help, label names, buckets or quantiles."""
        kind = _str(kind, "kind")
        name = _str(name, "name")
        if kind not in _KINDS:
            raise _error(
                InvalidArgumentError,
                name,
                f"metric type {_debug(kind)} must be one of counter, gauge, histogram, summary",
            )
        mode = (
            None
            if multiprocess_mode is None
            else mp.parse_mode(_str(multiprocess_mode, "multiprocess_mode"))
        )
        names = [_check_label_name(_str(n, "label name"), name) for n in (label_names or ())]
        if isinstance(documentation, str) and not _is_unicode(documentation):
            raise _not_unicode(InvalidArgumentError, name, "help text", name)
        bucket_list = [_f64(b) for b in buckets] if buckets is not None else None
        quantile_list = [_f64(q) for q in quantiles] if quantiles is not None else None
        self._register(name, kind, documentation, names, bucket_list, quantile_list, True, mode)

    def _handle(self, kind: str, name: str, labels: Any) -> _Handle:
        name = _str(name, "name")
        family = self._family(name, kind, labels)
        series = family.series_for(labels, self._now, name)
        return _Handle(self, kind, name, family.label_names, series)

    def counter_series(self, name: str, labels: Mapping[str, Any] | None = None) -> CounterSeries:
        """A pre-bound counter series: ``inc()`` skips the name and label lookups."""
        return CounterSeries(self._handle("counter", name, labels))

    def gauge_series(self, name: str, labels: Mapping[str, Any] | None = None) -> GaugeSeries:
        """A pre-bound gauge series."""
        return GaugeSeries(self._handle("gauge", name, labels))

    def histogram_series(
        self, name: str, labels: Mapping[str, Any] | None = None
    ) -> HistogramSeries:
        """A pre-bound histogram series."""
        return HistogramSeries(self._handle("histogram", name, labels))

    def summary_series(self, name: str, labels: Mapping[str, Any] | None = None) -> SummarySeries:
        """A pre-bound summary series."""
        return SummarySeries(self._handle("summary", name, labels))

    # ---- reading ----------------------------------------------------------------------------

    def get(
        self, name: str, labels: Mapping[str, Any] | None = None
    ) -> tuple[str, float, float, list[tuple[float, float]]] | None:
        """``(type, value_or_count, sum, pairs)`` of the matching series, or ``None``."""
        name = _str(name, "name")
        wanted = _pairs(labels, name)
        aggregate = self._aggregate()
        if aggregate is not None:
            return aggregate._read(_join_prefix(self._prefix, name), wanted)
        return self._read(name, wanted)

    def _read(  # noqa: PLR0912 - one branch per metric type
        self, name: str, wanted: list[tuple[str, str]]
    ) -> tuple[str, float, float, list[tuple[float, float]]] | None:
        family = self._find(name)
        if family is None:
            return None
        matching = []
        for series in family.all_series():
            for label, value in wanted:
                index = family.label_positions.get(label)
                if index is not None:
                    actual: str | None = series.values[index]
                else:
                    actual = next((v for n, v in self._defaults if n == label), None)
                if actual != value:
                    break
            else:
                matching.append(series)
        if not matching:
            return None
        layout = family.layout
        if family.kind in ("counter", "gauge"):
            total = -0.0
            for series in matching:
                total += series.value
            return (family.kind, total, 0.0, [])
        if family.kind == "histogram":
            cumulative = [0] * (len(layout.bounds) + 1)
            total_sum = 0.0
            for series in matching:
                counts, series_sum = series.histogram_snapshot()
                cumulative = [a + b for a, b in zip(cumulative, counts, strict=True)]
                total_sum += series_sum
            bounds = [*layout.bounds, math.inf]
            pairs = [(le, float(c)) for le, c in zip(bounds, cumulative, strict=True)]
            return ("histogram", float(cumulative[-1]), total_sum, pairs)
        now = self._now()
        merged = _Sketch()
        count, total_sum = 0, 0.0
        for series in matching:
            state = series.window_sketch(now)
            if state is not None:
                count += state[0]
                total_sum += state[1]
                merged.merge(layout.sketch, state[2])
        pairs = [(q, merged.quantile(layout.sketch, q)) for q in layout.quantiles]
        return ("summary", float(count), total_sum, pairs)

    def collect(self) -> list[tuple[str, str, str, list[Any]]]:
        """Every family: ``(type, name, help, series)``; see the native core for the layout."""
        aggregate = self._aggregate()
        if aggregate is not None:
            return aggregate.collect()
        out: list[tuple[str, str, str, list[Any]]] = []
        now = self._now()
        with self._lock:
            families = list(self._families)
        for family in families:
            layout = family.layout
            series_list: list[Any] = []
            for series in family.all_series():
                labels = family.series_labels(series, self._defaults)
                exemplars: list[tuple[float, LabelPairs, float, float]] = []
                pairs: list[tuple[float, float]]
                if family.kind in ("counter", "gauge"):
                    value, total_sum, pairs = series.value, 0.0, []
                elif family.kind == "histogram":
                    cumulative, total_sum = series.histogram_snapshot()
                    bounds = [*layout.bounds, math.inf]
                    for le, exemplar in zip(bounds, series.exemplar_list(), strict=False):
                        if exemplar is not None:
                            exemplars.append((le, list(exemplar[0]), exemplar[1], exemplar[2]))
                    value = float(cumulative[-1])
                    pairs = [(le, float(c)) for le, c in zip(bounds, cumulative, strict=True)]
                else:
                    count, total_sum, values = series.summary_snapshot(now)
                    value = float(count)
                    pairs = list(zip(layout.quantiles, values, strict=True))
                series_list.append((labels, value, total_sum, pairs, series.created, exemplars))
            out.append((family.kind, family.name, family.documentation, series_list))
        return out

    def encode(self, openmetrics: bool = False) -> str:
        """Prometheus text 0.0.4, or OpenMetrics 1.0 when ``openmetrics``."""
        aggregate = self._aggregate()
        if aggregate is not None:
            return aggregate.encode(openmetrics)
        with self._lock:
            families = list(self._families)
        out: list[str] = []
        now = self._now()
        for family in families:
            _encode_family(out, family, openmetrics, now)
        if openmetrics:
            out.append("# EOF\n")
        return "".join(out)

    def reset(self) -> None:
        """Removes every metric; pre-bound series handles re-create their series on next use."""
        with self._lock:
            self._aliases = {}
            for family in self._families:
                family.detach_all()
            self._families = []
            self._owned = {}

    def _aggregate(self) -> MetricSet | None:
        """Every process's values (multiprocess mode), compacting dead writers first. A
        compaction that fails (a full disk cannot take the new archive) leaves every file in
        place: the scrape still reads them all, and the next one tries again."""
        slab = self._slab
        if slab is None:
            return None
        now = self._now()
        with contextlib.suppress(MultiprocessError):
            mp.compact(slab.dir, now, self._mp_counters)
        return _from_aggregate(mp.scan(slab.dir, now, self._mp_counters), self._config)

    def compact(self) -> int:
        """Absorbs dead processes' files into the archive of the multiprocess directory."""
        slab = self._slab
        if slab is None:
            return 0
        return mp.compact(slab.dir, self._now(), self._mp_counters)

    @property
    def multiprocess_dir(self) -> str | None:
        """The multiprocess directory, or ``None`` in single-process mode."""
        return None if self._slab is None else self._slab.dir

    @property
    def multiprocess_file(self) -> str | None:
        """This process's file in the multiprocess directory, or ``None``."""
        return None if self._slab is None else self._slab.path

    @property
    def multiprocess_counters(self) -> tuple[int, int, int, int, int, int, int]:
        """Multiprocess losses and repairs (see the native core for the order)."""
        return self._mp_counters.as_tuple()

    @property
    def series_overflows(self) -> int:
        """Samples recorded into an overflow series because a metric hit its series limit."""
        return self._counters.series_overflows

    @property
    def dropped_exemplars(self) -> int:
        """Exemplars not attached because the span's ids exceed the 128-code-point limit."""
        return self._counters.dropped_exemplars


_DEFAULT_CONFIG = (list(_DEFAULT_BUCKETS), list(_DEFAULT_QUANTILES), 600.0, 5, 0.01, 2048)


def _from_aggregate(aggregate: mp.Aggregate, config: tuple[Any, ...]) -> MetricSet:
    """A registry holding ``aggregate`` (mirror of ``Registry::from_aggregate``)."""
    buckets, quantiles, max_age, age_buckets, accuracy, max_bins = config
    now = aggregate.now
    target = MetricSet(
        buckets=buckets,
        quantiles=quantiles,
        max_series_per_metric=sys.maxsize,
        summary_max_age_seconds=max_age,
        summary_age_buckets=age_buckets,
        summary_relative_accuracy=accuracy,
        summary_max_bins=max_bins,
        clock=lambda: now,
    )
    for family in aggregate.sorted_families():
        d = family.d
        try:
            sketch = _SketchParams(d.relative_accuracy, d.max_bins)
        except InvalidArgumentError:
            continue
        layout = _Layout(
            d.kind,
            list(d.bounds),
            list(d.quantiles),
            sketch,
            d.max_age,
            max(d.age_buckets, 1),
            target._counters,
        )
        layout.mode = d.mode
        plan: list[tuple[str, str | None, int]] = [(n, None, i) for i, n in enumerate(d.labels)]
        built = _Family(d.name, d.name, d.help, tuple(d.labels), plan, layout, sys.maxsize)
        for values in sorted(family.series):
            agg = family.series[values]
            series = built._new_series(values, overflow=False, now=agg.created)
            if d.kind == "counter":
                series.value = agg.sum()
            elif d.kind == "gauge":
                series.value = agg.gauge_value(d.mode)
            elif d.kind == "histogram":
                series.buckets[: len(agg.buckets)] = agg.buckets
                series.sum = agg.sum()
            else:
                merged = _Sketch()
                for tag in sorted(agg.slots):
                    slot = agg.slots[tag]
                    part = _Sketch()
                    part.bins = dict(slot.bins)
                    part.zero, part.count, part.min, part.max = (
                        slot.zero,
                        slot.count,
                        slot.min,
                        slot.max,
                    )
                    merged.merge(sketch, part)
                series.window = _Frozen(agg.count, agg.sum(), merged)  # type: ignore[assignment]
            built.map[values] = series
            built.ordered.append(series)
        for exposed in [d.name] + [d.name + suffix for suffix in _OWNED_SUFFIXES[d.kind]]:
            target._owned.setdefault(exposed, built)
        target._families.append(built)
    return target


def compact_directory(directory: str | os.PathLike[str]) -> int:
    """Compacts the multiprocess ``directory``; returns how many files were absorbed."""
    return mp.compact(os.fspath(directory), mp.wall_clock(), mp.Counters())


def encode_directory(directory: str | os.PathLike[str], openmetrics: bool = False) -> str:
    """The aggregated exposition of every process's metrics in ``directory``."""
    path = os.fspath(directory)
    counters = mp.Counters()
    now = mp.wall_clock()
    mp.compact(path, now, counters)
    return _from_aggregate(mp.scan(path, now, counters), _DEFAULT_CONFIG).encode(openmetrics)


# ---- encoding (mirror of rust/metrics/encode.rs) --------------------------------------------


def _count_text(count: int) -> str:
    if count < 10_000_000_000_000_000:
        return f"{count}.0"
    return format_float(float(count))


def _head(name: str, labels: str, extra: str = "") -> str:
    if labels and extra:
        return f"{name}{{{labels},{extra}}} "
    if labels or extra:
        return f"{name}{{{labels}{extra}}} "
    return f"{name} "


def _exemplar_text(exemplar: tuple[LabelPairs, float, float]) -> str:
    labels = ",".join(f'{n}="{_escape_label_value(v)}"' for n, v in exemplar[0])
    return f" # {{{labels}}} {format_float(exemplar[1])} {format_float(exemplar[2])}"


def _encode_family(out: list[str], family: _Family, openmetrics: bool, now: float) -> None:
    kind = family.kind
    name = family.name
    header = f"{name}_total" if kind == "counter" and not openmetrics else name
    help_text = _escape_help(family.documentation, openmetrics)
    out.append(f"# HELP {header} {help_text}\n# TYPE {header} {kind}\n")
    layout = family.layout
    for series in family.all_series():
        labels = series.rendered
        if kind == "counter":
            out.append(f"{_head(name + '_total', labels)}{format_float(series.value)}\n")
            if openmetrics:
                out.append(f"{_head(name + '_created', labels)}{format_float(series.created)}\n")
        elif kind == "gauge":
            out.append(f"{_head(name, labels)}{format_float(series.value)}\n")
        elif kind == "histogram":
            cumulative, total_sum = series.histogram_snapshot()
            exemplars = series.exemplar_list() if openmetrics else []
            bucket = name + "_bucket"
            for i, (count, le) in enumerate(zip(cumulative, family.le_text, strict=True)):
                line = f"{_head(bucket, labels, f'le={chr(34)}{le}{chr(34)}')}{_count_text(count)}"
                exemplar = exemplars[i] if i < len(exemplars) else None
                if exemplar is not None:
                    line += _exemplar_text(exemplar)
                out.append(line + "\n")
            if not (openmetrics and layout.allows_negative()):
                out.append(f"{_head(name + '_count', labels)}{_count_text(cumulative[-1])}\n")
                out.append(f"{_head(name + '_sum', labels)}{format_float(total_sum)}\n")
            if openmetrics:
                out.append(f"{_head(name + '_created', labels)}{format_float(series.created)}\n")
        else:
            count, total_sum, values = series.summary_snapshot(now)
            for value, q in zip(values, family.quantile_text, strict=True):
                out.append(f"{_head(name, labels, f'quantile={chr(34)}{q}{chr(34)}')}")
                out.append(f"{format_float(value)}\n")
            out.append(f"{_head(name + '_count', labels)}{_count_text(count)}\n")
            out.append(f"{_head(name + '_sum', labels)}{format_float(total_sum)}\n")
            if openmetrics:
                out.append(f"{_head(name + '_created', labels)}{format_float(series.created)}\n")


# ---- pre-bound handles ----------------------------------------------------------------------


class _Handle:
    __slots__ = ("kind", "label_names", "name", "registry", "series")

    def __init__(
        self,
        registry: MetricSet,
        kind: str,
        name: str,
        label_names: tuple[str, ...],
        series: _Series,
    ) -> None:
        self.registry = registry
        self.kind = kind
        self.name = name
        self.label_names = label_names
        self.series = series

    def current(self) -> _Series:
        series = self.series
        if not series.detached:
            return series
        registry = self.registry
        family = registry._register(
            self.name, self.kind, None, list(self.label_names), None, None, explicit=False
        )
        self.series = family.series(series.values, registry._now)
        return self.series

    def labels(self) -> list[tuple[str, str]]:
        return list(zip(self.label_names, self.series.values, strict=True))


class CounterSeries:
    """A pre-bound counter series."""

    __slots__ = ("_h",)

    def __init__(self, handle: _Handle) -> None:
        self._h = handle

    def inc(self, value: float = 1.0) -> None:
        """Adds ``value`` (default 1, must be >= 0)."""
        self._h.current().counter_add(self._h.name, _value(value))

    @property
    def value(self) -> float:
        """The current value."""
        return self._h.current().value

    @property
    def labels(self) -> list[tuple[str, str]]:
        """The label names and values this handle is bound to."""
        return self._h.labels()


class GaugeSeries:
    """A pre-bound gauge series."""

    __slots__ = ("_h",)

    def __init__(self, handle: _Handle) -> None:
        self._h = handle

    def set(self, value: float) -> None:
        """Sets the gauge."""
        self._h.current().gauge_set(_value(value))

    def inc(self, value: float = 1.0) -> None:
        """Adds ``value`` (default 1)."""
        self._h.current().gauge_add(_value(value))

    def dec(self, value: float = 1.0) -> None:
        """Subtracts ``value`` (default 1)."""
        self._h.current().gauge_add(-_value(value))

    @property
    def value(self) -> float:
        """The current value."""
        return self._h.current().value

    @property
    def labels(self) -> list[tuple[str, str]]:
        """The label names and values this handle is bound to."""
        return self._h.labels()


class HistogramSeries:
    """A pre-bound histogram series (exemplars from the current sampled span)."""

    __slots__ = ("_h",)

    def __init__(self, handle: _Handle) -> None:
        self._h = handle

    def observe(self, value: float) -> None:
        """Observes ``value``."""
        value = _value(value)
        series = self._h.current()
        series.layout.check(value, self._h.name)
        series.histogram_observe(self._h.name, value, self._h.registry._exemplar())

    @property
    def labels(self) -> list[tuple[str, str]]:
        """The label names and values this handle is bound to."""
        return self._h.labels()


class SummarySeries:
    """A pre-bound summary series."""

    __slots__ = ("_h",)

    def __init__(self, handle: _Handle) -> None:
        self._h = handle

    def observe(self, value: float) -> None:
        """Observes ``value``."""
        value = _value(value)
        now = self._h.registry._now()
        self._h.current().summary_observe(self._h.name, value, now)

    @property
    def labels(self) -> list[tuple[str, str]]:
        """The label names and values this handle is bound to."""
        return self._h.labels()


# ---- StoreMetrics.record_operation (mirror of OperationRecorder in rust/py/metrics.rs) -------

_OPERATIONS = "store_operations_total"
_DURATION = "store_operation_duration_seconds"
_OPERATION_CACHE_LIMIT = 1024


class OperationRecorder:
    """Counts an operation and observes its latency in one call (see the native core)."""

    def __init__(
        self, registry: MetricSet, store: str, operations_help: str, duration_help: str
    ) -> None:
        self._registry = registry
        self._store = _str(store, "store")
        self._operations_help = _str(operations_help, "operations_help")
        self._duration_help = _str(duration_help, "duration_help")
        self._cache: tuple[dict[str, tuple[_Series, _Series]], ...] = ({}, {})

    def _declare(self, extra: list[str]) -> None:
        registry = self._registry
        registry._register(
            _OPERATIONS,
            "counter",
            self._operations_help,
            [*extra, "store", "operation", "status"],
            None,
            None,
            explicit=False,
        )
        registry._register(
            _DURATION,
            "histogram",
            self._duration_help,
            [*extra, "store", "operation"],
            None,
            None,
            explicit=False,
        )

    def _bind(self, operation: str, success: bool) -> tuple[_Series, _Series]:
        self._declare([])
        registry = self._registry
        status = "success" if success else "failure"
        counter = registry._register(
            _OPERATIONS, "counter", None, ["operation", "status", "store"], None, None, False
        )
        histogram = registry._register(
            _DURATION, "histogram", None, ["operation", "store"], None, None, False
        )
        pair = (
            counter.series((operation, status, self._store), registry._now),
            histogram.series((operation, self._store), registry._now),
        )
        cache = self._cache[1 if success else 0]
        if len(cache) < _OPERATION_CACHE_LIMIT or operation in cache:
            cache[operation] = pair
        return pair

    def _record_labelled(self, operation: str, seconds: float, success: bool, labels: Any) -> None:
        registry = self._registry
        extra = _given_names(labels, operation)
        self._declare(extra)
        merged = dict(_items(labels, operation))
        merged["store"] = self._store
        merged["operation"] = operation
        duration_labels = dict(merged)
        merged["status"] = "success" if success else "failure"
        counter_family = registry._family(_OPERATIONS, "counter", merged)
        counter_family.layout.check(1.0, _OPERATIONS)
        counter = counter_family.series_for(merged, registry._now, _OPERATIONS)
        histogram_family = registry._family(_DURATION, "histogram", duration_labels)
        histogram_family.layout.check(seconds, _DURATION)
        histogram = histogram_family.series_for(duration_labels, registry._now, _DURATION)
        counter.counter_add(_OPERATIONS, 1.0)
        histogram.histogram_observe(_DURATION, seconds, registry._exemplar())

    def record_operation(
        self,
        operation: str,
        duration_seconds: float | None = None,
        success: Any = None,
        labels: Mapping[str, Any] | None = None,
        *,
        duration_ms: float | None = None,
    ) -> None:
        """Counts one operation and observes its latency (``success`` by truth value)."""
        name = _str(operation, "operation")
        if not _is_unicode(name):
            raise _not_unicode(InvalidLabelError, "operation", "label value", _OPERATIONS)
        if name == OVERFLOW_VALUE:
            raise _reserved_value("operation", _OPERATIONS)
        ms = None if duration_ms is None else _f64(duration_ms)
        given = None if duration_seconds is None else _f64(duration_seconds)
        ok = True if success is None else bool(success)
        if ms is not None:
            seconds = ms / 1000.0
        elif given is not None:
            seconds = given
        else:
            raise _error(
                InvalidArgumentError,
                name,
                "record_operation needs duration_ms= or duration_seconds",
            )
        if not math.isfinite(seconds):
            raise _error(
                InvalidMetricValueError,
                name,
                f"the duration must be a finite number (got {format_float(seconds)} seconds)",
            )
        seconds = max(seconds, 0.0)
        if labels is not None:
            self._record_labelled(name, seconds, ok, labels)
            return
        pair = self._cache[1 if ok else 0].get(name)
        if pair is None or pair[0].detached or pair[1].detached:
            pair = self._bind(name, ok)
        pair[0].counter_add(_OPERATIONS, 1.0)
        pair[1].histogram_observe(_DURATION, seconds, self._registry._exemplar())
