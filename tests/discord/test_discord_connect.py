"""`/uppzy-admin connect` end to end through the Discord fake: a modal for Manage Server members, the key checked with
the simulator and stored sealed, never answered back or logged (discord.py's DEBUG lines included); GUILD_DELETE for
a server the bot left forgets it, an outage does not."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from bots.discord import strings as msgs
from bots.runner import build_connector
from core.config import Secret
from core.secrets_box import SecretBox
from core.uppzy import UppzyClient
from simulator import Simulator
from tests.discord_support import ADMIN_ID, GUILD_ID, TEXT_ID, USER_ID, DiscordHarness
from tests.fakes.discord_fake import FakeDiscord

KEY_B = "sk-live-dddddddd-7a0c55"
SITE_B = "site-b"
WORKSPACE = str(GUILD_ID)


@pytest.fixture
async def sim(make_sim: Callable[..., Any]) -> Simulator:
    """The simulator with a second key bound to its own site."""
    return await make_sim(keys={KEY_B: (SITE_B,)})


class World:
    """The harness with a connector, its box and what on_change was told."""

    def __init__(self, h: DiscordHarness, box: SecretBox, changes: list[tuple[str, str]]) -> None:
        self.h, self.box, self.changes = h, box, changes


@pytest.fixture
async def world(fake: FakeDiscord, sim: Simulator, uppzy: UppzyClient, tmp_path: Path,
                caplog: pytest.LogCaptureFixture) -> AsyncIterator[World]:
    """Store, relay and a DiscordBot given a connector (SECRETS_KEY set), every log at DEBUG from the start."""
    caplog.set_level(logging.DEBUG)
    h = DiscordHarness(fake, sim, uppzy, tmp_path)
    changes: list[tuple[str, str]] = []
    secrets_key = Fernet.generate_key().decode()
    logging.getLogger().addHandler(h.errors)
    try:
        await h._open_relay()
        assert h.relay is not None and h.store is not None
        await h.relay.start(reaper=False)
        settings = dataclasses.replace(h.settings, secrets_key=Secret(secrets_key))
        connector = build_connector(settings, h.store, on_change=lambda p, w: changes.append((p, w)))
        await h.start_bot(connector=connector)
        yield World(h, SecretBox([secrets_key]), changes)
    finally:
        await h.aclose()


async def _open(h: DiscordHarness, user_id: int) -> dict[str, Any]:
    """Run /uppzy-admin connect; the first response (a modal, or a refusal)."""
    seen = len(h.fake.interaction_responses)
    await h.fake.slash_command(name="uppzy-admin", subcommand="connect", user_id=user_id, channel_id=TEXT_ID,
                               guild_id=GUILD_ID)
    return (await h.fake.wait_for(lambda: h.fake.interaction_responses[seen:], what="/uppzy-admin connect"))[0]


async def _submit(h: DiscordHarness, user_id: int, site: str, key: str, *, permissions: int | None = None) -> str:
    """Open the modal as `user_id` (discord.py forgets a modal once submitted, as a closed one in Discord), submit
    it (INTERACTION_CREATE type 5) with `permissions` then, and return what the member was told."""
    assert (await _open(h, user_id))["type"] == 9
    responses, followups = len(h.fake.interaction_responses), len(h.fake.followups)
    rows = [{"type": 1, "components": [{"type": 4, "custom_id": cid, "value": value}]}
            for cid, value in (("uppzy_connect_site", site), ("uppzy_connect_key", key))]
    await h.fake._interaction(5, {"custom_id": "uppzy_connect_modal", "components": rows}, user_id=user_id,
                              channel_id=TEXT_ID, guild_id=GUILD_ID, permissions=permissions)
    first = (await h.fake.wait_for(lambda: h.fake.interaction_responses[responses:], what="modal response"))[0]
    if first["type"] == 5:
        later = await h.fake.wait_for(lambda: h.fake.followups[followups:], what="modal follow-up")
        assert later[0]["ephemeral"]
        return str(later[0]["data"]["content"])
    assert first["ephemeral"]
    return str(first["data"]["content"])


def _files(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())


async def test_manage_server_member_connects_through_the_modal(world: World, tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    """The command answers with a two-input modal; a good key is checked, sealed, and the answer names the site."""
    h = world.h
    modal = await _open(h, ADMIN_ID)
    assert modal["type"] == 9 and modal["data"]["custom_id"] == "uppzy_connect_modal"
    labels = [c["label"] for row in modal["data"]["components"] for c in row.get("components", [row])
              if c.get("type") == 4]
    assert labels == ["Site", "API key"]

    reply = await _submit(h, ADMIN_ID, SITE_B, KEY_B)
    assert "Connected to Uppzy site site-b" in reply and KEY_B not in reply
    assert [c.status for c in h.sim.calls("site", key=KEY_B)] == [200]
    assert h.store is not None
    stored = await h.store.get_credentials("discord", WORKSPACE)
    assert stored is not None and stored[0] == SITE_B and world.box.open(stored[1]) == KEY_B
    assert world.changes == [("discord", WORKSPACE)]

    wrong = "sk-wrong-1111-secretish"
    assert "refused this API key" in await _submit(h, ADMIN_ID, SITE_B, wrong)
    assert "cannot use site demo-site" in await _submit(h, ADMIN_ID, "demo-site", KEY_B)
    assert (await h.store.get_credentials("discord", WORKSPACE) or ("",))[0] == SITE_B  # the good one stays
    await h.drain()
    for secret in (KEY_B, wrong):
        assert all(secret not in r.getMessage() for r in caplog.records), "a key was logged"
        assert secret.encode() not in _files(tmp_path)
    assert any(r.name == "discord.gateway" and r.levelno == logging.DEBUG for r in caplog.records)  # DEBUG was on


async def test_members_without_manage_server_are_refused(world: World) -> None:
    """The command and a submission from a member without Manage Server are refused; nothing is checked or stored."""
    h = world.h
    refusal = await _open(h, USER_ID)
    assert refusal["type"] == 4 and refusal["data"]["content"] == msgs.ADMIN_ONLY
    # Manage Server taken away between opening the modal and submitting it
    assert await _submit(h, ADMIN_ID, SITE_B, KEY_B, permissions=0) == msgs.ADMIN_ONLY
    assert h.store is not None and await h.store.get_credentials("discord", WORKSPACE) is None
    assert h.sim.calls("site", key=KEY_B) == [] and world.changes == []


async def test_leaving_a_server_forgets_it_but_an_outage_does_not(world: World) -> None:
    """GUILD_DELETE with unavailable=true keeps everything; without it the connection and settings go."""
    h = world.h
    assert h.store is not None and h.relay is not None
    assert "Connected" in await _submit(h, ADMIN_ID, SITE_B, KEY_B)
    await h.relay.set_setting("discord", WORKSPACE, "reply_mode", "all", by="x")
    world.changes.clear()
    await h.fake.dispatch("GUILD_DELETE", {"id": str(GUILD_ID), "unavailable": True})
    await h.drain()
    assert await h.store.get_credentials("discord", WORKSPACE) is not None and world.changes == []
    await h.fake.dispatch("GUILD_CREATE", h.fake._guild_create(GUILD_ID))
    await h.fake.dispatch("GUILD_DELETE", {"id": str(GUILD_ID)})
    await h.fake.wait_for(lambda: world.changes, what="the guild forgotten")
    assert await h.store.get_credentials("discord", WORKSPACE) is None
    assert await h.store.workspace_settings("discord", WORKSPACE) == {}


async def test_leaving_a_server_forgets_its_settings_without_secrets_key_too(fake: FakeDiscord, sim: Simulator,
                                                                             uppzy: UppzyClient,
                                                                             tmp_path: Path) -> None:
    """A deployment without SECRETS_KEY offers no `connect`, but a server the bot is removed from still loses its
    settings (the issue: leaving a server does what an uninstall does)."""
    h = DiscordHarness(fake, sim, uppzy, tmp_path)
    forgotten: list[tuple[str, str]] = []
    try:
        await h._open_relay()
        assert h.relay is not None and h.store is not None
        await h.relay.start(reaper=False)
        assert h.settings.secrets_key is None
        forgetter = build_connector(h.settings, h.store, on_change=lambda p, w: forgotten.append((p, w)))
        await h.start_bot(forget=forgetter.forget)
        await h.relay.set_setting("discord", WORKSPACE, "reply_mode", "all", by="x")
        await h.fake.dispatch("GUILD_DELETE", {"id": str(GUILD_ID)})
        await h.fake.wait_for(lambda: forgotten, what="the guild forgotten")
        assert await h.store.workspace_settings("discord", WORKSPACE) == {}
    finally:
        await h.aclose()
