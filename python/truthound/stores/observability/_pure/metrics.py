"""Pure-Python mirror of the native metrics core (``rust/metrics/``)."""

from __future__ import annotations

import math

__all__ = ["format_float"]


def format_float(value: float) -> str:
    """Canonical exposition text: ``repr()`` for finite values, ``+Inf``, ``-Inf``, ``NaN``."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
