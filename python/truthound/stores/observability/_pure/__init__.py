"""The pure-Python core: a one-to-one mirror of the native module's interface (``_native.pyi``).

Used when the native extension is unavailable or when forced; see ``_core.py``. Behaviour and
output are identical to the native core, byte for byte where text is produced. Each pillar's
module lists its share of the interface in its ``__all__``.
"""

from __future__ import annotations

from .audit import *  # noqa: F403
from .audit import __all__ as _audit_names
from .metrics import *  # noqa: F403
from .metrics import __all__ as _metrics_names
from .tracing import *  # noqa: F403
from .tracing import __all__ as _tracing_names

__all__ = ["CORE_NAME", *_audit_names, *_metrics_names, *_tracing_names]  # noqa: PLE0604

CORE_NAME = "pure"
