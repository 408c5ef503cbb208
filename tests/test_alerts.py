"""deploy/alerts.yml only refers to metrics the bot really exports."""

from __future__ import annotations

import re
from pathlib import Path

from core.metrics import METRIC_NAMES, Metrics

ALERTS = Path(__file__).resolve().parent.parent / "deploy" / "alerts.yml"


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


def test_alert_rules_cover_what_the_guide_says_to_alert_on() -> None:
    """401s, 403 after deploy, sustained 429 and 5xx, timeouts, polling timeouts and a volume drop all have rules."""
    text = ALERTS.read_text()
    for alert in ("UppzyAuthFailing", "UppzyForbiddenAfterDeploy", "UppzyRateLimitedSustained",
                  "UppzyServerErrorsSustained", "UppzyTimeoutSpike", "UppzyAnswerTimeoutSpike",
                  "UppzyBotVolumeDrop"):
        assert f"alert: {alert}" in text
