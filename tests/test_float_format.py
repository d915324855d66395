"""Sample values and ``le``/``quantile`` labels use one canonical float text on both cores."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from truthound.stores.observability import _core


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0.0"),
        (-0.0, "-0.0"),
        (42.0, "42.0"),
        (0.005, "0.005"),
        (1e-05, "1e-05"),
        (1e16, "1e+16"),
        # Two shortest candidates (.2 and .3) are equally close: ties go to the even digit.
        (562949953421312.25, "562949953421312.2"),
        (float("inf"), "+Inf"),
        (float("-inf"), "-Inf"),
        (float("nan"), "NaN"),
    ],
)
def test_known_values(value: float, text: str) -> None:
    assert _core.core.format_float(value) == text


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_finite_values_print_as_python_repr_and_round_trip(value: float) -> None:
    text = _core.core.format_float(value)
    assert text == repr(value)
    assert float(text) == value


@given(st.floats())
def test_text_parses_back_with_prometheus_client_rules(value: float) -> None:
    from prometheus_client.utils import floatToGoString

    text = _core.core.format_float(value)
    parsed = float(text.replace("Inf", "inf").replace("NaN", "nan"))
    assert (math.isnan(parsed) and math.isnan(value)) or parsed == value
    # Where prometheus_client prints the same value, it agrees with us for everyday magnitudes.
    if math.isfinite(value) and 1e-4 <= abs(value) < 1e6:
        assert floatToGoString(value) == text
