"""Slack's agent messaging experience: suggested prompts when the Messages tab opens, a title for each new thread,
and a status line (with loading messages) kept alive while an answer is pending, since Slack drops it after two
minutes without a message."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from slack_sdk.errors import SlackApiError

from bots.slack.translate import workspace_of
from core.models import ReplyTarget
from core.ports import Inbound
from core.supervisor import TaskSupervisor
from core.text import is_blank

if TYPE_CHECKING:
    from slack_bolt.async_app import AsyncApp

    from bots.slack.events import SlackEvents
    from bots.slack.outbound import SlackAdapter

__all__ = ["LOADING_MESSAGES", "REFRESH", "AssistantStatus", "SlackAssistant", "prompts_of", "thread_title"]

log = logging.getLogger(__name__)

LOADING_MESSAGES = ("Reading your question…", "Looking through what I know…", "Writing the answer…")
REFRESH = 90.0  # seconds between two setStatus calls for one pending answer: well inside Slack's two minutes
MAX_PENDING = 3600.0  # never refresh one status longer than this, whatever happens to its answer
TITLE_CHARS = 60
PROMPT_TITLE_CHARS = 40

Send = Callable[[str], Awaitable[None]]


def prompts_of(setting: str) -> list[dict[str, str]]:
    """The suggested_prompts setting ('a | Title :: b') as setSuggestedPrompts' title/message pairs."""
    prompts = []
    for part in setting.split("|"):
        title, sep, message = (s.strip() for s in part.partition("::"))
        if not sep:
            title, message = _short(title, PROMPT_TITLE_CHARS), title
        if message:
            prompts.append({"title": title or _short(message, PROMPT_TITLE_CHARS), "message": message})
    return prompts


def thread_title(question: str) -> str:
    """A thread's title from its first question: the first line, shortened on a word boundary."""
    first = next((line.strip() for line in question.splitlines() if line.strip()), "")
    return _short(first, TITLE_CHARS)


def _short(line: str, limit: int) -> str:
    if len(line) <= limit:
        return line
    cut = line[: limit - 1].rsplit(" ", 1)[0] or line[: limit - 1]
    return cut.rstrip(" ,.;:") + "…"


class AssistantStatus:
    """The status of each pending answer in an assistant thread: set with loading messages, sent again every
    `refresh` seconds until cleared (the answer or a notice was posted), so Slack never drops it early."""

    def __init__(self, refresh: float = REFRESH, max_pending: float = MAX_PENDING) -> None:
        self.refresh = refresh
        self.max_pending = max_pending
        self._keepers: dict[tuple[str, str, str], asyncio.Task[None]] = {}
        self._tasks = TaskSupervisor("slack-assistant-status")

    @staticmethod
    def _key(target: ReplyTarget) -> tuple[str, str, str]:
        return target.workspace_id, target.channel_id, target.message_id

    async def show(self, target: ReplyTarget, send: Send) -> None:
        """Set the status now (send(status) makes the call) and keep it alive until `clear`."""
        await send("working")
        key = self._key(target)
        old = self._keepers.pop(key, None)
        if old is not None:
            old.cancel()
        self._keepers[key] = self._tasks.spawn(self._keep(key, send), name="slack-assistant-status")

    async def clear(self, target: ReplyTarget, send: Send) -> None:
        """Stop refreshing and take the status away."""
        keeper = self._keepers.pop(self._key(target), None)
        if keeper is not None:
            keeper.cancel()
        await send("")

    async def _keep(self, key: tuple[str, str, str], send: Send) -> None:
        waited = 0.0
        try:
            while waited + self.refresh <= self.max_pending:
                await asyncio.sleep(self.refresh)
                waited += self.refresh
                await send("working")
        finally:
            if self._keepers.get(key) is asyncio.current_task():
                del self._keepers[key]

    def pending(self) -> int:
        """How many statuses are being kept alive (for tests and stop())."""
        return len(self._keepers)

    async def stop(self) -> None:
        """Stop every refresher (the process is stopping; Slack drops the statuses by itself)."""
        self._keepers.clear()
        await self._tasks.cancel_all()


class SlackAssistant:
    """The Messages tab as an assistant: prompts when it opens, a title from each thread's first question."""

    def __init__(self, relay: Inbound, adapter: SlackAdapter) -> None:
        self.relay = relay
        self.adapter = adapter
        self._tasks = TaskSupervisor("slack-assistant")

    def register(self, app: AsyncApp, wrap: Callable[..., Callable[..., Awaitable[None]]], events: SlackEvents) -> None:
        """The Messages tab's app_home_opened (registered before the Home tab's own listener, which bolt would
        otherwise pick first), and the DM questions that name new threads."""
        app.event("app_home_opened", matchers=[_messages_tab])(wrap(self._on_messages_opened))
        events.on_question = self.question_seen

    async def _on_messages_opened(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        """Offer the workspace's suggested prompts in the DM that just opened."""
        channel, user = event.get("channel"), event.get("user")
        if not channel or not user:
            return
        workspace, extras = workspace_of(body)
        settings = await self.relay.settings("slack", workspace)
        prompts = prompts_of(settings.suggested_prompts)
        if not prompts:
            return
        async with self.adapter.teams.using(workspace, dict(extras).get("enterprise_id")):
            # No thread_ts: an agent_view app's prompts are the DM's own (with one, Slack silently ignores the call).
            await self._cosmetic("assistant_threads_setSuggestedPrompts", channel_id=str(channel), prompts=prompts)

    def question_seen(self, target: ReplyTarget, question: str) -> None:
        """A message in the Messages tab: a new thread root gets its title from it (in the background: the event
        is acked first)."""
        if not target.is_dm or target.thread_id is not None or is_blank(question):
            return
        self._tasks.spawn(self._set_title(target, thread_title(question)), name="slack-assistant-title")

    async def _set_title(self, target: ReplyTarget, title: str) -> None:
        async with self.adapter.teams.using(target.workspace_id, target.extra("enterprise_id")):
            await self._cosmetic("assistant_threads_setTitle", channel_id=target.channel_id,
                             thread_ts=target.thread_root, title=title)

    async def _cosmetic(self, method: str, **kwargs: Any) -> None:
        """A cosmetic call (never waits out a 429); a refusal is one log line."""
        try:
            async with asyncio.timeout(5):
                await getattr(self.adapter.cosmetic_client, method)(**kwargs)
        except SlackApiError as exc:
            log.info("%s failed: %s", method, exc.response.get("error"))
        except (TimeoutError, OSError) as exc:
            log.info("%s failed: %s", method, type(exc).__name__)

    async def stop(self, timeout: float = 2.0) -> None:
        """Let titles being set finish (bounded), then stop the status refreshers."""
        await self._tasks.drain(timeout)
        await self.adapter.status.stop()


async def _messages_tab(event: dict[str, Any]) -> bool:
    return event.get("tab") == "messages"
