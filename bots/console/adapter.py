"""The terminal as a chat platform: proves the port, powers `make demo`, and drives the restart test."""

from __future__ import annotations

import itertools
import re
import sys
import time
from typing import TextIO

from core.models import Answer, InboundMessage, Notice, ReplyTarget

__all__ = ["ConsoleAdapter"]

_BOLD = re.compile(r"\*\*(.+?)\*\*")


class ConsoleAdapter:
    """Prints answers and notices to a stream; one user ('you') in one channel ('terminal')."""

    platform = "console"
    feedback_emoji = (("good",), ("bad",))

    def __init__(self, out: TextIO | None = None, *, color: bool | None = None, user_id: str = "you") -> None:
        self.out = out or sys.stdout
        self.color = self.out.isatty() if color is None else color
        self.user_id = user_id
        self._ids = itertools.count(1)
        self._run = f"{int(time.time() * 1000):x}"
        self.last_answer_id: str | None = None
        self.working: set[str] = set()
        self.transcript: list[tuple[str, str, str]] = []  # (kind, question id, text): what a reader saw

    def message(self, text: str) -> InboundMessage:
        """Wrap a typed line as a neutral question with an id unique across restarts."""
        message_id = f"{self._run}-{next(self._ids)}"
        target = ReplyTarget(platform="console", workspace_id="local", channel_id="terminal",
                             message_channel_id="terminal", message_id=message_id, user_id=self.user_id)
        return InboundMessage(target=target, text=text, event_key=message_id)

    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _style(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    async def show_working(self, target: ReplyTarget) -> None:
        """A visible 'working' line."""
        self.working.add(target.message_id)
        self._print(self._style(f"  … thinking about #{target.message_id}", "2"))

    async def clear_working(self, target: ReplyTarget) -> None:
        """Nothing to erase in a scrolling terminal; just forget it."""
        self.working.discard(target.message_id)

    async def post_answer(self, target: ReplyTarget, answer: Answer, *, recovering: bool = False) -> list[str]:
        """Print the answer with its confidence; its id is what /good and /bad rate."""
        answer_id = f"a-{target.message_id}"
        body = _BOLD.sub(lambda m: self._style(m.group(1), "1"), answer.text) if self.color else answer.text
        confidence = ""
        if answer.confidence_level or answer.confidence_score is not None:
            score = f" {answer.confidence_score:.0f}/100" if answer.confidence_score is not None else ""
            confidence = f" (confidence: {answer.confidence_level or '?'}{score})"
        self._print(self._style(f"uppzy ▸ answer to #{target.message_id}{confidence}", "36"))
        self._print(body)
        if answer.low_confidence_note:
            self._print(self._style(f"⚠ {answer.low_confidence_note}", "33"))
        self._print(self._style("  rate it with /good or /bad", "2"))
        self.last_answer_id = answer_id
        self.transcript.append(("answer", target.message_id, answer.text))
        return [answer_id]

    async def post_notice(self, target: ReplyTarget, notice: Notice) -> None:
        """Print a notice line."""
        self.transcript.append((notice.kind.value, target.message_id, notice.text))
        self._print(self._style(f"uppzy ▸ notice for #{target.message_id} [{notice.kind.value}]: {notice.text}",
                                "33"))

    async def user_email(self, workspace_id: str, user_id: str) -> str | None:
        """Bots cannot see members' email addresses here."""
        return None

    async def escalate(self, target: ReplyTarget, escalation_target: str, answer_message_id: str) -> None:
        """In a terminal there is nobody to ping; say who would have been."""
        self._print(self._style(f"uppzy ▸ (would notify {escalation_target} about a bad answer)", "2"))
