"""Fixtures for the Slack end-to-end tests in this folder (kept apart from Discord's own `fake`)."""

from tests.slack_support import fake, make_rig, rig

__all__ = ["fake", "make_rig", "rig"]
