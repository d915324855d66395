# Hand-written stub of the native extension; `python -m mypy.stubtest` checks it against the
# built module, and tests/test_core_selection.py checks that `_pure` mirrors the same names.
# Each pillar keeps its own section and extends `__all__` there.
from typing import Final, Literal

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
