"""FakeDiscord's user installs: slash commands run from a member's own install of the app, where the bot may be absent.

Discord marks such interactions with `context` (0 a server, 1 the bot's DM, 2 a private channel/group DM) and
`authorizing_integration_owners` ({"1": user id} for a user install; "0": the guild id, or "0" in the bot's DM, for
a guild install). Follow-ups (`POST /webhooks/{app}/{token}`) and `PATCH …/messages/@original` work for 15
minutes; `expire_interaction` ends a token early the way Discord refuses an old one.
"""

from __future__ import annotations

from typing import Any

IN_GUILD, BOT_DM, PRIVATE_CHANNEL = 0, 1, 2


class DiscordUserInstalls:
    """Mixin for FakeDiscord: `user_install_command` and `expire_interaction`."""

    _interactions: dict[int, dict[str, Any]]

    def _command_data(self, name: str, options: list[dict[str, Any]], guild_id: int | None, subcommand: str | None,
                      focused: str | None) -> dict[str, Any]:  # provided by FakeDiscord
        raise NotImplementedError

    async def _interaction(self, type_: int, data: dict[str, Any], *, user_id: int, channel_id: int,
                           guild_id: int | None, permissions: int | None = None,
                           message: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> str:
        raise NotImplementedError  # provided by FakeDiscord

    def _user_obj(self, user_id: int | None) -> dict[str, Any]:  # provided by FakeDiscord
        raise NotImplementedError

    async def user_install_command(self, *, name: str, options: list[dict[str, Any]] | None = None, user_id: int,
                                   channel_id: int, guild_id: int | None = None, context: int = IN_GUILD,
                                   guild_installed: bool = False) -> str:
        """A slash command authorized by the user's own install (and the guild's too with `guild_installed`);
        returns the interaction id. Context PRIVATE_CHANNEL sends a group DM channel the bot is not in."""
        owners = {"1": str(user_id)}
        if guild_installed:
            owners["0"] = str(guild_id) if guild_id is not None else "0"
        extra: dict[str, Any] = {"context": context, "authorizing_integration_owners": owners}
        if context == PRIVATE_CHANNEL:
            extra["channel"] = {"id": str(channel_id), "type": 3, "name": None, "icon": None, "flags": 0,
                                "owner_id": str(user_id), "last_message_id": None,
                                "recipients": [self._user_obj(user_id)]}
        data = self._command_data(name, options or [], guild_id, None, focused=None)
        return await self._interaction(2, data, user_id=user_id, channel_id=channel_id, guild_id=guild_id,
                                       extra=extra)

    def expire_interaction(self, interaction_id: int | str) -> None:
        """The token is past its 15 minutes: follow-ups and @original edits are refused from now on."""
        inter = self._interactions[int(interaction_id)]
        inter["token"] = f"expired-{inter['token']}"
