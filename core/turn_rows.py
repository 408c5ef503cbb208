"""A question as both stores keep it: the column list they select and the one mapping from a row to a Turn."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from core.models import ReplyTarget, Turn, TurnState

__all__ = ["TURN_COLUMNS", "turn_from_row"]

TURN_COLUMNS = (
    "id, platform, workspace_id, channel_id, message_channel_id, message_id, thread_id, user_id, is_dm, extras, "
    "session_id, site_id, state, text, email, request_id, created_at, submitted_at, answer, confidence_score, "
    "confidence_level, error_kind, notice_kind, notice"
)


def turn_from_row(row: Sequence[Any]) -> Turn:
    """The Turn of a row selected with TURN_COLUMNS (extras kept as JSON)."""
    target = ReplyTarget(
        platform=row[1], workspace_id=row[2], channel_id=row[3], message_channel_id=row[4], message_id=row[5],
        thread_id=row[6], user_id=row[7], is_dm=bool(row[8]), extras=tuple(tuple(p) for p in json.loads(row[9])),
    )
    return Turn(
        id=row[0], target=target, session_id=row[10], site_id=row[11], state=TurnState(row[12]), text=row[13],
        email=row[14], request_id=row[15], created_at=row[16], submitted_at=row[17], answer=row[18],
        confidence_score=row[19], confidence_level=row[20], error_kind=row[21], notice_kind=row[22],
        notice=row[23],
    )
