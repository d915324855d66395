"""Exposition conformance: exact formats, escaping, and prometheus_client's own text and
OpenMetrics parsers reading back hypothesis-generated registries."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from truthound.stores.observability.metrics import InMemoryMetricsBackend

# ---- a generated registry: what was recorded, to compare with what the parsers read ---------

LABEL_NAMES = ["a", "b", "zone", "op"]
# Label values exercise escaping: backslash, quote, newline and non-ASCII text.
label_values = st.text(
    alphabet=st.one_of(
        st.sampled_from(["\\", '"', "\n", "é", "日", "x", " ", "{", "}", ",", "="]),
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
    ),
    max_size=8,
)
finite = st.floats(min_value=0, max_value=1e12, allow_nan=False)


@st.composite
def registries(draw: st.DrawFn) -> list[tuple[str, str, tuple[str, ...], list[Any]]]:
    """Families: (kind, name, label names, [(label values, [values...])])."""
    families = []
    count = draw(st.integers(min_value=1, max_value=5))
    for index in range(count):
        kind = draw(st.sampled_from(["counter", "gauge", "histogram", "summary"]))
        names = tuple(sorted(draw(st.sets(st.sampled_from(LABEL_NAMES), max_size=3))))
        series = draw(
            st.lists(
                st.tuples(
                    st.tuples(*[label_values for _ in names]),
                    st.lists(
                        finite
                        if kind != "gauge"
                        else st.floats(allow_nan=True, allow_infinity=True),
                        min_size=1,
                        max_size=4,
                    ),
                ),
                min_size=1,
                max_size=4,
                unique_by=lambda s: s[0],
            )
        )
        families.append((kind, f"m{index}_{kind}", names, series))
    return families


def record(backend: InMemoryMetricsBackend, families: list[Any]) -> None:
    for kind, name, names, series in families:
        for values, samples in series:
            labels = dict(zip(names, values, strict=True))
            for value in samples:
                {
                    "counter": backend.increment,
                    "gauge": backend.gauge,
                    "histogram": backend.histogram,
                    "summary": backend.summary,
                }[kind](name, value, labels)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def check_parsed(parsed: dict[str, Any], families: list[Any]) -> None:
    for kind, name, names, series in families:
        family = parsed[name]  # both parsers name a counter family without `_total`
        assert family.type == kind
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples
        }
        for values, recorded in series:
            labels = tuple(sorted(zip(names, values, strict=True)))
            if kind == "counter":
                assert _same(samples[(f"{name}_total", labels)], sum(recorded))
            elif kind == "gauge":
                assert _same(samples[(name, labels)], recorded[-1])
            elif kind == "histogram":
                assert samples[(f"{name}_count", labels)] == len(recorded)
                inf = samples[(f"{name}_bucket", tuple(sorted((*labels, ("le", "+Inf")))))]
                assert inf == len(recorded)
                assert samples[(f"{name}_sum", labels)] == pytest.approx(sum(recorded))
            else:
                assert samples[(f"{name}_count", labels)] == len(recorded)
                top = samples[(name, tuple(sorted((*labels, ("quantile", "0.99")))))]
                assert min(recorded) <= top <= max(recorded)


@given(registries())
def test_prometheus_client_text_parser_reads_back_what_was_recorded(families: list[Any]) -> None:
    backend = InMemoryMetricsBackend(prefix="")
    record(backend, families)
    text = backend.export("prometheus")
    parsed = {f.name: f for f in parse_text(text)}
    check_parsed(parsed, families)


@given(registries())
def test_prometheus_client_openmetrics_parser_reads_back_what_was_recorded(
    families: list[Any],
) -> None:
    backend = InMemoryMetricsBackend(prefix="")
    record(backend, families)
    text = backend.export("openmetrics")
    assert text.endswith("# EOF\n")
    parsed = {f.name: f for f in parse_openmetrics(text)}
    check_parsed(parsed, families)


def test_escaping_of_label_values_and_help() -> None:
    backend = InMemoryMetricsBackend(prefix="")
    backend.register("g", "gauge", 'Help with \\ and "quotes"\nand a newline', label_names=["v"])
    backend.gauge("g", 1, {"v": 'back\\slash "quote"\nnewline é'})
    assert backend.export() == (
        '# HELP g Help with \\\\ and "quotes"\\nand a newline\n'
        "# TYPE g gauge\n"
        'g{v="back\\\\slash \\"quote\\"\\nnewline é"} 1.0\n'
    )
    assert backend.export("openmetrics") == (
        '# HELP g Help with \\\\ and \\"quotes\\"\\nand a newline\n'
        "# TYPE g gauge\n"
        'g{v="back\\\\slash \\"quote\\"\\nnewline é"} 1.0\n'
        "# EOF\n"
    )


def test_special_floats_are_canonical() -> None:
    backend = InMemoryMetricsBackend(prefix="", buckets=[1e-05, 0.5, 1e16])
    backend.gauge("pos", math.inf)
    backend.gauge("neg", -math.inf)
    backend.gauge("nan", math.nan)
    backend.histogram("h", 3.0)
    text = backend.export()
    assert "pos +Inf\n" in text
    assert "neg -Inf\n" in text
    assert "nan NaN\n" in text
    assert 'h_bucket{le="1e-05"} 0.0\n' in text
    assert 'h_bucket{le="1e+16"} 1.0\n' in text
    assert 'h_bucket{le="+Inf"} 1.0\n' in text


def test_openmetrics_created_and_exemplar_free_text_format(clock: Any) -> None:
    clock.now = 1_700_000_000.25
    backend = InMemoryMetricsBackend(prefix="", buckets=[1.0], clock=clock)
    backend.increment("c")
    backend.histogram("h", 0.5)
    backend.summary("s", 2.0)
    om = backend.export("openmetrics")
    for line in [
        "c_created 1700000000.25\n",
        "h_created 1700000000.25\n",
        "s_created 1700000000.25\n",
    ]:
        assert line in om
    assert "_created" not in backend.export("prometheus")
    assert om.count("# TYPE") == 3
    assert om.endswith("# EOF\n")
    assert backend.export().endswith("\n")


def test_empty_registry_exposition() -> None:
    backend = InMemoryMetricsBackend()
    assert backend.export("prometheus") == ""
    assert backend.export("openmetrics") == "# EOF\n"


def test_histogram_with_negative_buckets_omits_sum_in_openmetrics() -> None:
    """OpenMetrics: a histogram with negative thresholds MUST NOT expose a sum (it would not be
    a counter) and `_count` goes with it; non-negative histograms reject negative observations
    for the same reason."""
    backend = InMemoryMetricsBackend(prefix="")
    backend.register("delta", "histogram", buckets=[-1.0, 0.0, 1.0])
    backend.histogram("delta", -0.5)
    assert "delta_sum" not in backend.export("openmetrics")
    assert "delta_count" not in backend.export("openmetrics")
    assert "delta_sum -0.5\n" in backend.export("prometheus")
    parsed = list(parse_openmetrics(backend.export("openmetrics")))
    assert parsed[0].samples[0].value == 0.0


def test_summary_quantiles_and_custom_quantiles() -> None:
    backend = InMemoryMetricsBackend(prefix="", quantiles=[0.25, 0.75])
    for value in range(1, 101):
        backend.summary("latency", float(value))
    text = backend.export()
    assert 'latency{quantile="0.25"} ' in text
    assert 'latency{quantile="0.75"} ' in text
    assert "latency_count 100.0\n" in text
    assert "latency_sum 5050.0\n" in text


@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.floats(min_value=1e5, max_value=1e17),
            st.integers(min_value=1, max_value=10**16).map(float),
        ),
        min_size=1,
        max_size=6,
        unique=True,
    )
)
def test_le_and_quantile_labels_match_prometheus_client(bounds: list[float]) -> None:
    """``le`` label values are written as prometheus_client (and Go) write them, ``1e+06``
    rather than ``1000000.0``: Prometheus compares label values as strings."""
    from prometheus_client.utils import floatToGoString

    bounds = sorted({b + 0.0 for b in bounds})  # -0.0 and 0.0 are one bound
    backend = InMemoryMetricsBackend(prefix="", buckets=bounds)
    backend.histogram("h", bounds[-1])  # negative only with a negative (first) bound
    for openmetrics in (False, True):
        text = backend.export("openmetrics" if openmetrics else "prometheus")
        les = [
            line.split('le="', 1)[1].split('"', 1)[0]
            for line in text.splitlines()
            if line.startswith("h_bucket{")
        ]
        assert les == [floatToGoString(b) for b in bounds] + ["+Inf"]
    sample_line = next(line for line in backend.export().splitlines() if line.startswith("h_sum"))
    assert sample_line.split(" ")[1] == repr(float(sample_line.split(" ")[1]))


def test_large_le_values_are_written_as_go_writes_them() -> None:
    backend = InMemoryMetricsBackend(prefix="", buckets=[1e6, 1234567.5, 2.5e7])
    backend.histogram("h", 2e6)
    text = backend.export()
    assert 'h_bucket{le="1e+06"} 0.0\n' in text
    assert 'h_bucket{le="1.2345675e+06"} 0.0\n' in text
    assert 'h_bucket{le="2.5e+07"} 1.0\n' in text
    assert "h_sum 2000000.0\n" in text  # sample values keep their format
