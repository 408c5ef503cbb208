"""deploy/alerts.yml only refers to metrics the bot really exports, and says when the bot itself is gone."""

from __future__ import annotations

import re

from core.metrics import METRIC_NAMES, Metrics
from tests.deploy_support import DEPLOY, TARGET_LABELS, exported_series, grouping_labels, metric_names, selector_labels

ALERTS = DEPLOY / "alerts.yml"


def _rules() -> dict[str, str]:
    """alert name -> its expression (a one-line or folded `expr:`), read without a YAML library."""
    rules: dict[str, str] = {}
    for block in re.split(r"^\s*- alert: ", ALERTS.read_text(), flags=re.M)[1:]:
        name, _, rest = block.partition("\n")
        match = re.search(r"^\s*expr:\s*(>?)\s*(.*?)(?=^\s*(?:for|labels|annotations):)", rest, re.M | re.S)
        assert match, f"rule {name} has no expr"
        rules[name.strip()] = " ".join(match.group(2).split())
    return rules


def test_every_metric_in_the_alert_rules_is_exported() -> None:
    """Each uppzy_bot_* or process_* name used in an alert expression appears on /metrics."""
    metrics = Metrics()
    metrics.uppzy_requests.labels("chat_async", "2xx").inc()
    exported = metrics.render().decode()
    used = set(re.findall(r"\b((?:uppzy_bot|process)_[a-z_]+)\b", ALERTS.read_text()))
    assert used, "no metric names found in alerts.yml"
    for name in sorted(used):
        assert re.search(rf"^# (?:HELP|TYPE) {name}\b", exported, re.M) or f"\n{name}" in exported, name
    assert used - {"process_start_time_seconds"} <= set(METRIC_NAMES)


def test_every_rule_reads_exported_series_and_labels() -> None:
    """Per rule: the series exist under those exact names, and every label it selects or groups by exists."""
    series = exported_series()
    for name, expr in _rules().items():
        used = metric_names(expr)
        assert used <= series.keys(), f"{name}: {sorted(used - series.keys())} are not exported"
        known = set().union(*(series[m] for m in used), TARGET_LABELS) if used else set(TARGET_LABELS)
        for metric, keys in selector_labels(expr).items():
            assert keys <= series[metric] | TARGET_LABELS, f"{name}: {metric} has no label {keys - series[metric]}"
        assert grouping_labels(expr) <= known, f"{name}: groups by {grouping_labels(expr) - known}"


def test_alert_rules_cover_what_the_guide_says_to_alert_on() -> None:
    """401s, 403 after deploy, sustained 429 and 5xx, timeouts, polling timeouts and a volume drop all have rules."""
    text = ALERTS.read_text()
    for alert in ("UppzyAuthFailing", "UppzyForbiddenAfterDeploy", "UppzyRateLimitedSustained",
                  "UppzyServerErrorsSustained", "UppzyTimeoutSpike", "UppzyAnswerTimeoutSpike",
                  "UppzyBotVolumeDrop"):
        assert f"alert: {alert}" in text


def test_a_rule_fires_when_the_bot_or_its_metrics_are_gone() -> None:
    """`absent()` of a series the bot exports from its first scrape on, even idle: down or never scraped."""
    rules = _rules()
    down = [expr for expr in rules.values() if re.search(r"\babsent(?:_over_time)?\(\s*uppzy_bot_", expr)]
    assert down, "no rule notices that the bot's metrics are absent"
    idle = Metrics().render().decode()  # a freshly started bot that has seen nothing yet
    for expr in down:
        series = re.search(r"absent(?:_over_time)?\(\s*([a-z_]+)", expr).group(1)  # type: ignore[union-attr]
        assert re.search(rf"^{series}(?:\{{[^}}]*\}})? ", idle, re.M), f"{series} is not exported by an idle bot"


def test_no_rule_depends_on_the_scrape_job_name() -> None:
    """Operators name their scrape jobs freely: no `job=` / `job=~` matcher anywhere."""
    for name, expr in _rules().items():
        assert not re.search(r"\bjob\s*(?:=~|!~|!=|=)", expr), f"{name} matches on the job name: {expr}"
