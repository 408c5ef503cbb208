"""Block Kit checks for FakeSlack: the `markdown` block and `context_actions` (feedback_buttons, icon_button) are
validated as Slack documents them, a workspace can be made to refuse markdown blocks, and the block_actions payloads
a click on those buttons sends are built here.

FakeSlack inherits :class:`SlackBlocks` and calls :meth:`check_blocks` before storing a posted or updated message.
Limits (docs.slack.dev, Block Kit reference): a markdown block's text is at most 12,000 characters, and all markdown
blocks of one message together too; a context_actions block holds 1 to 5 feedback_buttons or icon_button elements;
a feedback button's text is plain_text of at most 75 characters with a value of at most 2,000; the only icon is
"trash".
"""

from __future__ import annotations

import copy
import time
from typing import Any

from tests.fakes.slack_teams import Refusal

__all__ = ["MARKDOWN_LIMIT", "SlackBlocks"]

MARKDOWN_LIMIT = 12_000
_CONTEXT_ACTION_TYPES = frozenset({"feedback_buttons", "icon_button"})
_ICONS = frozenset({"trash"})


def _plain_text(value: Any, limit: int = 75) -> bool:
    return isinstance(value, dict) and value.get("type") == "plain_text" and isinstance(value.get("text"), str) \
        and 0 < len(value["text"]) <= limit


def _feedback_button(value: Any) -> bool:
    return isinstance(value, dict) and _plain_text(value.get("text")) and isinstance(value.get("value"), str) \
        and 0 < len(value["value"]) <= 2000 and len(str(value.get("accessibility_label", ""))) <= 75


def _element_ok(element: Any) -> bool:
    if not isinstance(element, dict) or element.get("type") not in _CONTEXT_ACTION_TYPES:
        return False
    if element["type"] == "feedback_buttons":
        return _feedback_button(element.get("positive_button")) and _feedback_button(element.get("negative_button"))
    return element.get("icon") in _ICONS and _plain_text(element.get("text"))


class SlackBlocks:
    """Validation of the AI-app blocks and the clicks on their buttons, mixed into FakeSlack."""

    refuse_markdown: str | None = None  # set to an error ("invalid_blocks") to refuse every markdown block
    refused_markdown: int = 0  # how many messages were refused for carrying a markdown block

    def check_blocks(self, blocks: Any) -> None:
        """Raise Refusal("invalid_blocks") for a markdown or context_actions block Slack would refuse."""
        if not isinstance(blocks, list):
            return
        markdown = [b for b in blocks if isinstance(b, dict) and b.get("type") == "markdown"]
        if markdown and self.refuse_markdown:
            self.refused_markdown += 1
            raise Refusal(self.refuse_markdown)
        texts = [b.get("text") for b in markdown]
        if any(not isinstance(t, str) or not t for t in texts) or sum(len(str(t)) for t in texts) > MARKDOWN_LIMIT:
            raise Refusal("invalid_blocks")
        for block in blocks:
            if isinstance(block, dict) and block.get("type") == "context_actions":
                elements = block.get("elements")
                if not isinstance(elements, list) or not 1 <= len(elements) <= 5 \
                        or not all(_element_ok(e) for e in elements):
                    raise Refusal("invalid_blocks")

    @staticmethod
    def _click(message: dict[str, Any], channel: str, user: str, action: dict[str, Any]) -> dict[str, Any]:
        block_id = next((b.get("block_id") for b in message.get("blocks") or []
                         if any(e.get("action_id") == action["action_id"] for e in b.get("elements") or [])), None)
        thread_ts = message.get("thread_ts")
        return {
            "type": "block_actions",
            "user": {"id": user},
            "channel": {"id": channel},
            "container": {"type": "message", "channel_id": channel, "message_ts": message["ts"],
                          "thread_ts": thread_ts, "is_ephemeral": False},
            "message": copy.deepcopy(message),
            "actions": [{**action, "block_id": block_id or "", "action_ts": f"{time.time():.6f}"}],
        }

    def feedback_click(self, message: dict[str, Any], rating: str, *, user: str = "U1",
                       channel: str | None = None) -> dict[str, Any]:
        """The block_actions payload of a click on the message's feedback_buttons (`rating`: good or bad), carrying
        the value of the clicked button as Slack does."""
        element = next(e for b in message.get("blocks") or [] if b.get("type") == "context_actions"
                       for e in b.get("elements") or [] if e.get("type") == "feedback_buttons")
        button = element["positive_button" if rating == "good" else "negative_button"]
        action = {"type": "feedback_buttons", "action_id": element.get("action_id", ""), "value": button["value"],
                  "text": button["text"]}
        return self._click(message, channel or str(message.get("channel")), user, action)

    def button_click(self, message: dict[str, Any], action_id: str, *, user: str = "U1",
                     channel: str | None = None) -> dict[str, Any]:
        """The block_actions payload of a click on the message's button `action_id`."""
        button = next(e for b in message.get("blocks") or [] for e in b.get("elements") or []
                      if isinstance(e, dict) and e.get("action_id") == action_id)
        action = {"type": "button", "action_id": action_id, "value": button.get("value", ""),
                  "text": button.get("text")}
        return self._click(message, channel or str(message.get("channel")), user, action)
