"""Fixtures for the Discord end-to-end tests in this folder (kept apart from Slack's own `fake`)."""

from tests.discord_support import fake, h

__all__ = ["fake", "h"]
