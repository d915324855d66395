"""Audit logging, Prometheus metrics and tracing for storage systems, with a native Rust core.

The pillars live in ``truthound.stores.observability.audit``, ``.metrics`` and ``.tracing``; the
store wrapper in ``.store`` and ``.factory``; configuration in ``.config``. Every public name of
those modules is also available here. ``active_core()`` reports whether the native (Rust) or the
pure-Python core serves them.
"""

from __future__ import annotations

from ._core import active_core
from .audit import *  # noqa: F403
from .audit import __all__ as _audit_names
from .config import *  # noqa: F403
from .config import __all__ as _config_names
from .errors import *  # noqa: F403
from .errors import __all__ as _error_names
from .factory import *  # noqa: F403
from .factory import __all__ as _factory_names
from .metrics import *  # noqa: F403
from .metrics import __all__ as _metrics_names
from .protocols import *  # noqa: F403
from .protocols import __all__ as _protocol_names
from .store import *  # noqa: F403
from .store import __all__ as _store_names
from .tracing import *  # noqa: F403
from .tracing import __all__ as _tracing_names

__all__ = [  # noqa: PLE0604
    "active_core",
    *_audit_names,
    *_config_names,
    *_error_names,
    *_factory_names,
    *_metrics_names,
    *_protocol_names,
    *_store_names,
    *_tracing_names,
]
