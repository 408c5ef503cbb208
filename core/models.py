"""Neutral value types passed between adapters and core; ids are strings core never interprets."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

__all__ = [
    "PRIVATE",
    "Accepted",
    "Answer",
    "Counts",
    "FeedbackClaim",
    "FeedbackEvent",
    "FeedbackOutcome",
    "FeedbackResult",
    "HumanOutcome",
    "HumanRequest",
    "HumanResult",
    "Ignored",
    "InboundMessage",
    "MessagePlace",
    "Notice",
    "NoticeKind",
    "Rating",
    "Rejected",
    "ReplyTarget",
    "SessionRow",
    "Turn",
    "TurnState",
]

Rating = Literal["good", "bad"]
PRIVATE = "private"  # ReplyTarget extra: the channel a private question was asked in (only the asker sees its answer)


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where a question was asked and so where its answer goes.

    `channel_id` is the conversation's channel (a thread's parent); `message_channel_id` is where the user's
    message really lives (inside a Discord thread that is the thread id); `thread_id` is the thread root
    (Slack thread_ts, Discord thread channel id) or None for a top-level message or DM.
    """

    platform: str
    workspace_id: str
    channel_id: str
    message_channel_id: str
    message_id: str
    user_id: str
    thread_id: str | None = None
    is_dm: bool = False
    extras: tuple[tuple[str, str], ...] = ()

    def extra(self, key: str, default: str | None = None) -> str | None:
        """An adapter-specific routing hint (e.g. Slack assistant thread), stored with the question."""
        return dict(self.extras).get(key, default)

    @property
    def thread_root(self) -> str:
        """The thread this conversation continues in: the given thread, else the question starts one."""
        return self.thread_id or self.message_id


class MessagePlace(StrEnum):
    """Where a message was written, as far as deciding whether to answer it goes."""

    DIRECT = "direct"  # a DM (or the terminal): always a question
    CHANNEL = "channel"  # a top-level channel message
    THREAD = "thread"  # a reply inside a thread
    FORUM_POST = "forum_post"  # the opening message of a forum post


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A user's message, already stripped of the bot mention; `event_key` de-duplicates redeliveries.

    The adapter says what it saw (`place`, whether the bot was `mentioned`, whether only attachments came); core's
    router decides whether it is a question.
    """

    target: ReplyTarget
    text: str
    event_key: str
    email: str | None = None
    received_at: float = field(default_factory=time.time)
    place: MessagePlace = MessagePlace.DIRECT
    mentioned: bool = False
    attachments_only: bool = False


class TurnState(StrEnum):
    """Life of one question; only the states before ANSWERED/FAILED are resumed after a restart."""

    QUEUED = "queued"  # recorded, waiting for its session's earlier question
    SUBMITTING = "submitting"  # async submit in flight: outcome unknown if we crash now
    PENDING = "pending"  # Uppzy accepted it; request_id stored; polling
    READY = "ready"  # answer fetched and stored, not yet posted
    DELIVERING = "delivering"  # posting to the platform
    NOTIFYING = "notifying"  # no answer: posting the one failure notice (resumed after a crash)
    ANSWERED = "answered"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        """True while the question still needs work."""
        return self not in (TurnState.ANSWERED, TurnState.FAILED)


@dataclass(frozen=True, slots=True)
class Turn:
    """One stored question with everything needed to finish it after a restart."""

    id: int
    target: ReplyTarget
    session_id: str
    site_id: str
    state: TurnState
    text: str | None
    email: str | None
    request_id: str | None
    created_at: float
    submitted_at: float | None
    answer: str | None = None
    confidence_score: float | None = None
    confidence_level: str | None = None
    error_kind: str | None = None
    notice_kind: str | None = None
    notice: str | None = None
    opened_session: bool = False  # set by record_question when this question started a new session


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer ready to post: Markdown text plus what the adapter needs to decorate it."""

    text: str
    request_id: str
    confidence_score: float | None
    confidence_level: str | None
    low_confidence_note: str | None
    delivery_key: str  # stable per question: lets an adapter de-duplicate a post retried after a crash


class NoticeKind(StrEnum):
    """Why core is posting something that is not an answer."""

    FAILED = "failed"
    TIMEOUT = "timeout"
    EMPTY = "empty"
    TOO_LONG = "too_long"
    LOST = "lost"
    IDLE_CLOSED = "idle_closed"
    ENDED = "ended"
    UNAVAILABLE = "unavailable"
    TEXT_ONLY = "text_only"  # only attachments came: the bot reads text (adapters show it to the sender alone)
    NOT_RECORDED = "not_recorded"  # the store could not record the question (disk full, read-only): send it again
    NOT_CONNECTED = "not_connected"  # the workspace has no Uppzy connection and the deployment no default key


@dataclass(frozen=True, slots=True)
class Notice:
    """A short friendly line for the conversation; never an API detail."""

    kind: NoticeKind
    text: str


@dataclass(frozen=True, slots=True)
class Accepted:
    """The question is recorded; its answer (or one clear error) will follow."""

    turn_id: int
    session_id: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """The question was not taken; `notice` has been posted (or `duplicate` says why not)."""

    reason: str
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class Ignored:
    """The message is not a question for the bot here (channel off, not mentioned, someone else's thread)."""

    reason: str
    duplicate: bool = False


@dataclass(frozen=True, slots=True)
class FeedbackEvent:
    """A reaction or button on a message; core decides whether it is a rating of an answer."""

    platform: str
    workspace_id: str
    message_id: str
    user_id: str
    source: Literal["reaction", "button"]
    emoji: str | None = None  # reactions: the platform's emoji name; core maps it by workspace settings
    rating: Rating | None = None  # buttons say it directly
    removed: bool = False
    channel_id: str | None = None  # where the rated message lives, when its id is unique only per channel (Slack)


class FeedbackOutcome(StrEnum):
    """What happened to a rating, so the adapter can thank or explain."""

    RECORDED = "recorded"
    ALREADY_RATED = "already_rated"
    NOT_ALLOWED = "not_allowed"
    NOT_AN_ANSWER = "not_an_answer"
    IGNORED = "ignored"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    """Outcome of a rating with the text an adapter may show privately to the rater."""

    outcome: FeedbackOutcome
    rating: Rating | None = None
    message: str | None = None
    turn: Turn | None = None


@dataclass(frozen=True, slots=True)
class HumanRequest:
    """Someone asked for a person to look at an answer ("Talk to a human" on the answer's message)."""

    platform: str
    workspace_id: str
    message_id: str
    user_id: str
    channel_id: str | None = None  # where the answer lives, when message ids are unique only per channel (Slack)


class HumanOutcome(StrEnum):
    """What a "Talk to a human" request did (also the metric's `outcome` label)."""

    SENT = "sent"
    ALREADY_SENT = "already_sent"
    NOT_CONFIGURED = "not_configured"
    NOT_AN_ANSWER = "not_an_answer"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class HumanResult:
    """Outcome of a human request, with the escalation target that was (or would have been) notified."""

    outcome: HumanOutcome
    escalation_target: str | None = None
    turn: Turn | None = None


@dataclass(frozen=True, slots=True)
class FeedbackClaim:
    """The rating already reserved for an answer: `sending` until Uppzy confirmed it, then `sent`."""

    rating: Rating
    state: Literal["sending", "sent"]
    at: float


@dataclass(frozen=True, slots=True)
class SessionRow:
    """A stored Uppzy session and the last question asked in it (where notices go)."""

    id: str
    key: str
    platform: str
    workspace_id: str
    site_id: str
    state: str
    last_activity: float
    idle_timeout: float
    last_target: ReplyTarget | None


@dataclass(frozen=True, slots=True)
class Counts:
    """Questions still in flight and open sessions (of one workspace, or of all)."""

    pending: int
    open_sessions: int
