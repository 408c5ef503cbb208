"""Every user-visible sentence core produces, in one place, so none leaks an API detail."""

from __future__ import annotations

__all__ = [
    "ALREADY_RATED",
    "ANSWER_SHORTENED",
    "DEFAULT_FALLBACK",
    "DEFAULT_LOW_CONFIDENCE_NOTE",
    "EMPTY_MESSAGE",
    "FEEDBACK_FAILED",
    "LOST_IN_RESTART",
    "NOT_AN_ANSWER",
    "NOT_CONNECTED",
    "NOT_RECORDED",
    "NOT_YOUR_ANSWER",
    "SESSION_ENDED",
    "TEXT_ONLY",
    "THANKS_BAD",
    "THANKS_GOOD",
    "TIMED_OUT",
    "UNAVAILABLE",
    "human_duration",
    "idle_closed",
    "too_long",
]

DEFAULT_FALLBACK = "Sorry, I couldn't get an answer to that right now. Please try again in a moment."
DEFAULT_LOW_CONFIDENCE_NOTE = "I'm not fully sure about this one; please double-check or ask a colleague."
TIMED_OUT = "Sorry, this is taking much longer than usual, so I've stopped waiting. Please ask again."
UNAVAILABLE = "The assistant isn't available right now. Your admins have been told; please try again later."
LOST_IN_RESTART = "Sorry, I lost track of your question while restarting. Please ask it again."
TEXT_ONLY = "I can only read text for now. Please type your question as a message."
EMPTY_MESSAGE = "It looks like your message was empty. What would you like to ask?"
SESSION_ENDED = "Conversation ended. Your next message starts a fresh one."
THANKS_GOOD = "Thanks for the feedback! 👍"
THANKS_BAD = "Thanks for telling us. We'll use it to improve the answers."
ALREADY_RATED = "You've already rated this answer; the first rating is the one that counts."
NOT_YOUR_ANSWER = "Only the person who asked the question can rate this answer."


NOT_AN_ANSWER = "That message isn't one of my answers, so there's nothing to rate."
NOT_CONNECTED = "Uppzy is not connected yet — ask an admin to connect this workspace to its Uppzy site."
NOT_RECORDED = "Sorry, I couldn't take your question just now. Please send it again in a minute."
FEEDBACK_FAILED = "Sorry, I couldn't record your rating just now. Please try again in a minute."
ANSWER_SHORTENED = "_(This answer was too long to post in full, so it has been shortened here.)_"


def human_duration(seconds: float) -> str:
    """'30 minutes', '2 hours', '45 seconds': how a person says an idle timeout."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if count != 1 else ''}"
    if seconds >= 60:
        minutes = round(seconds / 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    count = round(seconds)
    return f"{count} second{'s' if count != 1 else ''}"


def idle_closed(seconds: float, *, direct: bool = False) -> str:
    """The idle-close notice; in a direct message there is nobody to mention, so it says 'message me'."""
    how = "send me a message" if direct else "mention me"
    return f"This conversation was closed after {human_duration(seconds)} of inactivity; {how} to start again."


def too_long(limit: int) -> str:
    """Refusal for an over-long question."""
    return f"That message is too long for me ({limit:,} characters at most). Could you shorten it?"
