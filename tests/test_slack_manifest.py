"""manifest.yml declares exactly what the Slack code uses, so an admin's one-paste install just works."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from bots.check import SLACK_SCOPES
from tests.slack_support import parse_manifest

ROOT = Path(__file__).resolve().parent.parent
SLACK_MODULES = sorted((ROOT / "bots" / "slack").glob("*.py"))

# Every Web API method the code may call, with the bot scopes it needs (empty: none needed).
METHOD_SCOPES: dict[str, set[str]] = {
    "auth_test": set(),
    "apps_connections_open": set(),  # app-level token with connections:write
    "chat_postMessage": {"chat:write"},
    "chat_postEphemeral": {"chat:write"},
    "chat_update": {"chat:write"},  # an answer shows its rating was received
    "chat_getPermalink": set(),
    "reactions_add": {"reactions:write"},
    "reactions_remove": {"reactions:write"},
    "users_info": {"users:read"},
    "conversations_replies": {"channels:history", "groups:history", "im:history"},
    "views_publish": set(),
    "views_open": set(),
    "assistant_threads_setStatus": {"chat:write"},
    "assistant_threads_setTitle": {"assistant:write"},
    "assistant_threads_setSuggestedPrompts": {"assistant:write"},
}
SOCKET_MODE_CALLS = {"send_socket_mode_response"}  # the Socket Mode client's own frames, not Web API methods
EVENT_SUBSCRIPTIONS: dict[str, tuple[set[str], set[str]]] = {  # bolt event -> (manifest bot_events, scopes)
    "app_mention": ({"app_mention"}, {"app_mentions:read"}),
    "message": ({"message.channels", "message.groups", "message.im"},
                {"channels:history", "groups:history", "im:history"}),
    "reaction_added": ({"reaction_added"}, {"reactions:read"}),
    "app_home_opened": ({"app_home_opened"}, set()),
    "app_uninstalled": ({"app_uninstalled"}, set()),  # "Add to Slack" distribution: uninstall removes the team's data
    "tokens_revoked": ({"tokens_revoked"}, set()),
}
EXTRA_SCOPES = {
    "commands": "the /uppzy slash command",
    "users:read.email": "the asker's email, sent to Uppzy only where a workspace allows it",
    "chat:write.public": "escalation messages to a channel the bot has not joined",
}


def _used() -> tuple[set[str], set[str], set[str], str]:
    """Web API methods, bolt events and slash commands the Slack modules register or call."""
    methods: set[str] = set()
    events: set[str] = set()
    commands: set[str] = set()
    sources = ""
    for path in SLACK_MODULES:
        source = path.read_text(encoding="utf-8")
        sources += source
        methods |= set(re.findall(r"client\.([a-z]+_[A-Za-z_]+)\(", source)) - SOCKET_MODE_CALLS
        methods |= set(re.findall(r"_cosmetic\(\s*\"([a-z]+_[A-Za-z_]+)\"", source))
        events |= set(re.findall(r"\.event\(\s*\"([a-z_]+)\"", source))
        module = importlib.import_module(f"bots.slack.{path.stem}")
        events |= set(getattr(module, "QUESTION_EVENTS", ()))  # taken before bolt (SlackEvents.receive)
        for arg in re.findall(r"\.command\(\s*([^)]+?)\s*\)", source):
            commands.add(arg.strip("\"'") if arg[0] in "\"'" else getattr(module, arg))
    return methods, events, commands, sources


def test_manifest_declares_every_scope_event_and_command_the_code_uses() -> None:
    """Each API call's scope, each subscribed event and each slash command used in bots/slack/ is declared."""
    manifest = parse_manifest((ROOT / "manifest.yml").read_text(encoding="utf-8"))
    methods, events, commands, sources = _used()
    assert {"chat_postMessage", "reactions_add", "users_info", "views_publish"} <= methods  # the scan works
    unknown = methods - METHOD_SCOPES.keys()
    assert not unknown, f"add the scopes of {sorted(unknown)} to METHOD_SCOPES and manifest.yml"
    needed = set().union(*(METHOD_SCOPES[m] for m in methods), *(EVENT_SUBSCRIPTIONS[e][1] for e in events))
    assert '"email"' in sources  # so users:read.email is really used
    needed |= EXTRA_SCOPES.keys()
    declared = set(manifest["oauth_config"]["scopes"]["bot"])
    assert needed <= declared, f"missing scopes: {sorted(needed - declared)}"
    assert declared <= needed, f"scopes nothing uses (least privilege): {sorted(declared - needed)}"
    assert declared == set(SLACK_SCOPES)  # what `uppzy-bot check` expects the token to carry

    bot_events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert set().union(*(EVENT_SUBSCRIPTIONS[e][0] for e in events)) == bot_events
    assert commands == {c["command"] for c in manifest["features"]["slash_commands"]} == {"/uppzy"}


def test_manifest_turns_on_socket_mode_interactivity_and_app_home() -> None:
    """Socket Mode, interactivity (buttons, modal), the Home tab and a writable Messages tab are enabled."""
    manifest = parse_manifest((ROOT / "manifest.yml").read_text(encoding="utf-8"))
    settings, home = manifest["settings"], manifest["features"]["app_home"]
    assert settings["socket_mode_enabled"] is True and settings["interactivity"]["is_enabled"] is True
    assert settings["org_deploy_enabled"] is False
    assert home == {"home_tab_enabled": True, "messages_tab_enabled": True, "messages_tab_read_only_enabled": False}
    assert manifest["features"]["slash_commands"][0]["should_escape"] is True  # mentions arrive as <@U…> ids
    assert manifest["features"]["bot_user"]["display_name"]
