"""Discord user installs: the member commands declare where Discord may offer them; admin commands stay in servers."""

from __future__ import annotations

from tests.discord_support import DiscordHarness

GUILD_INSTALL, USER_INSTALL = 0, 1  # integration_types
IN_GUILD, BOT_DM, PRIVATE_CHANNEL = 0, 1, 2  # contexts


async def test_synced_commands_declare_installs_and_contexts(h: DiscordHarness) -> None:
    """`/uppzy` is usable from a user install, in DMs and group DMs; `/uppzy-admin` only where the server has it."""
    synced = {cmd["name"]: cmd for cmd in h.fake.commands[None]}
    assert sorted(synced["uppzy"]["integration_types"]) == [GUILD_INSTALL, USER_INSTALL]
    assert sorted(synced["uppzy"]["contexts"]) == [IN_GUILD, BOT_DM, PRIVATE_CHANNEL]
    assert synced["uppzy-admin"]["integration_types"] == [GUILD_INSTALL]
    assert synced["uppzy-admin"]["contexts"] == [IN_GUILD]
