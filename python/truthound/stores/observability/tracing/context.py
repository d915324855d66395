"""Span identity and W3C Trace Context propagation: ``SpanKind``, ``SpanStatus``, ``TraceState``
and ``SpanContext``.

Valid W3C ids are lowercase hex: a 32-digit trace id and a 16-digit span id, neither all zeros,
for example ``4bf92f3577b34da6a3ce929d0e0e4736`` and ``00f067aa0ba902b7``. (The specification's
``"abc123def456"`` and ``"span789"`` are placeholders, not valid ids.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from enum import StrEnum
from typing import Any, Final

from .. import _core
from ..errors import InvalidArgumentError, InvalidArgumentTypeError

__all__ = [
    "INVALID_SPAN_ID",
    "INVALID_TRACE_ID",
    "SpanContext",
    "SpanKind",
    "SpanStatus",
    "TraceState",
]

#: The all-zero ids W3C Trace Context reserves for "no id" (never generated, never accepted).
INVALID_TRACE_ID: Final = "0" * 32
INVALID_SPAN_ID: Final = "0" * 16


def _not_a_member(enum_type: type[StrEnum], value: object) -> InvalidArgumentError:
    choices = ", ".join(repr(member.value) for member in enum_type)
    return InvalidArgumentError(
        f"{enum_type.__name__}({value!r}): not a valid value; expected one of {choices}"
    )


class SpanKind(StrEnum):
    """The role of a span in a request (OpenTelemetry's span kinds); members equal their values.
    An unknown value raises ``InvalidArgumentError`` naming it and the choices."""

    INTERNAL = "internal"
    SERVER = "server"
    CLIENT = "client"
    PRODUCER = "producer"
    CONSUMER = "consumer"

    @classmethod
    def _missing_(cls, value: object) -> SpanKind:
        raise _not_a_member(cls, value)


class SpanStatus(StrEnum):
    """The outcome of a span; ``OK`` is final, ``UNSET`` means "no decision". An unknown value
    raises ``InvalidArgumentError`` naming it and the choices."""

    UNSET = "unset"
    OK = "ok"
    ERROR = "error"

    @classmethod
    def _missing_(cls, value: object) -> SpanStatus:
        raise _not_a_member(cls, value)


def _trace_flags(value: object) -> int:
    """``value`` checked as W3C trace flags: an int from 0 to 255."""
    if not isinstance(value, int):
        raise InvalidArgumentTypeError(
            f"trace_flags={value!r}: must be an int from 0 to 255 (1 = sampled)"
        )
    if not 0 <= value <= 0xFF:
        raise InvalidArgumentError(f"trace_flags={value!r}: must fit in one byte (0-255)")
    return value


class TraceState(Mapping[str, str]):
    """An immutable W3C ``tracestate``: vendor ``key=value`` members, most recent first.

    Built from a mapping, ``(key, value)`` pairs or a header string; every key and value is
    checked against the W3C grammar (``InvalidArgumentError`` names the offender), at most 32
    members. It compares equal to a mapping with the same members and to its header string, so
    both the specification's dict and the existing API's string work. ``set``/``delete`` return
    new states (``set`` moves the key to the front, as the recommendation asks of a vendor that
    updates its entry).
    """

    __slots__ = ("_header", "_members")

    _members: dict[str, str]
    _header: str | None

    def __init__(self, members: Mapping[str, str] | Iterable[tuple[str, str]] | str = ()) -> None:
        if isinstance(members, str):
            parsed = _core.core.parse_tracestate(members)
            if parsed is None:
                raise InvalidArgumentError(f"{members!r}: not a valid W3C tracestate header")
            pairs = parsed
        else:
            pairs = list(members.items() if isinstance(members, Mapping) else members)
            if pairs:
                _core.core.format_tracestate(pairs)  # validates; raises naming the offender
        self._members = dict(pairs)
        self._header = None

    @classmethod
    def from_header(cls, header: str | Sequence[str] | None) -> TraceState:
        """Parses incoming ``tracestate`` header(s), combining several with ``,``.

        An invalid header is discarded as a whole (W3C: the state is then not propagated), so
        this returns an empty state rather than raising; so is anything that is not a string
        or a sequence of strings (bytes, a number, a list holding a non-string...).
        """
        if header is None:
            return EMPTY_TRACE_STATE
        if isinstance(header, str):
            text = header
        elif isinstance(header, Sequence) and all(isinstance(part, str) for part in header):
            text = ",".join(header)
        else:
            return EMPTY_TRACE_STATE
        parsed = _core.core.parse_tracestate(text)
        if not parsed:
            return EMPTY_TRACE_STATE
        state = cls.__new__(cls)
        state._members = dict(parsed)
        state._header = None
        return state

    def to_header(self) -> str:
        """The ``tracestate`` header value (empty string when there are no members)."""
        if self._header is None:
            self._header = _core.core.format_tracestate(list(self._members.items()))
        return self._header

    def set(self, key: str, value: str) -> TraceState:
        """A copy with ``key`` set to ``value`` and moved to the front."""
        members = [(key, value), *((k, v) for k, v in self._members.items() if k != key)]
        return TraceState(members)

    def delete(self, key: str) -> TraceState:
        """A copy without ``key``."""
        return TraceState([(k, v) for k, v in self._members.items() if k != key])

    def __getitem__(self, key: str) -> str:
        return self._members[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            return self.to_header() == other
        if isinstance(other, Mapping):
            return list(self._members.items()) == list(other.items())
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self._members.items()))

    def __str__(self) -> str:
        return self.to_header()

    def __repr__(self) -> str:
        return f"TraceState({self._members!r})"


EMPTY_TRACE_STATE: Final = TraceState()


def _trace_state(value: object) -> TraceState:
    if value is None or value == "":
        return EMPTY_TRACE_STATE
    if isinstance(value, TraceState):
        return value
    return TraceState(value)  # type: ignore[arg-type]


class SpanContext:
    """The identity of a span as carried across process boundaries (W3C Trace Context).

    ``SpanContext(trace_id, span_id, parent_span_id=None, trace_flags=1, trace_state={},
    is_remote=False)``, for example::

        SpanContext(
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            span_id="00f067aa0ba902b7",
            parent_span_id="53995c3f42cd8ad8",
            trace_flags=1,  # sampled
            trace_state={"vendor": "value"},
        )

    Ids are stored as given, so a context can carry an id from a system that does not follow
    W3C (``is_valid`` tells); such a context is never written to a header: ``to_traceparent()``
    raises ``InvalidArgumentError`` naming the invalid id. ``trace_state`` accepts a mapping,
    pairs or a header string (the existing API's form) and is exposed as a ``TraceState``.
    The existing API's positional order ``SpanContext(trace_id, span_id, trace_flags,
    trace_state, is_remote)`` is recognised by the integer in third position.
    """

    __slots__ = ("is_remote", "parent_span_id", "span_id", "trace_flags", "trace_id", "trace_state")

    trace_id: str
    span_id: str
    parent_span_id: str | None
    trace_flags: int
    trace_state: TraceState
    is_remote: bool

    def __init__(  # noqa: PLR0917 (the existing API passes these positionally)
        self,
        trace_id: str,
        span_id: str,
        parent_span_id: str | None = None,
        trace_flags: int = 1,
        trace_state: Mapping[str, str] | Iterable[tuple[str, str]] | str | None = None,
        is_remote: bool = False,
    ) -> None:
        if parent_span_id is not None and not isinstance(parent_span_id, str):
            # The existing API's positional order (trace_id, span_id, trace_flags, trace_state,
            # is_remote): every value sits one parameter to the left of where it belongs here.
            shifted_flags, shifted_state, shifted_remote = parent_span_id, trace_flags, trace_state
            parent_span_id = None
            trace_flags = shifted_flags
            if not isinstance(shifted_state, int):
                trace_state = shifted_state
            if isinstance(shifted_remote, bool):
                is_remote = shifted_remote
                trace_state = None if isinstance(shifted_state, int) else trace_state
        self.trace_flags = _trace_flags(trace_flags)
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_span_id = parent_span_id
        self.trace_state = (
            trace_state if type(trace_state) is TraceState else _trace_state(trace_state)
        )
        self.is_remote = is_remote

    @classmethod
    def _new(  # noqa: PLR0917 (internal, positional for speed)
        cls,
        trace_id: str,
        span_id: str,
        parent_span_id: str | None,
        trace_flags: int,
        trace_state: TraceState,
        is_remote: bool,
    ) -> SpanContext:
        """Trusted constructor for values that are already checked (the span hot path)."""
        context = _new_context(cls)
        context.trace_id = trace_id
        context.span_id = span_id
        context.parent_span_id = parent_span_id
        context.trace_flags = trace_flags
        context.trace_state = trace_state
        context.is_remote = is_remote
        return context

    @property
    def is_sampled(self) -> bool:
        """Whether the sampled flag (bit 0 of ``trace_flags``) is set."""
        return bool(self.trace_flags & 1)

    @property
    def is_valid(self) -> bool:
        """Whether both ids are valid W3C ids (so the context can be propagated)."""
        core = _core.core
        return core.is_valid_trace_id(self.trace_id) and core.is_valid_span_id(self.span_id)

    @classmethod
    def generate(cls, trace_flags: int = 1) -> SpanContext:
        """A new root context: fresh random trace and span ids."""
        core = _core.core
        return cls._new(
            core.generate_trace_id(),
            core.generate_span_id(),
            None,
            _trace_flags(trace_flags),
            EMPTY_TRACE_STATE,
            False,
        )

    @classmethod
    def from_parent(cls, parent: SpanContext) -> SpanContext:
        """A child context: same trace, flags and state, a fresh span id, ``parent`` as parent."""
        return cls._new(
            parent.trace_id,
            _core.core.generate_span_id(),
            parent.span_id,
            parent.trace_flags,
            parent.trace_state,
            False,
        )

    @classmethod
    def from_traceparent(
        cls, header: str | None, tracestate: str | Sequence[str] | None = None
    ) -> SpanContext | None:
        """Parses a ``traceparent`` header (and optionally ``tracestate`` header(s)).

        Returns a remote context (``is_remote=True``), or ``None`` when the header is missing or
        invalid (a non-string included), which by W3C Trace Context means "start a new trace".
        An invalid ``tracestate`` (a non-string, or a sequence holding one, included) is
        discarded (an empty state) and the traceparent kept, never an error.
        """
        if header.__class__ is not str and not isinstance(header, str):
            return None
        parsed = _core.core.parse_traceparent(header)
        if parsed is None:
            return None
        context = _new_context(cls)
        context.trace_id = parsed[1]
        context.span_id = parsed[2]
        context.parent_span_id = None
        context.trace_flags = parsed[3]
        context.trace_state = (
            EMPTY_TRACE_STATE if tracestate is None else TraceState.from_header(tracestate)
        )
        context.is_remote = True
        return context

    def to_traceparent(self) -> str:
        """This context as a version-00 ``traceparent`` header value.

        Raises ``InvalidArgumentError`` naming the id when the trace id or span id is not a
        valid W3C id: an invalid header would make the receiver start a new trace silently.
        """
        return _core.core.format_traceparent(self.trace_id, self.span_id, self.trace_flags)

    def to_tracestate(self) -> str:
        """The ``tracestate`` header value ("" when there is no state)."""
        return self.trace_state.to_header()

    def to_headers(self) -> dict[str, str]:
        """``traceparent`` and, when there is state, ``tracestate`` headers for an outgoing call."""
        headers = {"traceparent": self.to_traceparent()}
        if self.trace_state:
            headers["tracestate"] = self.trace_state.to_header()
        return headers

    def to_dict(self) -> dict[str, Any]:
        """Every field; ``trace_state`` as its header string."""
        return {
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "parent_span_id": self.parent_span_id,
            "trace_flags": self.trace_flags,
            "trace_state": self.trace_state.to_header(),
            "is_remote": self.is_remote,
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpanContext):
            return NotImplemented
        return (
            self.trace_id == other.trace_id
            and self.span_id == other.span_id
            and self.parent_span_id == other.parent_span_id
            and self.trace_flags == other.trace_flags
            and self.trace_state == other.trace_state
            and self.is_remote == other.is_remote
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"SpanContext(trace_id={self.trace_id!r}, span_id={self.span_id!r}, "
            f"parent_span_id={self.parent_span_id!r}, trace_flags={self.trace_flags}, "
            f"trace_state={dict(self.trace_state)!r}, is_remote={self.is_remote})"
        )


_new_context = object.__new__
