"""The span that is current in this thread or asyncio task, shared by all three pillars.

Tracing sets it (``start_span`` as a context manager, ``trace()``); audit reads it to stamp events
with ``trace_id``/``span_id``, and metrics read it to attach exemplars to histogram observations.
It lives here, outside the pillars, so that none of them imports another. A ``ContextVar`` (not a
thread-local) keeps concurrent asyncio tasks apart.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol

__all__ = ["SpanIdentity", "current_span"]


class SpanIdentity(Protocol):
    """What the other pillars need to know about the current span."""

    @property
    def trace_id(self) -> str: ...

    @property
    def span_id(self) -> str: ...

    @property
    def is_sampled(self) -> bool: ...


#: The current span, or ``None`` outside any span. Only the tracing pillar sets it.
current_span: ContextVar[SpanIdentity | None] = ContextVar(
    "truthound_observability_current_span", default=None
)
