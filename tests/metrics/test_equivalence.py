"""The native and pure cores produce byte-identical exposition and identical readings and errors
on generated workloads (hypothesis)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from truthound.stores.observability import _native, _pure
from truthound.stores.observability.errors import InvalidArgumentError

pytestmark = pytest.mark.only_core("native")

NAMES = ["alpha", "beta_total", "beta", "gamma_seconds", "delta", "x:y", "9bad", "le"]
LABELS = ["a", "b", "le", "quantile", "__r", "bad-name"]
values = st.text(alphabet=st.sampled_from(["\\", '"', "\n", "é", "x", "y", "𝄞"]), max_size=4)
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-5, max_value=10**6),
    st.sampled_from([0.0, -0.0, 1e-9, 0.005, 1e300, 5e-324]),
)
operations = st.lists(
    st.tuples(
        st.sampled_from(
            ["increment", "gauge", "gauge_add", "histogram", "summary", "register", "handle"]
        ),
        st.sampled_from(NAMES),
        numbers,
        st.dictionaries(st.sampled_from(LABELS), values, max_size=2),
        st.booleans(),  # pass the labels as a list of pairs (not a mapping: rejected)
    ),
    max_size=40,
)


def apply(registry: Any, ops: list[Any]) -> list[str]:
    """Runs the operations; returns the outcome of each (error type and item, or 'ok')."""
    outcomes = []
    for op, name, value, label_dict, as_pairs in ops:
        labels: Any = list(label_dict.items()) if as_pairs else label_dict
        try:
            if op == "register":
                registry.register(
                    "histogram" if isinstance(value, int) else "summary",
                    name,
                    f"help {name}",
                    sorted(label_dict),
                    [0.5, 1.0, 10.0],
                    [0.1, 0.5, 0.99],
                )
            elif op == "handle":
                registry.counter_series(name, labels).inc(value)
            else:
                getattr(registry, op)(name, value, labels)
            outcomes.append("ok")
        except Exception as error:
            message = str(error)
            outcomes.append(f"{type(error).__name__}: {message.split(':', maxsplit=1)[0]}")
    return outcomes


def make(core: Any, prefix: str = "app") -> Any:
    return core.MetricSet(
        prefix=prefix,
        default_labels={"svc": 'v"1', "a": "default"},
        buckets=[0.001, 0.5, 1.0, 100.0],
        max_series_per_metric=3,
        clock=lambda: 1_700_000_000.125,
        summary_max_bins=64,
    )


def same(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float):
        return (math.isnan(left) and math.isnan(right)) or left == right
    if isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    return bool(left == right)


@settings(max_examples=300)
@given(operations, st.sampled_from(["app", "app_", ""]))
def test_same_outcomes_and_byte_identical_exposition(ops: list[Any], prefix: str) -> None:
    native, pure = make(_native, prefix), make(_pure, prefix)
    assert apply(native, ops) == apply(pure, ops)
    assert native.encode() == pure.encode()
    assert native.encode(openmetrics=True) == pure.encode(openmetrics=True)
    assert same(native.collect(), pure.collect())
    for name in NAMES:
        assert same(native.get(name), pure.get(name))
        assert same(native.get(name, {"a": "x"}), pure.get(name, {"a": "x"}))
    assert native.series_overflows == pure.series_overflows


@given(
    st.lists(
        st.floats(min_value=0, max_value=1e9, allow_nan=False),
        min_size=1,
        max_size=300,
    ),
    st.sampled_from([0.001, 0.01, 0.05]),
    st.integers(min_value=4, max_value=3000),
)
def test_summary_sketches_are_bit_identical(
    observations: list[float], accuracy: float, max_bins: int
) -> None:
    clock_values = iter(1_700_000_000.0 + i * 7.5 for i in range(10_000))
    now = [0.0]

    def clock() -> float:
        return now[0]

    registries = [
        core.MetricSet(
            summary_relative_accuracy=accuracy,
            summary_max_bins=max_bins,
            summary_max_age_seconds=60.0,
            quantiles=[0.0, 0.25, 0.5, 0.9, 0.99, 1.0],
            clock=clock,
        )
        for core in (_native, _pure)
    ]
    for value in observations:
        now[0] = next(clock_values)
        for registry in registries:
            registry.summary("s", value)
    native, pure = registries
    assert native.encode() == pure.encode()
    assert same(native.get("s"), pure.get("s"))


recordings = st.lists(
    st.tuples(
        st.sampled_from(["read", "write", "dé\nl", ""]),
        st.sampled_from([None, 0.0, -3.0, 12.5, 1e-9, math.nan, 7, math.inf]),
        st.sampled_from([None, 45.0, -1.0, math.nan, -math.inf]),
        st.sampled_from([True, False, None, 0, 1, "yes"]),
        st.sampled_from(
            [None, {}, {"region": "eu"}, {"store": "override"}, {"le": "x"}, [("region", "eu")]]
        ),
        st.booleans(),
    ),
    max_size=25,
)


@settings(max_examples=200)
@given(recordings)
def test_record_operation_is_identical_in_both_cores(calls: list[Any]) -> None:
    outcomes: list[list[str]] = []
    registries = []
    for core in (_native, _pure):
        registry = core.MetricSet(clock=lambda: 1_700_000_000.0, buckets=[0.01, 1.0])
        recorder = core.OperationRecorder(registry, "s3", "Total operations", "Latency")
        results = []
        for operation, seconds, ms, success, labels, reset in calls:
            if reset:
                registry.reset()
            try:
                recorder.record_operation(operation, seconds, success, labels, duration_ms=ms)
                results.append("ok")
            except Exception as error:
                results.append(f"{type(error).__name__}: {str(error).split(':')[0]}")
        outcomes.append(results)
        registries.append(registry)
    assert outcomes[0] == outcomes[1]
    assert registries[0].encode(True) == registries[1].encode(True)


REJECTIONS: list[tuple[str, Any]] = [
    ("prefix of only '_'", lambda c: c.MetricSet(prefix="_")),
    ("default labels as pairs", lambda c: c.MetricSet(default_labels=[("a", "b")])),
    ("unknown metric type", lambda c: c.MetricSet().register("timer", "latency")),
    ("infinite increment", lambda c: c.MetricSet().increment("ops", math.inf)),
    ("infinite handle increment", lambda c: c.MetricSet().counter_series("ops").inc(math.inf)),
    ("labels as pairs", lambda c: c.MetricSet().increment("ops", 1.0, [("a", "b")])),
    ("labels as a string", lambda c: c.MetricSet().gauge("level", 1.0, "a=b")),
    ("labels as pairs to get", lambda c: c.MetricSet().get("ops", [("a", "b")])),
    ("infinite observation", lambda c: c.MetricSet().histogram("latency", math.inf)),
    ("negative observation", lambda c: c.MetricSet().histogram("latency", -5.0)),
    (
        "infinite duration",
        lambda c: c.OperationRecorder(c.MetricSet(), "s3", "h", "d").record_operation(
            "read", duration_ms=math.inf
        ),
    ),
    (
        "duration labels as pairs",
        lambda c: c.OperationRecorder(c.MetricSet(), "s3", "h", "d").record_operation(
            "read", 1.0, None, [("a", "b")]
        ),
    ),
]


@pytest.mark.parametrize(("what", "action"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
def test_rejections_have_the_same_type_and_message_in_both_cores(what: str, action: Any) -> None:
    outcomes = []
    for core in (_native, _pure):
        with pytest.raises(InvalidArgumentError) as caught:  # each a subclass of it
            action(core)
        outcomes.append((type(caught.value), str(caught.value)))
    assert outcomes[0] == outcomes[1], what
