# Hand-written stub of the native extension; `python -m mypy.stubtest` checks it against the
# built module, and tests/test_core_selection.py checks that `_pure` mirrors the same names.
# Each pillar keeps its own section and extends `__all__` there.
from collections.abc import Sequence
from typing import Final, Literal

__all__ = ["CORE_NAME"]

CORE_NAME: Final[Literal["native", "pure"]]

# --- metrics ---------------------------------------------------------------------------------

__all__ += ["format_float"]

def format_float(value: float) -> str: ...

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
