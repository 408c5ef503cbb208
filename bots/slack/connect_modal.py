"""The App Home "Connect Uppzy" modal: two plain-text inputs (site, API key) and how a submission is read back."""

from __future__ import annotations

from typing import Any

__all__ = ["CONNECT_CALLBACK", "CONNECT_OPEN", "KEY_BLOCK", "SITE_BLOCK", "connect_modal", "connection_line",
           "error_block", "submitted"]

CONNECT_OPEN = "uppzy_home_connect"  # the Home button
CONNECT_CALLBACK = "uppzy_connect"  # the modal's callback_id
SITE_BLOCK, SITE_ACTION = "connect_site", "site"
KEY_BLOCK, KEY_ACTION = "connect_key", "api_key"

BUTTON = "Connect Uppzy"
TITLE = "Connect Uppzy"
SUBMIT = "Check and save"
CANCEL = "Cancel"
SITE_LABEL = "Site"
KEY_LABEL = "API key"
SITE_HINT = "The id of your Uppzy site (Uppzy → Settings → Sites)."
KEY_HINT = ("An Uppzy API key that may use this site (Uppzy → Settings → API access). It is checked with Uppzy, "
            "stored encrypted, and never shown again.")
CONNECTED = "*Uppzy connection*: this workspace uses its own Uppzy site `{site}`."
NOT_CONNECTED = "*Uppzy connection*: this workspace uses the deployment's Uppzy. Connect it to your own site and key."


def connect_modal(*, metadata: str) -> dict[str, Any]:
    """The modal: an empty site and an empty key field (a stored key is never sent back to Slack)."""
    return {
        "type": "modal", "callback_id": CONNECT_CALLBACK, "private_metadata": metadata,
        "title": {"type": "plain_text", "text": TITLE}, "submit": {"type": "plain_text", "text": SUBMIT},
        "close": {"type": "plain_text", "text": CANCEL},
        "blocks": [_input(SITE_BLOCK, SITE_ACTION, SITE_LABEL, SITE_HINT, 200),
                   _input(KEY_BLOCK, KEY_ACTION, KEY_LABEL, KEY_HINT, 1000)],
    }


def _input(block: str, action: str, label: str, hint: str, limit: int) -> dict[str, Any]:
    return {"type": "input", "block_id": block, "label": {"type": "plain_text", "text": label},
            "hint": {"type": "plain_text", "text": hint},
            "element": {"type": "plain_text_input", "action_id": action, "max_length": limit}}


def submitted(view: dict[str, Any]) -> tuple[str, str]:
    """(site, key) as typed; anything missing or odd is read as empty."""
    values = (view.get("state") or {}).get("values") or {}

    def read(block: str, action: str) -> str:
        entry = values.get(block, {}).get(action) if isinstance(values.get(block), dict) else None
        value = entry.get("value") if isinstance(entry, dict) else None
        return value if isinstance(value, str) else ""

    return read(SITE_BLOCK, SITE_ACTION), read(KEY_BLOCK, KEY_ACTION)


def error_block(field: str | None) -> str:
    """The input a ConnectResult's line is shown under: the site's, else the key's (the last field)."""
    return SITE_BLOCK if field == "site" else KEY_BLOCK


def connection_line(site: str | None) -> str:
    """The Home tab line about the workspace's own connection (the site only, never the key)."""
    return CONNECTED.format(site=site) if site else NOT_CONNECTED
