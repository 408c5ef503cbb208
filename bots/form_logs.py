"""Libraries log what they receive at DEBUG (slack_sdk's Socket Mode client every envelope, discord.py every gateway
event): a record carrying our "Connect Uppzy" form, whose API key field is in clear, is replaced by one line."""

from __future__ import annotations

import logging

__all__ = ["HIDDEN", "FormFilter", "hide_form"]

HIDDEN = "[a Connect Uppzy form submission: not logged, it carries an API key]"


class FormFilter(logging.Filter):
    """Replaces a record whose text contains `marker` (the form's callback or custom id) by HIDDEN."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not format is left to the handlers
            return True
        if self.marker in message:
            record.msg, record.args, record.exc_info, record.exc_text = HIDDEN, None, None, None
        return True


def hide_form(marker: str, *loggers: logging.Logger | str) -> None:
    """Put a FormFilter for `marker` on each logger (once: calling again adds nothing)."""
    for logger in loggers:
        target = logging.getLogger(logger) if isinstance(logger, str) else logger
        if not any(isinstance(f, FormFilter) and f.marker == marker for f in target.filters):
            target.addFilter(FormFilter(marker))
