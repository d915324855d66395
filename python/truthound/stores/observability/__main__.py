"""``python -m truthound.stores.observability``: the ``truthound-obs`` command."""

from .cli import main

raise SystemExit(main())
