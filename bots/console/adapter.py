"""The terminal as a chat platform: proves the port, powers `make demo`, and drives the restart test."""

from __future__ import annotations

import itertools
import time
from typing import TextIO

from bots.console.screen import Screen
from core.models import Answer, InboundMessage, Notice, NoticeKind, ReplyTarget

__all__ = ["ConsoleAdapter"]

_QUOTE_CHARS = 40
_ABOUT_A_QUESTION = {NoticeKind.FAILED, NoticeKind.TIMEOUT, NoticeKind.LOST}  # notices that end one question


class ConsoleAdapter:
    """Shows answers and notices in a terminal: one user ('you') in a direct conversation with the bot.

    Message ids stay internal: answers name the question they answer by its text.
    """

    platform = "console"
    feedback_emoji = (("good",), ("bad",))
    working_after = 0.0  # the "… thinking" line costs no platform call: core shows it at once

    def __init__(self, out: TextIO | None = None, *, color: bool | None = None, user_id: str = "you",
                 screen: Screen | None = None) -> None:
        self.screen = screen or Screen(out, tty=color)
        self.out = self.screen.out
        self.color = self.screen.tty
        self.user_id = user_id
        self._ids = itertools.count(1)
        self._run = f"{int(time.time() * 1000):x}"
        self._asked: dict[str, str] = {}  # message id -> what was asked, for this run's answers
        self.last_answer_id: str | None = None
        self.working: set[str] = set()
        self.transcript: list[tuple[str, str, str]] = []  # (kind, question id, text): what a reader saw

    def message(self, text: str) -> InboundMessage:
        """Wrap a typed line as a direct-message question with an id unique across restarts."""
        message_id = f"{self._run}-{next(self._ids)}"
        self._asked[message_id] = text
        target = ReplyTarget(platform="console", workspace_id="local", channel_id="terminal",
                             message_channel_id="terminal", message_id=message_id, user_id=self.user_id,
                             is_dm=True)
        return InboundMessage(target=target, text=text, event_key=message_id)

    def about(self, message_id: str) -> str:
        """How the user recognises a question: its text, shortened; or that it was asked before a restart."""
        text = self._asked.get(message_id)
        if text is None:
            return "a question from before the restart"
        line = " ".join(text.split())
        return f"“{line if len(line) <= _QUOTE_CHARS else line[: _QUOTE_CHARS - 1] + '…'}”"

    async def show_working(self, target: ReplyTarget) -> None:
        """A visible 'working' line."""
        self.working.add(target.message_id)
        self.screen.show("  … thinking", style="dim")

    async def clear_working(self, target: ReplyTarget) -> None:
        """Nothing to erase in a scrolling terminal; just forget it."""
        self.working.discard(target.message_id)

    async def post_answer(self, target: ReplyTarget, answer: Answer, *, recovering: bool = False) -> list[str]:
        """Show the answer (Markdown rendered on a TTY) with its confidence; /good and /bad rate the last one."""
        answer_id = f"a-{target.message_id}"
        confidence = ""
        if answer.confidence_level or answer.confidence_score is not None:
            score = f" {answer.confidence_score:.0f}/100" if answer.confidence_score is not None else ""
            confidence = f" (confidence: {answer.confidence_level or '?'}{score})"
        parts = [(f"uppzy ▸ answer to {self.about(target.message_id)}{confidence}", "bold cyan", False),
                 (answer.text, "", True)]
        if answer.low_confidence_note:
            parts.append((f"⚠ {answer.low_confidence_note}", "yellow", False))
        parts.append(("  rate it with /good or /bad", "dim", False))
        self.screen.show_parts(parts)
        self.last_answer_id = answer_id
        self.transcript.append(("answer", target.message_id, answer.text))
        return [answer_id]

    async def post_notice(self, target: ReplyTarget, notice: Notice) -> None:
        """Show a notice; one that ends a question says which."""
        self.transcript.append((notice.kind.value, target.message_id, notice.text))
        about = f" (about {self.about(target.message_id)})" if notice.kind in _ABOUT_A_QUESTION else ""
        self.screen.show(f"uppzy ▸ {notice.text}{about}", style="yellow")

    async def user_email(self, workspace_id: str, user_id: str) -> str | None:
        """Bots cannot see members' email addresses here."""
        return None

    async def escalate(self, target: ReplyTarget, escalation_target: str, answer_message_id: str, *,
                       requested_by: str | None = None) -> None:
        """In a terminal there is nobody to ping; say who would have been."""
        why = "a request for a human" if requested_by else "a bad answer"
        self.screen.show(f"uppzy ▸ (would notify {escalation_target} about {why})", style="dim")
