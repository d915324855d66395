"""Loopback OTLP log collectors for the export tests, decoding with the official
``opentelemetry-proto`` classes.

The HTTP and gRPC plumbing (``_HttpReceiver``, ``GrpcReceiver``) is the tracing suite's, reused
from ``receivers.py`` beside this file; only the logs service differs.
"""

from __future__ import annotations

from typing import Any

from receivers import GrpcReceiver, _HttpReceiver, _kv, wait_until

__all__ = ["OtlpLogsGrpcReceiver", "OtlpLogsHttpReceiver", "wait_until"]


def _any(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_any(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _any(kv.value) for kv in value.kvlist_value.values}
    return getattr(value, which) if which else None


def decode_logs(request: Any) -> list[dict[str, Any]]:
    """Every log record of an ``ExportLogsServiceRequest`` as a plain dict."""
    records = []
    for resource_logs in request.resource_logs:
        resource = _kv(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            records.extend(
                {
                    "service.name": resource.get("service.name"),
                    "scope": scope_logs.scope.name,
                    "time_unix_nano": record.time_unix_nano,
                    "severity_number": record.severity_number,
                    "severity_text": record.severity_text,
                    "event_name": record.event_name,
                    "body": _any(record.body),
                    "attributes": _kv(record.attributes),
                    "trace_id": record.trace_id.hex(),
                    "span_id": record.span_id.hex(),
                }
                for record in scope_logs.log_records
            )
    return records


class OtlpLogsHttpReceiver(_HttpReceiver):
    """``POST /v1/logs`` with ``application/x-protobuf``; the raw bodies are kept too."""

    path = "/v1/logs"

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        super().__init__()

    def decode(self, body: bytes, headers: dict[str, str]) -> list[Any]:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceRequest,
        )

        content_type = {k.lower(): v for k, v in headers.items()}.get("content-type")
        assert content_type == "application/x-protobuf", content_type
        self.bodies.append(body)
        request = ExportLogsServiceRequest()
        request.ParseFromString(body)
        return decode_logs(request)

    def response(self) -> bytes:
        from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
            ExportLogsServiceResponse,
        )

        return ExportLogsServiceResponse().SerializeToString()


class OtlpLogsGrpcReceiver(GrpcReceiver):
    """A grpcio server implementing the official ``LogsService``."""

    def __init__(self) -> None:
        super().__init__()
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc

        receiver = self

        class Service(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC name)
                receiver.add(decode_logs(request))
                return logs_service_pb2.ExportLogsServiceResponse()

        self._serve(logs_service_pb2_grpc.add_LogsServiceServicer_to_server, Service())
