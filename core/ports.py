"""The port between core and each chat platform: adapters implement ChatPlatform and call the Relay."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from core.models import Answer, Notice, ReplyTarget

__all__ = ["ChatPlatform"]


@runtime_checkable
class ChatPlatform(Protocol):
    """What core asks of a platform; every method may raise, and core retries or logs."""

    platform: str
    feedback_emoji: tuple[tuple[str, ...], tuple[str, ...]]  # (good, bad) default reaction names on this platform

    async def show_working(self, target: ReplyTarget) -> None:
        """Show that an answer is on its way (reaction, typing, status)."""

    async def clear_working(self, target: ReplyTarget) -> None:
        """Take the working indicator away again."""

    async def post_answer(self, target: ReplyTarget, answer: Answer, *, recovering: bool = False) -> list[str]:
        """Post the answer in the question's thread; return the ids of every message posted.

        `recovering` is True when a previous attempt may have posted already (crash mid-post): the adapter
        should use `answer.delivery_key` to avoid a second copy where the platform allows it.
        """
        ...

    async def post_notice(self, target: ReplyTarget, notice: Notice) -> None:
        """Post a short non-answer line (error, idle close) in the conversation."""

    async def escalate(self, target: ReplyTarget, escalation_target: str, answer_message_id: str) -> None:
        """Tell the configured people that an answer was rated bad, with a link to the thread."""
