"""OTLP endpoint and transport resolution, one rule for every signal (spans and audit logs).

- An explicit ``protocol`` wins: ``"grpc"``, or ``"http/protobuf"`` (also ``"http"``,
  ``"http/proto"``).
- Otherwise the endpoint decides: a ``grpc://``/``grpcs://`` scheme or port 4317 (OTLP's gRPC
  port, with or without a scheme) means gRPC; any other URL means HTTP/protobuf (port 4318).
  An endpoint without a scheme (``host:4317``) is taken as a gRPC target.
- Without an endpoint, the OpenTelemetry variables decide (``OTEL_EXPORTER_OTLP_<SIGNAL>_PROTOCOL``,
  then ``OTEL_EXPORTER_OTLP_PROTOCOL``), and gRPC when neither is set (as OpenTelemetry for
  Python does); the exporter then reads its endpoint from the variables too.

An HTTP endpoint without a path gets the signal's path (``/v1/traces``, ``/v1/logs``); a gRPC
endpoint is reduced to ``host:port``, over TLS for ``https://`` and ``grpcs://``.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from .errors import InvalidArgumentError

__all__ = ["GRPC", "HTTP", "exporter", "grpc_target", "http_url", "otlp_protocol"]

GRPC: Final = "grpc"
HTTP: Final = "http/protobuf"
_GRPC_PORT: Final = 4317
_HTTP_NAMES: Final = ("http", "http/protobuf", "http/proto")


def otlp_protocol(endpoint: str | None, protocol: str | None = None, signal: str = "TRACES") -> str:
    """``GRPC`` or ``HTTP`` for an endpoint (see the module docs); ``signal`` names the
    per-signal environment variable (``TRACES``, ``LOGS``)."""
    if protocol is not None:
        normalized = protocol.strip().lower() if isinstance(protocol, str) else protocol
        if normalized == GRPC:
            return GRPC
        if normalized in _HTTP_NAMES:
            return HTTP
        raise InvalidArgumentError(f"protocol={protocol!r}: expected 'grpc' or 'http/protobuf'")
    if endpoint is None:
        configured = os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL") or os.environ.get(
            "OTEL_EXPORTER_OTLP_PROTOCOL", GRPC
        )
        return HTTP if configured.strip().lower().startswith("http") else GRPC
    url = urlsplit(endpoint if "://" in endpoint else f"grpc://{endpoint}")
    if url.scheme in ("grpc", "grpcs"):
        return GRPC
    try:
        port = url.port
    except ValueError:
        raise InvalidArgumentError(f"endpoint={endpoint!r}: invalid port") from None
    return GRPC if port == _GRPC_PORT else HTTP


def grpc_target(endpoint: str) -> tuple[str, bool]:
    """``(host:port, insecure)`` of a gRPC endpoint."""
    url = urlsplit(endpoint if "://" in endpoint else f"grpc://{endpoint}")
    return url.netloc, url.scheme not in ("https", "grpcs")


def http_url(endpoint: str, path: str) -> str:
    """``endpoint`` with ``path`` (``/v1/traces``...) when it has none."""
    if urlsplit(endpoint).path in ("", "/"):
        return endpoint.rstrip("/") + path
    return endpoint


def exporter(
    signal: str,
    endpoint: str | None,
    protocol: str,
    headers: Mapping[str, str],
    timeout: float,
) -> Any:
    """The official OTLP exporter of ``signal`` (``"traces"`` or ``"logs"``) for ``protocol``
    (``GRPC`` or ``HTTP``), pointed at ``endpoint`` by the rules above (``None``: the
    exporter's own environment variables)."""
    module, name = _EXPORTERS[signal, protocol]
    cls = getattr(importlib.import_module(module), name)
    extra = dict(headers) or None
    if protocol == GRPC:
        if endpoint is None:
            return cls(headers=extra, timeout=timeout)
        target, insecure = grpc_target(endpoint)
        return cls(endpoint=target, insecure=insecure, headers=extra, timeout=timeout)
    if endpoint is not None:
        endpoint = http_url(endpoint, f"/v1/{signal}")
    return cls(endpoint=endpoint, headers=extra, timeout=timeout)


_EXPORTERS: Final = {
    ("traces", GRPC): ("opentelemetry.exporter.otlp.proto.grpc.trace_exporter", "OTLPSpanExporter"),
    ("traces", HTTP): ("opentelemetry.exporter.otlp.proto.http.trace_exporter", "OTLPSpanExporter"),
    ("logs", GRPC): ("opentelemetry.exporter.otlp.proto.grpc._log_exporter", "OTLPLogExporter"),
    ("logs", HTTP): ("opentelemetry.exporter.otlp.proto.http._log_exporter", "OTLPLogExporter"),
}
