"""Fixtures of the tracing suite: loopback collectors started and stopped by the tests."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import receivers


def _serve(receiver: Any) -> Iterator[Any]:
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture
def otlp_http() -> Iterator[receivers.OtlpHttpReceiver]:
    yield from _serve(receivers.OtlpHttpReceiver())


@pytest.fixture
def otlp_grpc() -> Iterator[receivers.OtlpGrpcReceiver]:
    yield from _serve(receivers.OtlpGrpcReceiver())


@pytest.fixture
def zipkin() -> Iterator[receivers.ZipkinReceiver]:
    yield from _serve(receivers.ZipkinReceiver())


@pytest.fixture
def jaeger() -> Iterator[receivers.JaegerReceiver]:
    yield from _serve(receivers.JaegerReceiver())
