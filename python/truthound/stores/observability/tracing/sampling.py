"""Samplers: which new spans are recorded and exported.

A sampler decides when a span starts, from its parent (if any) and its trace id; the decision is
the ``sampled`` bit of the span's ``trace_flags``, propagated downstream in ``traceparent``. An
unsampled span is still a real span (it has ids and propagates), but its tracer neither records
nor exports it. The ratio decision depends on the trace id only (the low 64 bits against
``ratio * 2**64``, as OpenTelemetry's ``TraceIdRatioBased``), so every service that samples at
the same ratio keeps the same traces.
"""

from __future__ import annotations

import hashlib
import math
from typing import Final

from ..config import TracingSampler
from ..errors import InvalidArgumentError, InvalidArgumentTypeError
from .context import SpanContext

__all__ = [
    "AlwaysOffSampler",
    "AlwaysOnSampler",
    "ParentBasedSampler",
    "Sampler",
    "TraceIdRatioSampler",
    "make_sampler",
]


class Sampler:
    """Base class: ``should_sample(parent, trace_id)`` returns whether the new span is sampled."""

    __slots__ = ()

    def should_sample(self, parent: SpanContext | None, trace_id: str) -> bool:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class AlwaysOnSampler(Sampler):
    """Samples every span."""

    __slots__ = ()

    def should_sample(self, parent: SpanContext | None, trace_id: str) -> bool:
        return True


class AlwaysOffSampler(Sampler):
    """Samples no span."""

    __slots__ = ()

    def should_sample(self, parent: SpanContext | None, trace_id: str) -> bool:
        return False


_LOW_64: Final = 2**64


def _ratio(value: object) -> float:
    """``value`` checked as a sampling ratio: a real number from 0 to 1."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgumentTypeError(f"sample_ratio={value!r}: must be a number from 0 to 1")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise InvalidArgumentError(f"sample_ratio={value!r}: must be between 0 and 1")
    return float(value)


def _low_bits(trace_id: str) -> int:
    try:
        return int(trace_id[-16:], 16)
    except ValueError:
        # A caller-supplied, non-hex trace id (existing API): hash it, deterministically.
        return int.from_bytes(hashlib.blake2b(trace_id.encode(), digest_size=8).digest(), "big")


class TraceIdRatioSampler(Sampler):
    """Samples a fraction ``ratio`` (0 to 1) of traces, decided by the trace id."""

    __slots__ = ("_bound", "ratio")

    def __init__(self, ratio: float) -> None:
        ratio = _ratio(ratio)
        self.ratio = ratio
        self._bound = round(ratio * _LOW_64)

    def should_sample(self, parent: SpanContext | None, trace_id: str) -> bool:
        return _low_bits(trace_id) < self._bound

    def __repr__(self) -> str:
        return f"TraceIdRatioSampler({self.ratio})"


class ParentBasedSampler(Sampler):
    """Follows the parent's sampled flag; a root span is decided by ``root``."""

    __slots__ = ("root",)

    def __init__(self, root: Sampler) -> None:
        self.root = root

    def should_sample(self, parent: SpanContext | None, trace_id: str) -> bool:
        if parent is None:
            return self.root.should_sample(None, trace_id)
        return bool(parent.trace_flags & 1)

    def __repr__(self) -> str:
        return f"ParentBasedSampler({self.root!r})"


def make_sampler(sampler: Sampler | TracingSampler | str, ratio: float = 1.0) -> Sampler:
    """A sampler from a ``TracingSampler`` (or its value) and a ratio (0 to 1, checked even
    when the sampler does not use it), or a sampler as is."""
    ratio = _ratio(ratio)
    if isinstance(sampler, Sampler):
        return sampler
    try:
        kind = TracingSampler(sampler.lower() if isinstance(sampler, str) else sampler)
    except ValueError:
        choices = ", ".join(repr(member.value) for member in TracingSampler)
        raise InvalidArgumentError(f"sampler={sampler!r} is not one of {choices}") from None
    if kind is TracingSampler.ALWAYS_ON:
        return AlwaysOnSampler()
    if kind is TracingSampler.ALWAYS_OFF:
        return AlwaysOffSampler()
    root: Sampler = AlwaysOnSampler() if ratio >= 1.0 else TraceIdRatioSampler(ratio)
    if kind is TracingSampler.RATIO:
        return root
    return ParentBasedSampler(root)
