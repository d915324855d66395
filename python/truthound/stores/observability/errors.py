"""Exceptions raised by truthound.stores.observability.

Defined once, here; the native core raises these same classes, so both cores raise identical types.
Every message names the offending item.
"""

from __future__ import annotations

__all__ = [
    "AuditClosedError",
    "AuditIOError",
    "InvalidArgumentError",
    "ObservabilityError",
]


class ObservabilityError(Exception):
    """Base class of every error this package raises on purpose."""


class InvalidArgumentError(ObservabilityError, ValueError):
    """A caller-supplied value was rejected; the message names it and says why."""


# ---- Metrics pillar -------------------------------------------------------------------------

__all__ += [
    "InvalidLabelError",
    "InvalidMetricNameError",
    "InvalidMetricValueError",
    "MetricConflictError",
    "MetricsServerError",
    "PushGatewayError",
]


class InvalidMetricNameError(InvalidArgumentError):
    """A metric name (or backend prefix) that the exposition formats cannot carry."""


class InvalidLabelError(InvalidArgumentError):
    """An invalid, reserved (``le``, ``quantile``, ``__*``) or non-string label name, or a label
    name or value that is not valid Unicode (a lone surrogate, as ``os.fsdecode`` leaves)."""


class MetricConflictError(InvalidArgumentError):
    """A metric name reused with another type, label names, buckets, quantiles or help."""


class InvalidMetricValueError(InvalidArgumentError):
    """A value the metric type forbids (a negative or NaN counter increment, a NaN observation)."""


class MetricsServerError(ObservabilityError, OSError):
    """The metrics HTTP endpoint could not be started (for example, the port is in use)."""


class PushGatewayError(ObservabilityError, OSError):
    """A push to a Pushgateway failed (raised only with ``raise_on_error=True``)."""


# --- audit -----------------------------------------------------------------------------------


class AuditIOError(ObservabilityError, OSError):
    """An audit file could not be created, written, synced or rotated (the message names it)."""


class AuditClosedError(ObservabilityError, RuntimeError):
    """An audit backend or queue was used after ``close()``."""


__all__ += ["MultiprocessError"]


class MultiprocessError(ObservabilityError, OSError):
    """The multiprocess metrics directory (or a file in it) cannot be created or used."""


# --- audit: trustworthy trail (fail-closed, tamper evidence) ----------------------------------

__all__ += ["AuditUnavailableError"]


class AuditUnavailableError(ObservabilityError, RuntimeError):
    """Fail-closed mode: no audit backend can record the operation, so it was refused (or, when
    raised after the operation, its record could not be written). The message names the store
    and the operation."""


# --- metrics: arguments of the wrong type ------------------------------------------------------

__all__ += ["InvalidArgumentTypeError"]


class InvalidArgumentTypeError(InvalidArgumentError, TypeError):
    """An argument of the wrong type (labels that are not a mapping, a port that is not an
    int...); the message names the item. Both a ``TypeError`` and an ``InvalidArgumentError``,
    so bad input is caught by either (``MetricsRegistry`` re-raises it rather than counting it
    as a backend failure)."""
