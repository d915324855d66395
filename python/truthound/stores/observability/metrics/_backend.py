"""The metrics backends: ``InMemoryMetricsBackend`` and ``PrometheusMetricsBackend``."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import _context, _core, _fork
from ..config import MetricsConfig, MetricsExportFormat
from ..errors import InvalidArgumentError, MetricsServerError, PushGatewayError
from . import _http, multiprocess
from ._exposition import render_json, render_statsd
from ._values import HistogramValue, MetricType, MetricValue, SummaryValue

if TYPE_CHECKING:
    from .._native import (
        CounterSeries,
        GaugeSeries,
        HistogramSeries,
        OperationRecorder,
        SummarySeries,
    )

__all__ = ["InMemoryMetricsBackend", "Metric", "PrometheusMetricsBackend"]

_log = logging.getLogger("truthound.stores.observability.metrics")

Labels = Mapping[str, Any] | None
AnyValue = MetricValue | HistogramValue | SummaryValue


def _noop(*_args: Any, **_kwargs: Any) -> None:
    """Recording on a backend whose config has ``enabled=False``."""


class DisabledSeries:
    """The series handle of a backend whose config has ``enabled=False``: it has the methods
    of the four handle types (``inc``, ``dec``, ``set``, ``observe``) and records nothing;
    ``value`` stays 0.0. Like the other recording calls of a disabled backend, it checks
    nothing either."""

    __slots__ = ("_labels",)

    def __init__(self, labels: Labels) -> None:
        items = labels.items() if labels is not None and hasattr(labels, "items") else ()
        self._labels = sorted((str(k), str(v)) for k, v in items)

    def inc(self, value: float = 1.0) -> None:
        """Records nothing."""

    def dec(self, value: float = 1.0) -> None:
        """Records nothing."""

    def set(self, value: float) -> None:
        """Records nothing."""

    def observe(self, value: float) -> None:
        """Records nothing."""

    @property
    def value(self) -> float:
        """Always 0.0."""
        return 0.0

    @property
    def labels(self) -> list[tuple[str, str]]:
        """The label names and values the handle was asked for, sorted by name."""
        return list(self._labels)

    def __repr__(self) -> str:
        return f"DisabledSeries(labels={self._labels!r})"


def _metric_type(name: str, metric_type: MetricType | str) -> MetricType:
    try:
        return MetricType(metric_type)
    except ValueError:
        choices = ", ".join(t.value for t in MetricType)
        raise InvalidArgumentError(
            f"{name!r}: metric type {metric_type!r} must be one of {choices}"
        ) from None


class Metric:
    """A declared metric (from ``register``): its name, type, help and label names.

    ``labels(**values)`` returns the pre-bound series handle for one label set.
    """

    def __init__(
        self,
        backend: _CoreBackend,
        name: str,
        metric_type: MetricType,
        documentation: str,
        label_names: tuple[str, ...],
    ) -> None:
        self.backend = backend
        self.name = name
        self.type = metric_type
        self.documentation = documentation
        self.label_names = label_names

    def labels(self, **values: Any) -> Any:
        """The series handle of this label set (``inc()``, ``set()``, ``observe()``...)."""
        series = {
            MetricType.COUNTER: self.backend.counter_series,
            MetricType.GAUGE: self.backend.gauge_series,
            MetricType.HISTOGRAM: self.backend.histogram_series,
            MetricType.SUMMARY: self.backend.summary_series,
        }[self.type]
        return series(self.name, values or None)

    def __repr__(self) -> str:
        return f"Metric({self.name!r}, {self.type.value}, labels={list(self.label_names)!r})"


class _CoreBackend:
    """Recording, reading and export shared by both backends (served by the selected core).

    Series limit: a metric keeps at most ``max_series_per_metric`` label sets; the samples of
    further label sets go to one overflow series whose label values are all ``__overflow__``
    (counted in ``series_overflows``). That value is reserved: a label value ``"__overflow__"``
    (or ``StoreMetrics`` operation of that name) raises ``InvalidLabelError``, so the overflow
    series can never collide with a series of the caller's.
    """

    def __init__(
        self,
        config: MetricsConfig | None = None,
        *,
        prefix: str | None = None,
        default_labels: Mapping[str, str] | None = None,
        buckets: Sequence[float] | None = None,
        quantiles: Sequence[float] | None = None,
        max_series_per_metric: int | None = None,
        summary_max_age_seconds: float | None = None,
        summary_age_buckets: int = 5,
        summary_relative_accuracy: float = 0.01,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if config is not None and not isinstance(config, MetricsConfig):
            raise TypeError(f"config must be a MetricsConfig, not {type(config).__name__}")
        overrides: dict[str, Any] = {}
        if prefix is not None:
            overrides["prefix"] = prefix
        if default_labels is not None:
            overrides["labels"] = dict(default_labels)
        if buckets is not None:
            overrides["histogram_buckets"] = list(buckets)
        if quantiles is not None:
            overrides["summary_quantiles"] = list(quantiles)
        if max_series_per_metric is not None:
            overrides["max_series_per_metric"] = max_series_per_metric
        if summary_max_age_seconds is not None:
            overrides["summary_max_age_seconds"] = summary_max_age_seconds
        base = config if config is not None else MetricsConfig()
        #: The effective configuration (the given config with the keyword overrides applied).
        self.config: MetricsConfig = dataclasses.replace(base, **overrides)
        core = _core.core.MetricSet(
            prefix=self.config.prefix,
            default_labels=self.config.labels,
            buckets=self.config.histogram_buckets,
            quantiles=self.config.summary_quantiles,
            max_series_per_metric=self.config.max_series_per_metric,
            summary_max_age_seconds=self.config.summary_max_age_seconds,
            summary_age_buckets=summary_age_buckets,
            summary_relative_accuracy=summary_relative_accuracy,
            span_var=_context.current_span,
            clock=clock,
            multiprocess_dir=self._multiprocess_dir(),
        )
        self._core = core
        self._core_module = _core.core  # the core that created `_core` (helpers must match it)
        self._metrics: dict[str, Metric] = {}
        self._metrics_lock = threading.Lock()
        self._collect_hooks: list[Callable[[], object]] = []
        self._collect_hook_failures = 0
        _fork.track(self, "_metrics_lock")
        # The hot paths are the core's own methods, bound on the instance: a documented call
        # such as `backend.increment(name, labels={...})` is then one native call, with no
        # Python frame in between (which would cost more than the native work itself).
        if self.config.enabled:
            self.increment = core.increment  # type: ignore[method-assign]
            self.counter = core.increment  # type: ignore[method-assign]
            self.gauge = core.gauge  # type: ignore[method-assign]
            self.gauge_add = core.gauge_add  # type: ignore[method-assign]
            self.histogram = core.histogram  # type: ignore[method-assign]
            self.summary = core.summary  # type: ignore[method-assign]
        else:
            for name in ("increment", "counter", "gauge", "gauge_add", "histogram", "summary"):
                setattr(self, name, _noop)

    def _multiprocess_dir(self) -> str | None:
        config = self.config
        if config.multiprocess is False:
            return None
        chosen = config.multiprocess_dir or multiprocess.directory()
        if chosen is None and config.multiprocess:
            raise InvalidArgumentError(
                "MetricsConfig.multiprocess=True: set multiprocess_dir or call "
                "metrics.multiprocess.enable() first"
            )
        return None if chosen is None else str(chosen)

    # ---- recording (replaced on the instance by the core's methods; see __init__) -----------

    def increment(self, name: str, value: float = 1.0, labels: Labels = None) -> None:
        """Adds ``value`` (default 1) to a counter. ``name`` with or without ``_total`` is the
        same counter, exposed as ``{name}_total``. Negative, NaN or infinite increments raise
        ``InvalidMetricValueError`` (one infinite increment would leave it infinite for good).
        ``labels`` must be a mapping (``InvalidArgumentTypeError`` otherwise)."""
        self._core.increment(name, value, labels)

    def counter(self, name: str, value: float = 1.0, labels: Labels = None) -> None:
        """The existing API's name for ``increment``."""
        self._core.increment(name, value, labels)

    def gauge(self, name: str, value: float, labels: Labels = None) -> None:
        """Sets a gauge to ``value`` (any float, including NaN and infinities)."""
        self._core.gauge(name, value, labels)

    def gauge_add(self, name: str, value: float, labels: Labels = None) -> None:
        """Adds ``value`` (negative to subtract) to a gauge, atomically."""
        self._core.gauge_add(name, value, labels)

    def histogram(self, name: str, value: float, labels: Labels = None) -> None:
        """Observes ``value`` into a histogram (the backend's buckets unless registered with
        others). Inside a sampled span the observation becomes its bucket's exemplar.

        NaN and infinite values raise ``InvalidMetricValueError``, and so do negative ones
        unless a bucket bound is negative: ``_sum`` must stay a counter (OpenMetrics), so a
        histogram of values that can be negative declares it, e.g.
        ``register(name, "histogram", buckets=[-10, 0, 10])`` (its ``_sum``/``_count`` are
        then left out of the OpenMetrics exposition)."""
        self._core.histogram(name, value, labels)

    def summary(self, name: str, value: float, labels: Labels = None) -> None:
        """Observes ``value`` into a summary: all-time ``_count``/``_sum`` and quantiles over
        the sliding window (``summary_max_age_seconds``), within 1% relative error."""
        self._core.summary(name, value, labels)

    @contextmanager
    def timer(self, name: str, labels: Labels = None) -> Iterator[None]:
        """Observes the seconds the block took into histogram ``name`` (even if it raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.histogram(name, time.perf_counter() - start, labels)

    # ---- declaring metrics and pre-bound series ----------------------------------------------

    def register(
        self,
        name: str,
        metric_type: MetricType | str,
        documentation: str = "",
        *,
        label_names: Sequence[str] = (),
        buckets: Sequence[float] | None = None,
        quantiles: Sequence[float] | None = None,
        multiprocess_mode: str | None = None,
    ) -> Metric:
        """Declares a metric with its HELP text, label names and buckets or quantiles.

        ``multiprocess_mode`` (gauges; see ``multiprocess.GaugeMode``) says how the values of
        several processes combine in multiprocess mode: ``sum``, ``max``, ``min``, ``latest``
        (the most recently set), or their ``live*`` variants that ignore dead processes
        (default ``livesum``). Ignored in single-process mode.

        Declaring an identical metric again returns the same ``Metric``; a different type,
        label names, buckets, quantiles or help raises ``MetricConflictError``; an unknown
        type raises ``InvalidArgumentError`` naming the metric. On a disabled backend nothing
        is declared (the export stays empty) and the ``Metric``'s handles record nothing.
        """
        kind = _metric_type(name, metric_type)
        if self.config.enabled:
            self._core.register(
                kind.value,
                name,
                documentation or None,
                list(label_names),
                list(buckets) if buckets is not None else None,
                list(quantiles) if quantiles is not None else None,
                None if multiprocess_mode is None else str(multiprocess_mode),
            )
        with self._metrics_lock:
            key = f"{kind.value}:{name}"
            metric = self._metrics.get(key)
            if metric is None:
                metric = Metric(self, name, kind, documentation, tuple(sorted(label_names)))
                self._metrics[key] = metric
            return metric

    # A disabled backend hands out `DisabledSeries` (creating a real series would already
    # show it, at 0, in the export).

    def counter_series(self, name: str, labels: Labels = None) -> CounterSeries | DisabledSeries:
        """A pre-bound counter series for the hottest loops: ``series.inc(value=1.0)``."""
        if not self.config.enabled:
            return DisabledSeries(labels)
        return self._core.counter_series(name, labels)

    def gauge_series(self, name: str, labels: Labels = None) -> GaugeSeries | DisabledSeries:
        """A pre-bound gauge series: ``set(v)``, ``inc(v=1)``, ``dec(v=1)``."""
        if not self.config.enabled:
            return DisabledSeries(labels)
        return self._core.gauge_series(name, labels)

    def histogram_series(
        self, name: str, labels: Labels = None
    ) -> HistogramSeries | DisabledSeries:
        """A pre-bound histogram series: ``observe(v)`` (with exemplars, as ``histogram``)."""
        if not self.config.enabled:
            return DisabledSeries(labels)
        return self._core.histogram_series(name, labels)

    def summary_series(self, name: str, labels: Labels = None) -> SummarySeries | DisabledSeries:
        """A pre-bound summary series: ``observe(v)``."""
        if not self.config.enabled:
            return DisabledSeries(labels)
        return self._core.summary_series(name, labels)

    def _operation_recorder(
        self, store: str, operations_help: str, duration_help: str
    ) -> OperationRecorder | None:
        """The core's one-call ``record_operation`` for ``StoreMetrics`` (``None`` when
        recording is disabled)."""
        if not self.config.enabled:
            return None
        recorder: OperationRecorder = self._core_module.OperationRecorder(
            self._core, store, operations_help, duration_help
        )
        return recorder

    # ---- reading ------------------------------------------------------------------------------

    def get(self, name: str, labels: Labels = None) -> float | HistogramValue | SummaryValue | None:
        """The value of a metric: a float for counters and gauges, a ``HistogramValue`` or
        ``SummaryValue`` otherwise, ``None`` when absent.

        ``labels`` selects the series whose labels include them; when several series match
        (or ``labels`` is omitted on a labelled metric) their values are aggregated: counters
        and gauges summed, histogram buckets added, summary sketches merged.
        """
        reading = self._core.get(name, labels)
        if reading is None:
            return None
        kind, value, total, pairs = reading
        selected = {str(k): str(v) for k, v in (labels or {}).items()}
        if kind in ("counter", "gauge"):
            return value
        if kind == "histogram":
            return HistogramValue(
                name=name,
                count=int(value),
                sum=total,
                buckets={le: int(count) for le, count in pairs},
                labels=selected,
            )
        return SummaryValue(
            name=name, count=int(value), sum=total, quantiles=dict(pairs), labels=selected
        )

    def get_counter(self, name: str, labels: Labels = None) -> float:
        """A counter's value (0.0 when it was never incremented)."""
        value = self.get(name, labels)
        return value if isinstance(value, float) else 0.0

    def get_gauge(self, name: str, labels: Labels = None) -> float | None:
        """A gauge's value (``None`` when it was never set)."""
        value = self.get(name, labels)
        return value if isinstance(value, float) else None

    def get_metrics(self) -> list[AnyValue]:
        """Every series, with exposed names (prefixed; counters with ``_total``) and labels
        (default labels included)."""
        now = datetime.now()
        values: list[AnyValue] = []
        for kind, name, _doc, series_list in self.collect():
            for labels, value, total, pairs, _created, _exemplars in series_list:
                label_dict = dict(labels)
                if kind == "counter":
                    values.append(
                        MetricValue(f"{name}_total", value, label_dict, now, MetricType.COUNTER)
                    )
                elif kind == "gauge":
                    values.append(MetricValue(name, value, label_dict, now, MetricType.GAUGE))
                elif kind == "histogram":
                    buckets = {le: int(count) for le, count in pairs}
                    values.append(HistogramValue(name, int(value), total, buckets, label_dict, now))
                else:
                    values.append(
                        SummaryValue(name, int(value), total, dict(pairs), label_dict, now)
                    )
        return values

    def collect(self) -> list[Any]:
        """The raw snapshot of every family (see ``PrometheusClientCollector``)."""
        self._run_collect_hooks()
        return self._core.collect()

    def add_collect_hook(self, hook: Callable[[], object]) -> None:
        """Runs ``hook`` before every whole-registry read (export, scrape, push, ``collect``,
        ``get_metrics``), to record values that are computed on demand, such as the library's
        own loss counters. A failing hook is logged and counted in ``collect_hook_failures``;
        the read goes on."""
        self._collect_hooks.append(hook)

    def _run_collect_hooks(self) -> None:
        for hook in tuple(self._collect_hooks):
            try:
                hook()
            except Exception:
                self._collect_hook_failures += 1
                _log.exception("metrics collect hook %r failed", hook)

    @property
    def collect_hook_failures(self) -> int:
        """Collect hooks that raised (see ``add_collect_hook``)."""
        return self._collect_hook_failures

    def export(self, format: MetricsExportFormat | str | None = None) -> str:
        """The exposition in ``format`` (default: ``config.export_format``): Prometheus text
        0.0.4, OpenMetrics 1.0 (with exemplars and ``_created``), JSON or StatsD lines."""
        chosen = MetricsExportFormat(format) if format is not None else self.config.export_format
        self._run_collect_hooks()
        if chosen is MetricsExportFormat.PROMETHEUS:
            return self._core.encode(False)
        if chosen is MetricsExportFormat.OPENMETRICS:
            return self._core.encode(True)
        if chosen is MetricsExportFormat.JSON:
            return render_json(self._core.collect(), self.config.include_timestamps)
        return render_statsd(self._core.collect())

    def reset(self) -> None:
        """Removes every metric and declaration; series handles re-attach on next use."""
        self._core.reset()
        with self._metrics_lock:
            self._metrics.clear()

    # ---- self-observability -----------------------------------------------------------------

    @property
    def prefix(self) -> str:
        """The prefix joined to every metric name, as configured: names are exposed as
        ``{prefix}_{name}`` with one trailing ``_`` of the prefix dropped (``"app"`` and
        ``"app_"`` both give ``app_requests_total``), or bare with an empty prefix."""
        return self.config.prefix

    @property
    def default_labels(self) -> dict[str, str]:
        """Labels added to every series (a series' own label of the same name wins)."""
        return dict(self.config.labels)

    @property
    def series_overflows(self) -> int:
        """Samples recorded into an overflow series (label values ``__overflow__``, a value
        reserved for it) because a metric reached ``max_series_per_metric`` label sets."""
        return self._core.series_overflows

    @property
    def dropped_exemplars(self) -> int:
        """Exemplars not attached: the span's ids exceed the 128-code-point limit."""
        return self._core.dropped_exemplars

    # ---- multiprocess mode ----------------------------------------------------------------

    @property
    def multiprocess_directory(self) -> Path | None:
        """The shared directory in multiprocess mode, else ``None``."""
        found = self._core.multiprocess_dir
        return None if found is None else Path(found)

    @property
    def multiprocess_file(self) -> Path | None:
        """This process's file in the shared directory, else ``None``."""
        found = self._core.multiprocess_file
        return None if found is None else Path(found)

    def compact(self) -> int:
        """Absorbs dead processes' files into the directory's archive now (every scrape also
        tries); returns how many. 0 in single-process mode or while another process compacts."""
        return int(self._core.compact())

    @property
    def multiprocess_skipped_files(self) -> int:
        """Files of the directory that could not be read (bad header, truncated...) and were
        skipped by this process's scrapes; a dead process's unreadable file is renamed
        ``corrupt-*`` (kept for inspection, never read again)."""
        return int(self._core.multiprocess_counters[0])

    @property
    def multiprocess_skipped_records(self) -> int:
        """Records skipped by scrapes: malformed, or a metric another process defines
        differently (type, label names, buckets or quantiles) from the first definition."""
        return int(self._core.multiprocess_counters[1])

    @property
    def multiprocess_unshared_series(self) -> int:
        """Series this process keeps in private memory because the shared file could not grow
        (disk full) or a forked child could not get a file of its own: missing from scrapes."""
        return int(self._core.multiprocess_counters[2])

    @property
    def multiprocess_unmerged_sketches(self) -> int:
        """Summary series whose sketch mapping (relative accuracy) differs between processes:
        their ``_count``/``_sum`` are aggregated, their quantiles not merged."""
        return int(self._core.multiprocess_counters[3])

    @property
    def multiprocess_compactions(self) -> int:
        """Compactions this process performed."""
        return int(self._core.multiprocess_counters[4])

    @property
    def multiprocess_compacted_files(self) -> int:
        """Dead processes' files this process absorbed into the archive."""
        return int(self._core.multiprocess_counters[5])

    @property
    def multiprocess_repairs(self) -> int:
        """Leftovers of interrupted operations this process cleaned up: temporary files of a
        process or compaction that died, files a compaction absorbed but could not delete."""
        return int(self._core.multiprocess_counters[6])


class InMemoryMetricsBackend(_CoreBackend):
    """Metrics kept in memory: record, read back (``get``, ``get_metrics``) and export.

    ``InMemoryMetricsBackend(config=None, *, prefix=, default_labels=, buckets=, quantiles=,
    max_series_per_metric=, summary_max_age_seconds=)``: keywords override the config.
    """


class PrometheusMetricsBackend(_CoreBackend):
    """Prometheus metrics with a scrape endpoint and Pushgateway pushes.

    ``PrometheusMetricsBackend(config=None, auto_start_server=False, *, prefix=,
    default_labels=, ...)``. Without a config the defaults of ``MetricsConfig`` apply (prefix
    ``truthound_store``). The HTTP endpoint starts at construction only when both
    ``auto_start_server`` and ``config.enable_http_server`` are true (as in the existing module;
    ``ObservabilityManager`` passes ``auto_start_server=True``), on ``config.http_addr`` and
    ``config.http_port``; a ``config.push_gateway_url`` starts a background push every
    ``config.push_interval_seconds``.
    ``close()`` (or a ``with`` block) stops both, after a final push.
    """

    def __init__(
        self,
        config: MetricsConfig | None = None,
        auto_start_server: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(config, **options)
        self._server: _http.MetricsHTTPServer | None = None
        self._server_lock = threading.Lock()
        self._push_failures = 0
        self._push_lock = threading.Lock()
        _fork.track(
            self, "_server_lock", "_push_lock", forget=PrometheusMetricsBackend._forget_threads
        )
        self._last_push_error: str | None = None
        self._push_stop: threading.Event | None = None
        self._push_thread: threading.Thread | None = None
        if auto_start_server and self.config.enable_http_server:
            self.start_http_server()
        if self.config.push_gateway_url:
            self.start_pushing()

    def _forget_threads(self) -> None:
        """In a forked child: the endpoint and push threads do not exist here. Drop their
        state (closing the child's copy of the listening socket; the parent keeps serving)
        so ``close()`` returns at once and both can be started again in the child."""
        server, self._server = self._server, None
        if server is not None:
            server.forget()
        self._push_stop = self._push_thread = None

    def _render(self, openmetrics: bool) -> str:
        self._run_collect_hooks()
        return self._core.encode(openmetrics)

    # ---- scrape endpoint ----------------------------------------------------------------------

    def start_http_server(
        self, port: int | None = None, addr: str | None = None, path: str | None = None
    ) -> int:
        """Serves the exposition over HTTP and returns the bound port.

        ``port`` defaults to ``config.http_port`` (0 picks a free port), ``path`` to
        ``config.http_path``, ``addr`` to ``config.http_addr``: loopback unless configured, so
        metrics are not exposed to the network by accident: ``"0.0.0.0"`` (IPv4) or ``"::"``
        (IPv6 and IPv4) for a
        Prometheus on another host; ``"::1"`` is the IPv6 loopback, and a host name binds its
        first address. The endpoint negotiates OpenMetrics or text from ``Accept`` (q-values
        honoured) and gzip from ``Accept-Encoding``; an idle keep-alive connection is closed
        after 30 s. Raises ``MetricsServerError`` when it cannot bind, and
        ``InvalidArgumentTypeError``/``InvalidArgumentError`` for a bad ``port``, ``addr`` or
        ``path``.
        """
        with self._server_lock:
            if self._server is not None:
                raise MetricsServerError(
                    "the metrics endpoint is already serving on "
                    f"{self._server.address}:{self._server.port}; call stop_http_server() first"
                )
            self._server = _http.MetricsHTTPServer(
                self._render,
                self.config.http_port if port is None else port,
                self.config.http_addr if addr is None else addr,
                path or self.config.http_path,
            )
            return self._server.port

    def stop_http_server(self) -> None:
        """Stops the endpoint and frees its port (no-op when it is not running). Open
        connections are closed too: a keep-alive client gets no further response."""
        with self._server_lock:
            server, self._server = self._server, None
        if server is not None:
            server.stop()

    @property
    def http_server_port(self) -> int | None:
        """The port the endpoint is bound to, or ``None`` when it is not running."""
        server = self._server
        return server.port if server is not None else None

    @property
    def http_server_address(self) -> str | None:
        """The address the endpoint is bound to, or ``None`` when it is not running."""
        server = self._server
        return server.address if server is not None else None

    # ---- Pushgateway --------------------------------------------------------------------------

    def push_to_gateway(
        self,
        gateway_url: str | None = None,
        job: str = "truthound",
        grouping_key: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        method: str = "put",
        *,
        username: str | None = None,
        password: str | None = None,
        headers: Mapping[str, str] | None = None,
        raise_on_error: bool = False,
    ) -> bool:
        """Pushes the exposition to a Pushgateway; returns whether it succeeded.

        ``method`` ``"put"`` (alias ``"replace"``) replaces every metric of the grouping key,
        ``"post"`` (``"add"``) replaces only the metrics pushed, ``"delete"`` deletes the
        group. ``grouping_key`` labels follow ``job`` in the URL. ``username``/``password``
        send HTTP basic auth. A failure is counted in ``push_failures``, kept in
        ``last_push_error``, logged, and returns ``False``; it raises ``PushGatewayError``
        only with ``raise_on_error=True``. ``gateway_url`` defaults to
        ``config.push_gateway_url``.

        Arguments that can never work (a malformed ``gateway_url``, a ``grouping_key`` that is
        not a mapping, an unknown ``method``, an empty ``job``, a timeout that is not positive)
        raise ``InvalidArgumentError`` naming the argument, whatever ``raise_on_error`` says
        (the periodic push of ``start_pushing`` counts them as failed pushes instead).
        """
        _http.check_push_arguments(gateway_url, job, grouping_key, method, timeout)
        url = gateway_url or self.config.push_gateway_url
        try:
            if not url:
                raise PushGatewayError(
                    "no gateway_url given and config.push_gateway_url is not set"
                )
            _http.push(
                self._render(openmetrics=False),
                url,
                job,
                grouping_key,
                timeout,
                method,
                username,
                password,
                headers,
            )
        except (PushGatewayError, InvalidArgumentError) as error:
            self._push_failed(error)
            if raise_on_error:
                raise
            return False
        return True

    def _push_failed(self, error: BaseException) -> None:
        with self._push_lock:
            self._push_failures += 1
            self._last_push_error = str(error)
        _log.warning("%s", error)

    def _push_in_background(self, options: dict[str, Any]) -> None:
        """One push of the periodic pusher: any failure, even arguments that can never work
        (a malformed ``config.push_gateway_url``), is counted and logged, never raised."""
        try:
            self.push_to_gateway(**options)
        except Exception as error:
            self._push_failed(error)

    def delete_from_gateway(
        self,
        gateway_url: str | None = None,
        job: str = "truthound",
        grouping_key: Mapping[str, str] | None = None,
        timeout: float = 10.0,
        **options: Any,
    ) -> bool:
        """Deletes the grouping key's metrics from the Pushgateway (as ``push_to_gateway``)."""
        return self.push_to_gateway(
            gateway_url, job, grouping_key, timeout, method="delete", **options
        )

    @property
    def push_failures(self) -> int:
        """Pushes that failed (each also logged; the last message is ``last_push_error``)."""
        return self._push_failures

    @property
    def last_push_error(self) -> str | None:
        """The message of the most recent failed push, or ``None``."""
        return self._last_push_error

    def start_pushing(
        self,
        interval_seconds: float | None = None,
        job: str = "truthound",
        grouping_key: Mapping[str, str] | None = None,
        **options: Any,
    ) -> None:
        """Pushes every ``interval_seconds`` (default ``config.push_interval_seconds``) from a
        daemon thread until ``stop_pushing()``/``close()``; failures are counted
        (``push_failures``, ``last_push_error``), not raised, and the thread keeps pushing.
        Arguments given here that can never work raise ``InvalidArgumentError`` at once (a
        malformed ``config.push_gateway_url`` is a counted failure of each push)."""
        interval = interval_seconds or self.config.push_interval_seconds
        if not interval > 0:
            raise InvalidArgumentError(f"interval_seconds={interval!r}: must be positive")
        _http.check_push_arguments(
            options.get("gateway_url"),
            job,
            grouping_key,
            options.get("method", "put"),
            options.get("timeout", 10.0),
        )
        self.stop_pushing(final_push=False)
        stop = threading.Event()
        push_args: dict[str, Any] = {"job": job, "grouping_key": grouping_key, **options}

        def loop() -> None:
            while not stop.wait(interval):
                self._push_in_background(push_args)

        self._push_args = push_args
        self._push_stop = stop
        self._push_thread = threading.Thread(
            target=loop, name="truthound-metrics-push", daemon=True
        )
        self._push_thread.start()

    def stop_pushing(self, final_push: bool = True) -> None:
        """Stops the periodic push; by default pushes once more so the last values are sent."""
        stop, thread = self._push_stop, self._push_thread
        self._push_stop = self._push_thread = None
        if stop is None or thread is None:
            return
        stop.set()
        thread.join(timeout=30.0)
        if final_push:
            self._push_in_background(self._push_args)

    def close(self) -> None:
        """Stops the HTTP endpoint and the periodic push (after a final push)."""
        self.stop_pushing()
        self.stop_http_server()

    def __enter__(self) -> PrometheusMetricsBackend:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
