"""What Uppzy's M2M chat API answers, as typed values: read leniently (a field of the wrong type is absent)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "TERMINAL_STATUSES",
    "CallRecord",
    "ChatAnswer",
    "Confidence",
    "FeedbackReceipt",
    "Rating",
    "RequestStatus",
    "SessionInfo",
    "Submission",
    "Timeouts",
    "confidence_of",
    "text_of",
]

Rating = Literal["good", "bad"]
TERMINAL_STATUSES = frozenset({"completed", "failed"})


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds allowed per call: connect, every quick call in total, and sync chat in total."""

    connect: float = 5.0
    default: float = 10.0
    chat: float = 75.0  # the guide documents up to 60 s for sync chat


@dataclass(frozen=True, slots=True)
class Confidence:
    """Uppzy's confidence in an answer: score 0-100 and a level such as 'high' or 'low'."""

    score: float | None = None
    level: str | None = None

    @property
    def is_low(self) -> bool:
        """True when Uppzy itself says low, or the score is under 40 with no level given."""
        if self.level:
            return self.level.lower() == "low"
        return self.score is not None and self.score < 40


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    """A sync chat answer."""

    session_id: str
    request_id: str
    answer: str
    confidence: Confidence
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True, slots=True)
class Submission:
    """What async submit returns: the handle to poll."""

    request_id: str
    session_id: str
    status: str
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True, slots=True)
class RequestStatus:
    """One poll of an async request; `done` once completed or failed (any other status is in progress)."""

    request_id: str
    session_id: str
    status: str
    answer: str | None
    error: str | None
    confidence: Confidence
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @property
    def done(self) -> bool:
        """True when Uppzy will not change this request any more."""
        return self.status in TERMINAL_STATUSES


@dataclass(frozen=True, slots=True)
class FeedbackReceipt:
    """Feedback accepted; `first` is False when Uppzy already had a rating (no timestamp comes back)."""

    request_id: str
    feedback: str
    submitted_at: str | None

    @property
    def first(self) -> bool:
        """True when this call recorded the rating, False when Uppzy kept an earlier one."""
        return self.submitted_at is not None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One entry of the session list."""

    id: str
    created_at: str | None
    updated_at: str | None
    closed_at: str | None
    message_count: int | None
    raw: Mapping[str, Any] = field(repr=False, default_factory=dict)

    @property
    def open(self) -> bool:
        """True while the session accepts messages."""
        return self.closed_at is None


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One HTTP attempt, handed to the observer for metrics."""

    endpoint: str
    status: int | None
    seconds: float
    attempt: int
    error: str | None


def confidence_of(data: Mapping[str, Any]) -> Confidence:
    score = data.get("confidence_score")
    level = data.get("confidence_level")
    return Confidence(
        score=float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None,
        level=level if isinstance(level, str) and level else None,
    )


def text_of(data: Mapping[str, Any], key: str, default: str = "") -> str:
    value = data.get(key)
    return value if isinstance(value, str) else default
