# Hand-written stub of the native extension; `python -m mypy.stubtest` checks it against the
# built module, and tests/test_core_selection.py checks that `_pure` mirrors the same names.
# Each pillar keeps its own section and extends `__all__` there.
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from typing import Any, Final, Literal, Self, TypeAlias, final

__all__ = ["CORE_NAME"]

CORE_NAME: Final[Literal["native", "pure"]]

# --- metrics ---------------------------------------------------------------------------------

__all__ += [
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

def format_float(value: float) -> str: ...
def compact_directory(directory: str | PathLike[str]) -> int: ...
def encode_directory(directory: str | PathLike[str], openmetrics: bool = False) -> str: ...

_Labels: TypeAlias = Mapping[str, object] | None
_Pairs: TypeAlias = list[tuple[float, float]]
_Reading: TypeAlias = tuple[str, float, float, _Pairs]
_LabelPairs: TypeAlias = list[tuple[str, str]]
_Exemplar: TypeAlias = tuple[float, _LabelPairs, float, float]
_SeriesSnapshot: TypeAlias = tuple[_LabelPairs, float, float, _Pairs, float, list[_Exemplar]]
_FamilySnapshot: TypeAlias = tuple[str, str, str, list[_SeriesSnapshot]]

@final
class MetricSet:
    def __new__(
        cls,
        prefix: str = "",
        default_labels: Mapping[str, object] | None = None,
        buckets: Sequence[float] | None = None,
        quantiles: Sequence[float] | None = None,
        max_series_per_metric: int = 10000,
        summary_max_age_seconds: float = 600.0,
        summary_age_buckets: int = 5,
        summary_relative_accuracy: float = 0.01,
        summary_max_bins: int = 2048,
        span_var: object | None = None,
        clock: Callable[[], float] | None = None,
        multiprocess_dir: str | PathLike[str] | None = None,
    ) -> MetricSet: ...
    def increment(self, name: str, value: float = 1.0, labels: _Labels = None) -> None: ...
    def gauge(self, name: str, value: float, labels: _Labels = None) -> None: ...
    def gauge_add(self, name: str, value: float, labels: _Labels = None) -> None: ...
    def histogram(self, name: str, value: float, labels: _Labels = None) -> None: ...
    def summary(self, name: str, value: float, labels: _Labels = None) -> None: ...
    def register(
        self,
        kind: str,
        name: str,
        documentation: str | None = None,
        label_names: Sequence[str] | None = None,
        buckets: Sequence[float] | None = None,
        quantiles: Sequence[float] | None = None,
        multiprocess_mode: str | None = None,
    ) -> None: ...
    def counter_series(self, name: str, labels: _Labels = None) -> CounterSeries: ...
    def gauge_series(self, name: str, labels: _Labels = None) -> GaugeSeries: ...
    def histogram_series(self, name: str, labels: _Labels = None) -> HistogramSeries: ...
    def summary_series(self, name: str, labels: _Labels = None) -> SummarySeries: ...
    def get(self, name: str, labels: _Labels = None) -> _Reading | None: ...
    def collect(self) -> list[_FamilySnapshot]: ...
    def encode(self, openmetrics: bool = False) -> str: ...
    def reset(self) -> None: ...
    def compact(self) -> int: ...
    @property
    def multiprocess_dir(self) -> str | None: ...
    @property
    def multiprocess_file(self) -> str | None: ...
    @property
    def multiprocess_counters(self) -> tuple[int, int, int, int, int, int, int]: ...
    @property
    def series_overflows(self) -> int: ...
    @property
    def dropped_exemplars(self) -> int: ...

@final
class OperationRecorder:
    def __new__(
        cls, registry: MetricSet, store: str, operations_help: str, duration_help: str
    ) -> OperationRecorder: ...
    def record_operation(
        self,
        operation: str,
        duration_seconds: float | None = None,
        success: object = None,
        labels: _Labels = None,
        *,
        duration_ms: float | None = None,
    ) -> None: ...

@final
class CounterSeries:
    def inc(self, value: float = 1.0) -> None: ...
    @property
    def value(self) -> float: ...
    @property
    def labels(self) -> list[tuple[str, str]]: ...

@final
class GaugeSeries:
    def set(self, value: float) -> None: ...
    def inc(self, value: float = 1.0) -> None: ...
    def dec(self, value: float = 1.0) -> None: ...
    @property
    def value(self) -> float: ...
    @property
    def labels(self) -> list[tuple[str, str]]: ...

@final
class HistogramSeries:
    def observe(self, value: float) -> None: ...
    @property
    def labels(self) -> list[tuple[str, str]]: ...

@final
class SummarySeries:
    def observe(self, value: float) -> None: ...
    @property
    def labels(self) -> list[tuple[str, str]]: ...

# --- tracing ---------------------------------------------------------------------------------

__all__ += [
    "encode_jaeger_batch",
    "format_traceparent",
    "format_tracestate",
    "generate_span_id",
    "generate_trace_id",
    "is_valid_span_id",
    "is_valid_trace_id",
    "parse_traceparent",
    "parse_tracestate",
    "reseed_ids",
]

def parse_traceparent(header: str) -> tuple[int, str, str, int] | None: ...
def format_traceparent(trace_id: str, span_id: str, flags: int) -> str: ...
def is_valid_trace_id(trace_id: str) -> bool: ...
def is_valid_span_id(span_id: str) -> bool: ...
def generate_trace_id() -> str: ...
def generate_span_id() -> str: ...
def reseed_ids() -> None: ...
def parse_tracestate(header: str) -> list[tuple[str, str]] | None: ...
def format_tracestate(members: Sequence[tuple[str, str]]) -> str: ...
def encode_jaeger_batch(
    service_name: str,
    process_tags: Sequence[tuple[str, object]],
    spans: Sequence[
        tuple[
            int,
            int,
            int,
            str,
            int,
            int,
            int,
            Sequence[tuple[int, int, int]],
            Sequence[tuple[str, object]],
            Sequence[tuple[int, Sequence[tuple[str, object]]]],
        ]
    ],
) -> bytes: ...

# --- audit -----------------------------------------------------------------------------------

__all__ += [
    "AsyncWriter",
    "FileSink",
    "Redactor",
    "check_duration",
    "new_event_id",
    "normalize_value",
]

@final
class Redactor:
    def __new__(
        cls,
        patterns: list[str],
        replacement: str,
        fields: list[str],
        exact_fields: bool = False,
    ) -> Self: ...
    def redact_text(self, text: str) -> str: ...
    def is_sensitive(self, key: str) -> bool: ...
    def redact(self, data: Any) -> Any: ...
    def redact_attributes(self, source: Any, target: Any) -> None: ...
    @property
    def replacement(self) -> str: ...

@final
class FileSink:
    def __new__(
        cls,
        directory: str | PathLike[str],
        stem: str,
        suffix: str,
        *,
        daily: bool = False,
        max_bytes: int | None = None,
        max_files: int | None = None,
        compress: bool = False,
        durability: str = "periodic",
        sync_every_events: int = 0,
        sync_interval_ms: int = 1000,
        text_format: bool = False,
        redactor: Redactor | None = None,
        integrity_key: bytes | None = None,
        key_source: str = "integrity_key",
        checkpoint_interval: float = 60.0,
        writer_id: str | None = None,
        max_age_seconds: float | None = None,
        frozen_clock: int | None = None,
    ) -> Self: ...
    def checkpoint_if_due(self) -> None: ...
    def freeze_clock(self, micros: int | None = None) -> None: ...
    @property
    def key_id(self) -> str | None: ...
    @property
    def failing(self) -> bool: ...
    @property
    def checkpoints(self) -> int: ...
    @property
    def pruned_segments(self) -> int: ...
    def encode_event(self, event: Any, redactor: Redactor | None = None) -> bytes: ...
    def log_event(self, event: Any, redactor: Redactor | None = None) -> None: ...
    def log_fields(
        self,
        redactor: Redactor | None,
        event_type: str,
        status: str,
        store_type: str,
        store_id: str,
        operation: str,
        item_id: Any,
        user_id: Any,
        duration_ms: object,
        metadata: Any,
        error_message: Any,
        extra: dict[str, Any] | None,
    ) -> None: ...
    def write_lines(self, data: bytes, events: int) -> None: ...
    def flush(self) -> None: ...
    def sync(self) -> None: ...
    def close(self) -> None: ...
    def segments(self) -> list[tuple[str, str, str, bool]]: ...
    def set_clock_offset(self, seconds: float) -> None: ...
    @property
    def active_path(self) -> str: ...
    @property
    def text_format(self) -> bool: ...
    @property
    def closed(self) -> bool: ...
    @property
    def written_events(self) -> int: ...
    @property
    def failed_events(self) -> int: ...
    @property
    def rotations(self) -> int: ...
    @property
    def repaired_lines(self) -> int: ...
    @property
    def compressed_segments(self) -> int: ...
    @property
    def compression_failures(self) -> int: ...
    @property
    def syncs(self) -> int: ...
    @property
    def last_error(self) -> str | None: ...

@final
class AsyncWriter:
    def __new__(
        cls,
        target: Any,
        capacity: int,
        flush_interval: float,
        overflow: str = "block",
        block_timeout: float = 5.0,
    ) -> Self: ...
    @property
    def native_target(self) -> bool: ...
    def log_event(self, event: Any, redactor: Redactor | None = None) -> bool: ...
    def log_fields(
        self,
        redactor: Redactor | None,
        event_type: str,
        status: str,
        store_type: str,
        store_id: str,
        operation: str,
        item_id: Any,
        user_id: Any,
        duration_ms: object,
        metadata: Any,
        error_message: Any,
        extra: dict[str, Any] | None,
    ) -> bool: ...
    def flush(self, timeout: float) -> bool: ...
    def close(self, timeout: float) -> bool: ...
    @property
    def closed(self) -> bool: ...
    @property
    def capacity(self) -> int: ...
    @property
    def accepted(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def persisted(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def discarded(self) -> int: ...
    def abandon(self, timeout: float) -> bool: ...
    @property
    def pending(self) -> int: ...
    @property
    def last_error(self) -> str | None: ...

def check_duration(value: object) -> float: ...
def new_event_id() -> str: ...
def normalize_value(value: object) -> Any: ...
