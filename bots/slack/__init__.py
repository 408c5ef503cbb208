"""Slack: the bolt app, event translation, outbound adapter, formatting, admin surfaces and strings."""
