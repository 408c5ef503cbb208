"""`/uppzy-admin` stays inside its server (issue 10, item 12): sessions lists and escalation targets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bots.discord import strings as msgs
from bots.discord.admin import NOT_IN_SERVER
from core.uppzy import UppzyClient
from simulator import Simulator
from tests.discord.test_discord_admin import command
from tests.discord_support import (
    ADMIN_ID,
    ESCALATION_ID,
    GUILD_ID,
    OTHER_ID,
    ROLE_ID,
    TEXT_ID,
    USER_ID,
    DiscordHarness,
)
from tests.fakes.discord_fake import MANAGE_GUILD, FakeDiscord

GUILD_2 = 911_111_111_111_111_111
TEXT_2 = 922_222_222_222_222_222
ROLE_2 = 933_333_333_333_333_333
STRANGER_ID = 944_444_444_444_444_444


@pytest.fixture
async def h(fake: FakeDiscord, sim: Simulator, uppzy: UppzyClient, tmp_path: Path) -> AsyncIterator[DiscordHarness]:
    """The shared world plus a second server the bot is in, where alice is a member and root an admin too."""
    fake.add_guild(GUILD_2, name="Other")
    fake.add_channel(GUILD_2, TEXT_2, name="general")
    fake.add_member(GUILD_2, USER_ID, name="alice")
    fake.add_member(GUILD_2, ADMIN_ID, name="root", permissions=MANAGE_GUILD)
    fake.add_role(GUILD_2, ROLE_2, name="other-team")
    fake.add_user(STRANGER_ID, name="stranger")
    harness = DiscordHarness(fake, sim, uppzy, tmp_path)
    try:
        yield await harness.start()
    finally:
        await harness.aclose()


async def _talk_here_in_a_dm_and_elsewhere(h: DiscordHarness) -> int:
    """alice asks once in this server, once in a DM and once in the other server; returns the DM channel id."""
    here = await h.mention("How do returns work?")
    await h.wait_posts(here["id"])
    dm_id = h.fake.new_id()
    await h.say("what about shipping?", channel_id=dm_id, guild=False)
    await h.wait_posts(dm_id)
    there = await h.fake.user_message(channel_id=TEXT_2, guild_id=GUILD_2, author_id=USER_ID,
                                      content=f"<@{h.fake.bot_id}> and passwords?", mentions_bot=True)
    await h.wait_posts(there["id"])
    await h.wait_idle(3)
    return dm_id


async def test_sessions_lists_this_servers_conversations_only(h: DiscordHarness) -> None:
    """alice talks in this server, in a DM and in another server on the same site: each server sees its own."""
    dm_id = await _talk_here_in_a_dm_and_elsewhere(h)
    listed = (await command(h, "uppzy-admin", "sessions", ADMIN_ID, user=str(USER_ID)))["content"]
    assert f"discord-user-{USER_ID}-{TEXT_ID}" in listed
    assert f"-{dm_id}" not in listed and f"-{TEXT_2}" not in listed
    listed = (await command(h, "uppzy-admin", "sessions", ADMIN_ID, channel_id=TEXT_2, guild_id=GUILD_2,
                            user=str(USER_ID)))["content"]
    assert f"discord-user-{USER_ID}-{TEXT_2}" in listed
    assert f"-{dm_id}" not in listed and f"-{TEXT_ID}`" not in listed
    assert (await command(h, "uppzy-admin", "sessions", ADMIN_ID, user=str(OTHER_ID)))["content"] == \
        msgs.NO_SESSIONS


@pytest.mark.parametrize("value", [f"<#{TEXT_2}>", f"channel:{TEXT_2}", "<#123456789012345678>", f"<@&{ROLE_2}>",
                                   f"<@{STRANGER_ID}>", f"user:{STRANGER_ID}", str(TEXT_2), str(ROLE_2)])
async def test_escalation_target_outside_this_server_is_refused(h: DiscordHarness, value: str) -> None:
    """Another server's channel or role, an unknown channel, or someone who is not a member: one clear line."""
    reply = await command(h, "uppzy-admin", "set", ADMIN_ID, key="escalation_target", value=value)
    assert reply == {"content": msgs.setting_invalid(NOT_IN_SERVER), "ephemeral": True}
    assert h.relay is not None
    assert (await h.relay.workspaces.get("discord", str(GUILD_ID))).escalation_target is None


@pytest.mark.parametrize("value", [f"<#{ESCALATION_ID}>", f"<@&{ROLE_ID}>", f"<@{OTHER_ID}>", str(ROLE_ID),
                                   str(USER_ID), f"channel:{ESCALATION_ID}"])
async def test_escalation_target_in_this_server_is_saved(h: DiscordHarness, value: str) -> None:
    """This server's channels, roles and members are accepted as before."""
    reply = await command(h, "uppzy-admin", "set", ADMIN_ID, key="escalation_target", value=value)
    assert reply == {"content": msgs.setting_saved("escalation_target", value), "ephemeral": True}


async def test_sessions_stay_this_servers_with_one_session_per_user(h: DiscordHarness) -> None:
    """With `session_strategy user` here, alice's key is a prefix of her DM and other-server session ids (numeric
    channel ids look like generations): the listing still shows only the session this server opened."""
    reply = await command(h, "uppzy-admin", "set", ADMIN_ID, key="session_strategy", value="user")
    assert "user" in reply["content"]
    dm_id = await _talk_here_in_a_dm_and_elsewhere(h)
    listed = (await command(h, "uppzy-admin", "sessions", ADMIN_ID, user=str(USER_ID)))["content"]
    assert f"`discord-user-{USER_ID}`" in listed
    assert f"-{dm_id}" not in listed and f"-{TEXT_2}" not in listed
