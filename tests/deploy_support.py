"""What the bot's /metrics really exports, for the tests that check deploy/ (alerts, dashboard) against it."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.metrics import MetricWrapperBase

from core.metrics import Metrics

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
TARGET_LABELS = frozenset({"job", "instance"})  # added by Prometheus to every scraped series
_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
_NAME = re.compile(r"\b((?:uppzy_bot|process)_[a-z_]+)\b")


def exported_series() -> dict[str, frozenset[str]]:
    """Every series name a scrape can return, with the labels it carries (a histogram's `_bucket` adds `le`)."""
    metrics = Metrics()
    labels = {w._name: frozenset(w._labelnames) for w in vars(metrics).values()  # type: ignore[attr-defined]
              if isinstance(w, MetricWrapperBase)}
    series: dict[str, frozenset[str]] = {}
    for family in metrics.registry.collect():
        for suffix in _SUFFIXES.get(family.type, ("",)):
            own = labels.get(family.name, labels.get(family.name + "_total", frozenset()))
            series[family.name + suffix] = own | ({"le"} if suffix == "_bucket" else set())
    return series


def metric_names(expr: str) -> set[str]:
    """The uppzy_bot_* and process_* series an expression reads."""
    return set(_NAME.findall(expr))


def selector_labels(expr: str) -> dict[str, set[str]]:
    """Label names used in each series selector `name{a="x", b=~"y"}` of an expression."""
    found: dict[str, set[str]] = {}
    for name, body in re.findall(r"\b((?:uppzy_bot|process)_[a-z_]+)\{([^}]*)\}", expr):
        found.setdefault(name, set()).update(re.findall(r"([a-zA-Z_]+)\s*(?:=~|!~|!=|=)", body))
    return found


def grouping_labels(expr: str) -> set[str]:
    """Label names in `by (…)`, `on (…)` and `ignoring (…)` clauses."""
    return {label.strip() for group in re.findall(r"\b(?:by|on|ignoring)\s*\(([^)]*)\)", expr)
            for label in group.split(",") if label.strip()}
