# Hand-written stub of the native extension; `python -m mypy.stubtest` checks it against the
# built module, and tests/test_core_selection.py checks that `_pure` mirrors the same names.
# Each pillar keeps its own section and extends `__all__` there.
from os import PathLike
from typing import Any, Final, Literal, Self, final

__all__ = ["CORE_NAME"]

CORE_NAME: Final[Literal["native", "pure"]]

# --- metrics ---------------------------------------------------------------------------------

__all__ += ["format_float"]

def format_float(value: float) -> str: ...

# --- tracing ---------------------------------------------------------------------------------

__all__ += ["format_traceparent", "parse_traceparent"]

def parse_traceparent(header: str) -> tuple[int, str, str, int] | None: ...
def format_traceparent(trace_id: str, span_id: str, flags: int) -> str: ...

# --- audit -----------------------------------------------------------------------------------

__all__ += ["AsyncWriter", "FileSink", "Redactor", "new_event_id", "normalize_value"]

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
    ) -> Self: ...
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
        duration_ms: float | None,
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
        duration_ms: float | None,
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
    def pending(self) -> int: ...
    @property
    def last_error(self) -> str | None: ...

def new_event_id() -> str: ...
def normalize_value(value: object) -> Any: ...
