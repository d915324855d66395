"""Strict W3C Trace Context: ``traceparent`` and ``tracestate`` vectors, on both cores."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from truthound.stores.observability import _core
from truthound.stores.observability.errors import InvalidArgumentError
from truthound.stores.observability.tracing import InMemoryTracer, SpanContext, TraceState

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"

# (header, expected (version, trace_id, span_id, flags) or None for "invalid: new trace")
TRACEPARENT_VECTORS = [
    # valid
    (VALID, (0, TRACE, SPAN, 1)),
    (f"00-{TRACE}-{SPAN}-00", (0, TRACE, SPAN, 0)),
    (f"00-{TRACE}-{SPAN}-ff", (0, TRACE, SPAN, 255)),
    (f"00-{TRACE}-{SPAN}-02", (0, TRACE, SPAN, 2)),
    (f"00-{'0' * 31}1-{SPAN}-01", (0, "0" * 31 + "1", SPAN, 1)),
    (f"00-{TRACE}-{'0' * 15}1-01", (0, TRACE, "0" * 15 + "1", 1)),
    (f"00-{'f' * 32}-{'f' * 16}-01", (0, "f" * 32, "f" * 16, 1)),
    (f" {VALID}", (0, TRACE, SPAN, 1)),
    (f"{VALID}\t", (0, TRACE, SPAN, 1)),
    (f" \t{VALID} \t", (0, TRACE, SPAN, 1)),
    # higher versions: parsed forward-compatibly
    (f"01-{TRACE}-{SPAN}-01", (1, TRACE, SPAN, 1)),
    (f"cc-{TRACE}-{SPAN}-09", (0xCC, TRACE, SPAN, 9)),
    (f"cc-{TRACE}-{SPAN}-09-future", (0xCC, TRACE, SPAN, 9)),
    (f"fe-{TRACE}-{SPAN}-01-a-b-c", (0xFE, TRACE, SPAN, 1)),
    (f"cc-{TRACE}-{SPAN}-01-", (0xCC, TRACE, SPAN, 1)),
    # version
    (f"ff-{TRACE}-{SPAN}-01", None),
    (f"FF-{TRACE}-{SPAN}-01", None),
    (f"0A-{TRACE}-{SPAN}-01", None),
    (f"0g-{TRACE}-{SPAN}-01", None),
    (f"0-{TRACE}-{SPAN}-01", None),
    (f"000-{TRACE}-{SPAN}-01", None),
    # version 00 must be exactly 55 characters
    (f"00-{TRACE}-{SPAN}-01-", None),
    (f"00-{TRACE}-{SPAN}-01-extra", None),
    (f"00-{TRACE}-{SPAN}-010", None),
    (f"cc-{TRACE}-{SPAN}-01x", None),
    # trace id
    (f"00-{TRACE.upper()}-{SPAN}-01", None),
    (f"00-{TRACE[:-1]}A-{SPAN}-01", None),
    (f"00-{'0' * 32}-{SPAN}-01", None),
    (f"00-{TRACE[:-1]}-{SPAN}-01", None),
    (f"00-{TRACE}0-{SPAN}-01", None),
    (f"00-{TRACE[:-1]}g-{SPAN}-01", None),
    (f"00-{TRACE[:-1]} -{SPAN}-01", None),
    # span id
    (f"00-{TRACE}-{SPAN.upper()}-01", None),
    (f"00-{TRACE}-{'0' * 16}-01", None),
    (f"00-{TRACE}-{SPAN[:-1]}-01", None),
    (f"00-{TRACE}-{SPAN}0-01", None),
    (f"00-{TRACE}-{SPAN[:-1]}z-01", None),
    # flags
    (f"00-{TRACE}-{SPAN}-1", None),
    (f"00-{TRACE}-{SPAN}-0G", None),
    (f"00-{TRACE}-{SPAN}-0x", None),
    (f"00-{TRACE}-{SPAN}-AB", None),
    # separators and shape
    (f"00_{TRACE}-{SPAN}-01", None),
    (f"00-{TRACE}_{SPAN}-01", None),
    (f"00-{TRACE}-{SPAN}_01", None),
    (f"00 {TRACE} {SPAN} 01", None),
    (f"00--{TRACE}-{SPAN}-01", None),
    (f"-{TRACE}-{SPAN}-01", None),
    (f"00-{TRACE}-{SPAN}", None),
    (f"00-{TRACE}", None),
    ("00", None),
    ("", None),
    ("   ", None),
    (f"\n{VALID}", None),
    (f"{VALID}\n", None),
    (f"00-{TRACE}-{SPAN}-01\x00", None),
    (f"00-{TRACE[:-1]}\u00e9-{SPAN}-01", None),
    (f"cc-{TRACE}-{SPAN}-01\u00e9", None),
    # the specification's placeholder ids are not valid ids
    ("00-abc123def456-span789-01", None),
]


def test_the_table_has_at_least_fifty_vectors() -> None:
    assert len(TRACEPARENT_VECTORS) >= 50
    assert len({header for header, _ in TRACEPARENT_VECTORS}) == len(TRACEPARENT_VECTORS)


@pytest.mark.parametrize(("header", "expected"), TRACEPARENT_VECTORS)
def test_parse_traceparent(header: str, expected: tuple[int, str, str, int] | None) -> None:
    assert _core.core.parse_traceparent(header) == expected


@pytest.mark.parametrize(("header", "expected"), TRACEPARENT_VECTORS)
def test_from_traceparent_returns_a_remote_context_or_none(
    header: str, expected: tuple[int, str, str, int] | None
) -> None:
    context = SpanContext.from_traceparent(header)
    if expected is None:
        assert context is None
    else:
        assert context is not None
        assert (context.trace_id, context.span_id, context.trace_flags) == expected[1:]
        assert context.is_remote
        assert context.parent_span_id is None


def test_from_traceparent_of_none_or_a_non_string_is_none() -> None:
    assert SpanContext.from_traceparent(None) is None
    assert SpanContext.from_traceparent(b"00-x") is None  # type: ignore[arg-type]
    assert SpanContext.from_traceparent(42) is None  # type: ignore[arg-type]


def test_round_trip_always_writes_version_00() -> None:
    context = SpanContext.from_traceparent(f"cc-{TRACE}-{SPAN}-09-future")
    assert context is not None
    assert context.to_traceparent() == f"00-{TRACE}-{SPAN}-09"
    assert SpanContext.from_traceparent(VALID).to_traceparent() == VALID  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("trace_id", "span_id", "offender"),
    [
        ("abc123def456", "span789", "abc123def456"),  # the specification's placeholders
        (TRACE, "span789", "span789"),
        (TRACE.upper(), SPAN, TRACE.upper()),
        ("0" * 32, SPAN, "0" * 32),
        (TRACE, "0" * 16, "0" * 16),
    ],
)
def test_to_traceparent_refuses_invalid_ids_and_names_them(
    trace_id: str, span_id: str, offender: str
) -> None:
    context = SpanContext(trace_id, span_id)
    assert not context.is_valid
    with pytest.raises(InvalidArgumentError, match=offender):
        context.to_traceparent()


def test_flags_must_fit_in_one_byte() -> None:
    with pytest.raises(InvalidArgumentError, match="trace_flags"):
        SpanContext(TRACE, SPAN, trace_flags=256)
    with pytest.raises(OverflowError):
        _core.core.format_traceparent(TRACE, SPAN, 256)


# Any text, lone surrogates included (``st.text()`` leaves them out by default): they cannot be
# UTF-8, which is what the native core reads.
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=()), max_size=80)
SURROGATE_SAMPLES = st.sampled_from(
    [
        "\ud800" * 55,
        "\udcff",
        f"{VALID}\ud800",
        f"00-{TRACE[:-1]}\udfff-{SPAN}-01",
        "\ud800=1",
        "a=\ud800",
        "rojo=1,\udc80congo=2",
    ]
)
NON_STRINGS = st.one_of(
    st.integers(),
    st.floats(),
    st.binary(max_size=60),
    st.just(b"a=1"),
    st.just(VALID.encode()),
    st.builds(object),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    st.lists(
        st.one_of(st.text(max_size=20), SURROGATE_SAMPLES, st.integers(), st.none(), st.binary()),
        max_size=4,
    ).flatmap(lambda items: st.sampled_from([items, tuple(items)])),
)
ANY_HEADER = st.none() | ANY_TEXT | SURROGATE_SAMPLES | NON_STRINGS | st.just(VALID)


def both_cores(call: Any) -> list[Any]:
    """``call()`` on each available core (native, when built, then pure)."""
    names = ["native", "pure"] if _core.native_available() else ["pure"]
    results = []
    for name in names:
        with _core.use_core(name):  # type: ignore[arg-type]
            results.append(call())
    return results


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(alphabet="0123456789abcdefABCDEF-x \t", max_size=80)
    | st.text(max_size=80)
    | ANY_TEXT
    | SURROGATE_SAMPLES
)
def test_random_input_never_raises(header: str) -> None:
    parsed = _core.core.parse_traceparent(header)
    context = SpanContext.from_traceparent(header)
    assert (parsed is None) == (context is None)
    if context is not None:
        assert SpanContext.from_traceparent(context.to_traceparent()) is not None


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(ANY_HEADER, ANY_HEADER)
def test_any_traceparent_and_tracestate_never_raise_and_both_cores_agree(
    traceparent: Any, tracestate: Any
) -> None:
    """W3C: an invalid traceparent (any non-string) starts a new trace; an invalid tracestate
    (any non-string, or a sequence holding one) is discarded and the traceparent kept."""

    def observe() -> tuple[Any, ...]:
        context = SpanContext.from_traceparent(traceparent, tracestate)
        alone = SpanContext.from_traceparent(traceparent)
        extracted = InMemoryTracer().extract_context(
            {"traceparent": traceparent, "tracestate": tracestate}
        )
        return (
            None if context is None else context.to_dict(),
            None if alone is None else alone.to_dict(),
            None if extracted is None else (extracted.trace_id, extracted.span_id, extracted.extra),
        )

    results = both_cores(observe)
    assert all(result == results[0] for result in results)
    with_state, alone, extracted = results[0]
    assert (with_state is None) == (alone is None)
    if with_state is not None:
        assert {**with_state, "trace_state": ""} == alone  # the traceparent is kept either way
        valid_text = isinstance(tracestate, str) or (
            isinstance(tracestate, list | tuple) and all(isinstance(p, str) for p in tracestate)
        )
        if not valid_text:
            assert with_state["trace_state"] == ""
        assert extracted is not None
        assert extracted[2]["tracestate"] == with_state["trace_state"]


@pytest.mark.parametrize(
    "tracestate", [5, 1.5, b"a=1", bytearray(b"a=1"), ["a=1", 5], [None], ("a=1", b"b=2"), object()]
)
def test_a_non_string_tracestate_is_discarded_but_the_traceparent_kept(tracestate: Any) -> None:
    context = SpanContext.from_traceparent(VALID, tracestate)
    assert context is not None
    assert (context.trace_id, context.span_id, context.trace_flags) == (TRACE, SPAN, 1)
    assert context.trace_state == {}
    extracted = InMemoryTracer().extract_context({"traceparent": VALID, "tracestate": tracestate})
    assert extracted is not None
    assert (extracted.trace_id, extracted.extra) == (TRACE, {"trace_flags": 1, "tracestate": ""})


def test_extract_context_discards_a_numeric_tracestate() -> None:
    extracted = InMemoryTracer().extract_context({"traceparent": VALID, "tracestate": 7})
    assert extracted is not None
    assert extracted.span_id == SPAN
    assert extracted.extra == {"trace_flags": 1, "tracestate": ""}


@pytest.mark.parametrize(
    "tracestate", ["\ud800=1", "a=\ud800", "rojo=1,\udc80=2", ["rojo=1", "\ud800=1"]]
)
def test_a_tracestate_with_a_lone_surrogate_is_discarded(tracestate: Any) -> None:
    context = SpanContext.from_traceparent(VALID, tracestate)
    assert context is not None
    assert context.trace_state == {}
    assert (
        _core.core.parse_tracestate(
            ",".join(tracestate) if isinstance(tracestate, list) else tracestate
        )
        is None
    )


@pytest.mark.parametrize(
    "header", ["\ud800" * 55, f"{VALID}\ud800", f"00-{TRACE[:-1]}\udfff-{SPAN}-01", "\udcff"]
)
def test_a_traceparent_with_a_lone_surrogate_starts_a_new_trace(header: str) -> None:
    assert _core.core.parse_traceparent(header) is None
    assert SpanContext.from_traceparent(header) is None
    assert InMemoryTracer().extract_context({"traceparent": header}) is None


def test_ids_with_a_lone_surrogate_are_invalid() -> None:
    assert not _core.core.is_valid_trace_id(TRACE[:-1] + "\ud800")
    assert not _core.core.is_valid_span_id(SPAN[:-1] + "\ud800")
    assert not SpanContext(TRACE[:-1] + "\ud800", SPAN).is_valid


def test_several_tracestate_headers_still_combine_from_a_tuple() -> None:
    context = SpanContext.from_traceparent(VALID, ("rojo=1", "congo=2"))
    assert context is not None
    assert context.to_tracestate() == "rojo=1,congo=2"


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    st.builds(
        lambda version, trace, span, flags, tail: f"{version}-{trace}-{span}-{flags}{tail}",
        st.text("0123456789abcdef", min_size=2, max_size=2),
        st.text("0123456789abcdef", min_size=32, max_size=32),
        st.text("0123456789abcdef", min_size=16, max_size=16),
        st.text("0123456789abcdef", min_size=2, max_size=2),
        st.sampled_from(["", "-", "-x", "x"]),
    )
)
def test_near_valid_headers_follow_the_rules(header: str) -> None:
    version, trace, span, rest = header.split("-", 3)
    flags, tail = rest[:2], rest[2:]
    valid = (
        version != "ff"
        and set(trace) != {"0"}
        and set(span) != {"0"}
        and (tail == "" or (version != "00" and tail.startswith("-")))
    )
    expected = (int(version, 16), trace, span, int(flags, 16)) if valid else None
    assert _core.core.parse_traceparent(header) == expected


# ---- tracestate ---------------------------------------------------------------------------------

KEY_241 = "t" * 241
TRACESTATE_VECTORS: list[tuple[str, list[tuple[str, str]] | None]] = [
    ("", []),
    ("rojo=00f067aa0ba902b7", [("rojo", "00f067aa0ba902b7")]),
    (
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE",
        [("rojo", "00f067aa0ba902b7"), ("congo", "t61rcWkgMzE")],
    ),
    (" rojo=1 , congo=2 ", [("rojo", "1"), ("congo", "2")]),
    ("rojo=1,\t,congo=2", [("rojo", "1"), ("congo", "2")]),
    (",,,", []),
    ("a=1,,b=2", [("a", "1"), ("b", "2")]),
    ("vendor@tenant=x", [("vendor@tenant", "x")]),
    ("1tenant@sys=x", [("1tenant@sys", "x")]),
    (f"{KEY_241}@{'s' * 14}=v", [(f"{KEY_241}@{'s' * 14}", "v")]),
    ("a" * 256 + "=v", [("a" * 256, "v")]),
    ("k=" + "v" * 256, [("k", "v" * 256)]),
    ("k= leading", [("k", " leading")]),
    ("k=a b", [("k", "a b")]),
    ("k=!#$%&'()*+-./:;<>?@[]^_`{|}~", [("k", "!#$%&'()*+-./:;<>?@[]^_`{|}~")]),
    ("a_b-c*d/e=1", [("a_b-c*d/e", "1")]),
    (",".join(f"k{i}=v" for i in range(32)), [(f"k{i}", "v") for i in range(32)]),
    # invalid: the whole header is discarded
    (",".join(f"k{i}=v" for i in range(33)), None),
    ("Rojo=1", None),
    ("rojo", None),
    ("rojo=", None),
    ("=1", None),
    ("rojo=1,rojo=2", None),
    ("rojo=1=2", None),
    ("1abc=x", None),
    ("_abc=x", None),
    ("a" * 257 + "=v", None),
    ("k=" + "v" * 257, None),
    ("k=caf\u00e9", None),
    ("k=a\x7fb", None),
    ("k=a\tb", None),
    ("tenant@=x", None),
    ("@sys=x", None),
    (f"{'t' * 242}@s=x", None),
    ("t@" + "s" * 15 + "=x", None),
    ("t@1sys=x", None),
    ("a@b@c=x", None),
    ("ke y=x", None),
]


@pytest.mark.parametrize(("header", "expected"), TRACESTATE_VECTORS)
def test_parse_tracestate(header: str, expected: list[tuple[str, str]] | None) -> None:
    assert _core.core.parse_tracestate(header) == expected


@pytest.mark.parametrize(("header", "expected"), [v for v in TRACESTATE_VECTORS if v[1]])
def test_format_tracestate_round_trips(header: str, expected: list[tuple[str, str]]) -> None:
    formatted = _core.core.format_tracestate(expected)
    assert _core.core.parse_tracestate(formatted) == expected


@pytest.mark.parametrize(
    ("members", "offender"),
    [
        ([("Bad", "1")], "Bad"),
        ([("ok", "bad,value")], "ok=bad,value"),
        ([("ok", "1"), ("ok", "2")], "ok"),
        ([(f"k{i}", "v") for i in range(33)], "tracestate"),
    ],
)
def test_format_tracestate_rejects_and_names_the_offender(
    members: list[tuple[str, str]], offender: str
) -> None:
    with pytest.raises(InvalidArgumentError) as caught:
        _core.core.format_tracestate(members)
    assert f'"{offender}"' in str(caught.value)


def test_several_tracestate_headers_are_combined() -> None:
    context = SpanContext.from_traceparent(VALID, ["rojo=1", "congo=2,blue=3"])
    assert context is not None
    assert context.trace_state == {"rojo": "1", "congo": "2", "blue": "3"}
    assert context.to_tracestate() == "rojo=1,congo=2,blue=3"


def test_an_invalid_tracestate_is_discarded_but_the_traceparent_kept() -> None:
    context = SpanContext.from_traceparent(VALID, "rojo=1,rojo=2")
    assert context is not None
    assert context.trace_state == {}
    assert context.to_headers() == {"traceparent": VALID}


def test_trace_state_accepts_a_dict_or_the_header_string() -> None:
    from_dict = SpanContext(TRACE, SPAN, trace_state={"vendor": "value"})
    from_header = SpanContext(TRACE, SPAN, trace_state="vendor=value")
    assert from_dict.trace_state == from_header.trace_state == {"vendor": "value"}
    assert from_dict.trace_state == "vendor=value"  # the existing API compared strings
    assert SpanContext(TRACE, SPAN).trace_state == ""
    with pytest.raises(InvalidArgumentError, match="Vendor"):
        SpanContext(TRACE, SPAN, trace_state={"Vendor": "value"})


def test_trace_state_updates_follow_the_recommendation() -> None:
    state = TraceState({"a": "1", "b": "2"})
    updated = state.set("b", "3")
    assert list(updated.items()) == [("b", "3"), ("a", "1")]  # updated key moves to the front
    assert state == {"a": "1", "b": "2"}  # immutable
    assert updated.delete("a").to_header() == "b=3"
    with pytest.raises(InvalidArgumentError):
        state.set("k", "bad=value")


def test_existing_api_positional_order_is_recognised() -> None:
    """``SpanContext(trace_id, span_id, trace_flags, trace_state, is_remote)``, as before."""
    context = SpanContext(TRACE, SPAN, 0, "vendor=value", True)
    assert context.parent_span_id is None
    assert (context.trace_flags, context.trace_state, context.is_remote) == (
        0,
        "vendor=value",
        True,
    )
    assert SpanContext(TRACE, SPAN, 1).trace_state == {}
    spec = SpanContext(TRACE, SPAN, "53995c3f42cd8ad8", 1, {"vendor": "value"})
    assert (spec.parent_span_id, spec.trace_flags, spec.is_remote) == ("53995c3f42cd8ad8", 1, False)
