"""Prometheus metrics for `/metrics` (CONTRACT §3), safe with several worker processes.

The call runtime reports what happens during calls through the small `Metrics` API
(`call_started`, `call_ended`, `agent_error`, `function_call`, `agent_latency`). Orders
and SMS are not counted in-process at all: at scrape time they are read from the store,
which is the one truth shared by every worker and every instance.

Multiprocess mode: prometheus-client picks its value storage when it is first imported,
from `PROMETHEUS_MULTIPROC_DIR`. `boba serve --workers N` sets that variable (under
`BOBA_DATA_DIR`) before any worker imports this module; a scrape then merges every
worker's files with `MultiProcessCollector`. Each `Metrics` owns its own registry, so
nothing here is module-level mutable state and tests can build as many as they like.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import msgspec
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from boba_proto.model import Order, OrderStatus
from boba_runtime.store.order_store import StoreError

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

CALL_DURATION_BUCKETS = (5.0, 15.0, 30.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0, 900.0)
FUNCTION_CALL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
AGENT_LATENCY_BUCKETS = (0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0)

SMS_KINDS = ("received", "ready")
# The outbox result column is free text ("failed:21211"); the label keeps only the class so
# a burst of distinct Twilio codes cannot blow up the number of series.
SMS_RESULTS = ("queued", "sent", "unknown", "failed")
OTHER_FUNCTION = "other"


class OrderSource(Protocol):
    """The part of `boba_runtime.store.order_store.OrderStore` a scrape needs."""

    async def list_orders(self, *, status: str = "active", limit: int = 50) -> list[Order]: ...


class StoreCounts(msgspec.Struct, frozen=True):
    """What the store says at scrape time."""

    orders_by_status: dict[str, int]
    sms_by_kind_result: dict[tuple[str, str], int]


def sms_result_class(result: str | None) -> str | None:
    """`failed:21211` → `failed`; `None` (not due) → `None` (not counted)."""
    if result is None:
        return None
    return "failed" if result.startswith("failed") else result


def count_orders(orders: Iterable[Order]) -> StoreCounts:
    """Tally orders by status and their outbox messages by (kind, result class)."""
    by_status = {status.value: 0 for status in OrderStatus}
    by_sms = {(kind, result): 0 for kind in SMS_KINDS for result in SMS_RESULTS}
    for order in orders:
        by_status[order.status.value] += 1
        for kind, raw in (("received", order.sms_received), ("ready", order.sms_ready)):
            result = sms_result_class(raw)
            if result is not None:
                by_sms[(kind, result)] = by_sms.get((kind, result), 0) + 1
    return StoreCounts(orders_by_status=by_status, sms_by_kind_result=by_sms)


async def read_store_counts(store: OrderSource, *, limit: int = 500) -> StoreCounts:
    """Counts straight from the store.

    A store that can count in SQL (`count_orders_by_status()` → {status: n} and
    `count_sms_by_result()` → {(kind, result): n}) is asked that way, so the numbers
    cover every order ever taken; otherwise the newest `limit` orders are tallied, which
    still covers every active order in a real shop.
    """
    count_status = getattr(store, "count_orders_by_status", None)
    count_sms = getattr(store, "count_sms_by_result", None)
    if count_status is not None and count_sms is not None:
        raw_status: dict[str, int] = await count_status()
        raw_sms: dict[tuple[str, str], int] = await count_sms()
        by_status = {status.value: 0 for status in OrderStatus} | dict(raw_status)
        by_sms = {(kind, result): 0 for kind in SMS_KINDS for result in SMS_RESULTS}
        for (kind, result), n in raw_sms.items():
            cls = sms_result_class(result)
            if cls is not None:
                by_sms[(kind, cls)] = by_sms.get((kind, cls), 0) + n
        return StoreCounts(orders_by_status=by_status, sms_by_kind_result=by_sms)
    return count_orders(await store.list_orders(status="all", limit=limit))


class _StoreSnapshotCollector(Collector):
    """Yields the store's counts taken just before this scrape (collect() cannot await)."""

    def __init__(self, counts: StoreCounts | None) -> None:
        self._counts = counts

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("boba_store_up", "1 when the store answered this scrape.")
        up.add_metric([], 0 if self._counts is None else 1)
        yield up
        if self._counts is None:
            return
        orders = GaugeMetricFamily(
            "boba_orders", "Orders in the store by status.", labels=["status"]
        )
        for status, n in sorted(self._counts.orders_by_status.items()):
            orders.add_metric([status], n)
        yield orders
        sms = GaugeMetricFamily(
            "boba_sms_messages",
            "SMS outbox messages by kind and result (queued, sent, unknown, failed).",
            labels=["kind", "result"],
        )
        for (kind, result), n in sorted(self._counts.sms_by_kind_result.items()):
            sms.add_metric([kind, result], n)
        yield sms


class Metrics:
    """The process's call metrics; one per `Services`, handed to whoever reports."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(
        self,
        *,
        function_names: Sequence[str] | None = None,
        multiprocess_dir: str | None = None,
    ) -> None:
        """`function_names` bounds the `name` label (anything else is `other`).

        `multiprocess_dir` defaults to `$PROMETHEUS_MULTIPROC_DIR`; when set, scrapes merge
        every worker's files from there instead of reading this process's registry.
        """
        self.multiprocess_dir = multiprocess_dir or os.environ.get(MULTIPROC_ENV) or None
        self._function_names = frozenset(function_names) if function_names else None
        self.registry = CollectorRegistry(auto_describe=True)
        self._calls_active = Gauge(
            "boba_calls_active",
            "Calls in progress.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self._calls_total = Counter("boba_calls", "Calls started.", registry=self.registry)
        self._call_duration = Histogram(
            "boba_call_duration_seconds",
            "Length of finished calls.",
            buckets=CALL_DURATION_BUCKETS,
            registry=self.registry,
        )
        self._agent_errors = Counter(
            "boba_agent_errors",
            "Agent failures: Error messages, unreachable or dropped agent connections.",
            registry=self.registry,
        )
        self._function_calls = Histogram(
            "boba_function_call_seconds",
            "Time to answer an agent function call, by function.",
            labelnames=["name"],
            buckets=FUNCTION_CALL_BUCKETS,
            registry=self.registry,
        )
        self._agent_latency = Histogram(
            "boba_agent_latency_seconds",
            "Agent response latency reported by AgentStartedSpeaking (total_latency).",
            buckets=AGENT_LATENCY_BUCKETS,
            registry=self.registry,
        )

    # --- reported by the call runtime ------------------------------------------------

    def call_started(self) -> None:
        self._calls_total.inc()
        self._calls_active.inc()

    def call_ended(self, duration_s: float) -> None:
        self._calls_active.dec()
        self._call_duration.observe(max(0.0, duration_s))

    def agent_error(self) -> None:
        self._agent_errors.inc()

    def function_call(self, name: str, seconds: float) -> None:
        if self._function_names is not None and name not in self._function_names:
            name = OTHER_FUNCTION
        self._function_calls.labels(name=name).observe(max(0.0, seconds))

    def agent_latency(self, total_s: float) -> None:
        self._agent_latency.observe(max(0.0, total_s))

    # --- the scrape ------------------------------------------------------------------

    def render(self, counts: StoreCounts | None) -> bytes:
        """Prometheus text: this process (or every worker) plus the store's counts.

        `counts` is None when the store did not answer: `boba_store_up` is then 0.
        """
        registry = CollectorRegistry(auto_describe=False)
        if self.multiprocess_dir:
            multiprocess.MultiProcessCollector(registry, path=self.multiprocess_dir)  # type: ignore[no-untyped-call]
            sources: list[CollectorRegistry] = [registry]
        else:
            sources = [self.registry, registry]
        registry.register(_StoreSnapshotCollector(counts))
        return b"".join(generate_latest(source) for source in sources)

    async def scrape(self, store: OrderSource | None) -> bytes:
        """Read the store's counts now and render everything.

        A store that does not answer leaves its series out rather than failing the scrape:
        the call series are exactly what an operator needs to see during such an outage.
        """
        counts: StoreCounts | None = None
        if store is not None:
            try:
                counts = await read_store_counts(store)
            except StoreError:  # the store logs its own failures where they happen
                counts = None
        return self.render(counts)


def prepare_multiprocess_dir(data_dir: Path) -> Path:
    """For `boba serve --workers N` (N > 1), in the parent before any worker starts.

    Makes `data_dir/prometheus`, empties it (files of an earlier run would be counted
    again), and sets `PROMETHEUS_MULTIPROC_DIR` so every worker, which inherits the
    environment and imports prometheus-client afresh, writes its values there.
    """
    path = Path(data_dir) / "prometheus"
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(path)
    return path


def mark_worker_dead(pid: int, multiprocess_dir: str | None = None) -> None:
    """Drop a finished worker's live gauges (serve calls this when a worker exits)."""
    path = multiprocess_dir or os.environ.get(MULTIPROC_ENV)
    if path:
        multiprocess.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
