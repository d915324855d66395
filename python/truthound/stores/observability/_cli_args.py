"""Argument types of ``truthound-obs``: each rejects a bad value up front, so that argparse
reports ``error: argument --x: <why>`` with exit status 2 instead of the command failing later
with a traceback.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from ._otlp import otlp_protocol
from .errors import InvalidArgumentError

__all__ = [
    "MAX_SECONDS",
    "directory",
    "megabytes",
    "otlp_endpoint",
    "port",
    "positive_int",
    "seconds",
]

# A year: far beyond any sensible wait, and well inside what time.sleep accepts.
MAX_SECONDS = 365 * 24 * 3600
# 1 TiB: a larger segment would never rotate anyway (and must fit the native core's integers).
_MAX_MEGABYTES = 2**20
_OTLP_SCHEMES = ("http", "https", "grpc", "grpcs")


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def seconds(*, allow_zero: bool = False) -> Callable[[str], float]:
    """A finite number of seconds, positive (or at least 0 with ``allow_zero``), up to a year."""
    kind = "a non-negative" if allow_zero else "a positive"

    def parse(text: str) -> float:
        value = _number(text)
        if value is None or value < 0 or (value == 0 and not allow_zero) or value > MAX_SECONDS:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {kind} number of seconds (at most {MAX_SECONDS}, a year)"
            )
        return value

    parse.__name__ = "seconds"
    return parse


def megabytes(text: str) -> float:
    """A finite, positive size in MB (at most 1 TiB)."""
    value = _number(text)
    if value is None or not 0 < value <= _MAX_MEGABYTES:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size in MB (more than 0 up to {_MAX_MEGABYTES})"
        )
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def port(text: str) -> int:
    """A TCP port to listen on: 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (0-65535)")
    return value


def directory(text: str) -> str:
    """A directory that exists or can be created: not empty, not a file, under a writable
    directory. (Creating it can still fail; the command then reports that as an error.)"""
    if not text:
        raise argparse.ArgumentTypeError("an empty path is not a directory")
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a directory")
    parent = path.absolute()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise argparse.ArgumentTypeError(f"cannot create {text}: {parent} is not a directory")
    if parent != path.absolute() and not os.access(parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot create {text}: {parent} is not writable")
    return text


def otlp_endpoint(text: str) -> str:
    """An OTLP endpoint: a URL with scheme http, https, grpc or grpcs and a host, or a gRPC
    ``host:port`` target (see ``_otlp``)."""
    problem = None
    url = urlsplit(text if "://" in text else f"grpc://{text}")
    try:
        endpoint_port = url.port
    except ValueError:
        endpoint_port, problem = None, "its port is not a number from 1 to 65535"
    if problem is None:
        if url.scheme not in _OTLP_SCHEMES:
            problem = f"the scheme must be one of {', '.join(_OTLP_SCHEMES)}"
        elif not url.hostname:
            problem = "it names no host"
        elif "://" not in text and endpoint_port is None:
            problem = "expected a URL (http://host:4318) or host:port (host:4317)"
        elif endpoint_port == 0:
            problem = "port 0 cannot be sent to"
        elif any(c.isspace() for c in text):
            problem = "it contains white space"
    if problem is None:
        try:
            otlp_protocol(text)
        except InvalidArgumentError as error:
            problem = str(error)
    if problem is not None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an OTLP endpoint: {problem}")
    return text
