"""Discord slash commands end to end: /uppzy for everyone, /uppzy-admin for Manage Server, refusals otherwise."""

from __future__ import annotations

from typing import Any

from bots.discord import strings as msgs
from core import messages
from tests.discord_support import ADMIN_ID, ESCALATION_ID, GUILD_ID, OTHER_ID, TEXT_ID, USER_ID, DiscordHarness
from tests.fakes.discord_fake import MANAGE_GUILD


async def command(h: DiscordHarness, name: str, sub: str, user_id: int, channel_id: int = TEXT_ID,
                  guild_id: int | None = GUILD_ID, **options: Any) -> dict[str, Any]:
    """Run a slash command and return what the invoker saw: the reply (or follow-up) with its ephemeral flag."""
    responses, followups = len(h.fake.interaction_responses), len(h.fake.followups)
    await h.fake.slash_command(name=name, subcommand=sub, user_id=user_id, channel_id=channel_id,
                               guild_id=guild_id, options=[{"name": k, "value": v} for k, v in options.items()])
    first = await h.fake.wait_for(lambda: h.fake.interaction_responses[responses:], what=f"/{name} {sub}")
    if first[0]["type"] == 5:  # deferred: the real answer is the follow-up
        later = await h.fake.wait_for(lambda: h.fake.followups[followups:], what=f"/{name} {sub} follow-up")
        return {"content": later[0]["data"]["content"], "ephemeral": later[0]["ephemeral"] and first[0]["ephemeral"]}
    return {"content": first[0]["data"]["content"], "ephemeral": first[0]["ephemeral"]}


async def test_commands_sync_globally_and_to_configured_guilds_with_admin_defaults(h: DiscordHarness) -> None:
    """Both groups and /ask sync globally and to DISCORD_GUILD_IDS; /uppzy-admin alone defaults to Manage Server."""
    assert h.fake.calls("PUT", rf"/applications/{h.fake.application_id}/commands")
    for scope in (None, GUILD_ID):
        synced = {c["name"]: c for c in h.fake.commands[scope]}
        assert set(synced) == {"uppzy", "uppzy-admin", "ask"}  # `/ask`: tests/discord/test_discord_ask.py
        assert synced["uppzy"]["default_member_permissions"] is None
        assert str(synced["uppzy-admin"]["default_member_permissions"]) == str(MANAGE_GUILD)
        assert synced["uppzy-admin"]["dm_permission"] is False
        subs = {o["name"] for o in synced["uppzy-admin"]["options"]}
        assert subs == {"status", "set", "channel", "sessions"}
        key = next(o for o in synced["uppzy-admin"]["options"] if o["name"] == "set")["options"][0]
        assert "idle_timeout" in [c["value"] for c in key["choices"]]


async def test_help_and_end_work_for_everyone(h: DiscordHarness) -> None:
    """/uppzy help explains privately; /uppzy end closes the caller's session here, then says there is none."""
    reply = await command(h, "uppzy", "help", USER_ID)
    assert reply == {"content": msgs.HELP, "ephemeral": True}

    sent = await h.mention("How do returns work?")
    await h.wait_posts(sent["id"])
    await h.wait_idle()
    assert (await command(h, "uppzy", "end", USER_ID, channel_id=int(sent["id"])))["content"] == \
        messages.SESSION_ENDED
    assert len(h.sim.calls("session_close")) == 1
    assert (await command(h, "uppzy", "end", USER_ID))["content"] == msgs.END_NONE


async def test_admin_set_is_saved_and_bad_values_explain_what_is_accepted(h: DiscordHarness) -> None:
    """A Manage Server member sets a key (stored per guild); a bad value is refused with the accepted values."""
    reply = await command(h, "uppzy-admin", "set", ADMIN_ID, key="idle_timeout", value="2h")
    assert reply == {"content": msgs.setting_saved("idle_timeout", "2 hours"), "ephemeral": True}
    assert h.relay is not None
    assert (await h.relay.workspaces.get("discord", str(GUILD_ID))).idle_timeout == 7200

    reply = await command(h, "uppzy-admin", "set", ADMIN_ID, key="session_strategy", value="sometimes")
    assert reply["ephemeral"] and reply["content"].startswith("Not saved:")
    assert "user-channel, thread, user" in reply["content"]

    reply = await command(h, "uppzy-admin", "set", ADMIN_ID, key="escalation_target", value="the support folks")
    assert reply["content"] == msgs.setting_invalid(msgs.ESCALATION_FORMAT)
    reply = await command(h, "uppzy-admin", "set", ADMIN_ID, key="escalation_target", value=f"<#{ESCALATION_ID}>")
    assert reply["content"] == msgs.setting_saved("escalation_target", f"<#{ESCALATION_ID}>")


async def test_admin_commands_are_refused_to_members_without_manage_server(h: DiscordHarness) -> None:
    """Even if a server override shows /uppzy-admin to everyone, a plain member gets an ephemeral refusal."""
    reply = await command(h, "uppzy-admin", "set", USER_ID, key="reply_mode", value="all")
    assert reply == {"content": msgs.ADMIN_ONLY, "ephemeral": True}
    assert (await command(h, "uppzy-admin", "status", OTHER_ID))["content"] == msgs.ADMIN_ONLY
    assert h.relay is not None
    assert (await h.relay.workspaces.get("discord", str(GUILD_ID))).reply_mode == "mention"


async def test_channel_mode_all_answers_everything_and_off_silences_mentions(h: DiscordHarness) -> None:
    """`channel all` makes plain messages questions; `channel off` ignores even mentions."""
    reply = await command(h, "uppzy-admin", "channel", ADMIN_ID, mode="all")
    assert reply["ephemeral"] and f"<#{TEXT_ID}> is now `all`" in reply["content"]
    sent = await h.say("How do returns work?", channel_id=TEXT_ID)
    await h.wait_posts(sent["id"])

    await command(h, "uppzy-admin", "channel", ADMIN_ID, mode="off")
    await h.mention("and shipping?")
    await h.say("and shipping?", channel_id=TEXT_ID)
    await h.wait_idle()
    assert len(h.chats()) == 1


async def test_status_and_sessions_for_admins(h: DiscordHarness) -> None:
    """status shows Uppzy health and settings; sessions lists a member's conversation ids."""
    sent = await h.mention("How do returns work?")
    await h.wait_posts(sent["id"])
    await h.wait_idle()

    status = await command(h, "uppzy-admin", "status", ADMIN_ID)
    assert status["ephemeral"] and "✅ reachable" in status["content"] and "`idle_timeout` = 30 minutes" in \
        status["content"]
    listed = await command(h, "uppzy-admin", "sessions", ADMIN_ID, user=str(USER_ID))
    assert f"discord-user-{USER_ID}-{TEXT_ID}" in listed["content"]
    assert (await command(h, "uppzy-admin", "sessions", ADMIN_ID, user=str(OTHER_ID)))["content"] == \
        msgs.NO_SESSIONS


async def test_set_value_autocomplete_offers_the_accepted_values(h: DiscordHarness) -> None:
    """Typing a value for a key with a fixed set of values suggests exactly those values."""
    await h.fake.autocomplete(name="uppzy-admin", subcommand="set", focused="value", user_id=ADMIN_ID,
                              channel_id=TEXT_ID, guild_id=GUILD_ID,
                              options=[{"name": "key", "value": "feedback_raters"}, {"name": "value", "value": ""}])
    reply = await h.fake.wait_for(lambda: h.fake.interaction_responses, what="autocomplete")

    assert reply[0]["type"] == 8
    assert [c["value"] for c in reply[0]["data"]["choices"]] == ["asker", "anyone"]


async def test_admin_check_uses_resolved_permissions(h: DiscordHarness) -> None:
    """The run-time check reads the interaction's resolved permissions, so a granted Manage Server is honoured."""
    reply = await command(h, "uppzy-admin", "channel", USER_ID, mode="all")
    assert reply["content"] == msgs.ADMIN_ONLY
    await h.fake.slash_command(name="uppzy-admin", subcommand="channel", user_id=USER_ID, channel_id=TEXT_ID,
                               guild_id=GUILD_ID, permissions=MANAGE_GUILD, options=[{"name": "mode", "value": "all"}])
    reply2 = await h.fake.wait_for(lambda: h.fake.interaction_responses[1:], what="second reply")
    assert "is now `all`" in reply2[0]["data"]["content"]
