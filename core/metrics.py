"""Prometheus metrics for everything the operations guide says to watch; one registry per process, passed down."""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.process_collector import ProcessCollector

from core.uppzy_types import CallRecord

__all__ = ["METRIC_NAMES", "OTHER_WORKSPACES", "Metrics", "WorkspaceLabels"]

OTHER_WORKSPACES = "other"  # the label of every workspace past the first METRICS_WORKSPACE_LABELS

_ERROR_KINDS = {
    "UppzyAuthError": "auth", "UppzyForbidden": "forbidden", "UppzyNotFound": "not_found",
    "UppzyBadRequest": "bad_request", "UppzyConflict": "conflict", "UppzyRejected": "rejected",
    "UppzyRateLimited": "rate_limited", "UppzyUnavailable": "unavailable", "UppzyTimeout": "timeout",
}


def _status_class(status: int | None) -> str:
    if status is None:
        return "none"
    return f"{status // 100}xx"


class WorkspaceLabels:
    """Bounded label values for workspaces: the first `limit` distinct ids seen keep their id, every later one is
    "other", so thousands of workspaces never make thousands of time series per metric (per process)."""

    def __init__(self, limit: int = 100) -> None:
        self.limit = limit
        self._kept: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, workspace: str) -> str:
        if workspace in self._kept:
            return workspace
        with self._lock:
            if workspace in self._kept or len(self._kept) < self.limit:
                self._kept.add(workspace)
                return workspace
        return OTHER_WORKSPACES


class _Bounded:
    """A labelled metric whose workspace label (position `index`) passes through WorkspaceLabels first."""

    __slots__ = ("_index", "_labels", "_metric")

    def __init__(self, metric: Any, index: int, labels: WorkspaceLabels) -> None:
        self._metric, self._index, self._labels = metric, index, labels

    def labels(self, *values: str) -> Any:
        shown = list(values)
        shown[self._index] = self._labels(str(shown[self._index]))
        return self._metric.labels(*shown)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._metric, name)


class Metrics:
    """The bot's counters, gauges and histograms (names start with uppzy_bot_); a `workspace` label is bounded by
    `workspace_labels` (METRICS_WORKSPACE_LABELS): the first N workspaces keep their id, the rest are "other"."""

    def __init__(self, registry: CollectorRegistry | None = None, *, workspace_labels: int = 100) -> None:
        self.workspace_labels = WorkspaceLabels(workspace_labels)
        self.registry = registry or CollectorRegistry()
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.uppzy_requests = Counter("uppzy_bot_uppzy_requests_total", "Uppzy API calls (each attempt)",
                                      ["endpoint", "status_class"], registry=r)
        self.uppzy_errors = Counter("uppzy_bot_uppzy_errors_total", "Failed Uppzy attempts by what went wrong",
                                    ["endpoint", "kind"], registry=r)
        self.uppzy_seconds = Histogram("uppzy_bot_uppzy_request_seconds", "Uppzy call latency", ["endpoint"],
                                       buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 90),
                                       registry=r)
        self.uppzy_retries = Counter("uppzy_bot_uppzy_retries_total", "Uppzy attempts after the first",
                                     ["endpoint"], registry=r)
        self.questions = Counter("uppzy_bot_questions_total", "Questions accepted", ["platform", "workspace"],
                                 registry=r)
        self.deduplicated = Counter("uppzy_bot_events_deduplicated_total", "Redelivered events dropped",
                                    ["platform"], registry=r)
        self.delivered = Counter("uppzy_bot_answers_delivered_total", "Answers posted",
                                 ["platform", "workspace"], registry=r)
        self.failed = Counter("uppzy_bot_answers_failed_total", "Questions ended with an error notice",
                              ["platform", "workspace", "reason"], registry=r)
        self.kept = Counter("uppzy_bot_answers_kept_total",
                            "Answers the platform refused past the delivery retries, kept for a later sweep",
                            ["platform", "workspace"], registry=r)
        self.answer_timeouts = Counter("uppzy_bot_answer_timeouts_total", "Answers not ready within the budget",
                                       ["platform", "workspace"], registry=r)
        self.answer_seconds = Histogram("uppzy_bot_answer_seconds", "Question received to answer posted",
                                        ["platform"], buckets=(1, 2, 3, 5, 8, 13, 20, 30, 45, 60, 90, 120, 180),
                                        registry=r)
        self.pending = Gauge("uppzy_bot_pending_requests", "Requests waiting for Uppzy's answer", registry=r)
        self.poll_rate = Gauge("uppzy_bot_poll_rate",
                               "Status polls per second the budget allows now (adapts up to UPPZY_POLL_RATE)",
                               registry=r)
        self.feedback = Counter("uppzy_bot_feedback_total", "Ratings sent to Uppzy",
                                ["platform", "workspace", "rating"], registry=r)
        self.human_requests = Counter("uppzy_bot_human_requests_total",
                                      '"Talk to a human" requests on answers, by what happened',
                                      ["platform", "outcome"], registry=r)
        self.sessions_opened = Counter("uppzy_bot_sessions_opened_total", "Uppzy sessions started",
                                       ["platform", "workspace"], registry=r)
        self.sessions_closed = Counter("uppzy_bot_sessions_closed_total", "Uppzy sessions closed",
                                       ["platform", "reason"], registry=r)
        self.platform_up = Gauge("uppzy_bot_platform_connected", "1 while a platform connection is up",
                                 ["platform"], registry=r)

        for name in ("questions", "delivered", "failed", "kept", "answer_timeouts", "feedback", "sessions_opened"):
            metric = getattr(self, name)
            setattr(self, f"_{name}_series", metric)  # the metric itself stays reachable (vars(metrics) lists it)
            setattr(self, name, _Bounded(metric, 1, self.workspace_labels))

    def observe_call(self, record: CallRecord) -> None:
        """UppzyClient observer: one call per HTTP attempt."""
        self.uppzy_requests.labels(record.endpoint, _status_class(record.status)).inc()
        self.uppzy_seconds.labels(record.endpoint).observe(record.seconds)
        if record.attempt > 1:
            self.uppzy_retries.labels(record.endpoint).inc()
        if record.error:
            self.uppzy_errors.labels(record.endpoint, _ERROR_KINDS.get(record.error, "other")).inc()

    def render(self) -> bytes:
        """The text exposition format for /metrics."""
        return generate_latest(self.registry)


METRIC_NAMES = (
    "uppzy_bot_uppzy_requests_total", "uppzy_bot_uppzy_errors_total", "uppzy_bot_uppzy_request_seconds",
    "uppzy_bot_uppzy_retries_total", "uppzy_bot_questions_total", "uppzy_bot_events_deduplicated_total",
    "uppzy_bot_answers_delivered_total", "uppzy_bot_answers_failed_total", "uppzy_bot_answer_timeouts_total",
    "uppzy_bot_answer_seconds", "uppzy_bot_pending_requests", "uppzy_bot_feedback_total",
    "uppzy_bot_sessions_opened_total", "uppzy_bot_sessions_closed_total", "uppzy_bot_platform_connected",
    "uppzy_bot_poll_rate", "uppzy_bot_human_requests_total",
)
