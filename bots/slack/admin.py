"""Admin surfaces in Slack: the /uppzy slash command, the App Home tab and the settings modal."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bots.form_logs import hide_form
from bots.slack import connect_modal as connect
from bots.slack import strings as text
from bots.slack.format import defuse
from bots.slack.outbound import SlackAdapter
from bots.slack.private import SlackPrivate
from bots.slack.translate import plain_text, workspace_of
from bots.slack.users import SlackUsers
from core.models import ReplyTarget
from core.ports import SESSION_ENDED, SETTING_KEYS, EndResult, Inbound, SettingError, WorkspaceConnector, setting_spec

__all__ = ["SlackAdmin", "home_view", "settings_modal"]

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[None]]

COMMAND = "/uppzy"
SETTINGS_CALLBACK = "uppzy_settings"
HOME_END = "uppzy_home_end"
HOME_EDIT = "uppzy_home_edit"
ADMIN_VERBS = frozenset({"set", "reset", "channel", "sessions"})
_USER_REF = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>|\b([UW][A-Z0-9]{6,})\b")
_ESCALATION_REF = re.compile(r"<!subteam\^([A-Z0-9]+)(?:\|[^>]*)?>|<#([CG][A-Z0-9]+)(?:\|[^>]*)?>|<@([UW][A-Z0-9]+)"
                             r"(?:\|[^>]*)?>")
_MULTILINE = frozenset({"fallback_text", "low_confidence_note"})
_END_TEXT = {EndResult.ENDED: SESSION_ENDED, EndResult.NO_SESSION: text.END_NO_SESSION,
             EndResult.BUSY: text.END_BUSY}


def setting_value(key: str, raw: str, *, escaped: bool = True) -> str:
    """What an admin typed, as the setting parser expects: mentions to ids (escalation), Slack escapes undone.

    Slash-command text arrives escaped (&lt;) with mentions as <@U…|name>; modal inputs arrive raw.
    """
    if key.strip().lower().replace("-", "_") == "escalation_target":
        ids = [next(g for g in m.groups() if g) for m in _ESCALATION_REF.finditer(raw)]
        if ids:
            return " ".join(ids)
    return plain_text(raw).strip() if escaped else raw.strip()


def compact_duration(seconds: float) -> str:
    """30m / 2h / 1d: an idle timeout the way the setting parser reads it back."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def home_view(*, dm_channel: str | None, settings: list[tuple[str, str, str]] | None,
              notice: str | None = None, connection: str | None = None) -> dict[str, Any]:
    """The App Home tab: what the bot does and 'end my conversation'; for admins, settings and an edit button."""
    blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": text.HOME_TITLE}}]
    if notice:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": defuse(notice)}]})
    blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text.HOME_INTRO}})
    if dm_channel:
        blocks.append({"type": "actions", "elements": [_button(text.HOME_END_BUTTON, HOME_END, dm_channel)]})
    else:
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": text.HOME_NO_DM}]})
    if settings is not None:
        lines = [f"*{key}*: `{defuse(value)}`\n_{help_text}_" for key, value, help_text in settings]
        blocks += [{"type": "divider"},
                   {"type": "header", "text": {"type": "plain_text", "text": text.HOME_ADMIN_HEADER}}]
        blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines[i:i + 6])}}
                   for i in range(0, len(lines), 6)]
        buttons = [_button(text.HOME_EDIT_BUTTON, HOME_EDIT, dm_channel or "")]
        if connection is not None:  # admins may connect the workspace to its own Uppzy (the line says to which)
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": connection}})
            buttons.append(_button(connect.BUTTON, connect.CONNECT_OPEN, dm_channel or ""))
        blocks.append({"type": "actions", "elements": buttons})
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": text.HOME_ADMIN_HINT}]})
    return {"type": "home", "blocks": blocks}


def _button(label: str, action_id: str, value: str) -> dict[str, Any]:
    return {"type": "button", "action_id": action_id, "value": value,
            "text": {"type": "plain_text", "text": label, "emoji": True}}


def settings_modal(values: Mapping[str, str], helps: Mapping[str, str], *, metadata: str) -> dict[str, Any]:
    """One input per setting, pre-filled with its current value; an emptied field resets it to the default."""
    blocks = []
    for key in SETTING_KEYS:
        spec = setting_spec(key)
        accepted = spec.accepted if spec else ""
        element: dict[str, Any] = {"type": "plain_text_input", "action_id": "value",
                                   "initial_value": values.get(key, "")[:3000], "multiline": key in _MULTILINE}
        blocks.append({"type": "input", "block_id": f"setting_{key}", "optional": True, "element": element,
                       "label": {"type": "plain_text", "text": key},
                       "hint": {"type": "plain_text", "text": f"{helps.get(key, '')} ({accepted})"[:2000]}})
    return {"type": "modal", "callback_id": SETTINGS_CALLBACK, "private_metadata": metadata,
            "title": {"type": "plain_text", "text": text.MODAL_TITLE},
            "submit": {"type": "plain_text", "text": text.MODAL_SAVE},
            "close": {"type": "plain_text", "text": text.MODAL_CANCEL}, "blocks": blocks}


class SlackAdmin:
    """Runs /uppzy, keeps the App Home tab current and applies the settings modal; admins are checked each time."""

    def __init__(self, *, relay: Inbound, adapter: SlackAdapter, users: SlackUsers,
                 connector: WorkspaceConnector | None = None) -> None:
        self.relay = relay
        self.adapter = adapter
        self.users = users
        self.connector = connector  # None: no "Connect Uppzy" (the composition root sets it where keys can be stored)
        self.private: SlackPrivate | None = None  # `/uppzy ask` (the composition root sets it)

    def register(self, app: Any, wrap: Callable[[Handler], Handler] = lambda h: h) -> None:
        """Attach the listeners to the bolt app (each passed through `wrap`)."""
        app.command(COMMAND)(wrap(self._on_command))
        app.event("app_home_opened")(wrap(self._on_home_opened))
        app.action(HOME_END)(wrap(self._on_home_end))
        app.action(HOME_EDIT)(wrap(self._on_home_edit))
        app.view(SETTINGS_CALLBACK)(wrap(self._on_settings_submit))
        app.action(connect.CONNECT_OPEN)(wrap(self._on_connect_open))
        app.view(connect.CONNECT_CALLBACK)(wrap(self._on_connect_submit))
        # Socket Mode logs every envelope at DEBUG on the app's logger: a Connect Uppzy submission carries the key.
        hide_form(connect.CONNECT_CALLBACK, app.logger, "slack_bolt", "slack_sdk")

    # ---- /uppzy ---------------------------------------------------------------------------------------

    async def _on_command(self, ack: Any, command: dict[str, Any], respond: Any) -> None:
        """Ack within Slack's 3 s, then answer privately; odd input gets usage, never a crash."""
        await ack()
        try:
            reply = await self.run(command)
        except Exception:
            log.exception("/uppzy failed for user=%s", command.get("user_id"))
            reply = text.COMMAND_FAILED
        await respond(text=reply, response_type="ephemeral")

    async def run(self, command: Mapping[str, Any]) -> str:
        """The reply to one /uppzy invocation."""
        words = str(command.get("text") or "")[:3000].strip().split(None, 1)
        verb = words[0].lower() if words else "help"
        rest = words[1].strip() if len(words) > 1 else ""
        workspace, _ = workspace_of(command)
        user, channel = str(command.get("user_id") or ""), str(command.get("channel_id") or "")
        if verb in ("help", "?", "-h", "--help"):
            return text.HELP
        if verb == "status":
            return await self._status(workspace, channel)
        if verb == "ask":
            return await self.private.ask(command, rest) if self.private else text.unknown_command(verb)
        if verb == "end":
            return _END_TEXT[await self.relay.end_conversation(_target(workspace, channel, user))]
        if verb not in ADMIN_VERBS:
            return text.unknown_command(verb)
        if not await self.users.is_admin(user):
            log.info("/uppzy %s refused for non-admin user=%s", verb, user)
            return text.ADMIN_ONLY
        try:
            if verb == "set":
                return await self._set(workspace, user, rest)
            if verb == "reset":
                return await self._reset(workspace, user, rest)
            if verb == "channel":
                if channel.startswith("D"):
                    return text.CHANNEL_IN_DM
                mode = await self.relay.set_channel_mode("slack", workspace, channel, rest, by=user)
                return text.channel_mode_set(mode)
            return await self._sessions(workspace, user, rest)
        except SettingError as exc:
            return defuse(str(exc))

    async def _status(self, workspace: str, channel: str) -> str:
        report = await self.relay.status_report("slack", workspace)
        mode = "direct message" if channel.startswith("D") else \
            await self.relay.channel_mode("slack", workspace, channel)
        shown = [(key, defuse(value), help_text) for key, value, help_text in report.settings]
        return text.status_lines(uppzy_ok=report.uppzy_ok, uppzy_detail=defuse(report.uppzy_detail),
                                 pending=report.pending, open_sessions=report.open_sessions, channel_mode=mode,
                                 settings=shown)

    async def _set(self, workspace: str, user: str, rest: str) -> str:
        key, _, raw = rest.partition(" ")
        if not key or not raw.strip():
            return text.SET_USAGE.format(keys=", ".join(f"`{k}`" for k in SETTING_KEYS))
        shown = await self.relay.set_setting("slack", workspace, key, setting_value(key, raw), by=user)
        spec = setting_spec(key)
        return text.setting_saved(spec.key if spec else key.strip().lower(), defuse(shown))

    async def _reset(self, workspace: str, user: str, rest: str) -> str:
        key = rest.split(None, 1)[0] if rest else ""
        shown = await self.relay.reset_setting("slack", workspace, key, by=user)
        spec = setting_spec(key)
        return text.reset_done(spec.key if spec else key.lower(), defuse(shown))

    async def _sessions(self, workspace: str, caller: str, rest: str) -> str:
        match = _USER_REF.search(rest)
        who = (match.group(1) or match.group(2)) if match else caller
        email = await self.users.email(who) if (await self.relay.settings("slack", workspace)).send_email \
            else None
        try:
            sessions = await self.relay.list_sessions("slack", workspace, email, who)
        except Exception as exc:
            log.warning("session list for user=%s failed: %s", who, type(exc).__name__)
            return text.SESSIONS_FAILED
        if not sessions:
            return text.SESSIONS_NONE.format(who=f"<@{who}>")
        lines = [text.sessions_header(f"<@{who}>", len(sessions))]
        for info in sessions[:25]:
            state = "open" if info.open else f"closed {info.closed_at or ''}".strip()
            count = f", {info.message_count} messages" if info.message_count is not None else ""
            lines.append(f"• `{defuse(info.id)}`: {state}{count}, last active {info.updated_at or '?'}")
        return "\n".join(lines)

    # ---- App Home and the settings modal ---------------------------------------------------------------

    async def publish_home(self, workspace: str, user: str, dm_channel: str | None, notice: str | None = None) -> None:
        """Render the Home tab for one person (settings only if they are an admin)."""
        admin = await self.users.is_admin(user)
        settings = await self.relay.describe_settings("slack", workspace) if admin else None
        connection = None
        if admin and self.connector is not None:
            site = await self.connector.connected_site("slack", workspace)
            connection = connect.connection_line(defuse(site) if site else None)
        view = home_view(dm_channel=dm_channel, settings=settings, notice=notice, connection=connection)
        await self.adapter.client.views_publish(user_id=user, view=view)

    async def _on_home_opened(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if event.get("tab", "home") != "home" or not event.get("user"):
            return
        await self.publish_home(workspace_of(body)[0], event["user"], event.get("channel"))

    async def _on_home_end(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        workspace, user = workspace_of(body)[0], body["user"]["id"]
        dm_channel = str(action.get("value") or "")
        result = await self.relay.end_conversation(_target(workspace, dm_channel, user))
        await self.publish_home(workspace, user, dm_channel or None, notice=_END_TEXT[result])

    async def _on_home_edit(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        workspace, user = workspace_of(body)[0], body["user"]["id"]
        dm_channel = str(action.get("value") or "") or None
        if not await self.users.is_admin(user):
            await self.publish_home(workspace, user, dm_channel, notice=text.ADMIN_ONLY)
            return
        values, helps = await self._editable(workspace)
        modal = settings_modal(values, helps, metadata=json.dumps({"dm": dm_channel}))
        await self.adapter.client.views_open(trigger_id=body["trigger_id"], view=modal)

    async def _editable(self, workspace: str) -> tuple[dict[str, str], dict[str, str]]:
        described = await self.relay.describe_settings("slack", workspace)
        values = {key: value for key, value, _ in described}
        values["idle_timeout"] = compact_duration((await self.relay.settings("slack", workspace)).idle_timeout)
        return values, {key: help_text for key, _, help_text in described}

    async def _on_settings_submit(self, ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        """Validate every changed field first (errors shown inline, nothing saved), then save and refresh Home."""
        workspace, user = workspace_of(body)[0], body["user"]["id"]
        if not await self.users.is_admin(user):
            await ack(response_action="errors", errors={f"setting_{SETTING_KEYS[0]}": text.ADMIN_ONLY})
            return
        current, _ = await self._editable(workspace)
        submitted = {block[len("setting_"):]: (state.get("value", {}).get("value") or "").strip()
                     for block, state in (view.get("state") or {}).get("values", {}).items()
                     if block.startswith("setting_")}
        changes = {k: v for k, v in submitted.items() if k in current and v != current[k]}
        errors: dict[str, str] = {}
        for key, value in changes.items():
            spec = setting_spec(key)
            if spec is not None and value:
                try:
                    spec.parse(setting_value(key, value, escaped=False))
                except SettingError as exc:
                    errors[f"setting_{key}"] = f"{key} {exc}"[:150]
        if errors:
            await ack(response_action="errors", errors=errors)
            return
        await ack()
        for key, value in changes.items():
            if value:
                await self.relay.set_setting("slack", workspace, key, setting_value(key, value, escaped=False),
                                                by=user)
            else:
                await self.relay.reset_setting("slack", workspace, key, by=user)
        log.info("settings modal saved keys=%s workspace=%s by=%s", ",".join(changes) or "-", workspace, user)
        try:
            dm_channel = json.loads(view.get("private_metadata") or "{}").get("dm")
        except ValueError:
            dm_channel = None
        await self.publish_home(workspace, user, dm_channel, notice=text.MODAL_SAVED)


    # ---- "Connect Uppzy": the workspace's own Uppzy site and key ----------------------------------------

    async def _on_connect_open(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        workspace, user = workspace_of(body)[0], body["user"]["id"]
        dm_channel = str(action.get("value") or "") or None
        if self.connector is None or not await self.users.is_admin(user):
            log.info("Connect Uppzy refused for non-admin user=%s workspace=%s", user, workspace)
            await self.publish_home(workspace, user, dm_channel, notice=text.ADMIN_ONLY)
            return
        modal = connect.connect_modal(metadata=json.dumps({"dm": dm_channel}))
        await self.adapter.client.views_open(trigger_id=body["trigger_id"], view=modal)

    async def _on_connect_submit(self, ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        """Check the key with Uppzy and save it (within Slack's 3 s); a problem goes back under its field."""
        workspace, user = workspace_of(body)[0], body["user"]["id"]
        if self.connector is None or not await self.users.is_admin(user):
            log.info("Connect Uppzy submission refused for non-admin user=%s workspace=%s", user, workspace)
            await ack(response_action="errors", errors={connect.SITE_BLOCK: text.ADMIN_ONLY})
            return
        site, key = connect.submitted(view)
        result = await self.connector.connect("slack", workspace, site, key)
        if not result.ok:
            await ack(response_action="errors", errors={connect.error_block(result.field): result.message[:150]})
            return
        await ack()
        log.info("Connect Uppzy saved workspace=%s by=%s", workspace, user)
        try:
            dm_channel = json.loads(view.get("private_metadata") or "{}").get("dm")
        except ValueError:
            dm_channel = None
        await self.publish_home(workspace, user, dm_channel, notice=defuse(result.message))


def _target(workspace: str, channel: str, user: str) -> ReplyTarget:
    """The conversation a command or button speaks for: this user in this channel."""
    return ReplyTarget(platform="slack", workspace_id=workspace, channel_id=channel, message_channel_id=channel,
                       message_id="", user_id=user, is_dm=channel.startswith("D"))
