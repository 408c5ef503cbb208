"""Slack's agent messaging experience for FakeSlack: assistant.threads.setStatus/setTitle/setSuggestedPrompts, the
Messages tab's app_home_opened, and messages in that tab as thread roots, so the agent DM is tested offline.

FakeSlack inherits :class:`SlackAssistantFake` and calls ``_init_assistant()`` once its handler table exists. Like
Slack, a status disappears ``status_lifetime`` seconds after it was last set (two minutes in Slack) unless the app
posts a message in the thread first; ``status_shown`` answers as a user's client would show it at that moment.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.fakes.slack_teams import Refusal

__all__ = ["STATUS_LIFETIME", "SlackAssistantFake", "StatusSet"]

STATUS_LIFETIME = 120.0  # Slack clears an assistant status after two minutes without a message
MAX_LOADING_MESSAGES = 10
MAX_PROMPTS = 4


@dataclass(frozen=True)
class StatusSet:
    """One setStatus call as the fake kept it."""

    status: str
    loading_messages: tuple[str, ...]
    at: float


class SlackAssistantFake:
    """Mixin: the assistant.threads.* methods and the Messages tab events (see the module docstring)."""

    _handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]]
    assistant_status: dict[tuple[str, str], str]
    team_id: str

    def _init_assistant(self, status_lifetime: float = STATUS_LIFETIME) -> None:
        """Install the handlers (setStatus replaces the plain one) and the state they keep."""
        self.status_lifetime = status_lifetime
        self.status_history: dict[tuple[str, str], list[StatusSet]] = {}  # (channel, thread_ts) -> every set
        self.thread_titles: dict[tuple[str, str], str] = {}
        self.suggested_prompts: dict[str, list[dict[str, str]]] = {}  # DM channel -> prompts shown there
        self._handlers.update({
            "assistant.threads.setStatus": self._assistant_set_status_with_loading,
            "assistant.threads.setTitle": self._assistant_set_title,
            "assistant.threads.setSuggestedPrompts": self._assistant_set_suggested_prompts,
        })

    def messages_tab_opened_event(self, user: str, channel: str | None = None) -> dict[str, Any]:
        """app_home_opened for the Messages tab (the agent DM) of `user`."""
        return {"type": "app_home_opened", "user": user, "channel": channel or f"D{user[1:]}", "tab": "messages",
                "event_ts": f"{time.time():.6f}"}

    def status_shown(self, channel: str, thread_ts: str, *, now: float | None = None) -> str:
        """The status a user sees in the thread now: "" once cleared, or once it outlived status_lifetime."""
        history = self.status_history.get((channel, thread_ts))
        if not history or not history[-1].status:
            return ""
        age = (time.monotonic() if now is None else now) - history[-1].at
        return history[-1].status if age < self.status_lifetime else ""

    # ---- handlers ------------------------------------------------------------------------------------

    def _assistant_set_status_with_loading(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, thread_ts = _thread(args)
        loading = args.get("loading_messages") or []
        if not isinstance(loading, list) or len(loading) > MAX_LOADING_MESSAGES \
                or not all(isinstance(m, str) and m for m in loading):
            raise Refusal("invalid_arguments")
        status = str(args.get("status", ""))
        self.assistant_status[(channel, thread_ts)] = status
        self.status_history.setdefault((channel, thread_ts), []).append(
            StatusSet(status, tuple(loading), time.monotonic()))
        return {}

    def _assistant_set_title(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, thread_ts = _thread(args)
        title = args.get("title")
        if not isinstance(title, str) or not title.strip():
            raise Refusal("invalid_arguments")
        self.thread_titles[(channel, thread_ts)] = title
        return {}

    def _assistant_set_suggested_prompts(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel_id")
        if not isinstance(channel, str) or not channel:
            raise Refusal("channel_not_found")
        if args.get("thread_ts"):  # agent_view apps: Slack ignores such a call without saying so
            return {}
        prompts = args.get("prompts")
        if not isinstance(prompts, list) or not 0 < len(prompts) <= MAX_PROMPTS or not all(
                isinstance(p, dict) and p.get("title") and p.get("message") for p in prompts):
            raise Refusal("invalid_arguments")
        self.suggested_prompts[channel] = [{"title": str(p["title"]), "message": str(p["message"])} for p in prompts]
        return {}


def _thread(args: dict[str, Any]) -> tuple[str, str]:
    channel, thread_ts = args.get("channel_id"), args.get("thread_ts")
    if not isinstance(channel, str) or not channel:
        raise Refusal("channel_not_found")
    if not isinstance(thread_ts, str) or not thread_ts:
        raise Refusal("invalid_thread_ts")
    return channel, thread_ts
